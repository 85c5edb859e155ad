"""The console's "Feedback" page: the program's in-card feedback settings, its Net Promoter
Score over the last 30 days (overall and per location) and the answers, newest first.

Thin views over :mod:`app.feedback.service` (the answers and the NPS) and
:func:`app.loyalty.programs.update_settings` (the settings, as ``PATCH
/api/v1/programs/<id>`` changes them, recorded in the audit trail as ``program.settings``).
"""

from __future__ import annotations

from datetime import timedelta

from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, IntegerField
from wtforms.validators import NumberRange, Optional

from app import timeutil
from app.console import pages
from app.console.pages import console_page
from app.feedback import service
from app.loyalty import programs
from app.loyalty.models import Program
from app.web.pagekit import PageForm

pages.section(_l("Feedback"), "console.feedback", pages=("console.feedback_settings",))

PAGE_SIZE = 25
NPS_DAYS = 30


class FeedbackSettingsForm(PageForm):
    every_days = IntegerField(
        _l("Ask after a visit at most once every (days)"),
        description=_l("Leave it empty to ask nothing. Members are asked after a visit at a "
                       "location; each question can be answered for 7 days."),
        validators=[Optional(), NumberRange(1, 365, message=_l(
            "Please enter a number of days from 1 to 365."))])
    lock_screen = BooleanField(_l("Also say it on the lock screen (Apple Wallet)"))


def _page_number() -> int:
    value = request.args.get("page", "")
    return int(value) if value.isdigit() and 0 < int(value) < 100_000 else 1


def _feedback_page(program: Program, form: FeedbackSettingsForm,
                   status: int = 200) -> tuple[str, int]:
    end = timeutil.now()
    start = end - timedelta(days=NPS_DAYS)
    page = _page_number()
    answers, more = service.answers(program.id, page=page, per_page=PAGE_SIZE)
    return render_template(
        "console/feedback.html", form=form, nps_days=NPS_DAYS,
        overall=service.nps(program.id, start, end),
        by_location=service.nps_by_location(program.id, start, end),
        answers=answers, page=page, more=more,
        saved=request.args.get("saved") == "1"), status


@pages.bp.get("/programs/<int:program_id>/feedback", endpoint="feedback")
@console_page
def feedback_page(program: Program) -> ResponseReturnValue:
    form = FeedbackSettingsForm(formdata=None, data={
        "every_days": program.feedback_every_days,
        "lock_screen": program.feedback_lock_screen})
    return _feedback_page(program, form)


@pages.bp.post("/programs/<int:program_id>/feedback/settings", endpoint="feedback_settings")
@console_page
def feedback_settings(program: Program) -> ResponseReturnValue:
    form = FeedbackSettingsForm()
    if not form.validate():
        return _feedback_page(program, form, 422)
    programs.update_settings(program, feedback_every_days=form.every_days.data,
                             feedback_lock_screen=bool(form.lock_screen.data))
    return redirect(url_for("console.feedback", program_id=program.id, saved=1), 303)
