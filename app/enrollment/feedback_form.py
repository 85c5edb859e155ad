"""The feedback page's form: one score from 0 to 10 and an optional comment. Every message
is ours and translated, so errors read in the page's language."""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import Field, Form, RadioField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import Length, ValidationError

from app.feedback.service import MAX_COMMENT, MAX_SCORE, MIN_SCORE
from app.schemas import invisible_character
from app.web.pagekit import PageForm


def _score(value: Any) -> int | None:
    """A posted score as an integer; None for anything that is not one (``"7.5"``, ``"x"``),
    which the field's validator then refuses with our message."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 2:
        return int(value)
    return None


def _score_in_range(form: Form, field: Field) -> None:
    if not isinstance(field.data, int) or not MIN_SCORE <= field.data <= MAX_SCORE:
        raise ValidationError(_("Please choose a number from 0 to 10."))


def _plain_text(form: Form, field: Field) -> None:
    found = invisible_character(field.data) if isinstance(field.data, str) else None
    if found or (isinstance(field.data, str) and "\x00" in field.data):
        raise ValidationError(_("Please remove the invisible character %(code)s.",
                                code=found or "U+0000"))


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class FeedbackForm(PageForm):
    """How likely the member is to recommend the program (0-10), and what they add."""

    score = RadioField(
        _l("How likely are you to recommend us to a friend?"),
        choices=[SelectChoice(n, str(n)) for n in range(MIN_SCORE, MAX_SCORE + 1)],
        coerce=_score,
        validate_choice=False,  # our own message, in the page's language
        validators=[_score_in_range],
    )
    comment = TextAreaField(
        _l("Anything you would like to tell us? (optional)"),
        filters=[_strip],
        validators=[Length(max=MAX_COMMENT,
                           message=_l("Please use at most 1000 characters.")), _plain_text],
    )
