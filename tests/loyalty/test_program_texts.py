"""A program's terms and description in each language: set through the API, read by pages and
passes in the reader's language."""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

import pytest

from app.loyalty.schemas import ProgramTextsIn, ProgramTextsOut
from passes.languages import LANGUAGES
from tests.factories import create_card, create_program

THAI_TERMS = "แต้มไม่มีมูลค่าเป็นเงินสด"
TEXTS = {
    "en": {"terms": "Points have no cash value.", "description": "Coffee rewards."},
    "th": {"terms": THAI_TERMS, "description": "สะสมแต้มทุกแก้ว"},
}


def test_schemas_name_every_language() -> None:
    assert tuple(ProgramTextsIn().fields) == LANGUAGES
    assert tuple(ProgramTextsOut().fields) == LANGUAGES


def test_create_and_read_texts_per_language(api: Any) -> None:
    program = create_program(api, texts=TEXTS)
    assert program["texts"] == TEXTS
    assert api.get(f"/api/v1/programs/{program['id']}").json["texts"] == TEXTS


def test_patch_replaces_only_the_languages_given(api: Any, program: dict) -> None:
    url = f"/api/v1/programs/{program['id']}"
    assert program["texts"] is None
    assert api.request("PATCH", url, json={"texts": TEXTS}).status_code == 200
    response = api.request("PATCH", url, json={"texts": {"ms": {"terms": "Mata tiada nilai tunai."},
                                              "en": None}})
    assert response.status_code == 200, response.json
    assert response.json["texts"] == {"th": TEXTS["th"],
                                      "ms": {"terms": "Mata tiada nilai tunai."}}


@pytest.mark.parametrize("texts, field", [
    ({"fr": {"terms": "Les points..."}}, "texts.fr"),
    ({"th": {"terms": "x" * 5001}}, "texts.th.terms"),
    ({"th": {"description": "x" * 1001}}, "texts.th.description"),
    ({"id": {"terms": "Poin \u202etidak bernilai"}}, "texts.id.terms"),
    ({"id": {"description": "zero\u200bwidth"}}, "texts.id.description"),
    ({"id": {"terms": ""}}, "texts.id.terms"),
    ({"id": {}}, "texts.id._schema"),
    ({"id": {"title": "x"}}, "texts.id.title"),
    ({"id": "Poin"}, "texts.id._schema"),
])
def test_bad_texts_are_refused_naming_the_field(api: Any, program: dict, texts: Any,
                                                field: str) -> None:
    url = f"/api/v1/programs/{program['id']}"
    response = api.request("PATCH", url, json={"texts": texts, "name": "Renamed"})
    assert response.status_code == 422, response.json
    assert response.content_type == "application/problem+json"
    assert field in {error["field"] for error in response.json["errors"]}
    after = api.get(url).json
    assert (after["name"], after["texts"]) == (program["name"], None)  # nothing written
    assert api.post("/api/v1/programs", json={"name": "Other", "texts": texts}).status_code == 422


def test_marketer_may_set_texts_staff_may_not(api: Any, keys: dict, program: dict) -> None:
    url = f"/api/v1/programs/{program['id']}"
    assert api.as_(keys["marketer"]).request("PATCH", url, json={"texts": TEXTS}).status_code == 200
    assert api.as_(keys["staff"]).request("PATCH", url, json={"texts": TEXTS}).status_code == 403


def _pass_terms(app: Any, url: str) -> dict[str, str]:
    """The terms back field of a downloaded pass, as a phone in each language reads it."""
    response = app.test_client().get(url.removeprefix(app.config["BASE_URL"]))
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        fields = json.loads(archive.read("pass.json"))["storeCard"]["backFields"]
        terms = next(f["value"] for f in fields if f["key"] == "terms")
        strings = {lang: archive.read(f"{lang}.lproj/pass.strings").decode()
                   for lang in LANGUAGES}
    shown = {}
    for lang, data in strings.items():
        entries = dict(line.removesuffix(";").split(" = ", 1) for line in data.splitlines())
        shown[lang] = json.loads(entries.get(json.dumps(terms, ensure_ascii=False),
                                             json.dumps(terms, ensure_ascii=False)))
    return shown


def test_pass_terms_follow_the_phones_language(app: Any, api: Any, program: dict) -> None:
    url = f"/api/v1/programs/{program['id']}"
    assert api.request("PATCH", url, json={"texts": TEXTS}).status_code == 200
    card = create_card(api, program, language="th")
    assert _pass_terms(app, card["apple_pass_url"]) == {
        "en": TEXTS["en"]["terms"], "th": THAI_TERMS,
        # No Indonesian or Malay terms: the program's default language (en) stands in.
        "id": TEXTS["en"]["terms"], "ms": TEXTS["en"]["terms"]}
