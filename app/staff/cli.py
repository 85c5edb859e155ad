"""The till's commands: ``pointpass enrol-device``, ``list-devices``, ``revoke-device`` and
``pointpass staff add|list|unlock|set-pin``. They call the same services as the admin API."""

from __future__ import annotations

import io
import sys
from typing import Any

import click
import qrcode
from flask.cli import with_appcontext

from app import audit
from app.errors import DomainError
from app.staff import devices, members
from app.staff.pins import is_valid_pin

MINUTE = "%Y-%m-%d %H:%MZ"  # times are UTC


def _table(rows: list[tuple[str, ...]]) -> None:
    """Print rows as columns; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)]
        click.echo("  ".join([*cells, row[-1]]))


def _terminal_qr(data: str) -> str:
    code = qrcode.QRCode(border=2)
    code.add_data(data)
    out = io.StringIO()
    code.print_ascii(out=out, invert=True)
    return out.getvalue()


@click.command("enrol-device")
@click.option("--location", "location_id", type=click.IntRange(min=1), required=True,
              help="The id of the program location the device works at.")
@click.option("--name", help="To tell devices apart, e.g. 'front till'.")
@click.option("--no-qr", is_flag=True, help="Print the link only, not its QR code.")
@with_appcontext
def enrol_device(location_id: int, name: str | None, no_qr: bool) -> None:
    """Make a one-time enrolment link for a till device at a location, valid 24 hours.

    Open the link on the device (or scan the QR code printed with it) and confirm there.
    """
    audit.act_as(audit.CLI)
    try:
        new = devices.create(location_id, name)
    except DomainError as error:
        raise click.BadParameter(error.detail, param_hint="--location") from None
    expires = new.device.enrol_expires_at.strftime(MINUTE)
    click.echo(f"Device #{new.device.id} at location {location_id}: open this link on the "
               f"device before {expires} (it works once):", err=True)
    if not no_qr:
        click.echo(_terminal_qr(new.enrol_url), err=True)
    click.echo(new.enrol_url)


@click.command("list-devices")
@with_appcontext
def list_devices() -> None:
    """List till devices: id, location, status, enrolled, name (never links or secrets)."""
    rows = [("ID", "LOCATION", "STATUS", "CREATED", "ENROLLED", "NAME")]
    for device in devices.all_devices():
        rows.append((str(device.id), str(device.location_id), devices.status(device),
                     device.created_at.strftime(MINUTE),
                     device.enrolled_at.strftime(MINUTE) if device.enrolled_at else "-",
                     device.name or ""))
    _table(rows)


@click.command("revoke-device")
@click.argument("device_id", type=click.IntRange(min=1))
@with_appcontext
def revoke_device(device_id: int) -> None:
    """Revoke till device DEVICE_ID: its link and cookie stop working, its sessions end."""
    audit.act_as(audit.CLI)
    try:
        revoked = devices.revoke(device_id)
    except DomainError:
        raise click.ClickException(
            f"There is no device #{device_id} (see `pointpass list-devices`).") from None
    click.echo(f"Revoked device #{device_id}." if revoked
               else f"Device #{device_id} was already revoked.")


@click.group("staff")
def staff_group() -> None:
    """Staff members who sign in at the till with a PIN."""


def _read_pin() -> str:
    """The PIN from a hidden prompt (asked twice), or one line of standard input when it is
    not a terminal: never from the command line, where other users and shell history see it."""
    if not sys.stdin.isatty():
        pin = sys.stdin.readline().strip()
    else:
        pin = click.prompt("PIN (4 to 8 digits)", hide_input=True, confirmation_prompt=True,
                           err=True)
    if not is_valid_pin(pin):
        raise click.ClickException("The PIN must be 4 to 8 digits.")
    return pin


@staff_group.command("add")
@click.option("--name", required=True, help="The name shown on the till's sign-in screen.")
@click.option("--location", "location_ids", type=click.IntRange(min=1), multiple=True,
              required=True, help="A location id they may work at (repeat for more).")
@click.option("--language", type=click.Choice(["en", "id", "th", "ms"]), default="en",
              show_default=True, help="The language of their sign-in screens.")
@with_appcontext
def add_staff(name: str, location_ids: tuple[int, ...], language: str) -> None:
    """Add a staff member; the PIN is asked for (or read from standard input)."""
    pin = _read_pin()
    audit.act_as(audit.CLI)
    try:
        member = members.create(name, pin, location_ids, language=language)
    except DomainError as error:
        raise click.ClickException(error.detail) from None
    click.echo(f"Added staff member #{member.id} '{member.name}' at location(s) "
               f"{', '.join(str(i) for i in location_ids)}.")


@staff_group.command("list")
@with_appcontext
def list_staff() -> None:
    """List staff members: id, status, locations, language, name (never PINs)."""
    rows = [("ID", "STATUS", "LOCATIONS", "LANGUAGE", "NAME")]
    for member in members.all_members():
        until = members.locked_until(member)
        state = ("inactive" if not member.active else
                 f"locked until {until.strftime(MINUTE)}" if until else "active")
        rows.append((str(member.id), state,
                     ",".join(str(loc.id) for loc in member.locations) or "-",
                     member.language, member.name))
    _table(rows)


def _changed(member_id: int, **change: Any) -> str:
    audit.act_as(audit.CLI)
    try:
        member = members.update(member_id, **change)
    except DomainError:
        raise click.ClickException(
            f"There is no staff member #{member_id} (see `pointpass staff list`).") from None
    return member.name


@staff_group.command("unlock")
@click.argument("member_id", type=click.IntRange(min=1))
@with_appcontext
def unlock_staff(member_id: int) -> None:
    """Lift staff member MEMBER_ID's PIN lock (and forget their wrong PINs)."""
    name = _changed(member_id, unlock=True)
    click.echo(f"Unlocked staff member #{member_id} '{name}'.")


@staff_group.command("set-pin")
@click.argument("member_id", type=click.IntRange(min=1))
@with_appcontext
def set_pin(member_id: int) -> None:
    """Give staff member MEMBER_ID a new PIN (asked for, or read from standard input); it
    also lifts a lock."""
    pin = _read_pin()
    name = _changed(member_id, pin=pin)
    click.echo(f"New PIN set for staff member #{member_id} '{name}'.")


COMMANDS = (enrol_device, list_devices, revoke_device, staff_group)
