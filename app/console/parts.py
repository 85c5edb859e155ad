"""The console's parts: importing each module adds its pages to the console's blueprint.
One import per part; :func:`init_app` registers the blueprint with them all."""

from __future__ import annotations

from flask import Flask

from app.console import (  # noqa: F401 (each part adds its pages to pages.bp)
    accounts,
    analytics,
    audit_trail,
    campaigns,
    challenges,
    design,
    feedback,
    imports,
    members,
    pages,
    rewards,
    staff,
    webhooks,
)

# The navigation, in the order a marketer works through a program (how it is doing first).
pages.order_sections([
    "console.analytics", "console.design", "console.rewards", "console.challenges",
    "console.rules", "console.members", "console.campaigns", "console.feedback",
    "console.staff", "console.program_audit",
    "console.accounts", "console.audit",
])


def init_app(app: Flask) -> None:
    app.register_blueprint(pages.bp)
    imports.init_app(app)
    app.jinja_env.globals["console_sign_out_form"] = pages.sign_out_form
