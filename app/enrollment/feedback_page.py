"""The feedback page, ``/feedback/<token>``: one question (0-10) and an optional comment, in
the member's language; a thanks page after. Server-rendered, CSRF-protected, no script needed.
An invitation answered already, expired or unknown gets a page saying so (409, 410, 404).
A member's page like the join and card pages, so it lives with them; the invitations
themselves are :mod:`app.feedback`'s."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import NotFound as HTTPNotFound

from app.enrollment.feedback_form import FeedbackForm
from app.enrollment.member_pages import page_branding
from app.errors import NotFound, Unprocessable
from app.feedback import service
from app.ratelimit import RateLimited, by_address, limit
from app.web.pagekit import use_languages
from passes.languages import LANGUAGE_NAMES

bp = Blueprint("feedback_pages", __name__)


@bp.context_processor
def _page_context() -> dict[str, Any]:
    return {"lang": str(get_locale() or "en"), "language_names": LANGUAGE_NAMES,
            "language_url": _language_url}


def _language_url(code: str) -> str:
    """This page in another language."""
    query = urlencode({"lang": code})
    return f"{url_for(request.endpoint or '', **(request.view_args or {}))}?{query}"


def _load(token: str) -> service.InvitationPage:
    page = service.page_for(token)
    use_languages(member=page.member_language, program=page.program.default_language)
    return page


def _form_page(page: service.InvitationPage, form: FeedbackForm,
               status: int) -> tuple[str, int]:
    return render_template("feedback.html", page=page, form=form,
                           brand=page_branding(page.program)), status


def _closed_page(page: service.InvitationPage, state: str, status: int) -> tuple[str, int]:
    return render_template("feedback_closed.html", page=page, state=state,
                           brand=page_branding(page.program),
                           days=service.INVITATION_DAYS), status


@bp.route("/feedback/<token>", methods=["GET", "POST"])
@limit("FEEDBACK_RATE_LIMIT", key=by_address, methods=("POST",))
def feedback(token: str) -> ResponseReturnValue:
    """The question; a valid post records the answer (once) and leads to the thanks page."""
    page = _load(token)
    try:
        service.check_open(page.invitation)
    except service.AlreadyAnswered:
        return _closed_page(page, "answered", 409)
    except service.InvitationExpired:
        return _closed_page(page, "expired", 410)
    form = FeedbackForm()
    if request.method == "GET":
        return _form_page(page, form, 200)
    if not form.validate():
        return _form_page(page, form, 422)
    try:
        service.answer(token, form.score.data, form.comment.data, str(get_locale()))
    except service.AlreadyAnswered:  # answered meanwhile (another tab, a double tap)
        return _closed_page(page, "answered", 409)
    except service.InvitationExpired:
        return _closed_page(page, "expired", 410)
    except Unprocessable:  # the form checks what the service checks; kept as a safety net
        form.form_errors.append(_("Please check your answer and send it again."))
        return _form_page(page, form, 422)
    return redirect(url_for(".thanks", token=token), 303)


@bp.get("/feedback/<token>/thanks")
def thanks(token: str) -> ResponseReturnValue:
    """Thanks, once the invitation is answered (else back to the question)."""
    page = _load(token)
    if page.invitation.answered_at is None:
        return redirect(url_for(".feedback", token=token), 303)
    return _closed_page(page, "thanks", 200)


@bp.errorhandler(CSRFError)
def _csrf_failed(error: CSRFError) -> ResponseReturnValue:
    # A stale or missing token (an old tab, cookies off): the question again, to resend.
    try:
        page = _load((request.view_args or {}).get("token", ""))
    except NotFound as exc:
        return _not_found(exc)
    form = FeedbackForm()  # keeps what they chose
    form.form_errors.append(_("Your session expired. Please send your answer again."))
    return _form_page(page, form, 400)


@bp.errorhandler(RateLimited)
def _rate_limited(error: RateLimited) -> ResponseReturnValue:
    return (render_template("feedback_closed.html", page=None, state="busy", brand=None,
                            days=service.INVITATION_DAYS),
            429, error.headers)


@bp.errorhandler(NotFound)
@bp.errorhandler(HTTPNotFound)
def _not_found(error: Exception) -> tuple[str, int]:
    return render_template("404.html"), 404
