"""The ``pointpass`` command: Flask's CLI with the app factory, plus our commands."""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from contextlib import suppress
from pathlib import Path
from typing import Any

import click
from apiflask.commands import spec_command
from flask import current_app
from flask.cli import FlaskGroup, ScriptInfo, with_appcontext
from flask_migrate import cli as migrate_cli
from rq import Queue
from sqlalchemy.engine import make_url

from app import audit, background, create_app
from app.accounts.cli import COMMANDS as ACCOUNT_COMMANDS
from app.analytics.cli import COMMANDS as ANALYTICS_COMMANDS
from app.auth import keys
from app.auth.models import ApiKey, Role
from app.cli.demo import create_demo
from app.config import ConfigError
from app.errors import DomainError
from app.extensions import db
from app.loyalty import programs, tick
from app.loyalty.cli import COMMANDS as LOYALTY_COMMANDS
from app.members.cli import COMMANDS as MEMBER_COMMANDS
from app.outbox.status import retry as outbox_retry_rows
from app.outbox.status import status as outbox_status_of
from app.redisclient import worker_client
from app.staff import devices
from app.staff.cli import COMMANDS as TILL_COMMANDS
from app.wallet import sweep
from passes.devcerts import write_dev_certs


class PointpassGroup(FlaskGroup):
    """Flask's command group, answering a configuration error with its message, not a
    traceback. Every command is on the group itself, so ``--help`` lists them all and
    commands that need no app (``dev-certs``) run even when the settings are not valid."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        names = set(click.Group.list_commands(self, ctx))
        # Without valid settings, the commands that need the app say why when they are run.
        with suppress(ConfigError):
            names.update(ctx.ensure_object(ScriptInfo).load_app().cli.list_commands(ctx))
        return sorted(names)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as error:
            raise click.ClickException(str(error)) from None


@click.group(cls=PointpassGroup, create_app=create_app)
def cli() -> None:
    """Pointpass: loyalty cards on Apple Wallet and Google Wallet."""


def _confirmed_downgrade(original: click.Command) -> click.Command:
    """Flask-Migrate's ``downgrade``, asking before it drops data (``--yes`` for scripts)."""

    @click.pass_context
    def downgrade(ctx: click.Context, yes: bool, **arguments: Any) -> None:
        if not yes and not arguments["sql"]:
            database = make_url(current_app.config["SQLALCHEMY_DATABASE_URI"])
            click.confirm(
                f"Downgrade {database.render_as_string(hide_password=True)} to "
                f"{arguments['revision']}? The tables and columns of the migrations undone are "
                f"dropped with their data, and the service answers 503 until "
                f"`pointpass db upgrade`.", abort=True, err=True)
        ctx.invoke(original.callback, **arguments)  # type: ignore[arg-type]

    yes = click.Option(["--yes", "-y"], is_flag=True,
                       help="Do not ask for confirmation (for scripts).")
    return click.Command("downgrade", callback=downgrade, params=[*original.params, yes],
                         help=f"{original.help}. Asks first: it drops data.")


def _database_commands() -> click.Group:
    """Flask-Migrate's ``db`` group with a downgrade that asks before dropping data."""
    group = migrate_cli.db
    return click.Group(
        "db", callback=group.callback, params=group.params, help=group.help,
        commands={**group.commands,
                  "downgrade": _confirmed_downgrade(group.commands["downgrade"])})


cli.add_command(_database_commands())
cli.add_command(spec_command)
for _command in [*TILL_COMMANDS, *LOYALTY_COMMANDS, *ACCOUNT_COMMANDS, *ANALYTICS_COMMANDS,
                 *MEMBER_COMMANDS]:
    cli.add_command(_command)


@cli.command("create-key")
@click.option("--role", type=click.Choice([r.value for r in Role]), required=True)
@click.option("--name", required=True, help="Who or what uses the key, e.g. 'till 3'.")
@click.option("--program", "program_slugs", multiple=True, metavar="SLUG",
              help="Limit the key to this program (repeat for several); without it the key "
              "reaches every program.")
