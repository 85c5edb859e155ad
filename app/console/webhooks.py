"""The console's banner for webhook endpoints disabled because they kept failing: every
console page tells the admins of their programs, until the endpoint is enabled again (or
deleted) through the API."""

from __future__ import annotations

from typing import Any

from flask import g

from app import access
from app.accounts.models import AccountRole
from app.console.pages import bp
from app.webhooks import endpoints


@bp.context_processor
def _webhook_alerts() -> dict[str, Any]:
    account = g.get("account")
    if account is None or account.role is not AccountRole.ADMIN:
        return {"webhook_alerts": []}
    return {"webhook_alerts": endpoints.disabled_for_failing(access.current().program_ids)}
