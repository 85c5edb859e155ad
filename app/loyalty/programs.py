"""Programs, their rewards and tiers."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app import access, audit
from app.errors import Conflict, NotFound
from app.extensions import db
from app.loyalty import branding, fanout, program_texts, rewards
from app.loyalty.models import Program, ProgramLocation, Reward, Tier
from app.outbox.models import PassUpdate


def slugify(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug[:64] or "program"


def get(program_id: int) -> Program:
    """The program with this id; ``NotFound`` (404) when there is none or it is outside the
    caller's programs (:mod:`app.access`), alike."""
    found = db.session.get(Program, program_id) if access.current().allows(program_id) else None
    if found is None:
        raise NotFound(f"No program with id {program_id}.")
    return found


def get_by_slug(slug: str) -> Program:
    program = db.session.scalar(select(Program).where(Program.slug == slug))
    if program is None:
        raise NotFound(f"No program {slug!r}.")
    return program


def create(
    *, tiers: list[dict[str, Any]] | None = None, rewards: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> Program:
    """Create a program, with optional tiers and rewards, and commit (recorded in the audit
    trail as ``program.create``)."""
    fields.setdefault("slug", slugify(fields["name"]))
    fields.setdefault("organization_name", fields["name"])
    if "texts" in fields:
        fields["texts"] = program_texts.merged(None, fields["texts"]) or None
    branding.check_contrast({name: fields.get(name) or _default_colour(name)
                             for name in COLOUR_FIELDS})
    program = Program(**fields)
    program.tiers = [Tier(**t) for t in tiers or []]
    program.rewards = [Reward(position=i, **r) for i, r in enumerate(rewards or [])]
    db.session.add(program)
    with _duplicate_is_conflict(f"A program with slug {fields['slug']!r} already exists."):
        db.session.flush()
        audit.record("program.create", program_id=program.id, target=f"program:{program.id}",
                     details={"name": program.name, "slug": program.slug})
        db.session.commit()
    return program


@contextmanager
def _duplicate_is_conflict(message: str) -> Iterator[None]:
    """A unique constraint's refusal inside the block: roll back, raise ``Conflict(message)``."""
    try:
        yield
    except IntegrityError as exc:
        db.session.rollback()
        raise Conflict(message) from exc


def add_reward(program: Program, *, name: str, points_cost: int, active: bool = True) -> Reward:
    """Add a reward at the end of the list (see :func:`app.loyalty.rewards.create`). Commits."""
    return rewards.create(program, name=name, points_cost=points_cost, active=active)


def add_tier(program: Program, *, name: str, threshold: int, multiplier_percent: int = 100) -> Tier:
    """Add a tier (see :func:`app.loyalty.rewards.add_tier`). Commits."""
    return rewards.add_tier(program, name=name, threshold=threshold,
                            multiplier_percent=multiplier_percent)


LOCATION_FIELDS = ("name", "latitude", "longitude", "relevant_text")


def add_location(program: Program, **fields: Any) -> ProgramLocation:
    """Add a store location (:data:`LOCATION_FIELDS`); passes show the first ten. Recorded in
    the audit trail. Commits."""
    _check_location_fields(fields)
    location = ProgramLocation(program=program, **fields)
    db.session.add(location)
    db.session.flush()
    fanout.program_changed(program.id, {"locations"})
    audit.record("location.create", program_id=program.id, target=f"location:{location.id}",
                 details={name: getattr(location, name) for name in LOCATION_FIELDS})
    db.session.commit()
    return location


def get_location(program: Program, location_id: int) -> ProgramLocation:
    """The program's location ``location_id``; ``NotFound`` (404) for any other."""
    location = db.session.get(ProgramLocation, location_id)
    if location is None or location.program_id != program.id:
        raise NotFound(f"No location with id {location_id}.")
    return location


def update_location(location: ProgramLocation, **fields: Any) -> ProgramLocation:
    """Change a location's :data:`LOCATION_FIELDS`; when something changed, every card's passes
    follow (they carry the locations) and the change is recorded in the audit trail. Commits."""
    _check_location_fields(fields)
    changed = {name: value for name, value in fields.items()
               if getattr(location, name) != value}
    for name, value in changed.items():
        setattr(location, name, value)
    if changed:
        fanout.program_changed(location.program_id, {"locations"})
        audit.record("location.update", program_id=location.program_id,
                     target=f"location:{location.id}", details=changed)
    db.session.commit()
    return location


def _check_location_fields(fields: dict[str, Any]) -> None:
    for name in fields:
        if name not in LOCATION_FIELDS:
            raise ValueError(f"{name} is not a location field")


def all_programs() -> list[Program]:
    return list(db.session.scalars(select(Program).order_by(Program.id)))


def reachable_programs() -> list[Program]:
    """The programs the caller reaches (:mod:`app.access`), by id."""
    return list(db.session.scalars(
        select(Program).where(access.current().where(Program.id)).order_by(Program.id)))


DESIGN_FIELDS = ("name", "organization_name", "background_color", "foreground_color",
                 "label_color", "points_label", "support_contact", "terms", "texts",
                 "google_rotating_barcode")


COLOUR_FIELDS = ("background_color", "foreground_color", "label_color")

# The loyalty engine's settings (docs/loyalty-engine.md). They change what happens from now
# on, not how the program looks: no design version, and passes are rebuilt only for
# ``time_zone``, the zone of the dates they show.
SETTINGS_FIELDS = ("points_expire_after_days", "expiry_reminder_days", "pending_days",
                   "refund_shortfall", "time_zone", "value_of_1000_points",
                   # In-card feedback (app.feedback): for visits from now on.
                   "feedback_every_days", "feedback_lock_screen")


def _default_colour(name: str) -> str:
    return str(Program.__table__.c[name].default.arg)  # type: ignore[union-attr]


#: Design fields whose new values the audit trail records (of the others, such as the texts,
#: it records that they changed).
AUDITED_VALUES = ("name", "organization_name", "background_color", "foreground_color",
                  "label_color", "points_label", "support_contact")


def change(program: Program, *, touch_cards: bool = True, commit: bool = True,
           **fields: Any) -> Program:
    """Change a program's design (:data:`DESIGN_FIELDS`, see :func:`update_design`) and
    settings (:data:`SETTINGS_FIELDS`, see :func:`update_settings`) at once, recorded in the
    audit trail (``program.design``, ``program.settings``). Commits, unless ``commit`` is
    false (the caller commits more with it).

    ``touch_cards=False`` leaves telling the cards of a design change to the caller, which
    then starts a pass update of every card in the same transaction
    (``app.wallet.updates.request_update``, as the console's "Publish" does), so each device
    is told once, with progress to follow."""
    changed = _apply(program, fields)
    if changed and touch_cards:
        fanout.program_changed(program.id, changed)
    if commit:
        db.session.commit()
    return program


def change_and_tell(program: Program, **fields: Any) -> PassUpdate | None:
    """:func:`change`, and return the pass update that tells every card (committed), or
    ``None`` when nothing the passes show changed."""
    changed = _apply(program, fields)
    pass_update = fanout.program_changed(program.id, changed) if changed else None
    db.session.commit()
    return pass_update


def _apply(program: Program, fields: dict[str, Any]) -> set[str]:
    """Set and audit ``fields``; returns those whose change the passes show."""
    for name in fields:
        if name not in DESIGN_FIELDS and name not in SETTINGS_FIELDS:
            raise ValueError(f"{name} is neither a design field nor a setting")
    design = {name: value for name, value in fields.items() if name in DESIGN_FIELDS}
    changed = set(design)
    if design:
        _change_design(program, design)
    if _change_settings(program, {name: value for name, value in fields.items()
                                  if name in SETTINGS_FIELDS}):
        changed.add("time_zone")
    return changed


def update_settings(program: Program, **fields: Any) -> Program:
    """Change the loyalty engine's settings; they apply from now on (new credits, refunds,
    reminders). Passes are rebuilt only when ``time_zone`` changes. Commits."""
    for name in fields:
        if name not in SETTINGS_FIELDS:
            raise ValueError(f"{name} is not a setting")
    return change(program, **fields)


def _change_settings(program: Program, settings: dict[str, Any]) -> bool:
    """Set and audit the settings; ``True`` if the passes change (the time zone did)."""
    zone_changed = "time_zone" in settings and settings["time_zone"] != program.time_zone
    for name, value in settings.items():
        setattr(program, name, value)
    if settings:
        audit.record("program.settings", program_id=program.id, target=f"program:{program.id}",
                     details={"values": settings})
    return zone_changed


def update_design(program: Program, **fields: Any) -> Program:
    """Change how the program looks; every card's passes (and the Google class) follow.

    ``texts`` changes only the languages it gives (see ``program_texts.merged``). A change of
    colours is refused (``LowContrast``, nothing written) if it leaves text below WCAG AA
    contrast on the background (see :func:`app.loyalty.branding.check_contrast`)."""
    for name in fields:
        if name not in DESIGN_FIELDS:
            raise ValueError(f"{name} is not a design field")
    _change_design(program, fields)
    fanout.program_changed(program.id, fields)
    db.session.commit()
    return program


def _change_design(program: Program, fields: dict[str, Any]) -> None:
    """Set and audit the design ``fields``; the design version goes up (not the cards)."""
    if any(name in fields for name in COLOUR_FIELDS):
        branding.check_contrast({name: fields.get(name, getattr(program, name))
                                 for name in COLOUR_FIELDS})
    for name, value in fields.items():
        if name == "texts":
            value = program_texts.merged(program.texts, value) or None
        setattr(program, name, value)
    design_changed(program, fields, touch_cards=False)
    details: dict[str, Any] = {"fields": sorted(fields)}
    values = {name: fields[name] for name in AUDITED_VALUES if name in fields}
    if values:
        details["values"] = values
    if fields.get("texts"):
        details["languages"] = sorted(fields["texts"])
    audit.record("program.design", program_id=program.id, target=f"program:{program.id}",
                 details=details)


def design_changed(program: Program, fields: Iterable[str], *,
                   touch_cards: bool = True) -> None:
    """Record that how the program looks changed (in the caller's transaction): its design
    version goes up, so the Google class is patched, and (unless ``touch_cards`` is false)
    every card's passes are rebuilt and their devices told, chunk by chunk after commit
    (:mod:`app.loyalty.fanout`). ``fields``: the design fields (or artwork kinds) changed."""
    program.design_version = Program.design_version + 1
    if touch_cards:
        fanout.program_changed(program.id, fields)
