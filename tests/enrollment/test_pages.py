"""The join form and the card page through Flask's test client (on SQLite and PostgreSQL)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import zxingcpp
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from PIL import Image, ImageDraw
from sqlalchemy import func, select

from app import background
from app.enrollment.links import card_page_path, card_page_token, card_page_url
from app.extensions import db
from app.loyalty.codes import redemption_code, short_code
from app.loyalty.models import Card, Member
from app.wallet.apple.pass_files import pass_url
from app.wallet.google import links as google_links
from passes.languages import LANGUAGES
from tests.factories import PROGRAM, admin_api, create_program, make_app

IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
ANDROID = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/126.0.0.0 Mobile Safari/537.36")
DESKTOP = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/126.0.0.0 Safari/537.36")
GOOGLE_SAVE = "https://pay.google.com/gp/v/save/test-jwt"
ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "app" / "translations"


def fake_save_url(card: Card) -> str:
    """Stands in for app.wallet.google.links.save_url, built elsewhere."""
    return f"{GOOGLE_SAVE}-{card.serial_number}"


@pytest.fixture
def client(app: Any) -> Any:
    return app.test_client()


def csrf_token(page: str) -> str:
    match = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', page)
    assert match, "the form has no CSRF token"
    return match.group(1)


def join(client: Any, slug: str = "kopi-test", headers: dict[str, str] | None = None,
         **fields: str) -> Any:
    """Open the join page, then post ``fields`` with the page's CSRF token."""
    page = client.get(f"/join/{slug}", headers=headers or {})
    assert page.status_code == 200
    data = {"csrf_token": csrf_token(page.get_data(as_text=True)), **fields}
    return client.post(f"/join/{slug}", data=data, headers=headers or {})


def field_errors(page: str, field: str) -> list[str]:
    block = re.search(rf'<ul class="errors" id="{field}-errors">(.*?)</ul>', page, re.S)
    return [html.unescape(m) for m in re.findall(r"<li>(.*?)</li>", block.group(1))] if block \
        else []


def members(app: Any) -> int:
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(Member))
        db.session.rollback()
        return int(count or 0)


def get_card(app: Any, serial: str) -> Card:
    card = db.session.scalar(select(Card).where(Card.serial_number == serial))
    assert card is not None
    return card


def card_path(app: Any, serial: str) -> str:
    with app.test_request_context():
        return card_page_path(serial)


def decode_svg_qr(page: str, css_class: str = "qr") -> str:
    """Rasterize the page's inline SVG QR code and read it back, as a phone's scanner would."""
    svg = re.search(rf'<svg[^>]*class="{css_class}"[^>]*viewBox="0 0 (\d+) \d+".*?</svg>', page,
                    re.S)
    assert svg, f"no QR code with class {css_class!r}"
    size, scale = int(svg.group(1)), 8
    path = re.search(r'<path fill="#000" d="([^"]+)"', svg.group(0)).group(1)
    image = Image.new("L", (size * scale, size * scale), 255)
    draw = ImageDraw.Draw(image)
    for x, y, width in re.findall(r"M(\d+) (\d+)h(\d+)", path):
        left, top = int(x) * scale, int(y) * scale
        draw.rectangle([left, top, left + int(width) * scale - 1, top + scale - 1], fill=0)
    results = zxingcpp.read_barcodes(image)
    assert len(results) == 1
    return str(results[0].text)


def text_of(page: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)<', page, re.S)
    assert match, f"no element #{element_id}"
    return html.unescape(match.group(1)).strip()


# --- The join form -------------------------------------------------------------------------


def test_join_page_shows_the_form_with_security_headers(client: Any, program: dict) -> None:
    response = client.get("/join/kopi-test")
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    for name in ("name", "email", "language", "referral_code", "consent_terms",
                 "consent_marketing", "csrf_token"):
        assert f'name="{name}"' in page
    assert "Kopi Test" in page
    csp = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "img-src 'self' data:" in csp
    assert "frame-ancestors 'none'" in csp
    nonce = re.search(r"'nonce-([^']+)'", csp).group(1)
    assert f'<style nonce="{nonce}">' in page  # every inline style carries the nonce
    assert page.count("<style") == page.count(f'nonce="{nonce}"')
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["Cache-Control"] == "no-store"
    # Offline: no external scripts, styles, fonts or images.
    assert not re.search(r'(src|href)="(https?:)?//', page)


