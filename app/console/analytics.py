"""The console's Analytics section: a program's dashboard (issue 18).

The figures and series are :func:`app.analytics.stats.compute`'s, the function behind
``GET /api/v1/programs/<id>/stats``, so the page and the API never disagree; this module only
reads the date-range form, formats what ``compute`` answers (Babel, in the page's language,
the program's currency and time zone) and lays out the charts' data. The range form is a plain
GET form (it changes nothing, so it needs no CSRF token and works without JavaScript); the
charts are drawn by ``static/console/analytics.js`` with the vendored uPlot from a JSON block
on the page, and each has its data table for those who cannot see it.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta
from typing import Any

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal, format_percent
from flask import Response, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from werkzeug.datastructures import MultiDict
from wtforms import DateField, SelectField
from wtforms.validators import Optional, ValidationError

from app import timeutil
from app.analytics import stats
from app.console import pages
from app.console.pages import bp, console_page
from app.loyalty import programs
from app.loyalty.balances import program_zone
from app.loyalty.models import CURRENCIES, Program
from app.problems import problem
from app.web.pagekit import PageForm

pages.section(_l("Analytics"), "console.analytics")

# As the stats API: a longer range is refused (it would be slow and unreadable as a chart).
MAX_RANGE_DAYS = 400
# Days a date input may hold: a later one could not be turned into the moment after it.
FIRST_DAY, LAST_DAY = date(1970, 1, 1), date(9998, 12, 31)


class Day(DateField):
    """A day typed as YYYY-MM-DD (a browser's date input), with a message that says so."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        try:
            super().process_formdata(valuelist)
        except ValueError:
            self.data = None
            raise ValueError(_("Please enter a day as YYYY-MM-DD.")) from None


class RangeForm(PageForm):
    """The dashboard's range: its first and last day, both included (local days of the
    program), and whether the series count by day or by week. Read from the query string
    (``first``, ``last``, ``interval``)."""

    class Meta(PageForm.Meta):
        csrf = False  # a GET form: it changes nothing, and a token would land in the URL

    first = Day(_l("First day"), validators=[Optional()])
    last = Day(_l("Last day"), validators=[Optional()])
    interval = SelectField(_l("Group by"), default="day",
                           choices=[("day", _l("Day")), ("week", _l("Week"))])

    def validate_first(self, field: Day) -> None:
        _in_bounds(field)

    def validate_last(self, field: Day) -> None:
        _in_bounds(field)
        if field.data and self.first.data:
            if field.data < self.first.data:
                raise ValidationError(_l("The last day must not be before the first."))
            if (field.data - self.first.data).days + 1 > MAX_RANGE_DAYS:
                raise ValidationError(_("Choose at most %(days)d days.", days=MAX_RANGE_DAYS))

    def messages(self) -> dict[str, list[str]]:
        """Each field's errors (and the form's, under "range"), by query-string name."""
        found = {field.name: [str(m) for m in field.errors] for field in self if field.errors}
        if self.form_errors:
            found["range"] = [str(m) for m in self.form_errors]
        return found


def _in_bounds(field: Day) -> None:
    if field.data and not FIRST_DAY <= field.data <= LAST_DAY:
        raise ValidationError(_l("Choose a day between %(first)s and %(last)s.",
                                 first=FIRST_DAY.isoformat(), last=LAST_DAY.isoformat()))


def _compute(program: Program) -> tuple[RangeForm, dict[str, Any] | None]:
    """The form, filled from the query string (no last day: up to now; no first day: the
    30 days up to the last, as the API's defaults), and ``compute``'s answer for its range:
    None when the form is invalid or the stats refuse the range (a first day after today:
    the form says why)."""
    # Only the range's own arguments: ?lang= alone is the default range.
    asked = {name: request.args.getlist(name)[:1] for name in ("first", "last", "interval")
             if name in request.args}
    form = RangeForm(formdata=MultiDict({k: v[0][:40] for k, v in asked.items()})
                     if asked else None)
    default_start, default_end = stats.default_range(program, timeutil.now())
    zone = program_zone(program.time_zone)
    if not asked:
        form.first.data = default_start.astimezone(zone).date()
        form.last.data = default_end.astimezone(zone).date()
        form.interval.data = "day"
        start, end = default_start, default_end
    elif not form.validate():
        return form, None
    else:
        end = datetime.combine(form.last.data + timedelta(days=1), time(), zone) \
            if form.last.data else default_end
        # Without a first day, the 30 days up to the last (as the API without `from`).
        start = datetime.combine(form.first.data, time(), zone) if form.first.data \
            else stats.default_range(program, end)[0]
        form.first.data = start.astimezone(zone).date()
        form.last.data = (end - timedelta(microseconds=1)).astimezone(zone).date()
        # One day given against the other's default: check the pair again.
        if end <= start:
            form.last.errors = [*form.last.errors,
                                _("The last day must not be before the first.")]
            return form, None
        if end - start > timedelta(days=MAX_RANGE_DAYS):
            form.last.errors = [*form.last.errors,
                                _("Choose at most %(days)d days.", days=MAX_RANGE_DAYS)]
            return form, None
    try:
        return form, stats.compute(program, start, end, form.interval.data or "day")
    except stats.BadRange:
        # The form checked the days and their order; what is left is a range after today.
        form.form_errors.append(_("The range must start today or earlier."))
        return form, None


def _query(form: RangeForm) -> dict[str, str]:
    """The range as a query string's arguments (the CSV link)."""
    return {"first": form.first.data.isoformat() if form.first.data else "",
            "last": form.last.data.isoformat() if form.last.data else "",
            "interval": form.interval.data or "day"}


# --- The page ---------------------------------------------------------------------------------


@bp.get("/analytics")
@console_page
def analytics_home() -> ResponseReturnValue:
    """``/console/analytics``: the dashboard of the first program this account reaches."""
    reachable = programs.reachable_programs()
    if not reachable:
        return redirect(url_for("console.index"), 303)
    return redirect(url_for("console.analytics", program_id=reachable[0].id,
                            **request.args.to_dict()), 303)


@bp.get("/programs/<int:program_id>/analytics")
@console_page
def analytics(program: Program) -> ResponseReturnValue:
    form, found = _compute(program)
    if found is None:
        return render_template("console/analytics.html", form=form, stats=None), 422
    return render_template("console/analytics.html", form=form, stats=found,
                           view=Dashboard(program, found),
                           csv_url=url_for("console.analytics_csv", program_id=program.id,
                                           **_query(form)))


@bp.get("/programs/<int:program_id>/analytics.csv")
@console_page
def analytics_csv(program: Program) -> ResponseReturnValue:
    """The series as CSV, as ``GET /api/v1/programs/<id>/stats.csv`` answers them (the
    console signs in with its session, the API with a key)."""
    form, found = _compute(program)
    if found is None:
        messages = form.messages()
        return problem(422, code="invalid-range", title="Invalid range",
                       detail=" ".join(m for ms in messages.values() for m in ms),
                       errors=[{"location": "query", "field": name, "message": message}
                               for name, field_messages in messages.items()
                               for message in field_messages])
    query = _query(form)
    return Response(series_csv(found), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{program.slug}-stats-'
                               f'{query["first"]}-{query["last"]}.csv"'})


