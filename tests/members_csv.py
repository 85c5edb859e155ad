"""Members CSV files for import tests and ``benchmarks/bench_import.py``: good rows and bad
rows of every kind at known lines, with what an import of them must do."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

HEADER = "\ufeffExternal ID,Name,E-mail,Phone,Language,Birthday,Tier,Opening balance,Expires\r\n"
TAKEN_EMAIL = "taken@example.com"  # the test enrols a member with it before importing
TIERS = ("", "", "Silver", "silver", "Bronze")
LANGUAGES = ("en", "id", "th", "ms", "", "EN")


def good(i: int) -> list[str]:
    balance = "" if i % 7 == 0 else str(i % 500)
    return [f"M{i}", f"Member {i}" if i % 11 else f'"Lee, Member {i}"',
            "" if i % 13 == 0 else f"m{i}@example.com", "" if i % 3 else "+66 81 234 5678",
            LANGUAGES[i % len(LANGUAGES)], "" if i % 5 else "1990-02-28",
            TIERS[i % len(TIERS)], balance if balance != "0" else "",
            "2099-12-31" if i % 4 == 0 else ""]


def _set(index: int, value: str) -> Callable[[list[str], int], list[str]]:
    def change(cells: list[str], first: int) -> list[str]:
        cells = list(cells)
        cells[index] = value.format(first=first)
        return cells
    return change


#: Each kind of bad row: (expected reason code, how a good row's cells become bad).
BAD_KINDS: list[tuple[str, Callable[[list[str], int], list[str]]]] = [
    ("required", _set(1, "")),
    ("email", _set(2, "not-an-address")),
    ("duplicate-external-id", _set(0, "M{first}")),
    ("duplicate-email", _set(2, "m{first}@example.com")),
    ("email-taken", _set(2, TAKEN_EMAIL)),
    ("tier", _set(6, "Platinum")),
    ("language", _set(4, "fr")),
    ("date", _set(5, "28/02/1990")),
    ("birthday-range", _set(5, "2999-01-01")),
    ("negative", _set(7, "-5")),
    ("too-large", _set(7, "99999999999")),
    ("integer", _set(7, "12.5")),
    ("expiry-past", _set(8, "2001-01-01")),
    ("expiry-format", _set(8, "next year")),
    ("columns", lambda cells, first: cells[:5]),
    ("encoding", _set(1, "Ren\udce9e")),  # a Latin-1 é: not UTF-8
    ("invisible", _set(1, "Siti\u202e")),
    ("phone", _set(3, "call me")),
    ("required", _set(0, "")),
    ("too-long", _set(1, "x" * 121)),
    ("invisible", _set(1, '"Two\nlines"')),  # a quoted line break: the row spans two lines
]


@dataclass
class MembersFile:
    rows: int = 0
    good: int = 0
    points: int = 0
    bad: dict[int, str] = field(default_factory=dict)  # line: expected reason code
    lines: int = 1


def write(out: IO[bytes], rows: int, bad: int) -> MembersFile:
    """``rows`` data rows, ``bad`` of them bad (spread evenly, kinds in turn)."""
    made = MembersFile(rows=rows)
    out.write(HEADER.encode())
    every = max(rows // bad, 2) if bad else 0
    placed = 0
    for i in range(1, rows + 1):
        cells = good(i)
        line = made.lines + 1
        if every and i % every == every // 2 and placed < bad and i > 2:
            code, change = BAD_KINDS[placed % len(BAD_KINDS)]
            cells = change(cells, 1)
            if code == "email-taken" and code in made.bad.values():
                code = "duplicate-email"  # the file's first row with it is the bad one
            made.bad[line] = code
            placed += 1
        else:
            made.good += 1
            made.points += int(cells[7] or 0)
        text = ",".join(cells) + "\r\n"
        out.write(text.encode("utf-8", errors="surrogateescape"))
        made.lines += text.count("\n")
    assert placed == bad, (placed, bad)
    return made