def test_missing_input_reshows_the_form_with_messages_and_writes_nothing(
    app: Any, client: Any, program: dict
) -> None:
    before = members(app)
    response = join(client, name="   ", email="not-an-address", language="en")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_errors(page, "name") == ["Please enter your name."]
    assert field_errors(page, "email") == ["Please enter a valid e-mail address."]
    assert field_errors(page, "consent_terms") == ["Please accept the terms to join."]
    assert 'value="not-an-address"' in page  # what they typed is kept
    assert 'aria-invalid="true"' in page
    assert members(app) == before


@pytest.mark.parametrize("field, value, message", [
    ("language", "fr", "Please choose a language from the list."),
    ("referral_code", "ab!", "A referral code is 4 to 16 letters and digits."),
    ("name", "x" * 121, "Please use at most 120 characters."),
])
def test_each_bad_field_gets_its_message(app: Any, client: Any, program: dict, field: str,
                                         value: str, message: str) -> None:
    fields = {"name": "Ayu", "language": "en", "consent_terms": "y", field: value}
    response = join(client, **fields)
    assert response.status_code == 422
    assert field_errors(response.get_data(as_text=True), field) == [message]
    assert members(app) == 0


def test_messages_are_in_the_visitors_language(client: Any, program: dict) -> None:
    thai = join(client, headers={"Accept-Language": "th-TH,th;q=0.9,en;q=0.5"}, name="")
    page = thai.get_data(as_text=True)
    assert '<html lang="th">' in page
    assert field_errors(page, "name") == ["โปรดกรอกชื่อของคุณ"]
    assert field_errors(page, "consent_terms") == ["โปรดยอมรับข้อกำหนดเพื่อสมัครสมาชิก"]

    page = client.get("/join/kopi-test?lang=id").get_data(as_text=True)
    malay = client.post("/join/kopi-test?lang=ms", data={"csrf_token": csrf_token(page)})
    assert field_errors(malay.get_data(as_text=True), "name") == ["Sila masukkan nama anda."]


def test_post_without_csrf_token_fails_and_writes_nothing(app: Any, client: Any,
                                                          program: dict) -> None:
    client.get("/join/kopi-test")  # a session exists, but the post does not carry its token
    fields = {"name": "Ayu", "language": "en", "consent_terms": "y"}
    for data in (fields, {**fields, "csrf_token": "forged"}):
        response = client.post("/join/kopi-test", data=data)
        assert response.status_code == 400
        page = response.get_data(as_text=True)
        assert "Your session expired" in page
        assert 'value="Ayu"' in page  # the form comes back filled in, with a fresh token
        csrf_token(page)
    assert members(app) == 0


def test_https_posts_pass_the_referrer_check(app: Any, program: dict) -> None:
    # Over HTTPS Flask-WTF also wants a same-origin Referer, which same-origin policy sends.
    client = app.test_client()
    base = "https://pointpass.test"
    page = client.get("/join/kopi-test", base_url=base).get_data(as_text=True)
    data = {"csrf_token": csrf_token(page), "name": "Ayu", "language": "en",
            "consent_terms": "y"}
    assert client.post("/join/kopi-test", base_url=base, data=data).status_code == 400
    response = client.post("/join/kopi-test", base_url=base, data=data,
                           headers={"Referer": f"{base}/join/kopi-test"})
    assert response.status_code == 303


def test_api_posts_need_no_csrf_token(api: Any, program: dict) -> None:
    # Bearer-key clients have no session: CSRF protection must not reach the JSON API.
    response = api.post(f"/api/v1/programs/{program['id']}/members", json={"name": "Budi"})
    assert response.status_code == 201, response.json


def test_joining_redirects_to_the_card_page(app: Any, client: Any, program: dict) -> None:
    response = join(client, name="  Ayu Lestari ", email="Ayu@Example.com", language="th",
                    consent_terms="y", consent_marketing="y")
    assert response.status_code == 303
    with app.app_context():
        member = db.session.scalar(select(Member).where(Member.email == "ayu@example.com"))
        assert member is not None
        assert (member.name, member.language) == ("Ayu Lestari", "th")
        assert member.consent_terms and member.consent_marketing
        serial = member.card.serial_number
        assert urlsplit(response.headers["Location"]).path == urlsplit(
            card_page_url(member.card)).path
    card_page = client.get(response.headers["Location"])
    assert card_page.status_code == 200
    body = card_page.get_data(as_text=True)
    # The "you're in" moment, in the member's language, with the space Thai puts after คุณ.
    assert "ยินดีต้อนรับ คุณ Ayu!" in body
    assert members(app) == 1
    with app.app_context():  # the code to type, under the QR code
        assert text_of(body, "code-text") == short_code(get_card(app, serial))
    # Only once: the page opened again greets as usual.
    again = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "ยินดีต้อนรับ" not in again
    assert "สวัสดี คุณ Ayu!" in again


