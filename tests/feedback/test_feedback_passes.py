"""What the Apple pass shows of an open invitation: "How was your visit?" with the link to
its page on the back, right after the message, in every language; on the lock screen too
when the program asks for that; gone once answered (the answer announces the card)."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from app.feedback import service
from passes.apple.localization import strings_for_language
from passes.languages import LANGUAGES
from tests.factories import ApiClient, settle
from tests.feedback.conftest import add_location, ask_for_feedback, earn, invitations


def _pass_files(api: ApiClient, serial: str) -> dict[str, bytes]:
    url = api.get(f"/api/v1/cards/{serial}").json["apple_pass_url"]
    response = api.client.get(url.removeprefix("https://pointpass.test"))
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _back(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return json.loads(files["pass.json"])["storeCard"]["backFields"]  # type: ignore[no-any-return]


def _strings(files: dict[str, bytes], language: str) -> dict[str, str]:
    lines = files[f"{language}.lproj/pass.strings"].decode().splitlines()
    return dict(line.removesuffix(";").split('" = "', 1) for line in lines)  # type: ignore[misc]


def test_the_pass_links_to_the_open_invitation_until_it_is_answered(
        app: Any, api: ApiClient, program: dict, card: dict) -> None:
    serial = card["serial_number"]
    sent = api.post(f"/api/v1/programs/{program['id']}/updates",
                    json={"message": "Promo kopi susu"})
    assert sent.status_code == 202, sent.json
    settle(app)
    assert [f["key"] for f in _back(_pass_files(api, serial))][:1] == ["message"]
    ask_for_feedback(api, program)
    earn(api, serial, add_location(api, program))
    [invitation] = invitations(app, serial)

    files = _pass_files(api, serial)
    back = _back(files)
    keys = [f["key"] for f in back]
    assert keys.index("feedback") == keys.index("message") + 1
    field = back[keys.index("feedback")]
    assert field["value"] == f"https://pointpass.test/feedback/{invitation.token}"
    assert field["label"] == "feedback_label" and "changeMessage" not in field
    for language in LANGUAGES:  # the label reads in the phone's language
        assert _strings(files, language)['"feedback_label'] != ""
    assert _strings(files, "en")['"feedback_label'] == 'How was your visit?"'

    with app.app_context():
        service.answer(invitation.token, 9)
    assert "feedback" not in [f["key"] for f in _back(_pass_files(api, serial))]


def test_the_lock_screen_says_it_when_the_program_asks(app: Any, api: ApiClient, program: dict,
                                                      card: dict) -> None:
    serial = card["serial_number"]
    ask_for_feedback(api, program, lock_screen=True)
    earn(api, serial, add_location(api, program))
    files = _pass_files(api, serial)
    [field] = [f for f in _back(files) if f["key"] == "feedback"]
    assert field["changeMessage"] == "feedback_change"
    for language in LANGUAGES:  # Wallet puts the link where %@ is, in every language
        assert "%@" in strings_for_language((), language, lambda _lang, msgid: msgid)[
            "feedback_change"]
    assert "%@" in _strings(files, "en")['"feedback_change']


def test_no_link_without_an_open_invitation(app: Any, api: ApiClient, program: dict,
                                            card: dict) -> None:
    serial = card["serial_number"]
    ask_for_feedback(api, program)
    earn(api, serial)  # not at a location
    assert "feedback" not in [f["key"] for f in _back(_pass_files(api, serial))]
