"""The join form. Every message is ours and translated, so errors read in the page's language."""

from __future__ import annotations

from typing import Any

from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms import BooleanField, EmailField, Field, Form, SelectField, StringField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import AnyOf, DataRequired, Length, Optional, Regexp, ValidationError

from app.schemas import invisible_character
from app.web.pagekit import PageForm
from passes.languages import LANGUAGES


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _code(value: Any) -> Any:
    # Codes are read aloud and typed on phones: accept "abcd 2345" for "ABCD2345".
    return "".join(value.split()).upper() if isinstance(value, str) else value


def _none_if_empty(value: Any) -> Any:
    return value or None


def _plain_text(form: Form, field: Field) -> None:
    """Refuse invisible and direction-changing characters (as the API does: a name with
    U+202E would read backwards on the card), naming the first one found."""
    found = invisible_character(field.data) if isinstance(field.data, str) else None
    if found:
        raise ValidationError(_("Please remove the invisible character %(code)s.", code=found))


class JoinForm(PageForm):
    """Name, optional e-mail, language, optional referral code and the two consents."""

    name = StringField(
        _l("Your name"),
        filters=[_strip],
        validators=[DataRequired(_l("Please enter your name.")),
                    Length(max=120, message=_l("Please use at most 120 characters.")),
                    _plain_text],
    )
    email = EmailField(
        _l("E-mail (optional)"),
        filters=[_strip, _none_if_empty],
        validators=[Optional(),
                    Length(max=254, message=_l("Please use at most 254 characters.")),
                    # Deliverability is not checked: a typo costs the member only the e-mails.
                    Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$",
                           message=_l("Please enter a valid e-mail address.")),
                    _plain_text],
    )
    language = SelectField(
        _l("Language"),
        # Labels are set per request (each language in its own name); no choice list check,
        # so an odd value gets our translated message instead of WTForms' own.
        choices=[SelectChoice(code) for code in LANGUAGES],
        validate_choice=False,
        validators=[AnyOf(LANGUAGES, message=_l("Please choose a language from the list."))],
    )
    referral_code = StringField(
        _l("Referral code (optional)"),
        filters=[_code, _none_if_empty],
        validators=[Optional(),
                    Regexp(r"^[A-Z0-9]{4,16}$",
                           message=_l("A referral code is 4 to 16 letters and digits."))],
    )
    consent_terms = BooleanField(
        _l("I accept the program's terms and conditions."),
        validators=[DataRequired(_l("Please accept the terms to join."))],
    )
    consent_marketing = BooleanField(_l("Send me offers and news (optional)."))
