"""``pointpass erase-member``: a member's right to erasure from the command line (the same
service as ``DELETE /api/v1/members/<id>``: :func:`app.members.rights.erase`)."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from app import audit
from app.errors import DomainError, MemberErased
from app.members import rights


@click.command("erase-member")
@click.argument("member_id", type=click.IntRange(min=1))
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation (for scripts).")
@with_appcontext
def erase_member(member_id: int, yes: bool) -> None:
    """Erase the personal data of member MEMBER_ID: they become a pseudonymous record, their
    card is voided and its passes expire; the ledger keeps its amounts. Asks first (it cannot
    be undone). Erasing an erased member changes nothing (and says so)."""
    audit.act_as(audit.CLI)
    if not yes:
        click.confirm(f"Erase member {member_id}'s personal data? Their card is voided for "
                      "good; this cannot be undone.", abort=True, err=True)
    try:
        erasure = rights.erase(member_id)
    except MemberErased as error:
        click.echo(f"Nothing to do: {error.detail}")
        return
    except DomainError as error:
        raise click.ClickException(error.detail) from None
    card = f", card {erasure.serial_number} voided" if erasure.serial_number else ""
    click.echo(f"Erased member {erasure.member_id} of program {erasure.program_id}{card}; "
               f"{erasure.devices_deleted} Apple device(s) deleted, "
               f"{erasure.texts_scrubbed} text(s) scrubbed.")


COMMANDS = [erase_member]
