"""``pointpass rebuild-stats``: roll a program's analytics up again from the tables."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import select

from app.analytics import rollup
from app.extensions import db
from app.loyalty.models import Program


@click.command("rebuild-stats")
@click.option("--program", "slugs", multiple=True, metavar="SLUG",
              help="Only this program (repeatable). Default: every program.")
@with_appcontext
def rebuild_stats(slugs: tuple[str, ...]) -> None:
    """Forget the analytics rollups and roll every closed day up again.

    Needed only after entries were written into days already rolled up, such as by
    `pointpass tick --as-of` in the past; the sweep keeps them current otherwise.
    """
    query = select(Program).order_by(Program.id)
    if slugs:
        query = query.where(Program.slug.in_(slugs))
    programs = list(db.session.scalars(query))
    missing = set(slugs) - {p.slug for p in programs}
    if missing:
        raise click.UsageError(f"No program {', '.join(sorted(missing))}.")
    for program in programs:
        slug = program.slug
        rollup.rebuild(program)
        click.echo(f"Rolled up {slug} again.")


COMMANDS = [rebuild_stats]