def test_marketing_consent_is_optional_and_email_too(app: Any, client: Any,
                                                     program: dict) -> None:
    response = join(client, name="Budi", language="id", consent_terms="y")
    assert response.status_code == 303
    with app.app_context():
        member = db.session.scalar(select(Member))
        assert member is not None
        assert member.email is None
        assert member.consent_terms and not member.consent_marketing


def test_duplicate_email_is_shown_on_the_email_field(app: Any, client: Any,
                                                     card: dict) -> None:
    before = members(app)
    response = join(client, headers={"Accept-Language": "id"}, name="Siti Lagi",
                    email="SITI@example.com", language="id", consent_terms="y")
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    assert field_errors(page, "email") == [
        "Alamat email ini sudah terdaftar sebagai anggota. Gunakan alamat lain, atau kosongkan."
    ]
    assert field_errors(page, "referral_code") == []
    assert members(app) == before


def test_unknown_referral_code_is_shown_on_its_field(app: Any, client: Any,
                                                     program: dict) -> None:
    response = join(client, name="Ayu", language="en", consent_terms="y",
                    referral_code="ZZZZ9999")
    assert response.status_code == 422
    assert field_errors(response.get_data(as_text=True), "referral_code") == [
        "No member of this program has this code. Please check it, or leave it empty."
    ]
    assert members(app) == 0


def test_invitation_link_fills_in_the_code_and_credits_the_referrer(
    app: Any, client: Any, card: dict
) -> None:
    with app.app_context():
        code = get_card(app, card["serial_number"]).member.referral_code
    page = client.get(f"/join/kopi-test?ref={code.lower()}").get_data(as_text=True)
    assert f'value="{code}"' in page
    response = client.post("/join/kopi-test", data={
        "csrf_token": csrf_token(page), "name": "Dewi", "language": "id",
        "referral_code": code.lower(), "consent_terms": "y"})
    assert response.status_code == 303
    with app.app_context():
        background.dispatcher().wait()
        dewi = db.session.scalar(select(Member).where(Member.name == "Dewi"))
        referrer = get_card(app, card["serial_number"])
        assert dewi is not None and dewi.referred_by_id == referrer.member_id
        assert referrer.balance == 50  # the program's referral bonus, by the job


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def test_a_mistyped_link_in_a_browser_is_a_page_in_the_readers_language(client: Any) -> None:
    response = client.get("/joinn/kopi-test", headers={"Accept": BROWSER_ACCEPT,
                                                       "Accept-Language": "th"})
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "ไม่พบหน้านี้" in response.get_data(as_text=True)  # "Page not found"
    assert "Content-Security-Policy" in response.headers


def test_machines_and_the_api_still_get_problem_json_for_unknown_urls(client: Any) -> None:
    for path, accept in (("/joinn/kopi-test", "*/*"), ("/joinn/kopi-test", "application/json"),
                         ("/api/v1/nope", BROWSER_ACCEPT), ("/passkit/v1/nope", "*/*")):
        response = client.get(path, headers={"Accept": accept})
        assert response.status_code == 404, path
        assert response.mimetype == "application/problem+json", (path, accept)


def test_unknown_program_is_an_html_404(client: Any, program: dict) -> None:
    response = client.get("/join/no-such-program", headers={"Accept-Language": "ms"})
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "Halaman tidak dijumpai" in response.get_data(as_text=True)
    assert client.post("/join/no-such-program").status_code == 404


# --- The card page -------------------------------------------------------------------------


def test_card_page_shows_balance_tier_and_qr_code(app: Any, api: Any, keys: dict,
                                                  client: Any, card: dict) -> None:
    serial = card["serial_number"]
    earned = api.as_(keys["pos"]).post(f"/api/v1/cards/{serial}/earn", json={"points": 1234})
    assert earned.status_code == 201, earned.json
    response = client.get(card_path(app, serial), headers={"Accept-Language": "en"})
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert '<html lang="id">' in page  # the member's language beats Accept-Language
    assert text_of(page, "balance") == "1.234"  # Indonesian digit grouping
    assert text_of(page, "points-label") == "Poin"
    assert text_of(page, "tier") == "Silver"
    assert "Halo, Siti!" in page
    assert "Kopi Test" in page
    with app.app_context():
        assert decode_svg_qr(page) == redemption_code(get_card(app, serial))
    # English grouping with ?lang=en.
    english = client.get(card_path(app, serial) + "?lang=en").get_data(as_text=True)
    assert text_of(english, "balance") == "1,234"
    assert text_of(english, "points-label") == "Points"


