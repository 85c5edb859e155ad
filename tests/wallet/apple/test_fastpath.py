"""The PassKit fast path answers Wallet's list and pass requests as the Flask views do."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from tests.factories import admin_api, make_app, settle
from tests.phones import Phone
from tests.wallet.apple.test_update_resume import _cards_with_phones

HEADERS = ("Content-Type", "Last-Modified", "Cache-Control", "Content-Length")


def _answer(app: Flask, phone: Phone, url: str, headers: dict[str, str]) -> tuple[Any, ...]:
    response = app.test_client().get(url, headers=headers)
    return (response.status_code, {h: response.headers.get(h) for h in HEADERS},
            response.data)


@pytest.mark.postgres
def test_the_fast_path_answers_as_the_views_do(postgres_database: Any, tmp_path: Path) -> None:
    for fast in make_app(postgres_database, tmp_path):
        for views in make_app(postgres_database, tmp_path, PASSKIT_FAST_PATH=False):
            api = admin_api(fast)
            program, phones = _cards_with_phones(fast, api, 2)
            settle(fast)
            api.request("PATCH", f"/api/v1/programs/{program['id']}",
                        json={"background_color": "#123524"})
            settle(fast)
            wallet = fast.extensions["pointpass.apple"]
            phone = phones[0]
            [serial] = phone.changed()
            pass_url = f"/passkit/v1/passes/{phone.pass_type}/{serial}"
            lists = [f"/passkit/v1/devices/{phone.device}/registrations/{phone.pass_type}",
                     f"/passkit/v1/devices/{phone.device}/registrations/{phone.pass_type}"
                     f"?passesUpdatedSince={phone.tag}",
                     f"/passkit/v1/devices/{phone.device}/registrations/{phone.pass_type}"
                     "?passesUpdatedSince=1"]
            for url in lists:
                a, b = _answer(fast, phone, url, {}), _answer(views, phone, url, {})
                assert a[0] == b[0], url
                if a[0] == 204:  # no content (Flask adds a content type of nothing)
                    assert a[2] == b[2] == b""
                    continue
                assert a[1] == b[1], url
                if a[0] == 200:  # the same body, but for the tag, which moves on
                    assert re.sub(rb'"lastUpdated": "\d+"', b"", a[2]) == \
                        re.sub(rb'"lastUpdated": "\d+"', b"", b[2])
                    assert int(json.loads(a[2])["lastUpdated"]) >= int(phone.tag)

            # Not in the store yet: the view builds and signs it (through either app).
            before = wallet.signatures
            built = _answer(fast, phone, pass_url, phone.auth(serial))
            assert built[0] == 200 and wallet.signatures == before + 1
            # Now stored: the fast path serves it, signing nothing, as the view would.
            assert _answer(fast, phone, pass_url, phone.auth(serial)) == built
            assert wallet.signatures == before + 1
            assert _answer(views, phone, pass_url, phone.auth(serial)) == built
            modified = {**phone.auth(serial), "If-Modified-Since": built[1]["Last-Modified"]}
            assert _answer(fast, phone, pass_url, modified)[0] == 304
            assert _answer(fast, phone, pass_url, modified)[:2] == \
                _answer(views, phone, pass_url, modified)[:2]
            # Whatever is unusual goes to the view: a wrong token, an unknown serial or type.
            for url, headers, status in (
                    (pass_url, {"Authorization": "ApplePass wrong"}, 401),
                    (pass_url, {}, 401),
                    (f"/passkit/v1/passes/{phone.pass_type}/NOPE", phone.auth(serial), 404),
                    (f"/passkit/v1/passes/pass.other/{serial}", phone.auth(serial), 404),
                    (lists[0] + "?passesUpdatedSince=abc", {}, 400)):
                fast_answer = fast.test_client().get(url, headers=headers)
                assert fast_answer.status_code == status, url
                assert fast_answer.is_json  # a problem document, from the view
