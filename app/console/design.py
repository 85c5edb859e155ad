"""The Design page: how a program's passes look, with a live preview, and publishing.

Publishing goes through the services of the API: the changed fields through
:func:`app.loyalty.programs.change` (``PATCH /api/v1/programs/<id>``), then a pass update of
every card through :func:`app.wallet.updates.request_update`
(``POST /api/v1/programs/<id>/updates``), whose progress the page follows. Artwork goes
through :mod:`app.loyalty.artwork` (``PUT``/``DELETE /api/v1/programs/<id>/images/<kind>``)
and applies at once. The preview (:mod:`app.wallet.preview`) is built by the pass builders
from an unsaved copy of the program.
"""

from __future__ import annotations

import re
from typing import Any

from flask import Response, abort, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.file import FileField, FileRequired
from werkzeug.utils import redirect
from wtforms import StringField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional, Regexp

from app import audit
from app.console import pages
from app.console.pages import console_page
from app.errors import DomainError, LowContrast, NotFound, UnsupportedMediaType
from app.extensions import db
from app.loyalty import artwork, fanout, program_texts, programs
from app.loyalty.models import Program
from app.outbox.models import UpdateStatus
from app.timeutil import utcnow
from app.wallet import preview as design_preview
from app.wallet import updates
from app.web.pagekit import PageForm
from passes.artwork import KINDS, MIN_SIZE
from passes.contrast import contrast_ratio
from passes.languages import LANGUAGE_NAMES, LANGUAGES

pages.section(_l("Design"), "console.design", pages=("console.design",))

HEX = Regexp(r"^#[0-9A-Fa-f]{6}$", message=_l("Write the colour as # and six hex digits, "
                                              "e.g. #1F2937."))
COLOURS = programs.COLOUR_FIELDS
#: Fields whose new values the audit trail records (the texts are long: only their names).


class DesignForm(PageForm):
    name = StringField(_l("Program name"), validators=[
        InputRequired(_l("Please enter the program's name.")), Length(max=120)])
    organization_name = StringField(_l("Organization name"), validators=[
        InputRequired(_l("Please enter the organization's name.")), Length(max=120)])
    background_color = StringField(_l("Background colour"), validators=[InputRequired(), HEX])
    foreground_color = StringField(_l("Text colour"), validators=[InputRequired(), HEX])
    label_color = StringField(_l("Label colour"), validators=[InputRequired(), HEX])
    points_label = StringField(_l("Word for points"), validators=[
        InputRequired(_l("Please enter the word for points.")), Length(max=32)])
    support_contact = StringField(_l("Support contact"), validators=[Optional(),
                                                                      Length(max=200)])


for _language in LANGUAGES:
    for _kind, _label in (("description", _l("Description")), ("terms", _l("Terms"))):
        setattr(DesignForm, f"{_kind}_{_language}", TextAreaField(_label, validators=[
            Optional(), Length(max=program_texts.MAX_LENGTHS[_kind])]))


class ImageForm(PageForm):
    image = FileField(_l("Image file"), validators=[FileRequired(_l("Choose a PNG or JPEG "
                                                                    "file."))])


class RemoveImageForm(PageForm):
    """Removing an uploaded image: the CSRF token only."""


def _form(program: Program) -> DesignForm:
    """The form: posted values, or the program's as stored."""
    if request.method != "POST":
        return _form_from(program)
    form = DesignForm()
    _pick_colours(form)
    return form


def _pick_colours(form: DesignForm) -> None:
    """Each colour has a picker and a hex box. With scripts they agree; without, the box wins
    if it was edited (it differs from the value the page was drawn with), else the picker."""
    for name in COLOURS:
        field = getattr(form, name)
        picked = request.form.get(f"{name}_picker", "")
        drawn = request.form.get(f"{name}_was", "")
        if picked and (field.data or "").strip().lower() == drawn.lower():
            field.data = picked
        field.data = (field.data or "").strip().upper()


def changes_of(form: DesignForm, program: Program) -> dict[str, Any]:
    """The design fields the form changes, as :func:`programs.change` takes them."""
    changed: dict[str, Any] = {}
    for name in ("name", "organization_name", *COLOURS, "points_label", "support_contact"):
        value = (getattr(form, name).data or "").strip() or None
        current = getattr(program, name)
        if name in COLOURS and value is not None and current is not None:
            if value.upper() == current.upper():
                continue
        elif value == current:
            continue
        changed[name] = value
    stored = stored_texts(program)
    text_changes = {}
    for language in LANGUAGES:
        given = {kind: (getattr(form, f"{kind}_{language}").data or "").strip()
                 for kind in program_texts.KINDS}
        given = {kind: text for kind, text in given.items() if text}
        if given != stored[language]:
            text_changes[language] = given or None
    if text_changes:
        changed["texts"] = text_changes
    return changed


