"""Google Wallet configuration, checked when the service starts.

Settings: ``POINTPASS_GOOGLE_ISSUER_ID``, ``POINTPASS_GOOGLE_SERVICE_ACCOUNT`` (path to the
service-account key JSON; its ``token_uri`` is the OAuth token endpoint),
``POINTPASS_GOOGLE_API_URL``, ``POINTPASS_GOOGLE_CALLBACK_KEYS_URL`` and
``POINTPASS_GOOGLE_CALLBACK_SENDER_ID``. In development with none set, the stand-in key from
``<instance>/dev-certs`` and a placeholder issuer id make save links (for the pages), but no
request goes to Google: syncs are skipped with a log line. In production with none set,
Google Wallet is off; a half-configured or unreadable setup stops the service at start-up.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from flask import Flask, current_app

from app.config import ConfigError, is_development
from app.redisclient import redis_for
from app.wallet.google.client import GoogleWalletClient, LocalRateLimiter, RedisRateLimiter
from passes.google.callbacks import GOOGLE_ROOT_KEYS_URL, SENDER_ID, RootKeyCache
from passes.google.payloads import GooglePayloadError, resource_id, validate_issuer_id
from passes.google.savelink import save_url, signer_from_service_account

log = logging.getLogger("pointpass.google")
EXTENSION = "pointpass.google"
DEFAULT_API_URL = "https://walletobjects.googleapis.com/walletobjects/v1"
DEVELOPMENT_ISSUER_ID = "3388000000000000000"  # a placeholder: Google knows no such issuer


@dataclass
class GoogleWallet:
    issuer_id: str
    service_account_file: str
    service_account_email: str
    signer: Any
    api_url: str
    base_url: str
    sync_enabled: bool  # False: development stand-ins, nothing is sent to Google
    callback_keys: RootKeyCache
    callback_sender_id: str
    redis_client: redis.Redis | None  # the app's client: the rate limit is shared through it
    _client: Any = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def class_id(self, program_slug: str) -> str:
        return resource_id(self.issuer_id, program_slug)

    def object_id(self, serial_number: str) -> str:
        return resource_id(self.issuer_id, serial_number)

    def save_url(self, card: Any) -> str:
        """``https://pay.google.com/gp/v/save/<jwt>`` referencing the card's object by id."""
        return save_url(self.signer, service_account_email=self.service_account_email,
                        object_ids=[self.object_id(card.serial_number)],
                        origins=[self.base_url])

    def client(self) -> Any:
        """The process's REST client (rate-limited per issuer across all processes)."""
        with self._lock:
            if self._client is None:
                if self.redis_client is not None:
                    limiter: Any = RedisRateLimiter(
                        self.redis_client, f"pointpass:google-rate:{self.issuer_id}")
                else:
                    limiter = LocalRateLimiter()
                self._client = GoogleWalletClient(
                    self.api_url, self.service_account_file, limiter,
                    backoff_base=float(current_app.config.get("GOOGLE_BACKOFF_SECONDS", 0.5)))
            return self._client


def init_app(app: Flask) -> None:
    issuer_id = app.config.get("GOOGLE_ISSUER_ID")
    account_file = app.config.get("GOOGLE_SERVICE_ACCOUNT")
    api_url = str(app.config.get("GOOGLE_API_URL") or DEFAULT_API_URL)
    development = False
    if not issuer_id and not account_file:
        stand_in = Path(app.instance_path) / "dev-certs" / "google-service-account.json"
        if not is_development(app) or not stand_in.exists():
            if not is_development(app):
                log.warning("Google Wallet is off: set POINTPASS_GOOGLE_ISSUER_ID and "
                            "POINTPASS_GOOGLE_SERVICE_ACCOUNT to issue Google passes")
            app.extensions[EXTENSION] = None
            return
        issuer_id, account_file, development = DEVELOPMENT_ISSUER_ID, str(stand_in), True
    if not issuer_id or not account_file:
        missing = "POINTPASS_GOOGLE_ISSUER_ID" if not issuer_id else \
            "POINTPASS_GOOGLE_SERVICE_ACCOUNT"
        raise ConfigError(f"Google Wallet is half configured: {missing} is not set.")
    try:
        issuer_id = validate_issuer_id(str(issuer_id), "POINTPASS_GOOGLE_ISSUER_ID")
        info = json.loads(Path(account_file).read_text())
        signer, email = signer_from_service_account(info)
    except (OSError, ValueError, KeyError, GooglePayloadError) as exc:
        raise ConfigError(f"Google Wallet service account {account_file}: {exc}") from None
    stand_in_key = str(info.get("project_id", "")).startswith("pointpass-dev")
    sync_enabled = not (stand_in_key and api_url == DEFAULT_API_URL)
    if not sync_enabled:
        log.warning("Google Wallet syncs skipped: the service account is a development "
                    "stand-in, which Google refuses. Set POINTPASS_GOOGLE_API_URL to sync "
                    "with another server.")
    app.extensions[EXTENSION] = GoogleWallet(
        issuer_id=issuer_id,
        service_account_file=str(account_file),
        service_account_email=email,
        signer=signer,
        api_url=api_url,
        base_url=app.config["BASE_URL"],
        sync_enabled=sync_enabled,
        callback_keys=RootKeyCache(str(app.config.get("GOOGLE_CALLBACK_KEYS_URL")
                                       or GOOGLE_ROOT_KEYS_URL)),
        callback_sender_id=str(app.config.get("GOOGLE_CALLBACK_SENDER_ID") or SENDER_ID),
        redis_client=redis_for(app),
    )
    log.info("Google Wallet on: issuer %s%s", issuer_id,
             " (development stand-in: links only)" if development else "")


def google_wallet() -> GoogleWallet | None:
    return current_app.extensions.get(EXTENSION)  # type: ignore[no-any-return]
