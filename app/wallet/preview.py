"""A program's passes as they would look with a changed design, before it is saved.

The console's Design page and ``POST /api/v1/programs/<id>/design/preview`` show the marketer
the Apple pass and the Google card a sample member would get. Both are built by the code that
builds the real ones (:func:`app.wallet.apple.pass_files.program_content` with the pass
builder's ``StoreCardContent`` and image renderer; :func:`app.wallet.google.sync.class_content`
with ``passes.google``), from an in-memory copy of the program with the changes applied: the
copy is a plain object, never added to the database session.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from flask import current_app

from app.loyalty import artwork, program_texts
from app.loyalty.branding import CONTRAST_PAIRS
from app.loyalty.models import Program
from app.loyalty.programs import COLOUR_FIELDS, DESIGN_FIELDS
from app.wallet.apple.pass_files import next_reward, program_content
from app.wallet.apple.setup import apple_wallet
from app.wallet.google import sync as google_sync
from app.wallet.google.setup import DEVELOPMENT_ISSUER_ID, google_wallet
from passes.apple import Barcode, ImageRenderer, StoreCardContent
from passes.apple.localization import strings_for_language
from passes.contrast import AA_NORMAL_TEXT, contrast_ratio, format_ratio
from passes.google.images import program_logo_png
from passes.google.loyalty_class import loyalty_class_body
from passes.google.payloads import GooglePayloadError
from passes.languages import LANGUAGES

#: Identifiers of the preview pass when Apple Wallet is off (it is never signed).
PREVIEW_PASS_TYPE_ID = "pass.example.preview"  # noqa: S105 (an identifier)
PREVIEW_TEAM = "PREVIEW000"
PREVIEW_SERIAL = "preview"
#: Where the Google class's URLs point when the service's own address is one Google could not
#: fetch from (a development or test server): the preview shows the images inline anyway.
PREVIEW_PUBLIC_BASE = "https://pointpass.invalid"
#: The sample member's balance when the program has no reward to show progress toward.
SAMPLE_BALANCE = 120

GOOGLE_LOGO_PREVIEW = 264  # pixels: the logo is shown 66 CSS pixels wide

_renderer = ImageRenderer(max_entries=64)


@dataclass(frozen=True)
class ContrastPair:
    """One text colour on the background: its ratio and whether it is readable (WCAG AA)."""

    text_field: str
    background_field: str
    text: str
    background: str
    ratio: float

    @property
    def passes(self) -> bool:
        return self.ratio >= AA_NORMAL_TEXT

    @property
    def shown(self) -> str:
        return format_ratio(self.ratio)


@dataclass(frozen=True)
class DesignPreview:
    """The passes of a sample member with a design: Apple's ``pass.json`` and images (PNG
    bytes by file name), Google's ``loyaltyClass`` body, and the contrast check."""

    pass_json: dict[str, Any]
    images: Mapping[str, bytes]
    google_class: dict[str, Any]
    contrast: tuple[ContrastPair, ...]
    sample_balance: int
    strings: Mapping[str, str]  # pass.strings of the preview's language: key -> text

    def text(self, value: object) -> str:
        """A pass.json value as the phone shows it in the preview's language."""
        return self.strings.get(value, value) if isinstance(value, str) else str(value)

    def fields(self, kind: str) -> list[dict[str, Any]]:
        """The store card's ``kind`` fields ("headerFields", ...) with texts resolved."""
        return [{**field, "label": self.text(field.get("label", "")),
                 "value": self.text(field.get("value", ""))}
                for field in self.pass_json["storeCard"].get(kind, [])]

    @property
    def publishable(self) -> bool:
        return all(pair.passes for pair in self.contrast)

    def image_url(self, base: str) -> str | None:
        """A ``data:`` URL of the image ``base`` ("logo", "strip", "icon") at @2x (Wallet's
        size on most phones), or ``None`` when the pass has none."""
        for name in (f"{base}@2x.png", f"{base}.png"):  # google-logo, google-hero: one size
            if name in self.images:
                return "data:image/png;base64," + base64.b64encode(self.images[name]).decode()
        return None


def draft(program: Program, changes: Mapping[str, Any]) -> Any:
    """An in-memory copy of ``program``'s design with ``changes`` (design fields, as
    :func:`app.loyalty.programs.change` takes them) applied; ``texts`` changes only the
    languages given. The copy is no database object: nothing about it can be saved."""
    values = {name: getattr(program, name) for name in DESIGN_FIELDS}
    for name, value in changes.items():
        if name not in DESIGN_FIELDS:
            raise ValueError(f"{name} is not a design field")
        values[name] = program_texts.merged(program.texts, value) or None \
            if name == "texts" else value
    return SimpleNamespace(id=program.id, slug=program.slug,
                           default_language=program.default_language, **values)


def contrast_of(colours: Mapping[str, str]) -> tuple[ContrastPair, ...]:
    """Each pair :func:`app.loyalty.branding.check_contrast` checks, with its ratio."""
    return tuple(ContrastPair(text, background, colours[text], colours[background],
                              contrast_ratio(colours[text], colours[background]))
                 for text, background in CONTRAST_PAIRS)


def preview(program: Program, changes: Mapping[str, Any], *, language: str = "en",
            sample_name: str = "Ayu Lestari") -> DesignPreview:
    """The sample member's passes with ``program``'s design changed by ``changes``."""
    copy = draft(program, changes)
    images = artwork.images_of(program.id)
    content_args = program_content(copy, images)
    progress = next_reward(program, 0)
    balance = SAMPLE_BALANCE
    if progress is not None:  # most of the way to the cheapest reward: the bar shows
        balance = max(progress.target * 3 // 5, 1)
        progress = next_reward(program, balance)
    wallet = apple_wallet()
    content = StoreCardContent(
        pass_type_identifier=wallet.pass_type_id if wallet else PREVIEW_PASS_TYPE_ID,
        team_identifier=wallet.team_id if wallet else PREVIEW_TEAM,
        serial_number=PREVIEW_SERIAL,
        **content_args,
        balance=balance,
        barcode=Barcode("PREVIEW", alt_text="ABCD-2345"),
        member_name=sample_name,
        progress=progress,
    )
    strings = strings_for_language(content.program_strings, language, content.wording)
    index = LANGUAGES.index(language)
    strings.update((key, texts[index]) for key, texts in content.card_strings)
    renderer = wallet.renderer if wallet else _renderer
    image_set = renderer.render(content.design, progress)
    return DesignPreview(
        pass_json=content.pass_dict(),
        images={**{f.name: f.member.data for f in image_set.files},
                # What Google Wallet shows: the square logo it crops to a circle, and the
                # uploaded strip as the hero image across the top (none without one).
                "google-logo.png": program_logo_png(content.design, GOOGLE_LOGO_PREVIEW),
                **({"google-hero.png": images["strip"]} if "strip" in images else {})},
        google_class=_google_class(copy),
        contrast=contrast_of({name: getattr(copy, name) for name in COLOUR_FIELDS}),
        sample_balance=balance,
        strings=strings,
    )


def _google_class(copy: Any) -> dict[str, Any]:
    wallet: Any = google_wallet() or SimpleNamespace(
        issuer_id=DEVELOPMENT_ISSUER_ID, base_url=current_app.config["BASE_URL"])
    try:
        content = google_sync.class_content(wallet, copy)
    except GooglePayloadError:  # URLs of a server Google cannot reach
        content = google_sync.class_content(wallet, copy, public_base=PREVIEW_PUBLIC_BASE)
    return loyalty_class_body(content)
