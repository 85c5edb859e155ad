"""TLS for APNs: the client context with the Pass Type ID certificate, and key-loading errors
that say what is wrong without repeating anything secret."""

from __future__ import annotations

import ssl
from pathlib import Path

from app.wallet.apple.apns.results import APNsCredentialsError


def client_ssl_context(
    cert_path: str | Path,
    key_path: str | Path,
    key_password: str | None,
    ca_file: str | Path | None,
) -> ssl.SSLContext:
    """TLS for APNs: verify the server, present the Pass Type ID certificate, ALPN h2.

    Raises :class:`APNsCredentialsError` (naming the files and OpenSSL's reason, never the
    password or key material) when the certificate or key cannot be loaded.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["h2"])
    if ca_file is not None:
        context.load_verify_locations(cafile=str(ca_file))
    error: str | None = None
    try:
        # Never pass None: with an encrypted key OpenSSL would then prompt on the terminal,
        # which hangs a worker. An empty password just fails to decrypt.
        context.load_cert_chain(str(cert_path), str(key_path), key_password or "")
    except ssl.SSLError as exc:
        # OpenSSL's reason (e.g. KEY_VALUES_MISMATCH) names the problem without echoing
        # anything secret; the exception itself is not chained on purpose.
        error = exc.reason or _key_problem(key_path, has_password=bool(key_password))
    except OSError as exc:
        error = exc.strerror or type(exc).__name__
    except (ValueError, TypeError) as exc:
        error = type(exc).__name__
    finally:
        key_password = None  # keep the password out of this frame's locals in tracebacks
    if error is not None:
        raise APNsCredentialsError(
            f"cannot load the APNs client certificate {cert_path} with key {key_path}: {error}"
        )
    return context


def _key_problem(key_path: str | Path, *, has_password: bool) -> str:
    """Explain OpenSSL's bare "PEM lib" error from the key file's armour."""
    try:
        head = Path(key_path).read_bytes()[:200]
    except OSError:
        head = b""
    if b"ENCRYPTED" in head:
        if has_password:
            return "the key password does not decrypt the key"
        return "the key is encrypted and no key password was given"
    return "the certificate or key is not valid PEM"
