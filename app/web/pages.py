"""Customer-facing pages: wiring for i18n, CSRF and their blueprints."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Attach the page extensions and blueprints."""
