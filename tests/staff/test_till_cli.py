"""The till's commands: enrol-device, list-devices, revoke-device, staff add|list|unlock|set-pin.

Run through Flask's CLI runner on the test app (SQLite and PostgreSQL). The PIN comes from
standard input, never from the command line.
"""

from __future__ import annotations

from typing import Any

import pytest
from click.testing import Result

from app.cli.cli import cli
from tests.factories import ApiClient
from tests.staff.conftest import Till


def run(app: Any, *args: str, input: str | None = None) -> Result:
    return app.test_cli_runner().invoke(cli, list(args), input=input)


@pytest.fixture
def location(till: Till, program: dict[str, Any]) -> int:
    return till.location(program)


def test_enrol_device_prints_a_one_time_link_and_its_qr_code(app: Any, api: ApiClient,
                                                             location: int) -> None:
    result = run(app, "enrol-device", "--location", str(location), "--name", "front till")
    assert result.exit_code == 0, result.output
    url = result.stdout.strip().splitlines()[-1]
    assert url.startswith("https://pointpass.test/staff/enrol/")
    assert "█" in result.stderr  # the link as a QR code in the terminal
    assert "works once" in result.stderr
    page = app.test_client().get(url.removeprefix("https://pointpass.test"))
    assert page.status_code == 200
    listed = run(app, "list-devices")
    assert listed.exit_code == 0
    assert "pending" in listed.output and "front till" in listed.output
    assert url.rsplit("/", 1)[1] not in listed.output  # never the link again

    assert run(app, "revoke-device", "1").output.strip() == "Revoked device #1."
    assert run(app, "revoke-device", "1").output.strip() == "Device #1 was already revoked."
    assert "revoked" in run(app, "list-devices").output
    assert app.test_client().get(url.removeprefix("https://pointpass.test")).status_code == 410
    missing = run(app, "revoke-device", "99")
    assert missing.exit_code != 0 and "no device #99" in missing.output


def test_enrol_device_refuses_an_unknown_location(app: Any) -> None:
    result = run(app, "enrol-device", "--location", "42")
    assert result.exit_code == 2
    assert "No location with id 42" in result.output


def test_staff_add_reads_the_pin_from_stdin_and_lists_no_pin(app: Any, api: ApiClient,
                                                             till: Till, program: dict[str, Any],
                                                             location: int) -> None:
    other = till.location(program, "Kopi Bangsar")
    result = run(app, "staff", "add", "--name", "Siti Aminah", "--location", str(location),
                 "--location", str(other), "--language", "ms", input="482913\n")
    assert result.exit_code == 0, result.output
    assert "Added staff member #1 'Siti Aminah'" in result.output
    member = api.get("/api/v1/staff").json["staff"][0]
    assert member["location_ids"] == [location, other] and member["language"] == "ms"
    listed = run(app, "staff", "list").output
    assert "Siti Aminah" in listed and "active" in listed and "482913" not in listed
    # The PIN works at the till.
    client = app.test_client()
    till.enrol(client, other)
    assert till.type_pin(client, member["id"], "482913").status_code == 303


def test_staff_add_has_no_pin_option_and_refuses_a_bad_pin(app: Any, location: int) -> None:
    on_argv = run(app, "staff", "add", "--name", "A", "--location", str(location),
                  "--pin", "1234")
    assert on_argv.exit_code == 2 and "No such option '--pin'" in on_argv.output
    bad = run(app, "staff", "add", "--name", "A", "--location", str(location), input="12\n")
    assert bad.exit_code == 1 and "4 to 8 digits" in bad.output
    unknown = run(app, "staff", "add", "--name", "A", "--location", "77", input="1234\n")
    assert unknown.exit_code == 1 and "No location with id 77" in unknown.output
    assert run(app, "staff", "list").output.strip().splitlines() == [
        "ID  STATUS  LOCATIONS  LANGUAGE  NAME"]


def test_staff_unlock_and_set_pin_from_the_command_line(app: Any, api: ApiClient, till: Till,
                                                        location: int) -> None:
    member = till.add_staff("Ana", "1357", location)
    client = app.test_client()
    till.enrol(client, location)
    for _ in range(5):
        till.type_pin(client, member["id"], "0000")
    assert 'id="pin-locked"' in client.get(f"/staff/pin/{member['id']}").get_data(as_text=True)
    assert "locked until" in run(app, "staff", "list").output

    unlocked = run(app, "staff", "unlock", str(member["id"]))
    assert unlocked.exit_code == 0, unlocked.output
    assert unlocked.output.strip() == f"Unlocked staff member #{member['id']} 'Ana'."
    assert till.type_pin(client, member["id"], "1357").status_code == 303

    changed = run(app, "staff", "set-pin", str(member["id"]), input="97531\n")
    assert changed.exit_code == 0, changed.output
    assert "97531" not in changed.output
    other = app.test_client()
    till.enrol(other, location)
    assert till.type_pin(other, member["id"], "1357").status_code == 422  # the old PIN
    assert till.type_pin(other, member["id"], "97531").status_code == 303

    bad = run(app, "staff", "set-pin", str(member["id"]), input="12\n")
    assert bad.exit_code == 1 and "4 to 8 digits" in bad.output
    missing = run(app, "staff", "unlock", "99")
    assert missing.exit_code == 1 and "no staff member #99" in missing.output
