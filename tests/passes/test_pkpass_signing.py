"""PassSigner: refuses bad configurations with plain messages and never leaks the password."""

from __future__ import annotations

import datetime as dt
import traceback
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

from passes.apple import PassSigner, SigningConfigError
from passes.devcerts import (
    certificate_pem,
    create_ca,
    create_ca_and_leaf,
    create_pass_certificate,
    private_key_pem,
    write_chain,
)


def _signer_error(*args: object, **kwargs: object) -> SigningConfigError:
    with pytest.raises(SigningConfigError) as info:
        PassSigner.from_files(*args, **kwargs)  # type: ignore[arg-type]
    return info.value


def _full_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc))


def test_reads_identifiers_from_the_certificate(signer: PassSigner) -> None:
    assert signer.pass_type_identifier == "pass.dev.pointpass.loyalty"
    assert signer.team_identifier == "DEVTEAM123"
    assert signer.expires_at > dt.datetime.now(dt.UTC)
    assert "pass.dev.pointpass.loyalty" in repr(signer)


def test_signature_is_detached_der_carrying_the_wwdr(signer: PassSigner) -> None:
    signature = signer.sign(b'{"pass.json":"00"}')
    certs = pkcs7.load_der_pkcs7_certificates(signature)
    assert {c.subject for c in certs} == {
        signer.certificate.subject,
        signer.wwdr_certificate.subject,
    }
    assert b'{"pass.json":"00"}' not in signature  # detached: content not embedded


def test_wrong_wwdr_is_refused_with_a_plain_explanation(
    dev_certs: dict[str, Path], tmp_path: Path
) -> None:
    other_ca, _ = create_ca("Some Other CA")
    wrong = tmp_path / "other-ca.pem"
    wrong.write_bytes(certificate_pem(other_ca))
    error = _signer_error(dev_certs["pass_cert"], dev_certs["pass_key"], wrong)
    message = str(error)
    assert "did not issue the Pass Type ID certificate" in message
    assert "Pass Type ID certificates are issued under Apple's WWDR G4 intermediate" in message
    assert "Some Other CA" in message


def test_look_alike_wwdr_with_same_name_is_refused(
    dev_certs: dict[str, Path], tmp_path: Path
) -> None:
    impostor = create_ca_and_leaf().ca_cert  # same subject name, different key
    path = tmp_path / "impostor.pem"
    path.write_bytes(certificate_pem(impostor))
    message = str(_signer_error(dev_certs["pass_cert"], dev_certs["pass_key"], path))
    assert "does not verify" in message
    assert "Apple's WWDR G4 intermediate" in message


def test_mismatched_key_is_refused(dev_certs: dict[str, Path], tmp_path: Path) -> None:
    other_key = tmp_path / "other.key"
    other_key.write_bytes(private_key_pem(create_ca_and_leaf().key))
    message = str(_signer_error(dev_certs["pass_cert"], other_key, dev_certs["wwdr"]))
    assert "private key does not match the Pass Type ID certificate" in message


@pytest.mark.parametrize("role", ["pass_cert", "pass_key", "wwdr"])
def test_missing_file_is_named(dev_certs: dict[str, Path], tmp_path: Path, role: str) -> None:
    paths = dict(dev_certs)
    paths[role] = tmp_path / "nope" / "missing.pem"
    message = str(_signer_error(paths["pass_cert"], paths["pass_key"], paths["wwdr"]))
    assert "not found" in message and str(paths[role]) in message


def test_directory_and_garbage_are_refused(dev_certs: dict[str, Path], tmp_path: Path) -> None:
    assert "directory" in str(_signer_error(tmp_path, dev_certs["pass_key"], dev_certs["wwdr"]))
    garbage = tmp_path / "garbage.pem"
    garbage.write_bytes(b"not a certificate")
    message = str(_signer_error(garbage, dev_certs["pass_key"], dev_certs["wwdr"]))
    assert "not a PEM or DER X.509 certificate" in message