def test_card_page_uses_the_programs_points_label_and_colours(app: Any, api: Any,
                                                              client: Any) -> None:
    response = api.post("/api/v1/programs", json={
        "name": "Teh Manis", "points_label": "Stars", "background_color": "#123456",
        "foreground_color": "#FEDCBA", "default_language": "th"})
    assert response.status_code == 201, response.json
    joined = join(client, slug="teh-manis", name="Nok", language="th", consent_terms="y")
    page = client.get(joined.headers["Location"]).get_data(as_text=True)
    assert text_of(page, "points-label") == "Stars"
    assert "--brand-bg: #123456" in page and "--brand-fg: #FEDCBA" in page


@pytest.mark.parametrize("agent, apple, google, page_qr", [
    (IPHONE, True, False, False),
    ("Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X)", True, False, False),
    (ANDROID, False, True, False),
    (DESKTOP, True, True, True),
])
def test_wallet_buttons_follow_the_device(app: Any, client: Any, card: dict, agent: str,
                                          apple: bool, google: bool, page_qr: bool,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(google_links, "save_url", fake_save_url)
    serial = card["serial_number"]
    page = client.get(card_path(app, serial), headers={"User-Agent": agent}).get_data(
        as_text=True)
    with app.app_context():
        apple_url = pass_url(get_card(app, serial))
    assert apple_url
    assert (f'href="{apple_url}"' in page) is apple
    assert (f'href="{GOOGLE_SAVE}-{serial}"' in page) is google
    assert ('id="open-on-phone"' in page) is page_qr
    if page_qr:
        with app.app_context():
            assert decode_svg_qr(page, "qr qr-page") == card_page_url(get_card(app, serial))


def test_google_button_is_hidden_while_google_wallet_is_off(
    app: Any, client: Any, card: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(google_links, "save_url", lambda card: None)
    page = client.get(card_path(app, card["serial_number"]),
                      headers={"User-Agent": DESKTOP}).get_data(as_text=True)
    assert 'data-wallet="apple"' in page
    assert 'data-wallet="google"' not in page


def test_voided_card_page_offers_no_wallet(app: Any, api: Any, client: Any, card: dict) -> None:
    serial = card["serial_number"]
    assert api.post(f"/api/v1/cards/{serial}/void", json={"reason": "lost"}).status_code == 200
    page = client.get(card_path(app, serial), headers={"User-Agent": IPHONE}).get_data(
        as_text=True)
    assert "Kartu ini sudah tidak berlaku" in page
    assert 'data-wallet="apple"' not in page
    assert '<svg xmlns="http://www.w3.org/2000/svg" class="qr"' not in page


def test_wrong_token_is_a_404(app: Any, api: Any, client: Any, card: dict) -> None:
    serial = card["serial_number"]
    other = api.post(f"/api/v1/programs/{card['program_id']}/members", json={"name": "Budi"})
    other_serial = other.json["card"]["serial_number"]
    with app.app_context():
        token = card_page_token(serial)
        other_token = card_page_token(other_serial)
    for path in (
        f"/card/{serial}/{'0' * 32}",
        f"/card/{serial}/{token[:-1]}",
        f"/card/{serial}/{other_token}",  # another card's token
        f"/card/{serial}/{token[:-1]}é",  # non-ASCII: compare_digest must not raise
        f"/card/{serial.lower()}/{token}",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.mimetype == "text/html"
    with app.app_context():
        assert client.get(f"/card/UNKNOWN/{card_page_token('UNKNOWN')}").status_code == 404
    assert client.get(f"/card/{serial}/{token}").status_code == 200


def test_card_page_url_is_absolute_under_base_url(app: Any, card: dict) -> None:
    with app.app_context():
        url = card_page_url(get_card(app, card["serial_number"]))
    assert url.startswith("https://pointpass.test/card/" + card["serial_number"] + "/")
    assert len(url.rsplit("/", 1)[1]) == 32


# --- Page language -------------------------------------------------------------------------


def test_language_order_query_then_cookie_then_member_then_browser(
    app: Any, client: Any, card: dict
) -> None:
    path = card_path(app, card["serial_number"])

    def lang(response: Any) -> str:
        return re.search(r'<html lang="(\w+)">', response.get_data(as_text=True)).group(1)

    thai_browser = {"Accept-Language": "th"}
    assert lang(client.get(path, headers=thai_browser)) == "id"  # the member's language
    chosen = client.get(path + "?lang=ms", headers=thai_browser)
    assert lang(chosen) == "ms"
    assert "lang=ms" in chosen.headers["Set-Cookie"]
    assert lang(client.get(path, headers=thai_browser)) == "ms"  # remembered in the cookie
    assert lang(client.get(path + "?lang=en")) == "en"  # the query beats the cookie
    assert lang(client.get(path + "?lang=xx")) == "en"  # unknown: ignored; cookie is now en


def test_join_page_language_browser_then_program_default(api: Any, client: Any,
                                                         program: dict) -> None:
    created = api.post("/api/v1/programs", json={"name": "Kedai", "default_language": "ms"})
    assert created.status_code == 201, created.json
    page = client.get("/join/kedai", headers={"Accept-Language": "th-TH, en;q=0.3"})
    assert '<html lang="th">' in page.get_data(as_text=True)
    assert '<option selected value="th">' in page.get_data(as_text=True)
    page = client.get("/join/kedai", headers={"Accept-Language": "zh-CN, ja;q=0.5"})
    assert '<html lang="ms">' in page.get_data(as_text=True)
    page = client.get("/join/kedai")
    assert '<html lang="ms">' in page.get_data(as_text=True)
    switcher = page.get_data(as_text=True)
    for code in LANGUAGES:
        assert f'href="/join/kedai?lang={code}"' in switcher
    # Other query parameters stay; none of them reaches url_for as an option.
    odd = client.get("/join/kedai?ref=AB12CD34&_scheme=javascript&_external=1").get_data(
        as_text=True)
    assert 'href="/join/kedai?ref=AB12CD34&amp;_scheme=javascript&amp;_external=1&amp;lang=th"' \
        in odd


@pytest.mark.parametrize("header, expected", [
    ("th-TH, en;q=0.3", "th"),  # the visitor's order, not "any exact match first"
    ("en-GB,en;q=0.9", "en"),
    ("ms-MY", "ms"),
    ("in-ID", "id"),  # older Android locales
    ("zh-CN, ja;q=0.8", None),
    ("id;q=0, th;q=0.5", "th"),  # q=0 means "not this one"
    ("*", None),
    ("", None),
])
def test_browser_language(header: str, expected: str | None) -> None:
    from flask import Flask

    from app.web.pagekit import browser_language

    with Flask(__name__).test_request_context(headers={"Accept-Language": header}):
        assert browser_language() == expected


def test_other_html_pages_get_the_headers_and_api_docs_keep_theirs(client: Any) -> None:
    index = client.get("/")
    assert index.status_code == 200
    nonce = re.search(r"'nonce-([^']+)'", index.headers["Content-Security-Policy"]).group(1)
    assert f'<style nonce="{nonce}">' in index.get_data(as_text=True)
    docs = client.get("/api/docs")
    # Its own policy: this server only, and the inline script that starts Swagger UI.
    assert docs.headers["Content-Security-Policy"].startswith("default-src 'self'; ")
    assert "nonce" not in docs.headers["Content-Security-Policy"]
    assert "Content-Security-Policy" not in client.get("/api/openapi.json").headers


# --- Translations --------------------------------------------------------------------------


def test_template_has_every_marked_text() -> None:
    # The same sources and keywords as babel.cfg and the README's extract command.
    keywords = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
    method_map = [("app/**.py", "python"), ("templates/**.html", "jinja2")]
    marked = {message[2] for message in extract_from_dir(str(ROOT), method_map,
                                                         keywords=keywords)}
    with (TRANSLATIONS / "messages.pot").open("rb") as f:
        template = {m.id for m in read_po(f) if m.id}
    assert marked <= template, f"run pybabel extract: missing {marked - template}"


@pytest.mark.parametrize("language", ["id", "th", "ms"])
def test_translations_are_complete_and_compiled(language: str) -> None:
    folder = TRANSLATIONS / language / "LC_MESSAGES"
    with (TRANSLATIONS / "messages.pot").open("rb") as f:
        template = {m.id for m in read_po(f) if m.id}
    with (folder / "messages.po").open("rb") as f:
        source = read_po(f)
    with (folder / "messages.mo").open("rb") as f:
        compiled = read_mo(f)
    assert not source.fuzzy
    entries = {m.id: m for m in source if m.id}
    assert template <= set(entries), f"run pybabel update: missing {template - set(entries)}"
    for message in entries.values():
        # A plural message has a tuple of ids, and one string per plural form.
        ids = message.id if isinstance(message.id, tuple) else (message.id,)
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings), f"{language}: {message.id!r} is not translated"
        assert "fuzzy" not in message.flags, f"{language}: {message.id!r} is fuzzy"
        for placeholder in re.findall(r"%\(\w+\)[sd]", ids[-1]):
            assert all(placeholder in s for s in strings), f"{language}: {message.id!r}"
    def plain(value: Any) -> Any:  # the .mo reader gives a plural's ids and strings as lists
        return tuple(value) if isinstance(value, list | tuple) else value

    compiled_strings = {plain(m.id): plain(m.string) for m in compiled if m.id}
    assert compiled_strings == {plain(k): plain(m.string) for k, m in entries.items()}, (
        "the .mo is stale: run pybabel compile -d app/translations")


def test_join_posts_are_rate_limited_per_address(database: Any, tmp_path: Any) -> None:
    for app in make_app(database, tmp_path, JOIN_RATE_LIMIT="2/minute"):
        create_program(admin_api(app))
        client = app.test_client()
        token = csrf_token(client.get("/join/kopi-test").get_data(as_text=True))
        statuses = [client.post("/join/kopi-test", data={"name": "", "csrf_token": token})
                    .status_code for _ in range(3)]
        assert statuses == [422, 422, 429]
        assert client.get("/join/kopi-test").status_code == 200  # reading the form is free


def test_a_json_body_is_not_taken_as_the_join_form(app: Any, api: Any,
                                                   client: Any) -> None:
    """Flask-WTF read a JSON body as the form, and crashed on one that is not an object."""
    api.post("/api/v1/programs", json=PROGRAM)
    token = csrf_token(client.get("/join/kopi-test").get_data(as_text=True))
    for body in ([["name", "Siti"]], 5, {"name": "Siti", "consent_terms": True}):
        response = client.post("/join/kopi-test", json=body, headers={"X-CSRFToken": token})
        assert response.status_code == 422, body
    assert api.get("/api/v1/programs").json  # the program is there; no member was made
    with app.app_context():
        from sqlalchemy import func, select

        from app.extensions import db
        from app.loyalty.models import Member
        assert db.session.scalar(select(func.count()).select_from(Member)) == 0


# Invisible and direction-changing characters (issue 12, defect 9): a name holding U+202E
# read backwards on the card and its passes.
@pytest.mark.parametrize(("field", "value", "code"), [
    ("name", "\u202eitiS", "U+202E"),
    ("name", "Ay\u200bu", "U+200B"),
    ("name", "\u2066Ayu\u2069", "U+2066"),
    ("name", "Ayu\ufeff", "U+FEFF"),
    ("email", "ayu@exam\u2060ple.com", "U+2060"),
])
def test_invisible_characters_are_refused_per_field(app: Any, client: Any, program: dict,
                                                     field: str, value: str, code: str) -> None:
    fields = {"name": "Ayu", "language": "en", "consent_terms": "y", field: value}
    response = join(client, **fields)
    assert response.status_code == 422
    assert field_errors(response.get_data(as_text=True), field) == [
        f"Please remove the invisible character {code}."]
    assert members(app) == 0


@pytest.mark.parametrize(("lang", "message"), [
    ("id", "Hapus karakter tak terlihat U+202E."),
    ("ms", "Sila buang aksara tidak kelihatan U+202E."),
    ("th", "โปรดลบอักขระที่มองไม่เห็น U+202E"),
])
def test_the_invisible_character_message_is_translated(app: Any, client: Any, program: dict,
                                                        lang: str, message: str) -> None:
    page = client.get(f"/join/kopi-test?lang={lang}").get_data(as_text=True)
    response = client.post(f"/join/kopi-test?lang={lang}", data={
        "csrf_token": csrf_token(page), "name": "\u202eitiS", "language": lang,
        "consent_terms": "y"})
    assert response.status_code == 422
    assert field_errors(response.get_data(as_text=True), "name") == [message]
    assert members(app) == 0


def test_the_session_cookie_is_samesite_lax(client: Any, program: dict) -> None:
    """The session (the form's CSRF token; a staff sign-in) is not sent on cross-site posts."""
    response = client.get("/join/kopi-test")
    cookie = next(v for v in response.headers.getlist("Set-Cookie") if v.startswith("session="))
    assert "SameSite=Lax" in cookie
