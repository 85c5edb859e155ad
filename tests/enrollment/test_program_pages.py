"""What the join and card pages show of a program: rewards and progress, the card preview,
the till code, and the program's own texts in the reader's language."""

from __future__ import annotations

import re
from typing import Any

from tests.enrollment.test_pages import card_path, decode_svg_qr, text_of
from tests.factories import card_short_code, create_card, create_program

DESKTOP = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/126.0.0.0 Safari/537.36")
IPHONE = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
          "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1")
REWARDS = [{"name": "Es Kopi Susu", "points_cost": 100}, {"name": "Croissant", "points_cost": 150},
           {"name": "Old mug", "points_cost": 50, "active": False}]
TEXTS = {"en": {"terms": "Points have no cash value.", "description": "A coffee on us."},
         "th": {"terms": "แต้มไม่มีมูลค่าเป็นเงินสด", "description": "กาแฟฟรีสำหรับคุณ"}}


def _program(api: Any, **overrides: Any) -> dict:
    return create_program(api, slug="kopi-pages", rewards=REWARDS, texts=TEXTS, **overrides)


def test_card_page_shows_rewards_and_progress_in_the_members_language(
        app: Any, api: Any, keys: dict) -> None:
    card = create_card(api, _program(api), language="id")
    serial = card["serial_number"]
    assert api.as_(keys["pos"]).post(f"/api/v1/cards/{serial}/earn",
                                     json={"points": 130}).status_code == 201
    client = app.test_client()
    page = client.get(card_path(app, serial), headers={"User-Agent": IPHONE}).get_data(
        as_text=True)
    # The pass's choice of next reward, the missing points in the program's word, localized.
    assert text_of(page, "next-reward") == "20 poin lagi untuk Croissant"
    assert re.search(r'<progress max="150" value="130"', page)
    assert "Old mug" not in page  # inactive rewards are not offered
    assert re.search(r"<span>Es Kopi Susu</span><span class=\"ready\">Siap</span>", page)
    english = client.get(card_path(app, serial) + "?lang=en").get_data(as_text=True)
    assert text_of(english, "next-reward") == "20 more points for Croissant"

    assert api.as_(keys["pos"]).post(f"/api/v1/cards/{serial}/earn",
                                     json={"points": 20}).status_code == 201
    ready = client.get(card_path(app, serial) + "?lang=en").get_data(as_text=True)
    assert text_of(ready, "next-reward") == "Croissant ready"


def test_card_page_uses_the_programs_own_points_word(app: Any, api: Any) -> None:
    card = create_card(api, _program(api, points_label="Beans"), language="en")
    page = app.test_client().get(card_path(app, card["serial_number"])).get_data(as_text=True)
    assert text_of(page, "next-reward") == "100 more Beans for Es Kopi Susu"


def test_card_page_shows_the_code_under_the_till_qr(app: Any, api: Any, card: dict) -> None:
    page = app.test_client().get(card_path(app, card["serial_number"]),
                                 headers={"User-Agent": IPHONE}).get_data(as_text=True)
    assert text_of(page, "code-text") == card_short_code(app, card["serial_number"])
    assert 'id="show-code"' not in page  # on a phone the till QR is shown at once
    assert 'class="qr qr-page"' not in page


def test_desktop_card_page_hides_the_till_qr_behind_a_tap(app: Any, api: Any,
                                                          card: dict) -> None:
    page = app.test_client().get(card_path(app, card["serial_number"]) + "?lang=en",
                                 headers={"User-Agent": DESKTOP}).get_data(as_text=True)
    details = re.search(r'<details class="show-code".*?</details>', page, re.S)
    assert details is not None
    assert "<summary>Show my code</summary>" in details.group(0)
    assert 'class="qr"' in details.group(0)  # the till QR, inside
    outside = page.replace(details.group(0), "")
    # Outside it, one QR: the one that opens this page on a phone.
    assert re.findall(r'<svg[^>]*class="(qr[^"]*)"', outside) == ["qr qr-page"]
    assert decode_svg_qr(outside, "qr qr-page").startswith("https://pointpass.test/card/")


def test_join_page_previews_the_card_with_rewards_tiers_and_texts(app: Any, api: Any) -> None:
    _program(api, organization_name="Kopi Nusantara", background_color="#3B2314")
    client = app.test_client()
    page = client.get("/join/kopi-pages?lang=en").get_data(as_text=True)
    preview = re.search(r'<figure class="preview".*?</figure>', page, re.S)
    assert preview is not None
    assert '<span class="monogram" aria-hidden="true">KT</span>' in preview.group(0)
    assert "--brand-bg: #3B2314" in page
    assert text_of(page, "preview-name") == "Your name"
    assert re.findall(r"<li><span>([^<]+)</span>", page) == [
        "Es Kopi Susu", "Croissant", "Bronze", "Silver"]
    assert "from 500 Points" in page
    assert text_of(page, "description") == "A coffee on us."
    assert text_of(page, "terms") == "Points have no cash value."


def test_join_page_texts_follow_the_page_language(app: Any, api: Any) -> None:
    _program(api, default_language="th")
    client = app.test_client()
    thai = client.get("/join/kopi-pages?lang=th").get_data(as_text=True)
    assert text_of(thai, "terms") == "แต้มไม่มีมูลค่าเป็นเงินสด"
    assert text_of(thai, "description") == "กาแฟฟรีสำหรับคุณ"
    # No Malay texts: the program's default language (Thai) stands in, not English.
    malay = client.get("/join/kopi-pages?lang=ms").get_data(as_text=True)
    assert text_of(malay, "terms") == "แต้มไม่มีมูลค่าเป็นเงินสด"
    assert '<pre id="terms" lang="th">' in malay  # marked as Thai for screen readers
    english = client.get("/join/kopi-pages?lang=en").get_data(as_text=True)
    assert text_of(english, "terms") == "Points have no cash value."


def test_join_page_falls_back_to_the_single_language_terms(app: Any, api: Any) -> None:
    create_program(api, slug="plain", terms="Old terms.")
    page = app.test_client().get("/join/plain?lang=th").get_data(as_text=True)
    assert text_of(page, "terms") == "Old terms."
    assert 'id="description"' not in page


def test_thai_greeting_has_a_space_after_khun(app: Any, api: Any, card: dict) -> None:
    page = app.test_client().get(card_path(app, card["serial_number"]) + "?lang=th").get_data(
        as_text=True)
    assert "สวัสดี คุณ Siti!" in page
