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
