"""Apple Wallet configuration, checked when the service starts.

Settings (all file paths are PEM): ``POINTPASS_APPLE_CERT``, ``POINTPASS_APPLE_KEY``,
``POINTPASS_APPLE_KEY_PASSWORD`` (optional), ``POINTPASS_APPLE_WWDR_CERT``,
``POINTPASS_APPLE_PASS_TYPE_ID`` and ``POINTPASS_APPLE_TEAM_ID`` (both default to the
certificate's). In development, with none of the files set, the stand-ins in
``<instance>/dev-certs`` are used (and written if missing). In production with none set, Apple
Wallet is off and says so in the log; a partial or broken set stops the service at start-up.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from flask import Flask, current_app

from app.config import ConfigError, is_development
from app.wallet.apple.store import PassStore
from passes.apple import ImageRenderer, PassSigner, SigningConfigError
from passes.devcerts import DEV_CA_MARKER, write_dev_certs

log = logging.getLogger("pointpass.apple")
EXTENSION = "pointpass.apple"
FILE_SETTINGS = ("APPLE_CERT", "APPLE_KEY", "APPLE_WWDR_CERT")


@dataclass
class AppleWallet:
    """Everything needed to issue Apple passes: the signer, image cache and pass store."""

    signer: PassSigner
    pass_type_id: str
    team_id: str
    renderer: ImageRenderer
    store: PassStore
    web_service_url: str
    allow_insecure_web_service: bool
    signer_fingerprint: str
    cert_path: str
    key_path: str
    development_certificate: bool  # signed by a `pointpass dev-certs` CA, unknown to Apple
    signatures: int = 0  # passes signed by this process, for tests and metrics


def _dev_cert_files(app: Flask) -> dict[str, str]:
    directory = Path(app.instance_path) / "dev-certs"
    if not (directory / "pass.pem").exists():
        write_dev_certs(directory)
        log.info("wrote development stand-in certificates to %s", directory)
    return {"APPLE_CERT": str(directory / "pass.pem"), "APPLE_KEY": str(directory / "pass.key"),
            "APPLE_WWDR_CERT": str(directory / "wwdr.pem")}


def _is_development_certificate(wwdr_path: str) -> bool:
    wwdr = x509.load_pem_x509_certificate(Path(wwdr_path).read_bytes())
    return DEV_CA_MARKER in wwdr.subject.rfc4514_string()


def init_app(app: Flask) -> None:
    """Check the Apple settings and attach an :class:`AppleWallet` (or ``None``)."""
    given = {name: app.config.get(name) for name in FILE_SETTINGS}
    if not any(given.values()):
        if not is_development(app):
            log.warning("Apple Wallet is off: set POINTPASS_APPLE_CERT, POINTPASS_APPLE_KEY and "
                        "POINTPASS_APPLE_WWDR_CERT to issue Apple passes")
            app.extensions[EXTENSION] = None
            return
        given = _dev_cert_files(app)
    missing = [f"POINTPASS_{name}" for name, value in given.items() if not value]
    if missing:
        raise ConfigError(f"Apple Wallet is half configured: {', '.join(missing)} not set.")
    try:
        signer = PassSigner.from_files(
            given["APPLE_CERT"], given["APPLE_KEY"], given["APPLE_WWDR_CERT"],
            key_password=app.config.get("APPLE_KEY_PASSWORD") or None,
        )
        pass_type_id = app.config.get("APPLE_PASS_TYPE_ID") or signer.pass_type_identifier
        team_id = app.config.get("APPLE_TEAM_ID") or signer.team_identifier
        signer.check_identifiers(pass_type_id, team_id)
    except SigningConfigError as exc:
        raise ConfigError(f"Apple Wallet certificates: {exc}") from None

    base_url = app.config["BASE_URL"]
    app.extensions[EXTENSION] = AppleWallet(
        signer=signer,
        pass_type_id=pass_type_id,
        team_id=team_id,
        renderer=ImageRenderer(),
        store=PassStore.for_app(app),
        web_service_url=f"{base_url}/passkit",
        signer_fingerprint=hashlib.sha256(Path(given["APPLE_CERT"]).read_bytes()).hexdigest()[:12],
        cert_path=given["APPLE_CERT"],
        key_path=given["APPLE_KEY"],
        development_certificate=_is_development_certificate(given["APPLE_WWDR_CERT"]),
        allow_insecure_web_service=not base_url.startswith("https://"),
    )
    log.info("Apple Wallet on: pass type %s, team %s", pass_type_id, team_id)


def apple_wallet() -> AppleWallet | None:
    return current_app.extensions.get(EXTENSION)  # type: ignore[no-any-return]