def series_csv(found: dict[str, Any]) -> str:
    """The series of ``compute``'s answer as CSV, as the API writes them: a ``period``
    column (each period's first local day), then the series in ``stats.SERIES``' order."""
    series = found["series"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period", *stats.SERIES])
    for index, period in enumerate(series["periods"]):
        writer.writerow([period, *("" if series[name][index] is None else series[name][index]
                                   for name in stats.SERIES)])
    return out.getvalue()


# --- What the page shows ----------------------------------------------------------------------

# How a figure is shown: a count, points, money (minor units), a ratio (0..1), a score
# (NPS, -100..100), or a plain number with decimals (visits per member).
COUNT, POINTS, MONEY, RATIO, SCORE, NUMBER = "count", "points", "money", "ratio", "score", \
    "number"

# The headline figures, in groups: (key in "figures", label, how it is shown).
FIGURE_GROUPS: list[tuple[Any, list[tuple[str, Any, str]]]] = [
    (_l("Members"), [
        ("members", _l("Members"), COUNT),
        ("new_members", _l("New members"), COUNT),
        ("active_members_30d", _l("Active in the last 30 days"), COUNT),
        ("active_members_90d", _l("Active in the last 90 days"), COUNT),
        ("churn_rate", _l("Churn"), RATIO),
        ("churned_members", _l("Members lost"), COUNT),
    ]),
    (_l("Points"), [
        ("points_issued", _l("Points issued"), POINTS),
        ("points_redeemed", _l("Points redeemed"), POINTS),
        ("points_expired", _l("Points expired"), POINTS),
        ("points_clawed_back", _l("Points clawed back"), POINTS),
        ("liability_points", _l("Outstanding points"), POINTS),
        ("liability_money", _l("Outstanding points' value"), MONEY),
        ("expiring_30d_points", _l("Expiring in the next 30 days"), POINTS),
        ("expiring_90d_points", _l("Expiring in the next 90 days"), POINTS),
        ("redemption_rate_points", _l("Points redeemed of points issued"), RATIO),
        ("redemption_rate_members", _l("Active members who redeemed"), RATIO),
    ]),
    (_l("Purchases"), [
        ("purchases", _l("Purchases"), COUNT),
        ("purchase_amount", _l("Purchase amount"), MONEY),
        ("average_purchase", _l("Average purchase"), MONEY),
        ("median_purchase", _l("Median purchase"), MONEY),
        ("repeat_purchase_rate", _l("Repeat-purchase rate"), RATIO),
        ("visits_per_member", _l("Visits per member"), NUMBER),
        ("customer_lifetime_value", _l("Customer lifetime value"), MONEY),
    ]),
    (_l("Feedback"), [
        ("nps", _l("Net Promoter Score"), SCORE),
        ("nps_responses", _l("Responses"), COUNT),
    ]),
    (_l("Wallets"), [
        ("apple_installs", _l("Apple Wallet: added"), COUNT),
        ("apple_removals", _l("Apple Wallet: removed"), COUNT),
        ("apple_installed_now", _l("Apple Wallet: on phones now"), COUNT),
        ("google_installs", _l("Google Wallet: saved"), COUNT),
        ("google_removals", _l("Google Wallet: removed"), COUNT),
        ("google_installed_now", _l("Google Wallet: saved now"), COUNT),
    ]),
]

# The charts: (id, title, how the values are shown, series keys with their labels).
CHARTS: list[tuple[str, Any, str, list[tuple[str, Any]]]] = [
    ("members", _l("Members"), COUNT, [
        ("new_members", _l("New members")), ("active_members", _l("Active members"))]),
    ("points", _l("Points"), POINTS, [
        ("points_issued", _l("Issued")), ("points_redeemed", _l("Redeemed")),
        ("points_expired", _l("Expired")), ("points_clawed_back", _l("Clawed back"))]),
    ("purchases", _l("Purchases"), COUNT, [("purchases", _l("Purchases"))]),
    ("purchase_amount", _l("Purchase amount"), MONEY, [
        ("purchase_amount", _l("Purchase amount"))]),
    ("wallets", _l("Wallets"), COUNT, [
        ("apple_installs", _l("Apple Wallet: added")),
        ("apple_removals", _l("Apple Wallet: removed")),
        ("google_installs", _l("Google Wallet: saved")),
        ("google_removals", _l("Google Wallet: removed"))]),
    ("nps", _l("Net Promoter Score"), SCORE, [("nps", _l("Net Promoter Score"))]),
]


class Dashboard:
    """``compute``'s answer made ready to show: formatted figures and changes, the charts'
    data (for the script and for the tables) and the tables' rows."""

    def __init__(self, program: Program, found: dict[str, Any]) -> None:
        self.program = program
        self.found = found
        self.locale = str(get_locale() or "en")
        self.zone = program_zone(program.time_zone)
        self.exponent = CURRENCIES.get(program.currency, 2)
        self._charts: list[dict[str, Any]] | None = None

    # Formatting, in the page's language.

    def show(self, value: float | None, kind: str) -> str:
        """A value as the page shows it; an undefined one (no denominator, no value of
        points set) as a dash."""
        if value is None:
            return "–"
        if kind == MONEY:
            return format_currency(value / 10 ** self.exponent, self.program.currency,
                                   locale=self.locale)
        if kind == RATIO:
            return format_percent(value, "#,##0.0%", locale=self.locale)
        if kind == SCORE:
            return format_decimal(value, "#,##0.0", locale=self.locale)
        if kind == NUMBER:
            return format_decimal(value, "#,##0.00", locale=self.locale)
        return format_decimal(value, locale=self.locale)

    def change(self, value: float | None, previous: float | None, kind: str) -> dict[str, Any]:
        """The change against the previous period: its direction ("up", "down", "same" or
        None when either is undefined) and its text (a difference in the figure's unit,
        percentage points for a ratio; with the relative change for counts and money)."""
        if value is None or previous is None:
            return {"direction": None, "text": ""}
        difference = value - previous
        direction = "up" if difference > 0 else "down" if difference < 0 else "same"
        sign = "+" if difference > 0 else "−" if difference < 0 else "±"
        if kind == RATIO:
            text = _("%(difference)s percentage points", difference=sign + format_decimal(
                abs(difference) * 100, "#,##0.0", locale=self.locale))
        else:
            text = sign + self.show(abs(difference), kind)
            if kind in (COUNT, POINTS, MONEY) and previous:
                text += " (" + sign + format_percent(abs(difference) / abs(previous),
                                                     "#,##0%", locale=self.locale) + ")"
        return {"direction": direction, "text": text}

    def moment(self, value: str | datetime | None) -> str:
        """A time in the program's time zone, in the page's language."""
        if not value:
            return ""
        when = datetime.fromisoformat(value) if isinstance(value, str) else value
        return format_datetime(when, "medium", tzinfo=self.zone, locale=self.locale)

    def days(self, span: dict[str, str]) -> dict[str, str]:
        """A range (``from``, ``to``: aware times) as its first and last day in the program's
        time zone, in the page's language: the end is the moment after the last day."""
        first = datetime.fromisoformat(span["from"]).astimezone(self.zone)
        last = (datetime.fromisoformat(span["to"]) - timedelta(microseconds=1)) \
            .astimezone(self.zone)
        return {"first": format_date(first, "medium", locale=self.locale),
                "last": format_date(last, "medium", locale=self.locale)}

    # What the template loops over.

    def groups(self) -> list[dict[str, Any]]:
        figures = self.found["figures"]
        shown = []
        for title, members in FIGURE_GROUPS:
            items = []
            for key, label, kind in members:
                figure = figures.get(key)
                if figure is None:
                    continue
                items.append({"key": key, "label": label,
                              "value": self.show(figure["value"], kind),
                              "previous": self.show(figure["previous"], kind),
                              "change": self.change(figure["value"], figure["previous"], kind)})
            shown.append({"title": title, "figures": items})
        return shown

    def period_label(self, period: str) -> str:
        day = date.fromisoformat(period)
        shown = format_date(day, "medium", locale=self.locale)
        if self.found.get("interval") == "week":
            return _("Week of %(day)s", day=shown)
        return shown

    def charts(self) -> list[dict[str, Any]]:
        """Each chart's title, series (labels, raw values for the script, formatted values
        for its table) and the periods' labels (made once: the tables and the script's
        block both read them)."""
        if self._charts is None:
            self._charts = self._make_charts()
        return self._charts

    def _make_charts(self) -> list[dict[str, Any]]:
        series = self.found["series"]
        labels = [self.period_label(p) for p in series["periods"]]
        charts = []
        for chart_id, title, kind, keys in CHARTS:
            lines = []
            for key, label in keys:
                values = series.get(key)
                if values is None:
                    continue
                # Money goes to the script in the currency's main unit (what its axis shows).
                plotted = [None if v is None else (v / 10 ** self.exponent if kind == MONEY
                                                   else v) for v in values]
                lines.append({"key": key, "label": str(label), "values": plotted,
                              "shown": [self.show(v, kind) for v in values]})
            if lines:
                charts.append({"id": chart_id, "title": str(title), "kind": kind,
                               "labels": labels, "series": lines})
        return charts

    def chart_data(self) -> dict[str, Any]:
        """What ``analytics.js`` reads from the page's JSON block."""
        return {"locale": self.locale, "currency": self.program.currency,
                "period_label": _("Period"),
                "charts": [{"id": c["id"], "kind": c["kind"], "labels": c["labels"],
                            "series": [{"label": s["label"], "values": s["values"]}
                                       for s in c["series"]]}
                           for c in self.charts()]}

    def rule_rows(self) -> list[dict[str, Any]]:
        return [{"name": row.get("name") or _("Rule %(id)s", id=row.get("rule_id")),
                 "points": self.show(row.get("points"), POINTS)}
                for row in self.found.get("points_issued_by_rule", [])]

    def kind_rows(self) -> list[dict[str, Any]]:
        names = {"earn": _("Earned on purchases"), "bonus": _("Bonuses"),
                 "adjust": _("Adjustments"), "reverse": _("Reversals")}
        return [{"name": names.get(kind, kind), "points": self.show(points, POINTS)}
                for kind, points in self.found.get("points_issued_by_kind", {}).items()]

    def location_rows(self) -> list[dict[str, Any]]:
        return [{"name": row.get("name") or "", "nps": self.show(row.get("nps"), SCORE),
                 **{k: self.show(row.get(k), COUNT)
                    for k in ("responses", "promoters", "passives", "detractors")}}
                for row in self.found.get("nps_by_location", [])]

    def campaign_rows(self) -> list[dict[str, Any]]:
        """The campaigns started in the range: what was sent, and redemptions and visits
        since, of the campaign group against the holdout group."""
        rows = []
        for row in self.found.get("campaigns", []):
            results = [(label, self.show(row.get(key), COUNT)) for key, label in
                       CAMPAIGN_RESULTS if key in row]
            for key, label in CAMPAIGN_GROUPS:
                ours, held = row.get("campaign_group") or {}, row.get("holdout_group") or {}
                if key in ours:
                    results.append((label, _("%(campaign)s (holdout: %(holdout)s)",
                                             campaign=self.show(ours.get(key), COUNT),
                                             holdout=self.show(held.get(key), COUNT))))
            rows.append({"id": row.get("id"), "name": row.get("name") or "",
                         "status": row.get("status"), "sent_at": self.moment(row.get("sent_at")),
                         "results": results})
        return rows


# A campaign's results the list shows (app.campaigns.service.Results).
CAMPAIGN_RESULTS: list[tuple[str, Any]] = [
    ("recipients", _l("Recipients")),
    ("held_out", _l("Held out")),
    ("devices_reached", _l("Devices reached")),
]
CAMPAIGN_GROUPS: list[tuple[str, Any]] = [
    ("redemptions", _l("Redemptions since")),
    ("visits", _l("Visits since")),
]
