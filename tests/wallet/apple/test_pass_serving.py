"""Serving Apple passes: signed, verified with openssl, cached per card version."""

from __future__ import annotations

import io
import json
import secrets
import subprocess
import zipfile
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from babel.support import Translations

from app import create_app
from app.config import ConfigError
from app.wording import pass_wording
from passes.barcode import read_code
from passes.languages import LANGUAGES
from tests.factories import DEV_CERTS, card_short_code, settle


def _unzip(data: bytes, target: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        files = {name: archive.read(name) for name in archive.namelist()}
    for name, content in files.items():
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(content)
    return files


def _openssl_verify(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "cms", "-verify", "-binary", "-inform", "DER", "-purpose", "any",
         "-in", str(directory / "signature"), "-content", str(directory / "manifest.json"),
         "-CAfile", str(DEV_CERTS["wwdr"]), "-out", "/dev/null"],
        capture_output=True, text=True)


def _download(app: Any, url: str, **headers: str) -> Any:
    path = url.removeprefix(app.config["BASE_URL"])
    return app.test_client().get(path, headers=headers)


def _pass_json(app: Any, url: str) -> dict[str, Any]:
    response = _download(app, url)
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.data)) as archive:
        return json.loads(archive.read("pass.json"))  # type: ignore[no-any-return]


def test_enrolled_card_downloads_a_verified_pass(app: Any, api: Any, card: dict[str, Any],
                                                 tmp_path: Path) -> None:
    url = card["apple_pass_url"]
    assert url.startswith("https://pointpass.test/wallet/apple/")
    response = _download(app, url)
    assert response.status_code == 200
    assert response.content_type == "application/vnd.apple.pkpass"
    assert parsedate_to_datetime(response.headers["Last-Modified"]).year >= 2026

    files = _unzip(response.data, tmp_path)
    verified = _openssl_verify(tmp_path)
    assert verified.returncode == 0, verified.stderr
    assert {"en.lproj/pass.strings", "th.lproj/pass.strings", "id.lproj/pass.strings",
            "ms.lproj/pass.strings", "icon.png", "logo.png", "strip.png"} <= set(files)

    pass_json = json.loads(files["pass.json"])
    assert pass_json["serialNumber"] == card["serial_number"]
    assert pass_json["webServiceURL"] == "https://pointpass.test/passkit"
    assert len(pass_json["authenticationToken"]) >= 16
    assert pass_json["sharingProhibited"] is True
    assert pass_json["storeCard"]["headerFields"][0]["value"] == 0
    message = pass_json["barcodes"][0]["message"]
    assert pass_json["barcode"]["message"] == message
    assert read_code(app.config["REDEMPTION_CODE_KEY"], message) == (card["serial_number"], 1)

    # A changed byte fails verification.
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(manifest.read_bytes().replace(b'"', b"'", 1))
    assert _openssl_verify(tmp_path).returncode != 0


def test_pass_is_signed_once_per_version(app: Any, api: Any, card: dict[str, Any]) -> None:
    wallet = app.extensions["pointpass.apple"]
    url = card["apple_pass_url"]
    first = _download(app, url)
    again = _download(app, url)
    assert first.data == again.data
    assert wallet.signatures == 1

    assert api.post(f"/api/v1/cards/{card['serial_number']}/earn",
                    json={"points": 120}).status_code == 201
    changed = _pass_json(app, url)
    assert changed["storeCard"]["headerFields"][0]["value"] == 120
    assert wallet.signatures == 2
    assert parsedate_to_datetime(_download(app, url).headers["Last-Modified"]) > \
        parsedate_to_datetime(first.headers["Last-Modified"])


def test_last_modified_increases_within_one_second(app: Any, api: Any,
                                                   card: dict[str, Any]) -> None:
    url = card["apple_pass_url"]
    stamps = []
    for _ in range(3):  # three changes within about a second: each gets a later stamp
        api.post(f"/api/v1/cards/{card['serial_number']}/earn", json={"points": 1})
        stamps.append(parsedate_to_datetime(_download(app, url).headers["Last-Modified"]))
    assert stamps[0] < stamps[1] < stamps[2]


def test_if_modified_since_gives_304(app: Any, card: dict[str, Any]) -> None:
    url = card["apple_pass_url"]
    first = _download(app, url)
    assert _download(app, url, **{"If-Modified-Since": first.headers["Last-Modified"]}
                     ).status_code == 304


def test_wrong_token_or_serial_is_404(app: Any, card: dict[str, Any]) -> None:
    url = card["apple_pass_url"]
    serial = card["serial_number"]
    assert _download(app, url.replace(serial + "/", serial + "/x", 1)).status_code == 404
    other = _download(app, f"/wallet/apple/ABCDEF/{'0' * 32}.pkpass")
    assert other.status_code == 404
    assert other.content_type == "application/problem+json"
    # A token with non-ASCII characters is a mismatch too (compare_digest raised: a 500).
    crafted = _download(app, f"/wallet/apple/{serial}/%C3%A9{'0' * 31}.pkpass")
    assert crafted.status_code == 404


