"""Development stand-ins for the credentials a Pointpass deployment needs.

Real passes are signed with a Pass Type ID certificate issued by Apple under its WWDR G4
intermediate, and Google Wallet is driven by a Google Cloud service account. Neither can be
obtained offline, so this module makes look-alikes with pyca/cryptography: a throwaway CA that
plays the WWDR intermediate, a Pass Type ID leaf it signs, and a Google-style service-account
key file. An iPhone will not accept passes signed with them, but every local check (openssl,
the service's own validation, the test suite) behaves exactly as with the real ones.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

DEFAULT_PASS_TYPE_ID = "pass.dev.pointpass.loyalty"  # noqa: S105 - an identifier
DEFAULT_TEAM_ID = "DEVTEAM123"
DEV_WWDR_COMMON_NAME = "Pointpass Development WWDR G4 (NOT APPLE)"
# Every CA these helpers make carries this in its name; the service recognizes stand-ins by it.
DEV_CA_MARKER = "(NOT APPLE)"
DEV_ORGANIZATION = "Pointpass Development"
DEV_SERVICE_ACCOUNT_EMAIL = "pointpass-dev@pointpass-dev.iam.gserviceaccount.com"
DEV_GOOGLE_PROJECT_ID = "pointpass-dev"

#: File names written by :func:`write_dev_certs`, by the role they play.
DEV_CERT_FILES: dict[str, str] = {
    "wwdr": "wwdr.pem",
    "pass_cert": "pass.pem",
    "pass_key": "pass.key",
    "google_service_account": "google-service-account.json",
}

# Apple puts these in every Pass Type ID certificate; copying them keeps the dev leaf realistic.
_APPLE_PASS_SIGNING_EKU = ObjectIdentifier("1.2.840.113635.100.4.14")
_APPLE_PASS_TYPE_ID_EXTENSION = ObjectIdentifier("1.2.840.113635.100.6.1.16")

_PRIVATE_FILE_MODE = 0o600
_PUBLIC_FILE_MODE = 0o644


@dataclass(frozen=True)
class DevChain:
    """A CA certificate and key plus a Pass Type ID certificate and key the CA issued."""

    ca_cert: x509.Certificate
    ca_key: rsa.RSAPrivateKey
    cert: x509.Certificate
    key: rsa.RSAPrivateKey


def generate_rsa_key(key_size: int = 2048) -> rsa.RSAPrivateKey:
    """Return a new RSA private key with public exponent 65537."""
    return rsa.generate_private_key(public_exponent=65537, key_size=key_size)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """A CA signs certificates and revocation lists; a leaf signs data (the passes) only."""
    unused = dict.fromkeys(("content_commitment", "key_encipherment", "data_encipherment",
                            "key_agreement", "encipher_only", "decipher_only"), False)
    return x509.KeyUsage(digital_signature=not ca, key_cert_sign=ca, crl_sign=ca, **unused)


def create_ca(
    common_name: str = DEV_WWDR_COMMON_NAME,
    *,
    organization: str = DEV_ORGANIZATION,
    valid_days: int = 3650,
    key: rsa.RSAPrivateKey | None = None,
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """Create a self-signed CA certificate (CA:TRUE, keyCertSign) and return it with its key."""
    key = key or generate_rsa_key()
    now = _now()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "G4"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=valid_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def create_pass_certificate(
    ca_cert: x509.Certificate,
    ca_key: rsa.RSAPrivateKey,
    *,
    pass_type_id: str = DEFAULT_PASS_TYPE_ID,
    team_id: str = DEFAULT_TEAM_ID,
    organization: str = DEV_ORGANIZATION,
    not_valid_before: dt.datetime | None = None,
    not_valid_after: dt.datetime | None = None,
    key: rsa.RSAPrivateKey | None = None,
) -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    """Issue a Pass Type ID leaf certificate from ``ca_cert`` and return it with its key.

    The subject mirrors Apple's: UID = pass type id, CN = "Pass Type ID: <id>", OU = team id.
    Pass explicit validity bounds to make expired or not-yet-valid certificates for tests.
    """
    key = key or generate_rsa_key()
    now = _now()
    not_valid_before = not_valid_before or now - dt.timedelta(days=1)
    not_valid_after = not_valid_after or now + dt.timedelta(days=365)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.USER_ID, pass_type_id),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Pass Type ID: {pass_type_id}"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, team_id),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ]
    )
    pass_type_der = pass_type_id.encode("utf-8")
    if len(pass_type_der) > 127:
        raise ValueError("pass_type_id is too long for a certificate extension")
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_valid_before)
        .not_valid_after(not_valid_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH, _APPLE_PASS_SIGNING_EKU]),
            critical=False,
        )
        .add_extension(
            x509.UnrecognizedExtension(
                _APPLE_PASS_TYPE_ID_EXTENSION,
                b"\x0c" + bytes([len(pass_type_der)]) + pass_type_der,  # DER UTF8String
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def create_ca_and_leaf(
    *,
    ca_common_name: str = DEV_WWDR_COMMON_NAME,
    pass_type_id: str = DEFAULT_PASS_TYPE_ID,
    team_id: str = DEFAULT_TEAM_ID,
    not_valid_before: dt.datetime | None = None,
    not_valid_after: dt.datetime | None = None,
) -> DevChain:
    """Create a fresh CA and a Pass Type ID certificate it issued.

    Each call makes an unrelated CA, which is how tests obtain a "wrong WWDR intermediate".
    """
    ca_cert, ca_key = create_ca(ca_common_name)
    cert, key = create_pass_certificate(
        ca_cert,
        ca_key,
        pass_type_id=pass_type_id,
        team_id=team_id,
        not_valid_before=not_valid_before,
        not_valid_after=not_valid_after,
    )
    return DevChain(ca_cert=ca_cert, ca_key=ca_key, cert=cert, key=key)


def certificate_pem(cert: x509.Certificate) -> bytes:
    """Return ``cert`` PEM-encoded."""
    return cert.public_bytes(serialization.Encoding.PEM)


def private_key_pem(key: rsa.RSAPrivateKey, password: str | bytes | None = None) -> bytes:
    """Return ``key`` as PKCS#8 PEM, encrypted with ``password`` when one is given."""
    if password is None:
        encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    else:
        secret = password.encode("utf-8") if isinstance(password, str) else password
        encryption = serialization.BestAvailableEncryption(secret)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def google_service_account_info(
    *,
    project_id: str = DEV_GOOGLE_PROJECT_ID,
    client_email: str = DEV_SERVICE_ACCOUNT_EMAIL,
    key: rsa.RSAPrivateKey | None = None,
) -> dict[str, str]:
    """Return a Google service-account key document (the JSON Google Cloud hands out)."""
    key = key or generate_rsa_key()
    public_der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    client_id = str(10**20 + secrets.randbelow(9 * 10**20))  # 21 digits, like Google's
    return {
        "type": "service_account",
        "project_id": project_id,
        "private_key_id": hashlib.sha1(public_der).hexdigest(),  # noqa: S324 - an id, not security
        "private_key": private_key_pem(key).decode("ascii"),
        "client_email": client_email,
        "client_id": client_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": "https://oauth2.googleapis.com/token",
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": (
            "https://www.googleapis.com/robot/v1/metadata/x509/" + client_email.replace("@", "%40")
        ),
        "universe_domain": "googleapis.com",
    }


