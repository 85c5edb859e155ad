"""The stats API: a program's figures and series (docs/metrics.md), as JSON and as CSV."""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime, time
from typing import Any
from zoneinfo import ZoneInfo

from apiflask import APIBlueprint, fields, validators
from apiflask.schemas import FileSchema, Schema
from flask import Response
from marshmallow import ValidationError

from app.analytics import stats
from app.auth.security import auth
from app.errors import Unprocessable
from app.loyalty import programs
from app.loyalty.models import Program
from app.schemas import InputSchema
from app.timeutil import now as clock_now

bp = APIBlueprint("analytics", __name__, url_prefix="/api/v1", tag="Analytics")

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class DateOrDateTime(fields.String):
    """An ISO 8601 date (a local midnight) or date and time (with an offset; without one,
    the program's local time)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        text = super()._deserialize(value, attr, data, **kwargs)
        if len(text) > 40:
            raise ValidationError("Longer than 40 characters.")
        try:
            if _DATE.match(text):
                value = date.fromisoformat(text)
            elif "T" not in text and " " not in text:
                raise ValueError
            else:
                value = datetime.fromisoformat(text)
        except ValueError as error:
            raise ValidationError("Not an ISO 8601 date or date and time.") from error
        if not 1970 <= value.year <= 2999:
            raise ValidationError("Give a year from 1970 to 2999.")
        return value


class StatsQuery(InputSchema):
    from_ = DateOrDateTime(data_key="from", metadata={"maxLength": 40,
        "description": "start (included): a date (its local midnight) or a date and time, "
        "moved back to its local midnight; default: the local midnight 30 days before the day "
        "of `to`",
        "example": "2026-10-30"})
    to = DateOrDateTime(metadata={"maxLength": 40,
        "description": "end (excluded): a date (its local midnight) or a date and time, "
        "moved on to the next local midnight, and never later than now; default: now",
        "example": "2026-11-29T13:05:00+07:00"})
    interval = fields.String(load_default="day", validate=validators.OneOf(stats.INTERVALS),
                             metadata={"description": "the series' periods: `day` (default) "
                                       "or `week` (7 days from `from`)"})


class FigureOut(Schema):
    value = fields.Raw(allow_none=True, metadata={
        "type": "number", "description": "in the range (null: not defined)"})
    previous = fields.Raw(allow_none=True, metadata={
        "type": "number", "description": "in the previous range (null: not defined, or a "
        "figure of what the tables hold now)"})


FIGURE_NAMES = (
    "members", "new_members", "apple_installs", "apple_removals", "apple_installed_now",
    "google_installs", "google_removals", "google_installed_now", "active_members_30d",
    "active_members_90d", "points_issued", "points_redeemed", "points_expired",
    "points_clawed_back", "liability_points", "liability_money", "expiring_30d_points",
    "expiring_90d_points", "redemption_rate_points", "redemption_rate_members",
    "repeat_purchase_rate", "churn_rate", "churned_members", "purchases", "purchase_amount",
    "average_purchase", "median_purchase", "visits_per_member", "customer_lifetime_value",
    "nps", "nps_responses", "active_members", "members_redeemed", "purchasers", "visits")

FiguresOut = Schema.from_dict(
    {name: fields.Nested(FigureOut, metadata={"description": f"docs/metrics.md: `{name}`"})
     for name in FIGURE_NAMES}, name="FiguresOut")


class PeriodOut(Schema):
    from_ = fields.String(data_key="from", attribute="from",
                          metadata={"description": "aware date and time"})
    to = fields.String()


class IssuedByKindOut(Schema):
    earn = fields.Integer()
    bonus = fields.Integer()
    adjust = fields.Integer(metadata={"description": "positive adjustments"})
    reverse = fields.Integer(metadata={"description": "reversals of spends (points back)"})


class RulePointsOut(Schema):
    rule_id = fields.Integer()
    name = fields.String(allow_none=True)
    points = fields.Integer()


class LocationNpsOut(Schema):
    location_id = fields.Integer(allow_none=True, metadata={
        "description": "null: answers to visits at no location"})
    name = fields.String(allow_none=True)
    nps = fields.Float(allow_none=True)
    responses = fields.Integer()
    promoters = fields.Integer()
    passives = fields.Integer()
    detractors = fields.Integer()


SeriesOut = Schema.from_dict(
    {"periods": fields.List(fields.String(), metadata={
        "description": "the local start day of each period"}),
     **{name: fields.List(fields.Raw(allow_none=True, metadata={"type": "number"}),
                          metadata={"description": f"docs/metrics.md: `{name}` per period"})
        for name in stats.SERIES}}, name="SeriesOut")


class StatsOut(Schema):
    program_id = fields.Integer()
    time_zone = fields.String()
    currency = fields.String()
    from_ = fields.String(data_key="from", attribute="from", metadata={
        "description": "the range's start as applied (a local midnight)"})
    to = fields.String(metadata={"description": "the range's end as applied"})
    interval = fields.String()
    previous = fields.Nested(PeriodOut, metadata={
        "description": "the previous range: as many whole days before `from`"})
    figures = fields.Nested(FiguresOut)
    points_issued_by_kind = fields.Nested(IssuedByKindOut)
    points_issued_by_rule = fields.List(fields.Nested(RulePointsOut))
    nps_by_location = fields.List(fields.Nested(LocationNpsOut))
    campaigns = fields.List(fields.Dict(), metadata={
        "description": "campaigns started in the range, with their results"})
    series = fields.Nested(SeriesOut)


RANGE_RULES = (
    "Days are the program's local days (its `time_zone`). `from` and `to` are dates or "
    "dates and times; the range is whole local days, the last one up to now at most. A "
    "range longer than 400 days, `from` not before `to`, or a range starting after now is "
    "422. Definitions of every figure: docs/metrics.md.")


def _instant(value: date | datetime | None, tz: ZoneInfo) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    return datetime.combine(value, time(0), tzinfo=tz)


def _figures(program: Program, query: dict[str, Any]) -> dict[str, Any]:
    tz = ZoneInfo(program.time_zone)
    end = _instant(query.get("to"), tz) or clock_now()
    # Without `from`: the 30 days before `to` (the last 30 days up to now by default).
    start = _instant(query.get("from_"), tz) or stats.default_range(program, end)[0]
    try:
        return stats.compute(program, start, end, query["interval"])
    except stats.BadRange as error:
        raise Unprocessable(str(error), errors=[
            {"location": "query", "field": "from", "message": str(error)}]) from error


@bp.get("/programs/<int:program_id>/stats")
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.input(StatsQuery, location="query", arg_name="query")
@bp.output(StatsOut)
@bp.doc(summary="A program's figures and series for a range of days",
        description=RANGE_RULES, responses=[401, 403, 404, 422])
def program_stats(program_id: int, query: dict[str, Any]) -> dict[str, Any]:
    return _figures(programs.get(program_id), query)


@bp.get("/programs/<int:program_id>/stats.csv")
@bp.auth_required(auth, roles=["admin", "marketer"])
@bp.input(StatsQuery, location="query", arg_name="query")
@bp.output(FileSchema(type="string", format="binary"), content_type="text/csv")
@bp.doc(summary="A program's series as CSV",
        description="One row per period: `period` (its local start day), then the series of "
        "`GET /programs/{id}/stats` in its order. " + RANGE_RULES,
        responses=[401, 403, 404, 422])
def program_stats_csv(program_id: int, query: dict[str, Any]) -> Response:
    program = programs.get(program_id)
    series = _figures(program, query)["series"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["period", *stats.SERIES])
    for i, period in enumerate(series["periods"]):
        writer.writerow([period, *("" if series[name][i] is None else series[name][i]
                                   for name in stats.SERIES)])
    filename = f"{program.slug}-stats-{series['periods'][0] if series['periods'] else ''}.csv"
    return Response(out.getvalue(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="{filename}"'})
