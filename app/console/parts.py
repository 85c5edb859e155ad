"""The console's parts: importing each module adds its pages to the console's blueprint.
One import per part; :func:`init_app` registers the blueprint with them all."""

from __future__ import annotations

from flask import Flask

from app.console import accounts, audit_trail, pages  # noqa: F401 (accounts, audit trail)


def init_app(app: Flask) -> None:
    app.register_blueprint(pages.bp)
    app.jinja_env.globals["console_sign_out_form"] = pages.sign_out_form
