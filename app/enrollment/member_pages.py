"""What the join and card pages do and show; the views in ``views.py`` only route."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from flask import current_app, session
from flask_babel import format_number, get_locale, ngettext
from flask_babel import gettext as _
from markupsafe import Markup
from sqlalchemy import select

from app import timeutil
from app.enrollment import links
from app.enrollment.forms import JoinForm
from app.enrollment.service import Enrollment, enroll
from app.errors import CardErased, Conflict, NotFound, Unprocessable
from app.extensions import db
from app.loyalty import balances, branding, challenges, program_texts, programs
from app.loyalty.artwork_views import program_image_url
from app.loyalty.codes import redemption_code, short_code
from app.loyalty.models import Card, CardStatus, ChallengeKind, Program
from app.loyalty.rewards import offered
from app.wallet.apple import pass_files as apple_passes
from app.wallet.google import links as google_links
from app.web.qr import qr_svg
from passes import points_lines

# The session key that marks a card as just joined: its page then opens with the welcome.
_JUST_JOINED = "just_joined"
_HEX_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")
# The model's defaults, used should a stored colour not be a plain #RRGGBB (it goes into CSS).
_DEFAULT_COLORS = ("#1F2937", "#FFFFFF", "#D1D5DB")


class VisitorPlatform(enum.StrEnum):
    """The kind of device the visitor browses on: which wallet buttons it can use."""

    IOS = "ios"
    ANDROID = "android"
    DESKTOP = "desktop"


@dataclass(frozen=True)
class PageBranding:
    """A program's name and colours, safe to put in a style sheet."""

    name: str
    organization_name: str
    background_color: str
    foreground_color: str
    label_color: str


@dataclass(frozen=True)
class PageLogo:
    """What stands for the program's logo on pages: an image when the program has one,
    else its monogram (the initials passes draw)."""

    initials: str
    url: str | None = None


@dataclass(frozen=True)
class RewardLine:
    """One reward as the member sees it: ready, or how many points it still needs."""

    name: str
    points_cost: int
    missing: int  # 0 when the balance pays for it

    @property
    def ready(self) -> bool:
        return self.missing == 0


