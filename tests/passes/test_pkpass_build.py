"""Whole passes: unzip, verify with openssl, check manifest, keys, images and localization."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import shutil
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from PIL import Image

from passes.apple import (
    Barcode,
    ImageRenderer,
    ImageSet,
    PassSigner,
    PassValidationError,
    RewardProgress,
    StoreCardContent,
    build_pkpass,
)
from passes.devcerts import certificate_pem, create_ca
from passes.languages import LANGUAGES
from passes.points_lines import ExpiringPoints, PendingPoints

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI missing")

REQUIRED_KEYS = {
    "formatVersion",
    "passTypeIdentifier",
    "serialNumber",
    "teamIdentifier",
    "organizationName",
    "description",
}
EXPECTED_IMAGE_SIZES = {
    "icon.png": (29, 29),
    "icon@2x.png": (58, 58),
    "icon@3x.png": (87, 87),
    "strip.png": (375, 123),
    "strip@2x.png": (750, 246),
    "strip@3x.png": (1125, 369),
}


@pytest.fixture
def pass_dir(
    build: Callable[[StoreCardContent], bytes],
    make_content: Callable[..., StoreCardContent],
    dev_certs: dict[str, Path],
    tmp_path: Path,
    pk: SimpleNamespace,
) -> Path:
    directory = pk.unzip(build(make_content()), tmp_path / "pass")
    shutil.copy(dev_certs["wwdr"], tmp_path / "wwdr.pem")
    return directory


@needs_openssl
def test_openssl_verifies_the_signature(pass_dir: Path, pk: SimpleNamespace) -> None:
    result = pk.openssl_verify(pass_dir, pass_dir.parent / "wwdr.pem")
    assert result.returncode == 0, result.stderr
    assert "Verification successful" in result.stderr


@needs_openssl
def test_signature_is_sha256_with_signing_time(pass_dir: Path) -> None:
    printed = subprocess.run(
        ["openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", "signature"],
        cwd=pass_dir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "signingTime" in printed and "messageDigest" in printed
    assert "sha256" in printed
    assert "eContent: <ABSENT>" in printed  # detached


@needs_openssl
def test_a_changed_manifest_byte_fails_verification(pass_dir: Path, pk: SimpleNamespace) -> None:
    manifest = bytearray((pass_dir / "manifest.json").read_bytes())
    index = manifest.index(b'"pass.json":"') + len(b'"pass.json":"')
    manifest[index] = ord("0") if manifest[index] != ord("0") else ord("1")
    (pass_dir / "manifest.json").write_bytes(bytes(manifest))
    result = pk.openssl_verify(pass_dir, pass_dir.parent / "wwdr.pem")
    assert result.returncode != 0


@needs_openssl
def test_an_unrelated_ca_does_not_verify(pass_dir: Path, pk: SimpleNamespace) -> None:
    other_ca, _ = create_ca("Unrelated CA")
    other = pass_dir.parent / "other.pem"
    other.write_bytes(certificate_pem(other_ca))
    assert pk.openssl_verify(pass_dir, other).returncode != 0


def test_manifest_lists_every_file_with_its_sha1(pass_dir: Path) -> None:
    manifest = json.loads((pass_dir / "manifest.json").read_text())
    on_disk = {
        str(p.relative_to(pass_dir))
        for p in pass_dir.rglob("*")
        if p.is_file() and p.name not in ("manifest.json", "signature")
    }
    assert set(manifest) == on_disk
    for name, digest in manifest.items():
        assert hashlib.sha1((pass_dir / name).read_bytes()).hexdigest() == digest, name


def test_pass_json_is_a_store_card_with_everything(pass_dir: Path, pk: SimpleNamespace) -> None:
    document = pk.read_pass_json(pass_dir)
    assert document.keys() >= REQUIRED_KEYS
    assert document["formatVersion"] == 1
    assert document["passTypeIdentifier"] == "pass.dev.pointpass.loyalty"
    assert document["teamIdentifier"] == "DEVTEAM123"
    assert document["backgroundColor"] == "rgb(122, 31, 43)"
    assert document["foregroundColor"] == "rgb(255, 255, 255)"
    assert document["labelColor"] == "rgb(245, 208, 197)"
    assert document["logoText"] == "Kopi Kenangan"
    assert document["sharingProhibited"] is False
    assert document["webServiceURL"] == "https://pointpass.example.com/apple"
    assert len(document["authenticationToken"]) >= 16
    assert document["expirationDate"] == "2030-12-31T23:59:00+00:00"
    assert document["locations"] == [
        {"latitude": -6.2, "longitude": 106.8, "relevantText": "Kopi Kenangan is nearby"}
    ]
    assert "voided" not in document
    card = document["storeCard"]
    (balance,) = card["headerFields"]
    assert balance["value"] == 120 and "%@" not in balance["changeMessage"]
    assert card["secondaryFields"][0]["value"] == "Siti Nurhaliza"
    assert card["auxiliaryFields"][0]["value"] == "Gold"
    back = {f["key"]: f for f in card["backFields"]}
    assert set(back) == {"message", "history", "redeem", "support", "terms"}
    assert back["history"]["value"] == (
        "2025-05-02 · Latte · +10\n2025-05-01 · Reward: free cookie · -50"
    )
    assert back["support"]["value"] == "help@kopi.example.com"
    assert "changeMessage" in back["message"]
    keys = [f["key"] for group in card.values() for f in group]
    assert len(keys) == len(set(keys))


def test_barcodes_array_and_legacy_barcode(pass_dir: Path, pk: SimpleNamespace) -> None:
    document = pk.read_pass_json(pass_dir)
    expected = {
        "format": "PKBarcodeFormatQR",
        "message": "PP1:card-0001:9f2c",
        "messageEncoding": "iso-8859-1",
        "altText": "card-0001",
    }
    assert document["barcodes"] == [expected]
    assert document["barcode"] == expected


def test_legacy_barcode_matches_wallet_py3k(pass_dir: Path, pk: SimpleNamespace) -> None:
    models = pytest.importorskip("wallet.models")
    theirs = models.Barcode("PP1:card-0001:9f2c", models.BarcodeFormat.QR, "card-0001")
    assert pk.read_pass_json(pass_dir)["barcode"] == theirs.json_dict()


def test_images_have_apples_pixel_sizes(pass_dir: Path) -> None:
    for name, size in EXPECTED_IMAGE_SIZES.items():
        with Image.open(pass_dir / name) as image:
            assert image.format == "PNG"
            assert image.size == size, name
    logo_sizes = {}
    for scale, name in ((1, "logo.png"), (2, "logo@2x.png"), (3, "logo@3x.png")):
        with Image.open(pass_dir / name) as image:
            logo_sizes[scale] = image.size
            assert image.height == 50 * scale
            assert image.width <= 160 * scale
    assert logo_sizes[2] == (logo_sizes[1][0] * 2, 100)
    assert logo_sizes[3] == (logo_sizes[1][0] * 3, 150)
    assert not list(pass_dir.glob("thumbnail*")) and not list(pass_dir.glob("background*"))


def test_pngs_are_stored_not_deflated(
    build: Callable[[StoreCardContent], bytes], make_content: Callable[..., StoreCardContent]
) -> None:
    with zipfile.ZipFile(io.BytesIO(build(make_content()))) as archive:
        for info in archive.infolist():
            assert info.compress_type == zipfile.ZIP_STORED, info.filename


def test_every_language_has_every_key_pass_json_uses(pass_dir: Path, pk: SimpleNamespace) -> None:
    document = pk.read_pass_json(pass_dir)
    used: set[str] = set()
    for group in document["storeCard"].values():
        for f in group:
            used.add(f["label"])
            if "changeMessage" in f:
                used.add(f["changeMessage"])
    folders = sorted(p.name for p in pass_dir.glob("*.lproj"))
    assert folders == sorted(f"{lang}.lproj" for lang in LANGUAGES)
    strings = {
        lang: pk.parse_strings((pass_dir / f"{lang}.lproj" / "pass.strings").read_bytes())
        for lang in LANGUAGES
    }
    for lang, entries in strings.items():
        assert used <= entries.keys(), (lang, used - entries.keys())
    # Values that are keys (localized texts) must resolve in every language too.
    values = {
        f["value"]
        for group in document["storeCard"].values()
        for f in group
        if isinstance(f["value"], str) and f["value"] in strings["en"]
    }
    assert any(v.startswith("terms_text_") for v in values)
    for entries in strings.values():
        assert values <= entries.keys()
    assert strings["th"]["points_label"] == "แต้ม"
    assert strings["id"]["points_label"] == "Poin"
    assert strings["en"]["tier_label"] == "Tier"
    assert strings["ms"]["tier_label"] == "Peringkat"
    assert "%@" in strings["th"]["balance_change"]
    assert strings["en"]["message_change"] == "%@"


def test_localized_texts_fall_back_to_english(pass_dir: Path, pk: SimpleNamespace) -> None:
    document = pk.read_pass_json(pass_dir)
    message_key = next(
        f["value"] for f in document["storeCard"]["backFields"] if f["key"] == "message"
    )
    texts = {
        lang: pk.parse_strings((pass_dir / f"{lang}.lproj" / "pass.strings").read_bytes())[
            message_key
        ]
        for lang in LANGUAGES
    }
    assert texts == {
        "en": "Double points today!",
        "id": "Double points today!",
        "th": "แต้มสองเท่าวันนี้!",
        "ms": "Double points today!",
    }


def test_quotes_backslashes_and_newlines_are_escaped(
    build: Callable[[StoreCardContent], bytes],
    make_content: Callable[..., StoreCardContent],
    tmp_path: Path,
    pk: SimpleNamespace,
) -> None:
    tricky = 'Say "hi" to C:\\coffee\\ now\nsecond line'
    content = make_content(
        points_label={"en": 'Beans "B"', "th": "เมล็ด\\กาแฟ"},
        terms={"en": tricky},
    )
    directory = pk.unzip(build(content), tmp_path / "p")
    raw = (directory / "en.lproj" / "pass.strings").read_text("utf-8")
    assert '"points_label" = "Beans \\"B\\"";' in raw
    assert "C:\\\\coffee\\\\ now\\nsecond line" in raw
    assert all(line.endswith(";") for line in raw.splitlines())
    en = pk.parse_strings((directory / "en.lproj" / "pass.strings").read_bytes())
    th = pk.parse_strings((directory / "th.lproj" / "pass.strings").read_bytes())
    assert en["points_label"] == 'Beans "B"'
    assert th["points_label"] == "เมล็ด\\กาแฟ"
    terms_key = next(
        f["value"]
        for f in pk.read_pass_json(directory)["storeCard"]["backFields"]
        if f["key"] == "terms"
    )
    assert en[terms_key] == tricky


def test_percent_in_points_label_does_not_break_the_change_message(
    make_content: Callable[..., StoreCardContent],
) -> None:
    content = make_content(points_label="% Cashback")
    strings = dict(content.program_strings)
    assert strings["balance_change"][0] == "You now have %@ %% Cashback."


def test_voided_and_sharing_prohibited(
    build: Callable[[StoreCardContent], bytes],
    make_content: Callable[..., StoreCardContent],
    tmp_path: Path,
    pk: SimpleNamespace,
) -> None:
    content = make_content(voided=True, sharing_prohibited=True, expiration_date=None)
    document = pk.read_pass_json(pk.unzip(build(content), tmp_path / "p"))
    assert document["voided"] is True
    assert document["sharingProhibited"] is True
    assert "expirationDate" not in document


def test_minimal_content_builds(
    build: Callable[[StoreCardContent], bytes], brand: Any, tmp_path: Path, pk: SimpleNamespace
) -> None:
    content = StoreCardContent(
        pass_type_identifier="pass.dev.pointpass.loyalty",
        team_identifier="DEVTEAM123",
        serial_number="x1",
        organization_name="Org",
        description="Card",
        design=brand,
        balance=0,
        barcode=Barcode("x1"),
    )
    document = pk.read_pass_json(pk.unzip(build(content), tmp_path / "p"))
    assert "webServiceURL" not in document and "locations" not in document
    assert document["storeCard"]["backFields"] == [
        {"key": "history", "label": "history_label", "value": "history_empty"}
    ]


@pytest.mark.parametrize("placement", ["primary", "both"])
def test_balance_placement(make_content: Callable[..., StoreCardContent], placement: str) -> None:
    card = make_content(balance_placement=placement).pass_dict()["storeCard"]
    (primary,) = card["primaryFields"]
    assert primary["value"] == 120
    change_messages = [
        f
        for group in ("headerFields", "primaryFields")
        for f in card.get(group, ())
        if "changeMessage" in f
    ]
    assert len(change_messages) == 1


def test_marketer_message_key_changes_with_its_text(
    make_content: Callable[..., StoreCardContent],
) -> None:
    def message_value(content: StoreCardContent) -> str:
        back = content.pass_dict()["storeCard"]["backFields"]
        return next(f["value"] for f in back if f["key"] == "message")

    one = message_value(make_content(marketer_message={"en": "A", "th": "ก"}))
    same = message_value(make_content(marketer_message={"en": "A", "th": "ก"}))
    other = message_value(make_content(marketer_message={"en": "A", "th": "ข"}))
    assert one == same != other


def test_refuses_content_for_another_pass_type(
    signer: PassSigner,
    renderer: ImageRenderer,
    make_content: Callable[..., StoreCardContent],
    progress: RewardProgress,
) -> None:
    content = make_content(pass_type_identifier="pass.com.example.other")
    with pytest.raises(PassValidationError) as info:
        build_pkpass(content, renderer.render(content.design, progress), signer)
    assert info.value.field == "pass_type_identifier"
    content = make_content(team_identifier="OTHERTEAM1")
    with pytest.raises(PassValidationError, match="team_identifier"):
        build_pkpass(content, renderer.render(content.design, progress), signer)


def test_refuses_images_without_icon(
    signer: PassSigner, make_content: Callable[..., StoreCardContent]
) -> None:
    with pytest.raises(PassValidationError, match=r"icon\.png"):
        build_pkpass(make_content(), ImageSet(()), signer)


def test_second_pass_reuses_cached_images_and_strings(
    signer: PassSigner, make_content: Callable[..., StoreCardContent], progress: RewardProgress
) -> None:
    renderer = ImageRenderer()
    first = make_content(serial_number="a-1")
    images = renderer.render(first.design, progress)
    assert renderer.cache_info()["misses"] == 2  # brand images + strip
    again = renderer.render(first.design, progress)
    assert renderer.cache_info() == {"hits": 1, "misses": 2, "entries": 2}
    assert all(a is b for a, b in zip(images.files, again.files, strict=True))
    one = zipfile.ZipFile(io.BytesIO(build_pkpass(first, images, signer)))
    two = zipfile.ZipFile(
        io.BytesIO(build_pkpass(make_content(serial_number="a-2"), again, signer))
    )
    for name in one.namelist():
        if name not in ("pass.json", "manifest.json", "signature"):
            assert one.read(name) == two.read(name), name
    assert one.read("pass.json") != two.read("pass.json")
    renderer.render(first.design, RewardProgress(130, 500, "Free coffee"))
    assert renderer.cache_info()["misses"] == 3  # only the strip was redrawn


@needs_openssl
def test_pending_and_expiring_points_on_the_back_in_every_language(
    build: Callable[[StoreCardContent], bytes], make_content: Callable[..., StoreCardContent],
    dev_certs: dict[str, Path], tmp_path: Path, pk: SimpleNamespace,
) -> None:
    content = make_content(balance=1500, points_label={"en": "Stars", "th": "ดาว"},
                           pending=PendingPoints(40, dt.date(2026, 12, 3)),
                           expiring=ExpiringPoints(1200, dt.date(2026, 12, 31)))
    directory = pk.unzip(build(content), tmp_path / "pass")
    assert pk.openssl_verify(directory, dev_certs["wwdr"]).returncode == 0
    back = {f["key"]: f for f in pk.read_pass_json(directory)["storeCard"]["backFields"]}
    assert list(back)[:3] == ["message", "expiry", "pending"]
    expiry, pending = back["expiry"], back["pending"]
    assert expiry == {"key": "expiry", "label": "expiry_label",
                      "value": "1,200 Stars expire on 31 Dec 2026",
                      "changeMessage": "expiry_change"}
    assert pending == {"key": "pending", "label": "pending_label",
                       "value": "+40 pending until 3 Dec"}
    assert "changeMessage" not in pending  # the lock screen speaks of expiry only
    strings = {lang: pk.parse_strings((directory / f"{lang}.lproj" / "pass.strings")
                                      .read_bytes()) for lang in LANGUAGES}

    def shown(lang: str, text: str) -> str:
        return strings[lang].get(text, text)

    assert [shown(lang, expiry["value"]) for lang in LANGUAGES] == [
        "1,200 Stars expire on 31 Dec 2026", "1.200 Stars kedaluwarsa pada 31 Des 2026",
        "1,200 ดาว จะหมดอายุวันที่ 31 ธ.ค. 2026", "1,200 Stars luput pada 31 Dis 2026"]
    assert [shown(lang, pending["value"]) for lang in LANGUAGES] == [
        "+40 pending until 3 Dec", "+40 tertunda hingga 3 Des", "+40 รอเข้าบัญชีถึง 3 ธ.ค.",
        "+40 belum sah sehingga 3 Dis"]
    assert [strings[lang]["expiry_label"] for lang in LANGUAGES] == [
        "Points expiring", "Poin akan kedaluwarsa", "แต้มใกล้หมดอายุ", "Mata akan luput"]
    assert {strings[lang]["expiry_change"] for lang in LANGUAGES} == {"%@"}
    assert strings["th"]["pending_label"] == "แต้มรอเข้าบัญชี"


def test_no_pending_or_expiring_points_no_lines(
    make_content: Callable[..., StoreCardContent],
) -> None:
    back = make_content().pass_dict()["storeCard"]["backFields"]
    assert not {"expiry", "pending"} & {f["key"] for f in back}
    with pytest.raises(PassValidationError, match="pending"):
        make_content(pending=(40, dt.date(2026, 12, 3)))
    with pytest.raises(ValueError, match=r"expiring\.on"):
        ExpiringPoints(10, dt.datetime(2026, 12, 31, tzinfo=dt.UTC))
    with pytest.raises(ValueError, match=r"pending\.points"):
        PendingPoints(0, dt.date(2026, 12, 3))
