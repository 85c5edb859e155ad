"""Fixtures for the pass-building library: dev certificates, a signer, content and helpers."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from app.wording import pass_wording
from passes.apple import (
    ActivityLine,
    Barcode,
    ImageRenderer,
    Location,
    PassDesign,
    PassSigner,
    RewardProgress,
    StoreCardContent,
    build_pkpass,
)
from passes.devcerts import write_dev_certs

KEY_PASSWORD = "correct horse battery staple 7d1f"


@pytest.fixture(scope="session")
def dev_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_dev_certs(tmp_path_factory.mktemp("dev-certs"))


@pytest.fixture(scope="session")
def encrypted_dev_certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_dev_certs(tmp_path_factory.mktemp("dev-certs-enc"), key_password=KEY_PASSWORD)


@pytest.fixture(scope="session")
def key_password() -> str:
    """The password ``encrypted_dev_certs`` encrypted ``pass.key`` with."""
    return KEY_PASSWORD


@pytest.fixture(scope="session")
def signer(dev_certs: dict[str, Path]) -> PassSigner:
    return PassSigner.from_files(dev_certs["pass_cert"], dev_certs["pass_key"], dev_certs["wwdr"])


@pytest.fixture(scope="session")
def renderer() -> ImageRenderer:
    return ImageRenderer()


@pytest.fixture(scope="session")
def brand() -> PassDesign:
    return PassDesign("Kopi Kenangan", "#7A1F2B", "#FFFFFF", "#F5D0C5")


@pytest.fixture(scope="session")
def progress() -> RewardProgress:
    return RewardProgress(120, 500, "Free coffee")


@pytest.fixture(scope="session")
def make_content(brand: PassDesign) -> Callable[..., StoreCardContent]:
    """Return a factory for realistic content; keyword arguments override fields."""

    def make(**overrides: Any) -> StoreCardContent:
        fields: dict[str, Any] = {
            "pass_type_identifier": "pass.dev.pointpass.loyalty",
            "team_identifier": "DEVTEAM123",
            "serial_number": "card-0001",
            "organization_name": "Kopi Kenangan",
            "description": "Kopi Kenangan loyalty card",
            "design": brand,
            "balance": 120,
            "barcode": Barcode("PP1:card-0001:9f2c", alt_text="card-0001"),
            "member_name": "Siti Nurhaliza",
            "tier": "Gold",
            "terms": {
                "en": 'Points expire after 12 months. "Free" means free.',
                "id": "Poin kedaluwarsa setelah 12 bulan.",
                "th": "แต้มหมดอายุหลังจาก 12 เดือน",
                "ms": "Mata tamat tempoh selepas 12 bulan.",
            },
            "how_to_redeem": "Show the QR code at the counter.",
            "activity": [
                ActivityLine(dt.date(2025, 5, 2), "Latte", 10),
                (dt.date(2025, 5, 1), "Reward: free cookie", -50),
            ],
            "support_contact": "help@kopi.example.com",
            "marketer_message": {"en": "Double points today!", "th": "แต้มสองเท่าวันนี้!"},
            "web_service_url": "https://pointpass.example.com/apple",
            "authentication_token": "tok_0123456789abcdef",
            "expiration_date": dt.datetime(2030, 12, 31, 23, 59, tzinfo=dt.UTC),
            "locations": [Location(-6.2, 106.8, "Kopi Kenangan is nearby")],
            "wording": pass_wording(),
        }
        fields.update(overrides)
        return StoreCardContent(**fields)

    return make


@pytest.fixture
def build(
    signer: PassSigner, renderer: ImageRenderer, progress: RewardProgress
) -> Callable[[StoreCardContent], bytes]:
    def build_pass(content: StoreCardContent) -> bytes:
        return build_pkpass(content, renderer.render(content.design, progress), signer)

    return build_pass


def unzip(data: bytes, directory: Path) -> Path:
    """Extract a .pkpass into ``directory`` (checking every CRC) and return it."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.testzip() is None
        archive.extractall(directory)
    return directory


def openssl_verify(directory: Path, ca_file: Path) -> subprocess.CompletedProcess[str]:
    """Verify ``signature`` over ``manifest.json`` in ``directory`` the way the brief says."""
    return subprocess.run(
        [
            "openssl",
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-purpose",
            "any",
            "-in",
            "signature",
            "-content",
            "manifest.json",
            "-CAfile",
            str(ca_file),
            "-out",
            "/dev/null",
        ],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
    )


_STRINGS_LINE = re.compile(r'"((?:[^"\\]|\\.)*)"\s*=\s*"((?:[^"\\]|\\.)*)";')
_UNESCAPES = {"\\": "\\", '"': '"', "n": "\n", "r": "\r", "t": "\t"}


def parse_strings(data: bytes) -> dict[str, str]:
    """Parse a .strings file the way Foundation would (for the escapes we emit)."""

    def unescape(text: str) -> str:
        return re.sub(r"\\(.)", lambda m: _UNESCAPES[m.group(1)], text)

    text = data.decode("utf-8")
    entries = {}
    for line in text.splitlines():
        match = _STRINGS_LINE.fullmatch(line)
        assert match, f"malformed .strings line: {line!r}"
        entries[unescape(match.group(1))] = unescape(match.group(2))
    return entries


def read_pass_json(directory: Path) -> dict[str, Any]:
    return json.loads((directory / "pass.json").read_text("utf-8"))


@pytest.fixture(scope="session")
def pk() -> SimpleNamespace:
    """The helpers above, for test modules (a conftest is not importable under
    ``--import-mode=importlib``)."""
    return SimpleNamespace(
        unzip=unzip,
        openssl_verify=openssl_verify,
        parse_strings=parse_strings,
        read_pass_json=read_pass_json,
    )