def _write_file(path: Path, data: bytes, mode: int) -> None:
    # Write to a sibling temp file first so a crash never leaves a half-written key behind,
    # and create it with the final mode so a private key is never briefly world-readable.
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)  # os.open's mode went through the umask
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_chain(
    directory: Path,
    chain: DevChain,
    *,
    key_password: str | bytes | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write ``chain`` as ``wwdr.pem``, ``pass.pem`` and ``pass.key`` (0600) into ``directory``.

    Returns the written paths under the keys ``wwdr``, ``pass_cert`` and ``pass_key``. Raises
    :class:`FileExistsError` before writing anything if a file exists and ``overwrite`` is false.
    """
    contents = {
        "wwdr": (certificate_pem(chain.ca_cert), _PUBLIC_FILE_MODE),
        "pass_cert": (certificate_pem(chain.cert), _PUBLIC_FILE_MODE),
        "pass_key": (private_key_pem(chain.key, key_password), _PRIVATE_FILE_MODE),
    }
    return _write_all(Path(directory), contents, overwrite=overwrite)


def _write_all(
    directory: Path, contents: dict[str, tuple[bytes, int]], *, overwrite: bool
) -> dict[str, Path]:
    paths = {role: directory / DEV_CERT_FILES[role] for role in contents}
    if not overwrite:
        existing = sorted(str(p) for p in paths.values() if p.exists())
        if existing:
            raise FileExistsError(
                "refusing to overwrite existing credentials (pass overwrite=True): "
                + ", ".join(existing)
            )
    directory.mkdir(parents=True, exist_ok=True)
    for role, (data, mode) in contents.items():
        _write_file(paths[role], data, mode)
    return paths


def write_dev_certs(
    directory: Path,
    *,
    pass_type_id: str = DEFAULT_PASS_TYPE_ID,
    team_id: str = DEFAULT_TEAM_ID,
    key_password: str | bytes | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write a complete set of development credentials into ``directory``.

    Files: ``wwdr.pem`` (stand-in WWDR G4 CA), ``pass.pem`` + ``pass.key`` (Pass Type ID
    certificate and key, key 0600, encrypted when ``key_password`` is given) and
    ``google-service-account.json`` (0600). Returns their paths keyed ``wwdr``, ``pass_cert``,
    ``pass_key`` and ``google_service_account``. Nothing is written, and
    :class:`FileExistsError` is raised, if any of them exists and ``overwrite`` is false.
    """
    chain = create_ca_and_leaf(pass_type_id=pass_type_id, team_id=team_id)
    account = google_service_account_info()
    contents = {
        "wwdr": (certificate_pem(chain.ca_cert), _PUBLIC_FILE_MODE),
        "pass_cert": (certificate_pem(chain.cert), _PUBLIC_FILE_MODE),
        "pass_key": (private_key_pem(chain.key, key_password), _PRIVATE_FILE_MODE),
        "google_service_account": (
            (json.dumps(account, indent=2) + "\n").encode("utf-8"),
            _PRIVATE_FILE_MODE,
        ),
    }
    return _write_all(Path(directory), contents, overwrite=overwrite)
