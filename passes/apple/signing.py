"""Signing ``manifest.json`` with a Pass Type ID certificate, in process.

Wallet checks a detached PKCS#7 (CMS) signature over ``manifest.json`` made with the Pass Type
ID certificate and carrying Apple's WWDR intermediate. :class:`PassSigner` checks the whole
configuration once, when it is built, so a misconfigured deployment fails at start-up with a
message that says what to fix instead of producing passes that iPhones silently refuse.
The private key's password is used to decrypt the key and then dropped; it never appears in an
exception, a log line or a repr.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12
from cryptography.x509.oid import NameOID

from passes.apple.errors import SigningConfigError

_SIGN_OPTIONS = (pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary)
_WWDR_HINT = (
    "Pass Type ID certificates are issued under Apple's WWDR G4 intermediate "
    "('Apple Worldwide Developer Relations Certification Authority', OU=G4, downloadable from "
    "Apple's certificate authority page), and the configured certificate is not their issuer: "
    "configure the WWDR G4 certificate as the intermediate."
)

SigningKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
Password = str | bytes | None


def _password_bytes(password: Password) -> bytes | None:
    if password is None or isinstance(password, bytes):
        return password
    return password.encode("utf-8")


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise SigningConfigError(f"{what} file not found: {path}") from None
    except IsADirectoryError:
        raise SigningConfigError(f"{what} path is a directory, not a file: {path}") from None
    except PermissionError:
        raise SigningConfigError(f"cannot read {what} file {path}: permission denied") from None
    except OSError as exc:
        raise SigningConfigError(f"cannot read {what} file {path}: {exc.strerror}") from None


def _load_certificate(data: bytes, what: str, source: str) -> x509.Certificate:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise SigningConfigError(
            f"{what} ({source}) is not a PEM or DER X.509 certificate"
        ) from None


@functools.lru_cache(maxsize=8)
def _parse_private_key(data: bytes, secret: bytes | None) -> object:
    """The key in ``data``, parsed once per process for the same bytes and password: loading
    an RSA key checks it (~50 ms), and a process that builds several apps (the test suite
    builds one per test) would check the same key each time. Failures are not cached."""
    if b"-----BEGIN" in data:
        return serialization.load_pem_private_key(data, secret)
    return serialization.load_der_private_key(data, secret)


def _load_private_key(data: bytes, password: Password, source: str) -> SigningKey:
    secret = _password_bytes(password)
    try:
        key = _parse_private_key(data, secret)
    except TypeError:
        # cryptography raises TypeError exactly when encryption and password disagree.
        if secret is None:
            problem = "is encrypted but no key password is configured"
        else:
            problem = "is not encrypted but a key password is configured"
        raise SigningConfigError(f"private key ({source}) {problem}") from None
    except (ValueError, UnsupportedAlgorithm):
        raise SigningConfigError(
            f"could not load the private key ({source}): the key password is wrong, "
            "or the file is not a PEM/DER private key"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise SigningConfigError(
            f"private key ({source}) is a {type(key).__name__}; pass signing needs RSA or EC"
        )
    return key


def _subject_value(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> str | None:
    attributes = cert.subject.get_attributes_for_oid(oid)
    if not attributes:
        return None
    value = attributes[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _public_der(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


class PassSigner:
    """Signs pass manifests with one Pass Type ID certificate and the WWDR intermediate.

    Construction validates everything and raises :class:`SigningConfigError` when the key does
    not belong to the certificate, either certificate is outside its validity period, the WWDR
    certificate did not issue the Pass Type ID certificate, or the certificate lacks the pass
    type id (subject UID) or team id (subject OU). The result is immutable and thread-safe.
    """

    __slots__ = (
        "_certificate",
        "_key",
        "_wwdr",
        "pass_type_identifier",
        "team_identifier",
    )

    pass_type_identifier: str
    team_identifier: str

    def __init__(
        self,
        certificate: x509.Certificate,
        private_key: SigningKey,
        wwdr_certificate: x509.Certificate,
        *,
        now: dt.datetime | None = None,
    ) -> None:
        now = now or dt.datetime.now(dt.UTC)
        if not isinstance(private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise SigningConfigError("pass signing needs an RSA or EC private key")
        if _public_der(private_key.public_key()) != _public_der(certificate.public_key()):
            raise SigningConfigError(
                "the private key does not match the Pass Type ID certificate "
                f"({certificate.subject.rfc4514_string()}); configure the key that was "
                "generated with this certificate's signing request"
            )
        self._check_validity(certificate, "Pass Type ID certificate", now)
        self._check_validity(wwdr_certificate, "WWDR intermediate certificate", now)
        self._check_issuer(certificate, wwdr_certificate)
        pass_type_identifier = _subject_value(certificate, NameOID.USER_ID)
        team_identifier = _subject_value(certificate, NameOID.ORGANIZATIONAL_UNIT_NAME)
        if not pass_type_identifier:
            raise SigningConfigError(
                "the certificate has no UID (pass type identifier) in its subject; "
                "is it a Pass Type ID certificate?"
            )
        if not team_identifier:
            raise SigningConfigError(
                "the certificate has no OU (team identifier) in its subject; "
                "is it a Pass Type ID certificate?"
            )
        self._certificate = certificate
        self._key = private_key
        self._wwdr = wwdr_certificate
        self.pass_type_identifier = pass_type_identifier
        self.team_identifier = team_identifier

    @staticmethod
    def _check_validity(cert: x509.Certificate, what: str, now: dt.datetime) -> None:
        if cert.not_valid_after_utc < now:
            raise SigningConfigError(
                f"the {what} ({cert.subject.rfc4514_string()}) expired on "
                f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC; renew it"
            )
        if cert.not_valid_before_utc > now:
            raise SigningConfigError(
                f"the {what} ({cert.subject.rfc4514_string()}) is not valid until "
                f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC"
            )

    @staticmethod
    def _check_issuer(cert: x509.Certificate, wwdr: x509.Certificate) -> None:
        configured = (
            f"The configured WWDR intermediate certificate ({wwdr.subject.rfc4514_string()}) "
            "did not issue the Pass Type ID certificate"
        )
        if cert.issuer != wwdr.subject:
            raise SigningConfigError(
                f"{configured}, which was issued by {cert.issuer.rfc4514_string()}. {_WWDR_HINT}"
            )
        try:
            cert.verify_directly_issued_by(wwdr)
        except (ValueError, TypeError, InvalidSignature):
            # Same name but a different key: a look-alike, or a re-keyed CA of the same name.
            raise SigningConfigError(
                f"{configured}: the names match, but the certificate's signature does not "
                f"verify with this WWDR certificate's key. {_WWDR_HINT}"
            ) from None

    @classmethod
    def from_pem(
        cls,
        certificate: bytes,
        private_key: bytes,
        wwdr_certificate: bytes,
        key_password: Password = None,
    ) -> PassSigner:
        """Build a signer from certificate, key and WWDR contents (PEM, or DER for certs)."""
        return cls(
            _load_certificate(certificate, "Pass Type ID certificate", "given data"),
            _load_private_key(private_key, key_password, "given data"),
            _load_certificate(wwdr_certificate, "WWDR intermediate certificate", "given data"),
        )

    @classmethod
    def from_files(
        cls,
        cert_path: str | os.PathLike[str],
        key_path: str | os.PathLike[str],
        wwdr_path: str | os.PathLike[str],
        key_password: Password = None,
    ) -> PassSigner:
        """Build a signer from files: certificate and WWDR as PEM or DER (Apple's ``.cer``),
        the key as PEM or DER, optionally encrypted with ``key_password``.

        Raises :class:`SigningConfigError` if a file is missing or unreadable, or for any
        problem listed on the class.
        """
        cert_data = _read(cert_path, "Pass Type ID certificate")
        key_data = _read(key_path, "private key")
        wwdr_data = _read(wwdr_path, "WWDR intermediate certificate")
        return cls(
            _load_certificate(cert_data, "Pass Type ID certificate", str(cert_path)),
            _load_private_key(key_data, key_password, str(key_path)),
            _load_certificate(wwdr_data, "WWDR intermediate certificate", str(wwdr_path)),
        )

    @classmethod
    def from_pkcs12(
        cls,
        p12_path: str | os.PathLike[str],
        wwdr_path: str | os.PathLike[str],
        password: Password = None,
    ) -> PassSigner:
        """Build a signer from a ``.p12`` exported from Keychain Access plus the WWDR cert."""
        data = _read(p12_path, "PKCS#12")
        try:
            key, cert, _ = pkcs12.load_key_and_certificates(data, _password_bytes(password))
        except (ValueError, TypeError):
            raise SigningConfigError(
                f"could not open the PKCS#12 file ({p12_path}): wrong password or not PKCS#12"
            ) from None
        if key is None or cert is None:
            raise SigningConfigError(
                f"the PKCS#12 file ({p12_path}) must hold both the certificate and its key"
            )
        if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise SigningConfigError("pass signing needs an RSA or EC private key")
        wwdr_data = _read(wwdr_path, "WWDR intermediate certificate")
        return cls(
            cert,
            key,
            _load_certificate(wwdr_data, "WWDR intermediate certificate", str(wwdr_path)),
        )

    @property
    def certificate(self) -> x509.Certificate:
        """The Pass Type ID certificate."""
        return self._certificate

    @property
    def wwdr_certificate(self) -> x509.Certificate:
        """The WWDR intermediate embedded in every signature."""
        return self._wwdr

    @property
    def expires_at(self) -> dt.datetime:
        """When the Pass Type ID certificate stops being valid (UTC)."""
        return self._certificate.not_valid_after_utc

    def check_identifiers(self, pass_type_identifier: str, team_identifier: str) -> None:
        """Raise :class:`SigningConfigError` unless the certificate is for these identifiers."""
        if pass_type_identifier != self.pass_type_identifier:
            raise SigningConfigError(
                f"the signing certificate is for pass type {self.pass_type_identifier!r}, "
                f"but {pass_type_identifier!r} is configured"
            )
        if team_identifier != self.team_identifier:
            raise SigningConfigError(
                f"the signing certificate belongs to team {self.team_identifier!r}, "
                f"but {team_identifier!r} is configured"
            )

    def sign(self, manifest: bytes) -> bytes:
        """Return the DER detached PKCS#7 signature of ``manifest`` (SHA-256, with WWDR)."""
        return (
            pkcs7.PKCS7SignatureBuilder()
            .set_data(manifest)
            .add_signer(self._certificate, self._key, hashes.SHA256())
            .add_certificate(self._wwdr)
            .sign(serialization.Encoding.DER, _SIGN_OPTIONS)
        )

    def __repr__(self) -> str:
        return (
            f"PassSigner(pass_type_identifier={self.pass_type_identifier!r}, "
            f"team_identifier={self.team_identifier!r}, expires_at={self.expires_at:%Y-%m-%d})"
        )
