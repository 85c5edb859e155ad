"""Google Wallet configuration, checked when the service starts."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app

EXTENSION = "pointpass.google"


def init_app(app: Flask) -> None:
    app.extensions[EXTENSION] = None


def google_wallet() -> Any:
    return current_app.extensions.get(EXTENSION)
