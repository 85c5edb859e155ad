"""The loyalty engine's commands: ``pointpass tick`` and ``pointpass check-ledger``."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click
from flask.cli import with_appcontext

from app import background
from app.loyalty import invariants, tick


class Instant(click.ParamType):
    """An ISO-8601 date and time; without an offset it is UTC."""

    name = "ISO-8601"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            moment = value
        else:
            try:
                moment = datetime.fromisoformat(str(value))
            except ValueError:
                self.fail(f"{value!r} is not an ISO-8601 date and time, such as "
                          "2026-12-31T00:00:00Z", param, ctx)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@click.command("tick")
@click.option("--as-of", "as_of", type=Instant(),
              help="Do the work due at this instant (ISO-8601; UTC without an offset). "
              "Default: now.")
@click.option("--batch-size", type=click.IntRange(min=1), default=tick.BATCH_SIZE,
              show_default=True, help="Lots per transaction.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@with_appcontext
def tick_command(as_of: datetime | None, batch_size: int, as_json: bool) -> None:
    """Release pending points, expire points past their expiry, remind members of points
    expiring soon and award birthdays, as due now (or at --as-of).

    Idempotent: running it again, or on two hosts at once, releases and expires once. The
    worker runs it every POINTPASS_TICK_INTERVAL seconds (default 300).
    """
    report = tick.run(as_of, batch_size=batch_size)
    # Without Redis the outbox drain runs in this process: let it finish first.
    background.dispatcher().wait()
    click.echo(report.to_json() if as_json else f"Tick {report}.")


@click.command("check-ledger")
@click.option("--card", "card_ids", type=click.IntRange(min=1), multiple=True,
              help="Check only this card id (repeatable). Default: every card.")
@with_appcontext
def check_ledger(card_ids: tuple[int, ...]) -> None:
    """Check the points store's invariants in the database: balances equal the ledger and the
    lots, lots equal their consumptions. Prints each violation and exits 1 if any."""
    found = invariants.violations(list(card_ids) or None)
    for line in found:
        click.echo(line)
    if found:
        click.echo(f"{len(found)} violation{'' if len(found) == 1 else 's'} of the ledger's "
                   "invariants.", err=True)
        sys.exit(1)
    click.echo("The ledger's invariants hold.", err=True)


COMMANDS = [tick_command, check_ledger]
