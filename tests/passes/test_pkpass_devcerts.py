"""Development credentials: files, permissions, certificate contents, no silent overwrite."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from passes.devcerts import (
    DEFAULT_PASS_TYPE_ID,
    DEFAULT_TEAM_ID,
    DEV_SERVICE_ACCOUNT_EMAIL,
    create_ca_and_leaf,
    write_dev_certs,
)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writes_the_four_files_with_private_ones_0600(dev_certs: dict[str, Path]) -> None:
    assert {p.name for p in dev_certs.values()} == {
        "wwdr.pem",
        "pass.pem",
        "pass.key",
        "google-service-account.json",
    }
    assert _mode(dev_certs["pass_key"]) == 0o600
    assert _mode(dev_certs["google_service_account"]) == 0o600
    assert _mode(dev_certs["pass_cert"]) == 0o644
    assert not list(dev_certs["wwdr"].parent.glob(".*.tmp"))


def test_wwdr_stand_in_is_a_ca(dev_certs: dict[str, Path]) -> None:
    ca = x509.load_pem_x509_certificate(dev_certs["wwdr"].read_bytes())
    cn = ca.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert "WWDR G4" in cn and "NOT APPLE" in cn
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign is True
    assert ca.issuer == ca.subject


def test_pass_certificate_looks_like_apples(dev_certs: dict[str, Path]) -> None:
    ca = x509.load_pem_x509_certificate(dev_certs["wwdr"].read_bytes())
    cert = x509.load_pem_x509_certificate(dev_certs["pass_cert"].read_bytes())
    subject = cert.subject
    assert subject.get_attributes_for_oid(NameOID.USER_ID)[0].value == DEFAULT_PASS_TYPE_ID
    assert (
        subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
        == f"Pass Type ID: {DEFAULT_PASS_TYPE_ID}"
    )
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == (
        DEFAULT_TEAM_ID
    )
    assert cert.issuer == ca.subject
    cert.verify_directly_issued_by(ca)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    key = serialization.load_pem_private_key(dev_certs["pass_key"].read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()


def test_service_account_json_has_googles_shape(dev_certs: dict[str, Path]) -> None:
    info = json.loads(dev_certs["google_service_account"].read_text())
    assert info["type"] == "service_account"
    assert info["client_email"] == DEV_SERVICE_ACCOUNT_EMAIL
    assert info["token_uri"] == "https://oauth2.googleapis.com/token"
    assert info["auth_uri"].startswith("https://accounts.google.com/")
    assert info["project_id"] and info["client_id"].isdigit()
    assert len(info["private_key_id"]) == 40
    key = serialization.load_pem_private_key(info["private_key"].encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey) and key.key_size == 2048
    assert info["private_key"].startswith("-----BEGIN PRIVATE KEY-----")  # PKCS#8


def test_google_auth_accepts_the_service_account(dev_certs: dict[str, Path]) -> None:
    service_account = pytest.importorskip("google.oauth2.service_account")
    info = json.loads(dev_certs["google_service_account"].read_text())
    credentials = service_account.Credentials.from_service_account_info(info)
    assert credentials.service_account_email == DEV_SERVICE_ACCOUNT_EMAIL
    assert credentials.sign_bytes(b"payload")


def test_refuses_to_overwrite_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "pass.key").write_text("precious")
    with pytest.raises(FileExistsError, match=r"pass\.key"):
        write_dev_certs(tmp_path)
    assert (tmp_path / "pass.key").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pass.key"]


def test_overwrite_replaces_and_fixes_permissions(tmp_path: Path) -> None:
    first = write_dev_certs(tmp_path)
    old = first["pass_cert"].read_bytes()
    first["pass_key"].chmod(0o644)
    second = write_dev_certs(tmp_path, overwrite=True)
    assert second["pass_cert"].read_bytes() != old
    assert _mode(second["pass_key"]) == 0o600


def test_encrypted_key_needs_its_password(
    encrypted_dev_certs: dict[str, Path], key_password: str
) -> None:
    data = encrypted_dev_certs["pass_key"].read_bytes()
    assert b"ENCRYPTED" in data
    with pytest.raises(TypeError):
        serialization.load_pem_private_key(data, None)
    serialization.load_pem_private_key(data, key_password.encode())


def test_each_chain_has_its_own_unrelated_ca() -> None:
    one, two = create_ca_and_leaf(), create_ca_and_leaf()
    assert one.ca_cert.subject == two.ca_cert.subject  # same name ...
    with pytest.raises(Exception):  # noqa: B017 - ... but a different key
        one.cert.verify_directly_issued_by(two.ca_cert)


def test_library_never_imports_the_service_stack() -> None:
    import subprocess
    import sys

    code = (
        "import sys, passes.apple, passes.devcerts\n"
        "bad = {'flask', 'apiflask', 'sqlalchemy', 'rq', 'redis', 'psycopg', 'app'}\n"
        "print(sorted(bad & {m.split('.')[0] for m in sys.modules}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