def _language() -> str:
    language = str(get_locale() or "en")
    return language if language in LANGUAGES else "en"


def _preview_of(form: DesignForm, program: Program) -> design_preview.DesignPreview | None:
    if not form.validate():
        return None
    return design_preview.preview(program, changes_of(form, program), language=_language())


def _page(program: Program, form: DesignForm, status: int = 200, *,
          preview: design_preview.DesignPreview | None = None,
          image_errors: dict[str, list[str]] | None = None) -> ResponseReturnValue:
    if preview is None and not form.errors:
        preview = design_preview.preview(program, changes_of(form, program)
                                         if request.method == "POST" else {},
                                         language=_language())
    uploaded = artwork.hashes_of(program.id)
    images = {kind: artwork.public_path(program.id, kind, uploaded[kind])
              if kind in uploaded else None for kind in KINDS}
    return render_template(
        "console/design.html", form=form, preview=preview, images=images, kinds=KINDS,
        image_form=ImageForm(formdata=None), remove_form=RemoveImageForm(formdata=None),
        image_errors=image_errors or {}, colours=COLOURS, languages=LANGUAGES,
        language_names=LANGUAGE_NAMES, stored=program, image_words=_image_words()), status


def _image_words() -> dict[str, dict[str, str]]:
    """What the images part says of each kind (whole sentences, for the translators)."""
    return {
        "logo": {"title": _("Logo"), "current": _("The current logo"),
                 "remove": _("Remove the logo"), "choose": _("New logo"),
                 "upload": _("Upload the logo")},
        "strip": {"title": _("Strip"), "current": _("The current strip"),
                  "remove": _("Remove the strip"), "choose": _("New strip"),
                  "upload": _("Upload the strip")},
        "icon": {"title": _("Icon"), "current": _("The current icon"),
                 "remove": _("Remove the icon"), "choose": _("New icon"),
                 "upload": _("Upload the icon")},
    }


@pages.bp.route("/programs/<int:program_id>/design", methods=["GET", "POST"])
@console_page
def design(program: Program) -> ResponseReturnValue:
    """The form with its preview; POST previews (``action=preview``) or publishes."""
    form = _form(program)
    if request.method == "GET":
        return _page(program, form)
    if not form.validate():
        return _page(program, form, 422)
    if request.form.get("action") != "publish":
        return _page(program, form, preview=_preview_of(form, program))
    preview = _preview_of(form, program)
    assert preview is not None
    failing = [pair for pair in preview.contrast if not pair.passes]
    if failing:
        form.form_errors.append(_("The colours are too hard to read: fix the contrast before "
                                  "publishing."))
        return _page(program, form, 422, preview=preview)
    changed = changes_of(form, program)
    if not changed:
        form.form_errors.append(_("Nothing has changed: there is nothing to publish."))
        return _page(program, form, 422, preview=preview)
    try:
        # The pass update below tells every card (once, with progress), not the change; both
        # are one transaction (request_update commits), so no change goes untold.
        programs.change(program, touch_cards=False, commit=False, **changed)
    except LowContrast as exc:  # checked above; the service has the last word
        db.session.rollback()
        form.form_errors.append(exc.detail)
        return _page(program, form, 422, preview=preview)
    pass_update = updates.request_update(program, actor=audit.current_actor().ref,
                                         fields=changed)
    return redirect(url_for("console.design_update", program_id=program.id,
                            update_id=pass_update.id), 303)


@pages.bp.post("/programs/<int:program_id>/design/preview")
@console_page
def design_preview_part(program: Program) -> ResponseReturnValue:
    """The preview alone (htmx swaps it in as the form changes); errors are shown in it, so
    it answers 200 (htmx swaps only successful answers)."""
    form = _form(program)
    preview = _preview_of(form, program)
    return render_template("console/_design_preview.html", form=form, preview=preview,
                           oob=True)


@pages.bp.post("/programs/<int:program_id>/design/images/<kind>")
@console_page
def design_image(program: Program, kind: str) -> ResponseReturnValue:
    """Upload a logo, strip or icon (it applies at once, as through the API)."""
    if kind not in KINDS:
        abort(404)
    form = ImageForm()
    if not form.validate():
        return _page(program, _form_from(program), 422,
                     image_errors={kind: form.image.errors})
    upload = form.image.data
    data = upload.read(artwork.max_bytes() + 1)
    try:
        artwork.put(program, kind, data, upload.mimetype or "")
    except DomainError as exc:
        db.session.rollback()
        return _page(program, _form_from(program), 422,
                     image_errors={kind: [_image_error(exc, kind)]})
    return redirect(url_for("console.design", program_id=program.id) + "#images", 303)