@with_appcontext
def create_key(role: str, name: str, program_slugs: tuple[str, ...]) -> None:
    """Create an API key and print it once; only its hash is stored."""
    audit.act_as(audit.CLI)
    try:
        program_ids = [programs.get_by_slug(slug).id for slug in program_slugs]
        key, plaintext = keys.create(name, role, program_ids=program_ids)
    except DomainError as error:
        raise click.ClickException(error.detail) from None
    reach = f" for {', '.join(sorted(set(program_slugs)))}" if program_slugs else ""
    click.echo(f"Created {key.role.value} key #{key.id} '{key.name}'{reach}. It will not be "
               "shown again:", err=True)
    click.echo(plaintext)


@cli.command("list-keys")
@with_appcontext
def list_keys() -> None:
    """List API keys: id, role, status, created, last used, prefix, programs (``*``: every
    program) and name (never the key)."""
    minute = "%Y-%m-%d %H:%MZ"  # times are UTC
    every = keys.all_keys()
    granted = keys.programs_of(key.id for key in every)
    slugs = {program.id: program.slug for program in programs.all_programs()}
    rows = [("ID", "ROLE", "STATUS", "CREATED", "LAST USED", "PREFIX", "PROGRAMS", "NAME")]
    for key in every:
        reach = ",".join(slugs[p] for p in granted[key.id]) if key.id in granted else "*"
        rows.append((str(key.id), key.role.value, "revoked" if key.revoked else "active",
                     key.created_at.strftime(minute),
                     key.last_used_at.strftime(minute) if key.last_used_at else "never",
                     key.prefix, reach, key.name))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        click.echo("  ".join([*cells, row[-1]]))


@cli.command("revoke-key")
@click.argument("key_id", type=click.IntRange(min=1))
@with_appcontext
def revoke_key(key_id: int) -> None:
    """Revoke API key KEY_ID (an id from list-keys). Running services refuse it within
    10 seconds."""
    audit.act_as(audit.CLI)
    revoked = keys.revoke(key_id)
    key = db.session.get(ApiKey, key_id)
    if revoked is None or key is None:
        raise click.ClickException(f"There is no API key #{key_id} (see `pointpass list-keys`).")
    if revoked:
        click.echo(f"Revoked {key.role.value} key #{key.id} '{key.name}'. Running services "
                   f"refuse it within {keys.CACHE_SECONDS:.0f} seconds.")
    else:
        click.echo(f"Key #{key.id} '{key.name}' was already revoked.")


@cli.command("dev-certs", with_appcontext=False)
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--overwrite", is_flag=True, help="Replace files that already exist.")
def dev_certs(directory: Path, overwrite: bool) -> None:
    """Write development stand-in certificates and keys into DIRECTORY (never for production)."""
    try:
        written = write_dev_certs(directory, overwrite=overwrite)
    except FileExistsError as exc:
        raise click.ClickException(f"{exc} Pass --overwrite to replace them.") from exc
    for name, path in written.items():
        click.echo(f"{name}: {path}")
    click.echo("These are stand-ins signed by a development CA: Apple and Google will not accept "
               "them. See certs.example/README.md for the real files.", err=True)


@cli.command("demo")
@with_appcontext
def demo() -> None:
    """Create (or reuse) a demo program with rewards and tiers; print keys and a sample card."""
    result = create_demo()
    click.echo(f"Demo program: {result.program.name} (id {result.program.id}, "
               f"/{result.program.slug})")
    for role, key in result.keys.items():
        click.echo(f"  {role:<9} key: {key}")
    click.echo(f"Sample card: {result.card.serial_number} — {result.card.member.name}, "
               f"{result.card.balance} {result.program.points_label}")
    till = result.till
    click.echo(f"Till at {till.location.name}: open {till.enrol_url} once on the till's phone "
               f"(valid {devices.ENROL_HOURS} h), then sign in as {till.staff.name} with PIN "
               f"{till.pin}")
    click.echo(f"Console: sign in at {current_app.config['BASE_URL']}/console/login as "
               f"{result.console.email} with password {result.console.password}")