def test_program_locations_reach_the_pass(app: Any, api: Any, program: dict[str, Any],
                                          card: dict[str, Any]) -> None:
    for i in range(12):
        r = api.post(f"/api/v1/programs/{program['id']}/locations",
                     json={"name": f"Store {i}", "latitude": -6.2 + i / 100,
                           "longitude": 106.8, "relevant_text": f"Kopi Test store {i} is near"})
        assert r.status_code == 201, r.json
    locations = _pass_json(app, card["apple_pass_url"])["locations"]
    assert len(locations) == 10
    assert locations[0]["relevantText"] == "Kopi Test store 0 is near"


def test_new_reward_changes_the_pass(app: Any, api: Any, program: dict[str, Any],
                                     card: dict[str, Any]) -> None:
    url = card["apple_pass_url"]
    before = _download(app, url)
    r = api.post(f"/api/v1/programs/{program['id']}/rewards", json={"name": "Cake",
                                                                    "points_cost": 40})
    assert r.status_code == 201
    settle(app)  # every card is marked by the update the change started
    after = _download(app, url)
    assert after.data != before.data
    assert after.headers["Last-Modified"] != before.headers["Last-Modified"]


def test_voided_card_pass_says_voided(app: Any, api: Any, card: dict[str, Any]) -> None:
    r = api.post(f"/api/v1/cards/{card['serial_number']}/void", json={"reason": "lost"})
    assert r.status_code == 200
    assert r.json["status"] == "voided"
    assert _pass_json(app, card["apple_pass_url"])["voided"] is True
    earn = api.post(f"/api/v1/cards/{card['serial_number']}/earn", json={"points": 5})
    assert earn.status_code == 410


def test_pass_barcode_decodes_from_a_rendered_qr(app: Any, card: dict[str, Any]) -> None:
    import qrcode
    import zxingcpp

    message = _pass_json(app, card["apple_pass_url"])["barcodes"][0]["message"]
    image = qrcode.make(message).get_image().convert("L")
    decoded = zxingcpp.read_barcodes(image)
    assert [d.text for d in decoded] == [message]


# Start-up checks of the Apple settings.

def _app_with(tmp_path: Path, **settings: Any) -> Any:
    return create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "ENV": "testing",
                       "TESTING": True, "INSTANCE_PATH": tmp_path, **settings})


def test_missing_certificate_file_stops_start_up(tmp_path: Path) -> None:
    settings = {"APPLE_CERT": str(tmp_path / "nope.pem"),
                "APPLE_KEY": str(DEV_CERTS["pass_key"]),
                "APPLE_WWDR_CERT": str(DEV_CERTS["wwdr"])}
    with pytest.raises(ConfigError, match=r"nope\.pem"):
        _app_with(tmp_path, **settings)


def test_half_configured_apple_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="POINTPASS_APPLE_WWDR_CERT"):
        _app_with(tmp_path, APPLE_CERT=str(DEV_CERTS["pass_cert"]),
                  APPLE_KEY=str(DEV_CERTS["pass_key"]))


def test_wrong_intermediate_is_named_at_start_up(tmp_path: Path) -> None:
    from passes.devcerts import write_dev_certs

    other = write_dev_certs(tmp_path / "other")
    with pytest.raises(ConfigError, match="G4"):
        _app_with(tmp_path, APPLE_CERT=str(DEV_CERTS["pass_cert"]),
                  APPLE_KEY=str(DEV_CERTS["pass_key"]), APPLE_WWDR_CERT=str(other["wwdr"]))


def test_pass_type_id_must_match_certificate(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"pass\.com\.example\.other"):
        _app_with(tmp_path, APPLE_PASS_TYPE_ID="pass.com.example.other",
                  APPLE_CERT=str(DEV_CERTS["pass_cert"]),
                  APPLE_KEY=str(DEV_CERTS["pass_key"]), APPLE_WWDR_CERT=str(DEV_CERTS["wwdr"]))


def test_key_password_never_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from passes.devcerts import write_dev_certs

    password = "s3cret-Pa55word-xyz"
    files = write_dev_certs(tmp_path / "enc", key_password=password)
    settings = {"APPLE_CERT": str(files["pass_cert"]), "APPLE_KEY": str(files["pass_key"]),
                "APPLE_WWDR_CERT": str(files["wwdr"])}
    caplog.set_level("DEBUG")
    app = _app_with(tmp_path, APPLE_KEY_PASSWORD=password, **settings)
    assert app.extensions["pointpass.apple"] is not None
    with pytest.raises(ConfigError) as wrong:
        _app_with(tmp_path, APPLE_KEY_PASSWORD=password + "x", **settings)
    assert password not in str(wrong.value)
    assert password not in caplog.text