def test_expired_certificate_is_refused(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    chain = create_ca_and_leaf(
        not_valid_before=now - dt.timedelta(days=400), not_valid_after=now - dt.timedelta(days=1)
    )
    paths = write_chain(tmp_path, chain)
    message = str(_signer_error(paths["pass_cert"], paths["pass_key"], paths["wwdr"]))
    assert "expired on" in message and "Pass Type ID certificate" in message


def test_not_yet_valid_certificate_is_refused(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    chain = create_ca_and_leaf(
        not_valid_before=now + dt.timedelta(days=2), not_valid_after=now + dt.timedelta(days=30)
    )
    paths = write_chain(tmp_path, chain)
    assert "not valid until" in str(
        _signer_error(paths["pass_cert"], paths["pass_key"], paths["wwdr"])
    )


def test_encrypted_key_with_its_password_works(
    encrypted_dev_certs: dict[str, Path], key_password: str
) -> None:
    signer = PassSigner.from_files(
        encrypted_dev_certs["pass_cert"],
        encrypted_dev_certs["pass_key"],
        encrypted_dev_certs["wwdr"],
        key_password=key_password,
    )
    assert signer.sign(b"{}")
    assert key_password not in repr(signer)
    assert not any(
        isinstance(getattr(signer, name, None), str | bytes)
        and key_password in str(getattr(signer, name))
        for name in dir(signer)
        if not name.startswith("__")
    )


def test_wrong_password_never_appears_in_the_error(
    encrypted_dev_certs: dict[str, Path], key_password: str
) -> None:
    wrong = "hunter2-but-longer-and-secret"
    error = _signer_error(
        encrypted_dev_certs["pass_cert"],
        encrypted_dev_certs["pass_key"],
        encrypted_dev_certs["wwdr"],
        key_password=wrong,
    )
    assert "password is wrong" in str(error)
    text = _full_text(error)
    assert wrong not in text and key_password not in text
    assert error.__cause__ is None and error.__suppress_context__


def test_password_as_bytes_is_accepted(
    encrypted_dev_certs: dict[str, Path], key_password: str
) -> None:
    PassSigner.from_files(
        encrypted_dev_certs["pass_cert"],
        encrypted_dev_certs["pass_key"],
        encrypted_dev_certs["wwdr"],
        key_password=key_password.encode(),
    )


def test_missing_and_superfluous_passwords_are_explained(
    dev_certs: dict[str, Path], encrypted_dev_certs: dict[str, Path]
) -> None:
    missing = _signer_error(
        encrypted_dev_certs["pass_cert"],
        encrypted_dev_certs["pass_key"],
        encrypted_dev_certs["wwdr"],
    )
    assert "is encrypted but no key password is configured" in str(missing)
    secret = "s3cr3t-pw"
    superfluous = _signer_error(
        dev_certs["pass_cert"], dev_certs["pass_key"], dev_certs["wwdr"], key_password=secret
    )
    assert "is not encrypted but a key password is configured" in str(superfluous)
    assert secret not in _full_text(superfluous)


def test_der_wwdr_like_apples_cer_download(dev_certs: dict[str, Path], tmp_path: Path) -> None:
    pem = dev_certs["wwdr"].read_bytes()
    der = tmp_path / "AppleWWDRCAG4.cer"
    from cryptography import x509

    der.write_bytes(x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER))
    signer = PassSigner.from_files(dev_certs["pass_cert"], dev_certs["pass_key"], der)
    assert signer.team_identifier == "DEVTEAM123"


def test_pkcs12_export(tmp_path: Path, key_password: str) -> None:
    chain = create_ca_and_leaf()
    p12 = tmp_path / "pass.p12"
    p12.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"pass",
            chain.key,
            chain.cert,
            None,
            serialization.BestAvailableEncryption(key_password.encode()),
        )
    )
    wwdr = tmp_path / "wwdr.pem"
    wwdr.write_bytes(certificate_pem(chain.ca_cert))
    assert PassSigner.from_pkcs12(p12, wwdr, key_password).pass_type_identifier
    wrong = "wrong-password-123"
    with pytest.raises(SigningConfigError) as info:
        PassSigner.from_pkcs12(p12, wwdr, wrong)
    assert wrong not in _full_text(info.value)


def test_certificate_without_pass_type_uid_is_refused() -> None:
    ca_cert, ca_key = create_ca()
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import NameOID

    leaf, key = create_pass_certificate(ca_cert, ca_key)
    stripped = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Not a pass cert")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(leaf.not_valid_before_utc)
        .not_valid_after(leaf.not_valid_after_utc)
        .sign(ca_key, hashes.SHA256())
    )
    with pytest.raises(SigningConfigError, match="no UID"):
        PassSigner(stripped, key, ca_cert)


def test_check_identifiers(signer: PassSigner) -> None:
    signer.check_identifiers("pass.dev.pointpass.loyalty", "DEVTEAM123")
    with pytest.raises(SigningConfigError, match="pass type"):
        signer.check_identifiers("pass.com.example.other", "DEVTEAM123")
    with pytest.raises(SigningConfigError, match="team"):
        signer.check_identifiers("pass.dev.pointpass.loyalty", "OTHERTEAM1")


def test_from_pem(dev_certs: dict[str, Path]) -> None:
    signer = PassSigner.from_pem(
        dev_certs["pass_cert"].read_bytes(),
        dev_certs["pass_key"].read_bytes(),
        dev_certs["wwdr"].read_bytes(),
    )
    assert signer.team_identifier == "DEVTEAM123"
