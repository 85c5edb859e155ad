"""The outbox tells wallets through registered channels, and knows none of them by name."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.sql.elements import ColumnElement

from app.outbox import channels
from app.outbox.channels import Channel, Claimed, Delivery
from tests.factories import ApiClient, create_card, settle

APP = Path(__file__).resolve().parent.parent / "app"


class Recorder:
    """A channel of the kind a webhook would be: told about every changed card."""

    def __init__(self) -> None:
        self.told: list[tuple[int, int | None]] = []

    def audience(self, card_id: ColumnElement[int], new_cards: bool) -> None:
        return None  # every changed card

    def deliver(self, rows: list[Claimed], outcome: Delivery) -> None:
        assert {row.channel for row in rows} == {"hook"}
        self.told.extend((row.card_id, row.update_id) for row in rows)


def _card_id(app: Any, serial: str) -> int:
    from app.extensions import db
    from app.loyalty.models import Card

    with app.app_context():
        card_id = db.session.scalar(select(Card.id).where(Card.serial_number == serial))
        db.session.rollback()
    return int(card_id)


def test_a_registered_channel_is_told_of_every_change_it_asks_for(
        app: Any, api: ApiClient, program: dict[str, Any]) -> None:
    hook, off = Recorder(), Recorder()
    channels.register(app, Channel("hook", audience=hook.audience, deliver=hook.deliver))
    channels.register(app, Channel("off", audience=off.audience, deliver=off.deliver,
                                   enabled=lambda: False))
    with pytest.raises(ValueError, match="already registered"):
        channels.register(app, Channel("hook", audience=hook.audience, deliver=hook.deliver))

    serial = create_card(api, program, name="Ari")["serial_number"]
    settle(app)
    card_id = _card_id(app, serial)
    assert hook.told == [(card_id, None)]  # the new card

    response = api.post(f"/api/v1/cards/{serial}/earn", json={"points": 5},
                        headers={"Idempotency-Key": "one"})
    assert response.status_code == 201, response.json
    settle(app)
    assert hook.told == [(card_id, None), (card_id, None)]
    assert off.told == []  # not configured: no rows written for it


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at its top or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _importing(paths: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(f"{path.relative_to(APP.parent)} imports {name}" for path in paths
                  for name in _imports(path)
                  if any(name == f or name.startswith(f"{f}.") for f in forbidden))


def test_the_outbox_and_the_points_store_name_no_wallet() -> None:
    """Imports point down: the outbox below the points store, the wallets above both."""
    outbox = sorted((APP / "outbox").glob("*.py"))
    assert outbox
    assert _importing(outbox, ("app.loyalty", "app.wallet", "app.enrollment",
                               "app.redemption", "app.web")) == []
    # The points store, all of it (its HTTP API, which shows wallet links, is in app/api/).
    store = sorted((APP / "loyalty").glob("*.py"))
    assert _importing(store, ("app.wallet", "app.enrollment", "app.redemption",
                              "app.web")) == []
    assert _importing([APP / "enrollment" / "service.py"], ("app.wallet",)) == []
    # Ids are defined with the schemas, not in the package that builds the app.
    assert _importing([APP / "redemption" / "api.py", APP / "openapi.py"],
                      ("app.MAX_ID",)) == []