def test_production_without_apple_settings_runs_without_apple(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING")
    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}", "ENV": "production",
                      "SECRET_KEY": secrets.token_urlsafe(48), "INSTANCE_PATH": tmp_path})
    sweeper = app.extensions["pointpass.sweeper"]  # no jobs running into later tests
    sweeper.stop()
    sweeper.join(timeout=5)
    assert app.extensions["pointpass.apple"] is None
    assert "Apple Wallet is off" in caplog.text


def test_served_pass_reads_in_every_language(app: Any, api: Any, card: dict[str, Any],
                                             tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    serial = card["serial_number"]
    assert api.post(f"/api/v1/cards/{serial}/earn",
                    json={"points": 10, "reference": "Latte"}).status_code == 201
    # The catalogs are loaded once per process (here, or by an earlier test), not per pass.
    pass_wording()
    loads: list[object] = []
    monkeypatch.setattr(Translations, "load", lambda *args, **kw: loads.append(args))
    files = _unzip(_download(app, card["apple_pass_url"]).data, tmp_path)
    assert loads == []
    assert _openssl_verify(tmp_path).returncode == 0

    fields = {f["key"]: f for group in json.loads(files["pass.json"])["storeCard"].values()
              for f in group}
    history = fields["history"]["value"]
    assert history.endswith(" · Earned: Latte · +10")
    day = history.split(" · ", 1)[0]
    strings = {lang: _strings(files[f"{lang}.lproj/pass.strings"]) for lang in LANGUAGES}
    assert {lang: strings[lang].get(history, history) for lang in LANGUAGES} == {
        "en": f"{day} · Earned: Latte · +10",
        "id": f"{day} · Diperoleh: Latte · +10",
        "th": f"{day} · ได้รับแต้ม: Latte · +10",
        "ms": f"{day} · Diperoleh: Latte · +10",
    }
    labels = {lang: strings[lang][fields["history"]["label"]] for lang in LANGUAGES}
    assert labels == {"en": "Recent activity", "id": "Aktivitas terbaru", "th": "กิจกรรมล่าสุด",
                      "ms": "Aktiviti terkini"}
    description = json.loads(files["pass.json"])["description"]
    assert description == "Kopi Test loyalty card"
    assert {lang: strings[lang].get(description, description) for lang in LANGUAGES} == {
        "en": "Kopi Test loyalty card", "id": "Kartu loyalitas Kopi Test",
        "th": "บัตรสะสมแต้ม Kopi Test", "ms": "Kad kesetiaan Kopi Test"}
    redeem = {lang: strings[lang][fields["redeem"]["value"]] for lang in LANGUAGES}
    assert redeem["en"].startswith("Show this card's QR code")
    assert redeem["th"].startswith("แสดงคิวอาร์โค้ด")


def _strings(data: bytes) -> dict[str, str]:
    entries = {}
    for line in data.decode("utf-8").splitlines():
        key, value = line.removesuffix(";").split('" = "')
        entries[_unescape(key[1:])] = _unescape(value[:-1])
    return entries


def _unescape(text: str) -> str:
    return text.replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")


def test_the_text_under_the_qr_code_is_the_short_code_and_rotates_with_it(
        app: Any, api: Any, keys: dict[str, str], card: dict[str, Any], tmp_path: Path) -> None:
    serial = card["serial_number"]
    staff = api.as_(keys["staff"])
    shown = []
    for round_ in range(2):
        response = _download(app, card["apple_pass_url"])
        assert response.status_code == 200
        target = tmp_path / str(round_)
        files = _unzip(response.data, target)
        verified = _openssl_verify(target)
        assert verified.returncode == 0, verified.stderr
        barcode = json.loads(files["pass.json"])["barcodes"][0]
        assert barcode["altText"] == card_short_code(app, serial)
        assert read_code(app.config["REDEMPTION_CODE_KEY"], barcode["message"])[0] == serial
        shown.append(barcode["altText"])
        # The customer reads it out, the staff types it: it scans. Spending rotates it.
        assert api.post(f"/api/v1/cards/{serial}/earn", json={"points": 10}).status_code == 201
        scan = staff.post("/api/v1/scans", json={"code": barcode["altText"].lower()})
        assert scan.status_code == 200, scan.json
        assert staff.post("/api/v1/redemptions", json={"scan_id": scan.json["scan_id"],
                                                       "points": 10}).status_code == 201
    assert shown[0] != shown[1]
    assert staff.post("/api/v1/scans", json={"code": shown[0]}).status_code == 409
