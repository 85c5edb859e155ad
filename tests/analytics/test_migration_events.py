"""The analytics migration gives a Google removal backfilled without its save a save (at the
card's creation), so that installs minus removals is what is installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask_migrate import downgrade, upgrade
from sqlalchemy import text

from app.extensions import db
from tests.factories import make_app

INSERTS = [
    "INSERT INTO programs (id, slug, name, organization_name, background_color, "
    "foreground_color, label_color, points_label, currency, earn_points, earn_amount, "
    "default_language, referral_bonus_points, created_at) VALUES (1, 'p', 'P', 'P', "
    "'#000000', '#FFFFFF', '#CCCCCC', 'Points', 'USD', 1, 100, 'en', 0, "
    "'2026-01-02 03:04:05+00:00')",
    "INSERT INTO members (id, program_id, name, language, consent_marketing, consent_terms, "
    "referral_code, created_at) VALUES ({n}, 1, 'M', 'en', false, false, 'CODE{n}', "
    "'2026-01-02 03:04:05+00:00')",
    "INSERT INTO cards (id, program_id, member_id, serial_number, authentication_token, "
    "barcode_secret, barcode_version, status, balance, lifetime_points, version, updated_at, "
    "created_at, last_modified, change_stamp, totp_last_counter) VALUES ({n}, 1, {n}, 'S{n}', "
    "'t', 'b', 1, 'active', 0, 0, 1, '2026-01-02 03:04:05+00:00', "
    "'2026-01-0{n} 00:00:00+00:00', 0, 0, 0)",
    "INSERT INTO google_objects (card_id, synced_version, synced_balance, synced_at, saved, "
    "saved_changed_at) VALUES ({n}, 1, 0, '2026-01-05 00:00:00+00:00', {saved}, "
    "'2026-01-06 00:00:00+00:00')",
]


def test_backfilled_google_removals_get_their_save(database: Any, tmp_path: Path) -> None:
    for app in make_app(database, tmp_path):
        with app.app_context():
            downgrade(revision="b7e1d4a90c25")
            db.session.execute(text(INSERTS[0]))
            for n, saved in ((1, "false"), (2, "true")):  # 1 deleted, 2 saved
                for statement in INSERTS[1:]:
                    db.session.execute(text(statement.format(n=n, saved=saved)))
            db.session.commit()
            upgrade()
            events = db.session.execute(text(
                "SELECT card_id, kind FROM wallet_events WHERE platform = 'google' "
                "ORDER BY card_id, at")).all()
            db.session.rollback()
    assert [tuple(e) for e in events] == [(1, "installed"), (1, "removed"), (2, "installed")]
