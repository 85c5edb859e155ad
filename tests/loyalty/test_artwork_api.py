"""Program artwork through the API: uploads checked and refused as problems, served at
public content-addressed URLs, drawn on the passes at every scale; and colour contrast."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from PIL import Image

from app.loyalty.models import ProgramImage
from tests.enrollment.test_pages import card_path
from tests.factories import DEV_CERTS, ApiClient, create_card, row_counts, settle
from tests.images import bomb_png, image_bytes

RED_LOGO = image_bytes((400, 200), colour=(200, 30, 30))
GREEN_STRIP = image_bytes((1500, 500), "JPEG", colour=(0, 128, 0))
BLUE_ICON = image_bytes((200, 200), colour=(0, 0, 200))


def put_image(api: ApiClient, program_id: int, kind: str, data: bytes,
              content_type: str = "image/png") -> Any:
    return api.request("PUT", f"/api/v1/programs/{program_id}/images/{kind}", data=data,
                       headers={"Content-Type": content_type})


def _pkpass(app: Flask, card: dict[str, Any]) -> bytes:
    response = app.test_client().get(card["apple_pass_url"].removeprefix(app.config["BASE_URL"]))
    assert response.status_code == 200
    return response.data  # type: ignore[no-any-return]


def _card(api: ApiClient, serial: str) -> dict[str, Any]:
    return api.get(f"/api/v1/cards/{serial}").json  # type: ignore[no-any-return]


def test_marketer_uploads_png_and_jpeg_and_they_are_served_publicly(
        app: Flask, api: ApiClient, keys: dict[str, str], program: dict[str, Any]) -> None:
    marketer = api.as_(keys["marketer"])
    logo = put_image(marketer, program["id"], "logo", RED_LOGO)
    assert logo.status_code == 200, logo.json
    assert (logo.json["kind"], logo.json["width"], logo.json["height"]) == ("logo", 400, 200)
    strip = put_image(marketer, program["id"], "strip", GREEN_STRIP, "image/jpeg")
    assert strip.status_code == 200, strip.json

    stored = api.get(f"/api/v1/programs/{program['id']}/images/logo")
    assert stored.status_code == 200 and stored.content_type == "image/png"
    assert hashlib.sha256(stored.data).hexdigest() == logo.json["sha256"]

    url = logo.json["url"]
    path = url.removeprefix("https://pointpass.test")
    assert path == f"/images/programs/{program['id']}/logo-{logo.json['sha256'][:8]}.png"
    public = app.test_client().get(path)  # no key: the URL is public
    assert public.status_code == 200
    assert public.content_type == "image/png"
    assert public.data == stored.data
    assert "max-age=31536000" in public.headers["Cache-Control"]
    with Image.open(io.BytesIO(app.test_client().get(
            strip.json["url"].removeprefix("https://pointpass.test")).data)) as image:
        assert image.format == "PNG" and image.size == (1200, 400)
    assert app.test_client().get(path.replace(logo.json["sha256"][:8], "00000000")
                                 ).status_code == 404

    assert api.request("DELETE", f"/api/v1/programs/{program['id']}/images/logo"
                       ).status_code == 204
    assert api.get(f"/api/v1/programs/{program['id']}/images/logo").status_code == 404
    assert app.test_client().get(path).status_code == 404  # an old URL names nothing
    assert api.request("DELETE", f"/api/v1/programs/{program['id']}/images/logo"
                       ).status_code == 204


def test_staff_and_pos_may_not_upload(api: ApiClient, keys: dict[str, str],
                                      program: dict[str, Any]) -> None:
    for role in ("staff", "pos"):
        response = put_image(api.as_(keys[role]), program["id"], "logo", RED_LOGO)
        assert response.status_code == 403, role
        assert api.as_(keys[role]).request(
            "DELETE", f"/api/v1/programs/{program['id']}/images/logo").status_code == 403
    assert put_image(api.as_(None), program["id"], "logo", RED_LOGO).status_code == 401


@pytest.mark.parametrize(("content_type", "data"), [
    ("image/gif", image_bytes((200, 200), "GIF")),
    ("text/plain", b"hello"),
    ("application/json", b'{"image": "logo.png"}'),
    ("", RED_LOGO),
])
def test_other_types_are_415(app: Flask, api: ApiClient, program: dict[str, Any],
                             content_type: str, data: bytes) -> None:
    response = put_image(api, program["id"], "logo", data, content_type)
    assert response.status_code == 415, response.json
    assert response.content_type == "application/problem+json"
    assert response.json["type"] == "urn:pointpass:problem:unsupported-media-type"
    assert row_counts(app, ProgramImage) == (0,)


@pytest.mark.parametrize(("kind", "data", "content_type", "reason"), [
    ("logo", bomb_png(30000, 30000), "image/png", "too-many-pixels"),  # decompression bomb
    ("strip", bomb_png(5000, 4000), "image/png", "too-many-pixels"),  # huge
    ("logo", RED_LOGO[: len(RED_LOGO) // 2], "image/png", "truncated"),
    ("logo", b"\x89PNG\r\n\x1a\n" + b"\x00" * 200, "image/png", "not-an-image"),
    ("icon", image_bytes((60, 60)), "image/png", "too-small"),
    ("strip", RED_LOGO, "image/png", "too-small"),
    ("logo", GREEN_STRIP, "image/png", "wrong-format"),  # JPEG sent as PNG
    ("logo", b"", "image/png", "not-an-image"),
])
def test_bad_images_are_422_naming_the_reason_and_change_nothing(
        app: Flask, api: ApiClient, program: dict[str, Any], kind: str, data: bytes,
        content_type: str, reason: str) -> None:
    before = _card(api, create_card(api, program)["serial_number"])
    response = put_image(api, program["id"], kind, data, content_type)
    assert response.status_code == 422, response.json
    assert response.json["type"] == "urn:pointpass:problem:invalid-image"
    assert response.json["reason"] == reason
    assert response.json["detail"]
    assert row_counts(app, ProgramImage) == (0,)
    assert _card(api, before["serial_number"]) == before


def test_an_image_over_the_byte_limit_is_413(app: Flask, api: ApiClient,
                                             program: dict[str, Any]) -> None:
    app.config["MAX_IMAGE_BYTES"] = 10_000
    response = put_image(api, program["id"], "strip", image_bytes((2000, 2000), "PNG",
                                                                  mode="RGB") + b"\0" * 10_000)
    assert response.status_code == 413
    assert response.json["type"] == "urn:pointpass:problem:image-too-large"
    assert row_counts(app, ProgramImage) == (0,)


def test_uploaded_images_are_in_the_pass_at_every_scale(
        app: Flask, api: ApiClient, program: dict[str, Any], tmp_path: Path) -> None:
    card = create_card(api, program)
    first = _pkpass(app, card)
    for kind, data, content_type in (("logo", RED_LOGO, "image/png"),
                                     ("strip", GREEN_STRIP, "image/jpeg"),
                                     ("icon", BLUE_ICON, "image/png")):
        assert put_image(api, program["id"], kind, data, content_type).status_code == 200
    settle(app)  # the cards are marked changed by the update's job
    data = _pkpass(app, card)
    assert data != first  # the upload made a new version of the pass
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    manifest = json.loads(files["manifest.json"])
    expected = {"logo": ((100, 50), (200, 30, 30)), "strip": ((375, 123), (0, 128, 0)),
                "icon": ((29, 29), (0, 0, 200))}
    for kind, ((width, height), colour) in expected.items():
        for scale, suffix in ((1, ""), (2, "@2x"), (3, "@3x")):
            name = f"{kind}{suffix}.png"
            assert manifest[name] == hashlib.sha1(files[name]).hexdigest()
            with Image.open(io.BytesIO(files[name])) as image:
                assert image.size == (width * scale, height * scale), name
                pixel = image.convert("RGB").getpixel((image.width // 2, 2))
                assert max(abs(a - b) for a, b in zip(pixel, colour, strict=True)) <= 3, name
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(content)
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any",
         "-in", str(tmp_path / "signature"), "-content", str(tmp_path / "manifest.json"),
         "-CAfile", str(DEV_CERTS["wwdr"]), "-out", "/dev/null"],
        capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr


def test_the_strip_says_what_the_member_can_do_now_in_their_language(
        app: Flask, api: ApiClient, program: dict[str, Any]) -> None:
    card = create_card(api, program, language="id")
    earn = api.post(f"/api/v1/cards/{card['serial_number']}/earn", json={"points": 80},
                    headers={"Idempotency-Key": "strip-1"})
    assert earn.status_code == 201

    def front(data: bytes) -> tuple[dict[str, Any], str]:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            pass_json = json.loads(archive.read("pass.json"))
            strings = archive.read("id.lproj/pass.strings").decode()
        return pass_json["storeCard"]["primaryFields"][0], strings

    field, strings = front(_pkpass(app, card))
    assert field["key"] == "reward" and field["label"] == "reward_label"
    assert field["value"] == "20 Points to Coffee"
    assert '"20 Points to Coffee" = "20 Poin lagi untuk Coffee";' in strings
    assert '"reward_label" = "Hadiah";' in strings

    api.post(f"/api/v1/cards/{card['serial_number']}/earn", json={"points": 30},
             headers={"Idempotency-Key": "strip-2"})
    field, strings = front(_pkpass(app, card))
    assert field["value"] == "Coffee ready"
    assert '"Coffee ready" = "Coffee siap ditukar";' in strings


def test_colours_below_aa_contrast_are_refused_naming_the_pair(
        app: Flask, api: ApiClient, program: dict[str, Any]) -> None:
    created = api.post("/api/v1/programs", json={
        "name": "Kuning", "background_color": "#FACC15", "foreground_color": "#FFFFFF",
        "label_color": "#1F2937"})
    assert created.status_code == 422
    assert created.json["type"] == "urn:pointpass:problem:low-contrast"
    assert created.json["errors"] == [{
        "location": "json", "field": "foreground_color",
        "message": "foreground_color #FFFFFF on background_color #FACC15 has contrast 1.5:1; "
                   "at least 4.5:1 is needed"}]

    # A change of one colour is checked against the others as stored (defaults here).
    patched = api.request("PATCH", f"/api/v1/programs/{program['id']}",
                          json={"label_color": "#4B5563"})
    assert patched.status_code == 422
    assert patched.json["errors"][0]["field"] == "label_color"
    assert "label_color #4B5563 on background_color #1F2937 has contrast 1.9:1" \
        in patched.json["detail"]
    assert api.get(f"/api/v1/programs/{program['id']}").json["label_color"] == "#D1D5DB"
    assert api.request("PATCH", f"/api/v1/programs/{program['id']}", json={
        "background_color": "#FACC15", "foreground_color": "#1F2937",
        "label_color": "#3F3F46"}).status_code == 200


def test_the_join_and_card_pages_show_the_uploaded_logo(app: Flask, api: ApiClient,
                                                        program: dict[str, Any]) -> None:
    card = create_card(api, program)
    card_page = card_path(app, card["serial_number"])
    for page_path in (f"/join/{program['slug']}", card_page):
        page = app.test_client().get(page_path)
        assert page.status_code == 200 and b'class="brand-logo"' not in page.data
        assert b'class="preview-logo"' not in page.data
    url = put_image(api, program["id"], "logo", RED_LOGO).json["url"]
    path = url.removeprefix("https://pointpass.test")
    join = app.test_client().get(f"/join/{program['slug']}?lang=th").get_data(as_text=True)
    assert f'<img class="brand-logo" src="{path}" alt="" height="48">' in join
    assert f'<img class="preview-logo" src="{path}" alt="">' in join  # on the card preview
    card_html = app.test_client().get(card_page).get_data(as_text=True)
    assert f'<img class="brand-logo" src="{path}" alt="" height="48">' in card_html
    assert app.test_client().get(path).status_code == 200


def test_an_unknown_kind_of_image_is_404(api: ApiClient, program: dict[str, Any]) -> None:
    for method in ("PUT", "GET", "DELETE"):
        response = api.request(method, f"/api/v1/programs/{program['id']}/images/banner",
                               data=RED_LOGO, headers={"Content-Type": "image/png"})
        assert response.status_code == 404, method
        assert response.json["type"] == "urn:pointpass:problem:not-found"