@pages.bp.post("/programs/<int:program_id>/design/images/<kind>/remove")
@console_page
def design_image_remove(program: Program, kind: str) -> ResponseReturnValue:
    """Go back to the generated artwork for ``kind``."""
    if kind not in KINDS:
        abort(404)
    if not RemoveImageForm().validate():
        abort(400)
    artwork.delete(program, kind)
    return redirect(url_for("console.design", program_id=program.id) + "#images", 303)


def _image_error(exc: DomainError, kind: str) -> str:
    """Why an upload was refused, in the page's language (the service says it in English)."""
    if isinstance(exc, UnsupportedMediaType):
        return _("Choose a PNG or JPEG file.")
    reason = exc.extra.get("reason")
    if reason == "too-many-bytes":
        return _("The file is too large: at most %(mb).1f MB.",
                 mb=artwork.max_bytes() / 1024 / 1024)
    if reason == "too-small":
        width, height = MIN_SIZE[kind]
        return _("The image is too small: at least %(width)d × %(height)d pixels.",
                 width=width, height=height)
    if reason == "too-many-pixels":
        return _("The image is too large: at most 4096 × 4096 pixels.")
    if reason == "blank":
        return _("The image is completely transparent.")
    return _("The file is not a PNG or JPEG image, or it is damaged.")


def _form_from(program: Program) -> DesignForm:
    """The design form as stored."""
    texts = stored_texts(program)
    data: dict[str, Any] = {name: getattr(program, name) for name in (
        "name", "organization_name", *COLOURS, "points_label", "support_contact")}
    for language in LANGUAGES:
        for kind in program_texts.KINDS:
            data[f"{kind}_{language}"] = texts[language].get(kind, "")
    return DesignForm(formdata=None, data=data)


def stored_texts(program: Program) -> dict[str, dict[str, str]]:
    """The program's own texts in each language as the form shows them: the terms written
    before there were languages count as the default language's, as passes show them."""
    texts = program.texts or {}
    stored = {language: {kind: text for kind, text in texts.get(language, {}).items() if text}
              for language in LANGUAGES}
    default = stored.get(program.default_language)
    if program.terms and default is not None and "terms" not in default:
        default["terms"] = program.terms
    return stored


def _update_of(program: Program, update_id: int) -> Any:
    try:
        pass_update = updates.get(update_id)
    except NotFound:
        abort(404)
    if pass_update.program_id != program.id:
        abort(404)
    return pass_update


@pages.bp.get("/programs/<int:program_id>/design/updates/<int:update_id>")
@console_page
def design_update(program: Program, update_id: int) -> ResponseReturnValue:
    """The progress of publishing: every card's passes being updated."""
    return render_template("console/design_update.html", UpdateStatus=UpdateStatus,
                           **_progress(program, update_id))


@pages.bp.get("/programs/<int:program_id>/design/updates/<int:update_id>/progress")
@console_page
def design_update_progress(program: Program, update_id: int) -> ResponseReturnValue:
    """The progress bar alone, polled every second by htmx until the update is done."""
    return render_template("console/_design_progress.html", UpdateStatus=UpdateStatus,
                           **_progress(program, update_id))


def _progress(program: Program, update_id: int) -> dict[str, Any]:
    """The update, and the whole minutes left at its pace so far (``None``: not known yet,
    or done)."""
    pass_update = _update_of(program, update_id)
    now = utcnow()
    finish = fanout.eta(pass_update, now)
    minutes = None if finish is None else int((finish - now).total_seconds() // 60)
    return {"update": pass_update, "minutes_left": minutes}


@pages.bp.get("/programs/<int:program_id>/design/preview.css")
@console_page
def design_preview_css(program: Program) -> ResponseReturnValue:
    """The preview's colours as a stylesheet (the Content-Security-Policy refuses inline
    styles): ``background``, ``foreground`` and ``label`` are six hex digits each."""
    colours = {}
    for name in ("background", "foreground", "label"):
        value = request.args.get(name, "")
        if not re.fullmatch(r"[0-9A-Fa-f]{6}", value):
            abort(404)
        colours[name] = f"#{value}"
    # Google Wallet draws its text in black or white, whichever reads better on the colour.
    google_text = "#FFFFFF" if contrast_ratio("#FFFFFF", colours["background"]) >= \
        contrast_ratio("#000000", colours["background"]) else "#000000"
    css = (f".apple-card{{background:{colours['background']};color:{colours['foreground']}}}\n"
           f".apple-card .ac-label{{color:{colours['label']}}}\n"
           f".google-card{{background:{colours['background']};color:{google_text}}}\n")
    return Response(css, mimetype="text/css", headers={"Cache-Control": "private, max-age=3600"})