@dataclass(frozen=True)
class NextReward:
    """Progress toward the reward the pass's strip shows (the next one, or the last one
    reached)."""

    name: str
    points: int
    target: int

    @property
    def missing(self) -> int:
        return max(self.target - self.points, 0)

    @property
    def percent(self) -> int:
        return min(max(self.points, 0) * 100 // self.target, 100)


@dataclass(frozen=True)
class ChallengeLine:
    """Progress toward a challenge: its name and "3 of 5 visits"."""

    name: str
    done: int
    target: int
    progress_text: str

    @property
    def percent(self) -> int:
        return min(self.done * 100 // self.target, 100)


@dataclass(frozen=True)
class ProgramShowcase:
    """What the join page shows of a program besides the form."""

    logo: PageLogo
    description: program_texts.ProgramText | None
    terms: program_texts.ProgramText | None
    points_label: str
    rewards: list[RewardLine]
    tiers: list[tuple[str, int]]  # name, lifetime points needed


@dataclass(frozen=True)
class CardView:
    """Everything the card page shows."""

    brand: PageBranding
    logo: PageLogo
    first_name: str
    balance: int
    points_label: str
    tier: str | None
    voided: bool
    welcome: bool  # right after joining: the "you're in" moment, wallet buttons first
    qr: Markup
    code_text: str
    points_word: str
    rewards: list[RewardLine]
    next_reward: NextReward | None
    platform: VisitorPlatform
    apple_url: str | None
    google_url: str | None
    page_url: str
    page_qr: Markup | None  # desktop only: open the page on the phone
    referral_code: str
    referral_bonus_points: int
    join_url: str
    # "+40 pending until 3 Dec" (and "+20 more pending later"); none when nothing is pending.
    pending_lines: list[str]
    # "120 points expire on 31 Dec 2026", within the program's reminder window only.
    expiry_line: str | None
    # The challenges the card reached (names in the page's language), and the one it is
    # nearest to reaching next.
    badges: list[str]
    next_challenge: ChallengeLine | None


def platform_for(user_agent: str | None) -> VisitorPlatform:
    """The visitor's platform from their User-Agent.

    iPadOS Safari asks for desktop sites by default and says "Macintosh": it gets the desktop
    page, which offers Apple Wallet too.
    """
    agent = user_agent or ""
    if any(word in agent for word in ("iPhone", "iPad", "iPod")):
        return VisitorPlatform.IOS
    if "Android" in agent:
        return VisitorPlatform.ANDROID
    return VisitorPlatform.DESKTOP


def page_branding(program: Program) -> PageBranding:
    """The program's name and colours; any colour that is not ``#RRGGBB`` gets the default."""
    colors = [
        color if color and _HEX_COLOR.match(color) else default
        for color, default in zip(
            (program.background_color, program.foreground_color, program.label_color),
            _DEFAULT_COLORS,
            strict=True,
        )
    ]
    return PageBranding(program.name, program.organization_name, *colors)


def program_logo(program: Program) -> PageLogo:
    """The program's logo on pages: its uploaded logo, and the monogram for when it has none."""
    return PageLogo(initials=branding.pass_design(program).initials or "?",
                    url=program_image_url(program, "logo"))


def reward_lines(program: Program, balance: int) -> list[RewardLine]:
    """The rewards the program offers, in its order, each with the points it still needs."""
    return [RewardLine(r.name, r.points_cost, max(r.points_cost - balance, 0))
            for r in offered(program)]


def next_reward(program: Program, balance: int) -> NextReward | None:
    """The reward the card's pass shows progress toward (the pass's own choice)."""
    progress = apple_passes.next_reward(program, balance)
    if progress is None:
        return None
    return NextReward(progress.reward_name, progress.points, progress.target)


def points_word(program: Program) -> str:
    """The program's word for points inside a sentence ("20 more points for ...")."""
    return _("points") if program.points_label == "Points" else program.points_label


def showcase(program: Program, language: str) -> ProgramShowcase:
    """The join page's preview, texts, rewards and tiers for a reader of ``language``."""
    return ProgramShowcase(
        logo=program_logo(program),
        description=program_texts.chosen(program, "description", language),
        terms=program_texts.chosen(program, "terms", language),
        points_label=shown_points_label(program),
        rewards=reward_lines(program, 0),
        tiers=[(tier.name, tier.threshold) for tier in program.tiers],
    )


def code_under_qr(card: Card) -> str:
    """The code printed under the till QR, for staff to type when the QR does not scan."""
    return short_code(card)  # the pass's altText too


def mark_just_joined(card: Card) -> None:
    """Remember (in the visitor's session) that ``card`` was just made, for its welcome."""
    session[_JUST_JOINED] = card.serial_number


def _take_just_joined(card: Card) -> bool:
    """Whether ``card`` was just made in this session; true only once."""
    if session.get(_JUST_JOINED) != card.serial_number:
        return False
    session.pop(_JUST_JOINED)
    return True


def program_for_page(slug: str) -> Program:
    """The program a join page is for. Raises ``NotFound``."""
    return programs.get_by_slug(slug)


def join(program: Program, form: JoinForm) -> Card | None:
    """Enroll the visitor from a validated form and return their card.

    When the service refuses (e-mail already enrolled, unknown referral code), nothing is
    written: the refusal is put on the field at fault, in the page's language, and ``None``
    is returned so the form is shown again.
    """
    try:
        return enroll(program, Enrollment(
            name=form.name.data or "",
            email=form.email.data,
            language=form.language.data,
            referral_code=form.referral_code.data,
            consent_terms=bool(form.consent_terms.data),
            consent_marketing=bool(form.consent_marketing.data),
            consent_source="join-page",
        ))
    except Conflict:
        if form.email.data:
            form.email.errors.append(_("This e-mail address is already a member. Please use "
                                       "another one, or leave it empty."))
        else:  # the rare clash of two new referral codes: trying again fixes it
            form.form_errors.append(_("Something went wrong. Please try again."))
    except Unprocessable as exc:
        fields = {e.get("field") for e in exc.extra.get("errors", [])}
        if "referral_code" in fields:
            form.referral_code.errors.append(_("No member of this program has this code. "
                                               "Please check it, or leave it empty."))
        else:
            form.language.errors.append(_("Please choose a language from the list."))
    return None


def card_for_page(serial_number: str, token: str) -> Card:
    """The card a page link is for. Raises ``NotFound`` for a wrong token or unknown serial,
    ``CardErased`` (410) for the card of an erased member."""
    # The token is checked first, so the database never answers an unsigned guess.
    if not links.token_matches(serial_number, token):
        raise NotFound("No such card.")
    card = db.session.scalar(select(Card).where(Card.serial_number == serial_number))
    if card is None:
        raise NotFound("No such card.")
    if card.erased_at is not None:
        raise CardErased("This card was removed at its holder's request.")
    return card


def first_name(name: str) -> str:
    """The first word of a member's name, for the greeting."""
    words = name.split()
    return words[0] if words else name


def shown_points_label(program: Program) -> str:
    """The program's word for points; the default one in the page's language."""
    return _("Points") if program.points_label == "Points" else program.points_label


def points_notes(card: Card) -> tuple[list[str], str | None]:
    """What the card page says of pending and soon expiring points, in the page's language
    (the passes' wording), dates in the program's time zone."""
    pending, expiring = balances.pass_lines(balances.summary(card.id, timeutil.now()))
    language = str(get_locale() or "en")
    lines = []
    if pending is not None:
        lines.append(_(points_lines.PENDING_LINE)
                     .replace("{points}", format_number(pending.points))
                     .replace("{date}", points_lines.short_date(pending.until, language)))
        if pending.later:
            lines.append(_(points_lines.PENDING_LATER_LINE)
                         .replace("{points}", format_number(pending.later)))
    expiry = None
    if expiring is not None:
        expiry = (_(points_lines.EXPIRY_LINE)
                  .replace("{points_label}", points_word(card.program))
                  .replace("{points}", format_number(expiring.points))
                  .replace("{date}", points_lines.long_date(expiring.on, language)))
    return lines, expiry


def _progress_text(kind: ChallengeKind, done: int, target: int) -> str:
    if kind is ChallengeKind.REWARDS:
        return ngettext("%(done)s of %(num)s different reward",
                        "%(done)s of %(num)s different rewards", target, done=done)
    if kind is ChallengeKind.LOCATIONS:
        return ngettext("%(done)s of %(num)s location", "%(done)s of %(num)s locations",
                        target, done=done)
    return ngettext("%(done)s of %(num)s visit", "%(done)s of %(num)s visits", target,
                    done=done)


def next_challenge(card: Card) -> ChallengeLine | None:
    """The live challenge the card is nearest to reaching (the program's order breaks
    ties), in the page's language; None when none is left."""
    open_ones = challenges.progress(card)
    if not open_ones:
        return None
    nearest = max(open_ones, key=lambda p: p.done / p.target)  # max keeps the first of equals
    language = str(get_locale() or "en")
    challenge = nearest.challenge
    return ChallengeLine(challenges.name_in(challenge, language), nearest.done, nearest.target,
                         _progress_text(challenge.kind, nearest.done, nearest.target))


def badge_names(card: Card) -> list[str]:
    """The names of the card's badges in the page's language, in the order it earned them."""
    language = str(get_locale() or "en")
    return [challenges.name_in(badge.challenge, language) for badge in challenges.badges(card)]


def card_view(card: Card, user_agent: str | None) -> CardView:
    """What the card page shows to a visitor with ``user_agent``."""
    program = card.program
    platform = platform_for(user_agent)
    voided = card.status is CardStatus.VOIDED
    page_url = links.card_page_url(card)
    base = current_app.config["BASE_URL"]
    pending_lines, expiry_line = ([], None) if voided else points_notes(card)
    return CardView(
        brand=page_branding(program),
        logo=program_logo(program),
        first_name=first_name(card.member.name),
        balance=card.balance,
        points_label=shown_points_label(program),
        tier=card.tier.name if card.tier else None,
        voided=voided,
        welcome=_take_just_joined(card) and not voided,
        qr=qr_svg(redemption_code(card), label=_("Your card's QR code")),
        code_text=code_under_qr(card),
        points_word=points_word(program),
        rewards=reward_lines(program, card.balance),
        next_reward=next_reward(program, card.balance),
        platform=platform,
        # A voided card is not offered to wallets; its page only says so.
        apple_url=None if voided else apple_passes.pass_url(card),
        google_url=None if voided else google_links.save_url(card),
        page_url=page_url,
        page_qr=(qr_svg(page_url, label=_("QR code of this page"), css_class="qr qr-page")
                 if platform is VisitorPlatform.DESKTOP else None),
        referral_code=card.member.referral_code,
        referral_bonus_points=program.referral_bonus_points,
        join_url=f"{base}/join/{program.slug}?ref={card.member.referral_code}",
        pending_lines=pending_lines,
        expiry_line=expiry_line,
        badges=badge_names(card),
        next_challenge=None if voided else next_challenge(card),
    )
