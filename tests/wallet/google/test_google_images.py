"""Uploaded artwork reaches Google Wallet: the class's logo and hero image are the public,
content-addressed URLs (validated against Google's schema by the test server)."""

from __future__ import annotations

import io

from flask import Flask
from PIL import Image

from tests.factories import admin_api, create_card, create_program, settle
from tests.google_server import GoogleWalletTestServer
from tests.images import image_bytes
from tests.wallet.google.conftest import ISSUER_ID


def test_uploaded_logo_and_strip_become_the_class_logo_and_hero_image(
        google_app: Flask, wallet_server: GoogleWalletTestServer) -> None:
    api = admin_api(google_app)
    program = create_program(api)
    create_card(api, program, name="Ari")
    settle(google_app)
    class_id = f"{ISSUER_ID}.{program['slug']}"
    generated = wallet_server.classes[class_id]["programLogo"]["sourceUri"]["uri"]
    assert generated == f"https://pointpass.test/wallet/google/logo/{program['slug']}.png"
    assert "heroImage" not in wallet_server.classes[class_id]

    uploads = {}
    for kind, size in (("logo", (400, 200)), ("strip", (1500, 500))):
        response = api.request("PUT", f"/api/v1/programs/{program['id']}/images/{kind}",
                               data=image_bytes(size), headers={"Content-Type": "image/png"})
        assert response.status_code == 200, response.json
        uploads[kind] = response.json
    settle(google_app)

    google_class = wallet_server.classes[class_id]
    logo_url = google_class["programLogo"]["sourceUri"]["uri"]
    short = uploads["logo"]["sha256"][:8]
    assert logo_url == f"https://pointpass.test/images/programs/{program['id']}/google-logo-{short}.png"
    assert google_class["heroImage"]["sourceUri"]["uri"] == uploads["strip"]["url"]
    assert google_class["heroImage"]["contentDescription"]["defaultValue"]["value"]

    client = google_app.test_client()
    logo = client.get(logo_url.removeprefix("https://pointpass.test"))
    assert logo.status_code == 200 and logo.content_type == "image/png"
    with Image.open(io.BytesIO(logo.data)) as image:
        assert image.size == (660, 660)  # square: Google crops it to a circle
        assert image.getpixel((330, 330))[:3] == (200, 30, 30)  # the uploaded logo
    hero = client.get(uploads["strip"]["url"].removeprefix("https://pointpass.test"))
    assert hero.status_code == 200 and hero.content_type == "image/png"
