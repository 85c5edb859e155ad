"""The Alembic migrations build exactly the schema the models describe, on both databases."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from app.extensions import db
from tests.factories import make_app


def test_models_and_migrations_agree(app: Any) -> None:
    with app.app_context(), db.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, db.metadata) == []


def test_upgrade_keeps_existing_cards(database: Any, tmp_path: Any) -> None:
    """Upgrading a database that already holds cards backfills the new columns."""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import text

    for app in make_app(database, tmp_path):
        with app.app_context():
            downgrade(revision="7af3208c49d9")
            db.session.execute(text(
                "INSERT INTO programs (id, slug, name, organization_name, background_color, "
                "foreground_color, label_color, points_label, currency, earn_points, "
                "earn_amount, default_language, referral_bonus_points, created_at) VALUES "
                "(1, 'p', 'P', 'P', '#000000', '#FFFFFF', '#CCCCCC', 'Points', 'USD', 1, 100, "
                "'en', 0, '2026-01-02 03:04:05+00:00')"))
            db.session.execute(text(
                "INSERT INTO members (id, program_id, name, language, consent_marketing, "
                "consent_terms, referral_code, created_at) VALUES (1, 1, 'M', 'en', false, "
                "false, 'ABCDEFGH', '2026-01-02 03:04:05+00:00')"))
            db.session.execute(text(
                "INSERT INTO cards (id, program_id, member_id, serial_number, "
                "authentication_token, barcode_secret, barcode_version, status, balance, "
                "lifetime_points, version, updated_at, created_at) VALUES (1, 1, 1, 'S1', "
                "'tttttttttttttttttttt', 'b', 1, 'active', 0, 0, 1, "
                "'2026-01-02 03:04:05+00:00', '2026-01-02 03:04:05+00:00')"))
            db.session.commit()
            upgrade()
            stamp = db.session.execute(text("SELECT last_modified FROM cards")).scalar_one()
            db.session.rollback()
            assert stamp == 1767323045  # 2026-01-02T03:04:05Z


def test_upgrade_backfills_the_segment_columns(app: Any, api: Any, program: Any) -> None:
    """The migration adding the segment columns to cards sets the last visit to each card's
    latest earn or redemption (an adjustment is no visit; a card without one keeps None)
    and copies the member's language, birthday month and joining time."""
    from datetime import UTC, datetime

    from flask_migrate import downgrade, upgrade
    from sqlalchemy import text

    from app.loyalty.models import Card
    from tests.factories import create_card

    visited = create_card(api, program, email="v@example.com", language="th",
                          birthday="1990-07-04")["serial_number"]
    adjusted = create_card(api, program, email="a@example.com")["serial_number"]
    assert api.post(f"/api/v1/cards/{visited}/earn", json={"points": 10}).status_code == 201
    assert api.post(f"/api/v1/cards/{visited}/earn", json={"points": 20}).status_code == 201
    assert api.post(f"/api/v1/cards/{adjusted}/adjust",
                    json={"points": 5, "reason": "welcome"}).status_code == 201
    with app.app_context():
        for moment, kind in (("2026-02-03 04:05:06+00:00", "earn"),
                             ("2026-05-06 07:08:09+00:00", "redeem"),
                             ("2026-09-01 00:00:00+00:00", "adjust")):
            db.session.execute(text(
                "UPDATE ledger_entries SET created_at = :at, kind = :kind WHERE id = "
                "(SELECT min(e.id) FROM ledger_entries e JOIN cards c ON c.id = e.card_id "
                "WHERE c.serial_number = :s AND e.created_at > '2026-10-01')"),
                {"at": moment, "kind": kind, "s": visited if kind != "adjust" else adjusted})
        db.session.commit()
        downgrade(revision="44f71068c116")
        upgrade()
        found = {serial: at for serial, at in db.session.execute(
            db.select(Card.serial_number, Card.last_visit_at))}
        copies = db.session.execute(text(
            "SELECT c.member_language, c.member_birthday_month, c.member_joined_at, "
            "m.created_at FROM cards c JOIN members m ON m.id = c.member_id "
            "ORDER BY c.id")).all()
        db.session.rollback()
    assert found == {visited: datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC), adjusted: None}
    assert [(language, month) for language, month, _, _ in copies] == [
        ("th", 7), (program["default_language"], None)]
    assert all(joined is not None and str(joined) == str(member_joined)
               for _, _, joined, member_joined in copies)