@cli.group("outbox")
def outbox_group() -> None:
    """See and retry what the outbox waits to tell the wallets."""


@outbox_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (for scripts).")
@with_appcontext
def outbox_status(as_json: bool) -> None:
    """Backlog per channel: rows, due now, past their retry limit, oldest row's age."""
    result = outbox_status_of()
    if as_json:
        click.echo(json.dumps(result.as_dict(), default=str))
        return
    rows = [("CHANNEL", "ROWS", "DUE", "PAST LIMIT", "OLDEST")]
    rows += [(c.channel, str(c.rows), str(c.due), str(c.past_limit),
              "-" if c.oldest_age_seconds is None else f"{c.oldest_age_seconds:.0f}s")
             for c in result.channels]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                   .rstrip())
    click.echo(f"(a row is past its retry limit after {result.max_attempts} attempts; "
               f"`pointpass outbox retry` sends it again)")


@outbox_group.command("retry")
@click.option("--channel", help="Only this channel's rows (e.g. apple, google).")
@click.option("--all", "everything", is_flag=True,
              help="Every row not due now, not only those past their retry limit.")
@with_appcontext
def outbox_retry(channel: str | None, everything: bool) -> None:
    """Make rows past their retry limit due now (attempts reset) and ask for a drain."""
    try:
        count = outbox_retry_rows(channel, everything=everything)
    except DomainError as error:
        raise click.BadParameter(error.detail, param_hint="--channel") from None
    # Without Redis the drain runs in this process: let it finish before the command exits.
    background.dispatcher().wait()
    click.echo(f"Retried {count} outbox row{'' if count == 1 else 's'}.")


@cli.command("worker")
@click.option("--burst", is_flag=True, help="Exit once the queues are empty.")
@with_appcontext
def worker(burst: bool) -> None:
    """Run an rq worker for the app's queues (needs POINTPASS_REDIS_URL).

    It also runs rq's scheduler, which starts the retries of failed and abandoned jobs when
    their time comes, and (unless ``--burst``) the periodic sweep, which resumes what a dead
    worker left behind, and ``pointpass tick`` every POINTPASS_TICK_INTERVAL seconds.
    """
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    # A client of its own: rq lengthens its read timeout beyond its blocking wait for the next
    # job, which must not reach the app's client the jobs use.
    connection = worker_client(app)
    if connection is None:
        raise click.ClickException(
            "POINTPASS_REDIS_URL is not set: without it jobs run in-process, no worker needed."
        )
    queue = Queue(current_app.config["RQ_QUEUE"], connection=connection)
    # rq forks its scheduler. The child never uses the database, but it must not close (or
    # otherwise touch) the pooled connections it inherits, which belong to this process.
    engine = db.engine
    parent = os.getpid()

    def in_forked_child() -> None:
        engine.dispose(close=False)
        _die_with_parent(parent)

    os.register_at_fork(after_in_child=in_forked_child)
    if not burst:
        sweep.start_sweeper(app)
        tick.start_scheduler(app)
    # SimpleWorker runs jobs in this process, which already holds the app context and the
    # database pool; a forking worker would share pooled connections with its children.
    # Without the scheduler a retry (which rq schedules, also for a job abandoned by a killed
    # worker) would never run.
    background.Worker([queue], connection=connection).work(burst=burst, with_scheduler=True)


def _die_with_parent(parent: int) -> None:
    """Ask Linux to stop this forked child (rq's scheduler) when ``parent`` dies.

    Otherwise a ``kill -9`` of the worker leaves its scheduler running as an orphan that holds
    rq's scheduler lock. SIGTERM lets the scheduler release its locks on the way out.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    sys.exit(cli.main())
