"""``pointpass create-user``: a console account from the command line (the first admin, or
anyone, without an invitation)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app import audit
from app.accounts import service as accounts
from app.accounts.models import AccountRole
from app.errors import DomainError
from app.loyalty import programs


@click.command("create-user")
@click.option("--email", required=True, help="The address the person signs in with.")
@click.option("--role", type=click.Choice([r.value for r in AccountRole]), required=True,
              help="admin: every program and the accounts; marketer: the programs given "
              "with --program; staff: the till only (cannot open the console).")
@click.option("--name", help="The person's name, as the console shows it.")
@click.option("--program", "program_slugs", multiple=True, metavar="SLUG",
              help="A program the account manages (repeat for several).")
@click.option("--language", type=click.Choice(["en", "id", "th", "ms"]), default="en",
              show_default=True, help="The console's language for this account.")
@click.password_option("--password", prompt="Password", confirmation_prompt=True,
                       help="Read from a prompt (or standard input); never give it here on a "
                       "shared machine.")
@with_appcontext
def create_user(email: str, role: str, name: str | None, program_slugs: tuple[str, ...],
                language: str, password: str) -> None:
    """Create a console account with a password."""
    audit.act_as(audit.CLI)
    try:
        program_ids = [programs.get_by_slug(slug).id for slug in program_slugs]
        account = accounts.create(email, role, password=password, name=name,
                                  language=language, program_ids=program_ids)
    except DomainError as error:
        raise click.ClickException(error.detail) from None
    click.echo(f"Created {account.role.value} account #{account.id} {account.email}.")


COMMANDS = [create_user]
