"""What both wallets say of points that change on a day: pending points that become
spendable ("+40 pending until 3 Dec") and points about to expire ("120 Points expire on
31 Dec 2026"), in every language of :data:`~passes.languages.LANGUAGES`.

Dates are written by Babel in each language ("3 Des", "3 ธ.ค."); the caller gives them as
days in the program's time zone (this library knows no time zones of its own).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from babel.dates import format_date

from passes.checks import ContentError
from passes.languages import LANGUAGES
from passes.wording import N_, Wording, translate

#: One text per :data:`LANGUAGES` entry, in that order.
Texts = tuple[str, ...]

PENDING_LABEL = N_("Pending points")
EXPIRY_LABEL = N_("Points expiring")
# {points} a number (with the language's digit grouping), {date} a day ("3 Dec").
PENDING_LINE = N_("+{points} pending until {date}")
# The pending points due after that day.
PENDING_LATER_LINE = N_("+{points} more pending later")
# {points_label} is the program's word for points; {date} a day with its year.
EXPIRY_LINE = N_("{points} {points_label} expire on {date}")

_MAX_POINTS = 10**12


def format_points(points: int, language: str) -> str:
    """``points`` with the language's digit grouping: dots in Indonesian (``1.500``), commas
    in English, Thai and Malay (``1,500``)."""
    text = f"{points:,}"
    return text.replace(",", ".") if language == "id" else text


def short_date(day: dt.date, language: str) -> str:
    """A day of the coming weeks in ``language``: ``3 Dec``, ``3 Des``, ``3 ธ.ค.``."""
    return format_date(day, "d MMM", locale=language)


def long_date(day: dt.date, language: str) -> str:
    """A day with its year in ``language``: ``31 Dec 2026``, ``31 Des 2026``."""
    return format_date(day, "d MMM y", locale=language)


def _check_points(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ContentError(name, "must be an integer")
    if not minimum <= value <= _MAX_POINTS:
        raise ContentError(name, f"must be between {minimum} and {_MAX_POINTS}")


def _check_day(name: str, value: object) -> None:
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise ContentError(name, "must be a date (a day in the program's time zone)")


@dataclass(frozen=True)
class PendingPoints:
    """Points not spendable yet: ``points`` become available on ``until``, ``later`` more
    after that day."""

    points: int
    until: dt.date
    later: int = 0

    def __post_init__(self) -> None:
        _check_points("pending.points", self.points, 1)
        _check_day("pending.until", self.until)
        _check_points("pending.later", self.later, 0)

    def texts(self, wording: Wording) -> Texts:
        """The line in every language: ``+40 pending until 3 Dec`` (and, with ``later``,
        ``+20 more pending later`` on a line of its own)."""
        texts = []
        for language in LANGUAGES:
            text = (translate(wording, language, PENDING_LINE)
                    .replace("{points}", format_points(self.points, language))
                    .replace("{date}", short_date(self.until, language)))
            if self.later:
                text += "\n" + translate(wording, language, PENDING_LATER_LINE).replace(
                    "{points}", format_points(self.later, language))
            texts.append(text)
        return tuple(texts)


@dataclass(frozen=True)
class ExpiringPoints:
    """Available points that expire on ``on`` unless spent before."""

    points: int
    on: dt.date

    def __post_init__(self) -> None:
        _check_points("expiring.points", self.points, 1)
        _check_day("expiring.on", self.on)

    def texts(self, points_label: Texts, wording: Wording) -> Texts:
        """The line in every language, ``points_label`` being the program's word for points
        per language: ``120 Points expire on 31 Dec 2026``."""
        return tuple(
            translate(wording, language, EXPIRY_LINE)
            .replace("{points_label}", label)
            .replace("{points}", format_points(self.points, language))
            .replace("{date}", long_date(self.on, language))
            for language, label in zip(LANGUAGES, points_label, strict=True)
        )
