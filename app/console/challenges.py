"""The console's "Challenges" page: a program's challenges (add, edit, retire).

Thin views over :mod:`app.loyalty.challenges` (the service the API uses): plain forms that
post and redirect back; a retirement is confirmed on a page of its own, as a reward's is.
"""

from __future__ import annotations

from typing import Any

from flask import redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import Field, IntegerField, SelectField, StringField
from wtforms.validators import InputRequired, Length, NumberRange, Optional

from app.console import pages
from app.console.pages import console_page
from app.console.rewards import plain_text
from app.errors import DomainError
from app.loyalty import challenges
from app.loyalty.ledger import MAX_POINTS
from app.loyalty.models import Challenge, ChallengeKind, Program
from app.web.pagekit import PageForm

pages.section(_l("Challenges"), "console.challenges", pages=(
    "console.create_challenge", "console.edit_challenge", "console.retire_challenge"))

KIND_LABELS = {
    ChallengeKind.VISITS: _l("Visits (purchases and rewards at the till)"),
    ChallengeKind.REWARDS: _l("Different rewards redeemed"),
    ChallengeKind.LOCATIONS: _l("Different locations visited"),
}
# The languages a challenge's name is translated into on the form (the name itself is the
# one every language falls back on).
TRANSLATED = (("id", _l("Name in Bahasa Indonesia")), ("th", _l("Name in Thai")),
              ("ms", _l("Name in Bahasa Melayu")))


def _translation(label: Any) -> StringField:
    return StringField(label, validators=[Optional(), Length(max=challenges.NAME_LENGTH),
                                          plain_text])


class ChallengeForm(PageForm):
    kind = SelectField(_l("What members do"),
                       choices=[(k.value, label) for k, label in KIND_LABELS.items()],
                       validators=[InputRequired()])
    name = StringField(_l("Name"), validators=[
        InputRequired(_l("Please enter a name.")), Length(max=challenges.NAME_LENGTH),
        plain_text])
    name_id = _translation(TRANSLATED[0][1])
    name_th = _translation(TRANSLATED[1][1])
    name_ms = _translation(TRANSLATED[2][1])
    target = IntegerField(_l("How many"), validators=[
        InputRequired(_l("Please enter a number.")), NumberRange(1, challenges.MAX_TARGET)])
    window_days = IntegerField(_l("Within this many days (empty: ever)"), validators=[
        Optional(), NumberRange(1, challenges.MAX_WINDOW_DAYS)])
    bonus_points = IntegerField(_l("Bonus points with the badge (empty: none)"), validators=[
        Optional(), NumberRange(1, MAX_POINTS)])

    def values(self) -> dict[str, Any]:
        """What the form says, as the service takes it."""
        return {"name": (self.name.data or "").strip(),
                "texts": {lang: getattr(self, f"name_{lang}").data or None
                          for lang, _label in TRANSLATED},
                "target": self.target.data, "window_days": self.window_days.data,
                "bonus_points": self.bonus_points.data}


class ConfirmForm(PageForm):
    """A button that changes something: the CSRF token only."""


def _form_of(challenge: Challenge) -> ChallengeForm:
    texts = challenge.texts or {}
    form = ChallengeForm(formdata=None, prefix=f"challenge-{challenge.id}-", data={
        "kind": challenge.kind.value, "name": challenge.name, "target": challenge.target,
        "window_days": challenge.window_days, "bonus_points": challenge.bonus_points,
        **{f"name_{lang}": texts.get(lang) for lang, _label in TRANSLATED}})
    del form["kind"]  # a challenge keeps its kind
    return form


def _page(program: Program, status: int = 200, *, new: ChallengeForm | None = None,
          edits: dict[int, ChallengeForm] | None = None,
          problem: str | None = None) -> tuple[str, int]:
    listed = challenges.list_challenges(program)
    live = [c for c in listed if c.retired_at is None]
    return render_template(
        "console/challenges.html", live=live,
        retired=[c for c in listed if c.retired_at is not None],
        forms={c.id: (edits or {}).get(c.id) or _form_of(c) for c in live},
        earned={c.id: challenges.earned_count(c) for c in listed},
        kind_labels=KIND_LABELS, translated=TRANSLATED,
        new=new or ChallengeForm(prefix="new-", formdata=None), problem=problem), status


def _service_errors(form: ChallengeForm, error: DomainError) -> None:
    """Put a refusal of the service on the fields it names."""
    placed = False
    for problem in error.extra.get("errors") or []:
        name = str(problem.get("field", "")).replace("texts.", "name_")
        field = getattr(form, name, None)
        if isinstance(field, Field):
            field.errors = [*field.errors, problem.get("message", "")]
            placed = True
    if not placed:
        form.form_errors.append(error.detail)


def _back(program: Program, anchor: str = "") -> ResponseReturnValue:
    return redirect(url_for("console.challenges", program_id=program.id) + anchor, 303)


def _refusal(program: Program, challenge_id: int) -> tuple[str, int] | None:
    """The page again, saying why, when the challenge is not one this program can change:
    404 when it has none such, 409 when it is retired."""
    try:
        challenge = challenges.get(program, challenge_id)
    except DomainError:
        challenge = None
    if challenge is not None and challenge.retired_at is None:
        return None
    return _page(program, 404 if challenge is None else 409,
                 problem=_("That challenge is retired or gone."))


@pages.bp.get("/programs/<int:program_id>/challenges", endpoint="challenges")
@console_page
def challenges_page(program: Program) -> ResponseReturnValue:
    return _page(program)


@pages.bp.post("/programs/<int:program_id>/challenges")
@console_page
def create_challenge(program: Program) -> ResponseReturnValue:
    form = ChallengeForm(prefix="new-")
    if not form.validate():
        return _page(program, 422, new=form)
    try:
        challenge = challenges.create(program, kind=ChallengeKind(form.kind.data),
                                      **form.values())
    except DomainError as error:
        _service_errors(form, error)
        return _page(program, 422, new=form)
    return _back(program, f"#challenge-{challenge.id}")


@pages.bp.post("/programs/<int:program_id>/challenges/<int:challenge_id>")
@console_page
def edit_challenge(program: Program, challenge_id: int) -> ResponseReturnValue:
    if refused := _refusal(program, challenge_id):
        return refused
    form = ChallengeForm(prefix=f"challenge-{challenge_id}-")
    del form["kind"]
    if not form.validate():
        return _page(program, 422, edits={challenge_id: form})
    try:
        challenges.update_challenge(program, challenge_id, **form.values())
    except DomainError as error:
        _service_errors(form, error)
        return _page(program, 422, edits={challenge_id: form})
    return _back(program, f"#challenge-{challenge_id}")


@pages.bp.route("/programs/<int:program_id>/challenges/<int:challenge_id>/retire",
                methods=["GET", "POST"])
@console_page
def retire_challenge(program: Program, challenge_id: int) -> ResponseReturnValue:
    if refused := _refusal(program, challenge_id):
        return refused
    challenge = challenges.get(program, challenge_id)
    form = ConfirmForm()
    if request.method == "GET" or not form.validate():
        return render_template("console/retire_challenge.html", challenge=challenge,
                               form=form), (200 if request.method == "GET" else 422)
    challenges.retire(program, challenge_id)
    return _back(program, "#retired")
