"""What every HTML page is built with: languages (Babel), forms and CSRF, security headers.

Page views import from here; this module imports none of them (``create_app`` registers their
blueprints). CSRF protection is Flask-WTF's, on by default: every POST, PUT, PATCH and DELETE
must carry the session's token, so a new form is protected without doing anything. Callers
that prove who they are without cookies (the JSON API's keys, the PassKit web service's
tokens, Google's signed callbacks) are exempted where ``create_app`` registers them, with
:func:`exempt_from_csrf`.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from flask import Blueprint, Flask, Response, g, has_request_context, request
from flask.sessions import SecureCookieSessionInterface
from flask_babel import Babel, refresh
from flask_wtf import FlaskForm
from flask_wtf.csrf import CSRFError, CSRFProtect
from itsdangerous import URLSafeTimedSerializer

from app.problems import problem
from app.wording import TRANSLATIONS
from passes.languages import LANGUAGES

DEFAULT_LANGUAGE = "en"
LANGUAGE_COOKIE = "lang"
LANGUAGE_COOKIE_MAX_AGE = 365 * 24 * 3600
# Old Java and Android locales still say "in" for Indonesian.
LEGACY_CODES = {"in": "id"}

# Blueprints whose pages are translated, take the ``lang`` cookie and are not cached.
PAGE_BLUEPRINTS = {"enrollment_pages", "staff_pages", "till_pages", "console",
                   "feedback_pages"}

csrf = CSRFProtect()
babel = Babel()


class PageForm(FlaskForm):
    """A form posted from one of the pages: it reads the posted form only. (Flask-WTF also
    takes a JSON body as form data, and fails with a TypeError on one that is not an object.)
    """

    class Meta(FlaskForm.Meta):
        def wrap_formdata(self, form: Any, formdata: Any) -> Any:
            if has_request_context() and request.is_json:
                return None  # as if nothing was posted: the fields fail validation
            return super().wrap_formdata(form, formdata)


def select_locale() -> str:
    """The page language: ``?lang=``, the ``lang`` cookie, the member's language (card page),
    the best Accept-Language match, then the program's default language."""
    if not has_request_context():
        return DEFAULT_LANGUAGE
    for choice in (request.args.get("lang"), request.cookies.get(LANGUAGE_COOKIE),
                   g.get("member_language")):
        if choice in LANGUAGES:
            return str(choice)
    browser = browser_language()
    if browser:
        return browser
    program_language = g.get("program_language")
    return str(program_language) if program_language in LANGUAGES else DEFAULT_LANGUAGE


def browser_language() -> str | None:
    """The visitor's most preferred language that the pages have, from Accept-Language.

    Matched on the primary subtag, in the visitor's order: "th-TH, en;q=0.3" is Thai. (Werkzeug's
    ``best_match`` would answer English there, since it prefers any exact match.)
    """
    for value, quality in request.accept_languages:  # highest quality first
        primary = value.replace("_", "-").split("-", 1)[0].lower()
        primary = LEGACY_CODES.get(primary, primary)
        if quality > 0 and primary in LANGUAGES:
            return primary
    return None


def use_languages(*, member: str | None = None, program: str | None = None) -> None:
    """Tell the locale selector the member's and the program's languages for this request."""
    g.member_language = member
    g.program_language = program
    # Flask-Babel caches the locale on first use; a form built earlier may already have asked.
    refresh()


def csp_nonce() -> str:
    """This response's nonce for inline ``<style>`` elements (templates call it)."""
    if "csp_nonce" not in g:
        g.csp_nonce = secrets.token_urlsafe(16)
    return str(g.csp_nonce)


def _content_security_policy() -> str:
    return "; ".join([
        "default-src 'self'",
        "img-src 'self' data:",
        f"style-src 'self' 'nonce-{csp_nonce()}'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ])


def _page_headers(response: Response) -> Response:
    # /api/docs is HTML too, with a policy of its own (app.openapi).
    if response.mimetype != "text/html" or request.path.startswith("/api/"):
        return response
    headers = response.headers
    headers.setdefault("Content-Security-Policy", _content_security_policy())
    headers.setdefault("X-Content-Type-Options", "nosniff")
    # Card page URLs are secrets: never send them to Google's or anyone's servers. Not
    # "no-referrer": over HTTPS, Flask-WTF refuses form posts without a same-origin Referer.
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("X-Frame-Options", "DENY")  # frame-ancestors, for older browsers
    if request.blueprint in PAGE_BLUEPRINTS:
        # Personal data and per-session CSRF tokens: no shared or back-button caches.
        headers["Cache-Control"] = "no-store"
        chosen = request.args.get("lang")
        if chosen in LANGUAGES and request.cookies.get(LANGUAGE_COOKIE) != chosen:
            response.set_cookie(LANGUAGE_COOKIE, chosen, max_age=LANGUAGE_COOKIE_MAX_AGE,
                                secure=request.is_secure, httponly=True, samesite="Lax")
    return response


class SessionCookies(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the signer built once per secret key rather than
    on every request (every API call opens a session, mostly to find no cookie)."""

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            return None
        return _session_serializer(self, app.secret_key, tuple(
            app.config["SECRET_KEY_FALLBACKS"] or ()))


@lru_cache(maxsize=8)
def _session_serializer(interface: SecureCookieSessionInterface, secret_key: Any,
                        fallbacks: tuple[Any, ...]) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(
        [*fallbacks, secret_key],  # the current key last, as Flask gives it
        salt=interface.salt,
        serializer=interface.serializer,
        signer_kwargs={"key_derivation": interface.key_derivation,
                       "digest_method": interface.digest_method},
    )


def exempt_from_csrf(*views: Blueprint | Callable[..., Any]) -> None:
    """Let posts to these blueprints or view functions through without a CSRF token.

    Only for callers that authenticate otherwise than with the session cookie, which is what
    CSRF protects: a cookie-authenticated endpoint exempted here is open to other sites.
    """
    for view in views:
        csrf.exempt(view)


def csrf_problem(error: CSRFError) -> Response:
    """The answer to a post whose CSRF token is missing, wrong or stale: a 400 problem of type
    ``csrf``. (Pages with a form answer with the form instead, from their blueprint's handler.)
    """
    return problem(400, code="csrf", title="CSRF check failed", detail=error.description)


def init_app(app: Flask) -> None:
    """Attach Babel, CSRF protection (on for every form post), sessions and page headers."""
    app.config.setdefault("BABEL_DEFAULT_LOCALE", DEFAULT_LANGUAGE)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    babel.init_app(app, locale_selector=select_locale)

    # Every post is checked before its view runs (Flask-WTF's default, forced so that no
    # setting can quietly turn it off); views need not, and do not, call csrf.protect().
    app.config["WTF_CSRF_CHECK_DEFAULT"] = True
    # The form is one step; a token that lasts a day lets members finish at their own pace.
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", 24 * 3600)
    app.session_interface = SessionCookies()
    csrf.init_app(app)
    app.register_error_handler(CSRFError, csrf_problem)

    app.jinja_env.globals["csp_nonce"] = csp_nonce
    app.after_request(_page_headers)
