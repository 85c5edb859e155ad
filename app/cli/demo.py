"""The demo program that the README's first command sets up."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import select

from app.accounts import service as accounts
from app.accounts.models import AccountRole
from app.auth import keys
from app.auth.models import Role
from app.enrollment import service as enrollment
from app.extensions import db
from app.loyalty import earning, programs, rules
from app.loyalty.models import Card, Member, Program, ProgramLocation, RuleKind
from app.staff import devices, members
from app.staff.models import StaffMember

DEMO_SLUG = "kopi-nusantara"
# The terms say what the demo's settings do: points expire 12 months after they can be spent.
DEMO_TEXTS = {
    "en": {"terms": "Points have no cash value and cannot be transferred to another card. "
                    "Points expire 12 months after they are earned.",
           "description": "Earn 1 point for every Rp10.000 you spend at Kopi Nusantara and "
                          "swap your points for drinks, pastries and coffee beans."},
    "id": {"terms": "Poin tidak memiliki nilai tunai dan tidak dapat dipindahkan ke kartu lain. "
                    "Poin berlaku 12 bulan sejak diperoleh.",
           "description": "Dapatkan 1 poin untuk setiap belanja Rp10.000 di Kopi Nusantara dan "
                          "tukarkan poin Anda dengan minuman, kue, dan biji kopi."},
    "th": {"terms": "แต้มไม่มีมูลค่าเป็นเงินสด และไม่สามารถโอนไปยังบัตรอื่นได้ "
                    "แต้มมีอายุ 12 เดือนนับจากวันที่ได้รับ",
           "description": "รับ 1 แต้มทุกการใช้จ่าย 10,000 รูเปียห์ที่ Kopi Nusantara "
                          "แล้วนำแต้มไปแลกเครื่องดื่ม ขนมอบ และเมล็ดกาแฟ"},
    "ms": {"terms": "Mata tidak mempunyai nilai tunai dan tidak boleh dipindahkan ke kad lain. "
                    "Mata tamat tempoh 12 bulan selepas diperoleh.",
           "description": "Kumpul 1 mata bagi setiap perbelanjaan Rp10.000 di Kopi Nusantara dan "
                          "tukar mata anda dengan minuman, pastri dan biji kopi."},
}


# Earning rules to try: a welcome gift, and double points at weekends (Jakarta time).
DEMO_RULES = [
    {"kind": RuleKind.WELCOME, "name": "Welcome gift", "points": 20},
    {"kind": RuleKind.MULTIPLIER, "name": "Double points at weekends", "percent": 200,
     "priority": 10, "conditions": {"days_of_week": [6, 7]}},
]

DEMO_LOCATION = "Kopi Nusantara Sudirman"
DEMO_MARKETER = "marketer@kopinusantara.example"
DEMO_STAFF = "Dewi"


@dataclass
class DemoTill:
    """A till to try: where it is, who signs in with which PIN, the link that enrols it."""

    location: ProgramLocation
    staff: StaffMember
    pin: str
    enrol_url: str


@dataclass
class DemoConsole:
    """The console account to try (a marketer of the demo program) and its new password."""

    email: str
    password: str


@dataclass
class DemoResult:
    program: Program
    card: Card
    keys: dict[str, str]
    till: DemoTill
    console: DemoConsole


def create_demo() -> DemoResult:
    """Create the demo program once; each call issues a fresh key per role."""
    program = db.session.scalar(select(Program).where(Program.slug == DEMO_SLUG))
    if program is None:
        program = programs.create(
            name="Kopi Nusantara Rewards",
            slug=DEMO_SLUG,
            organization_name="Kopi Nusantara",
            background_color="#3B2314",
            foreground_color="#FFF8EE",
            label_color="#E8C07D",
            points_label="Points",
            currency="IDR",
            earn_points=1,
            earn_amount=1_000_000,  # 1 point per Rp10.000 (IDR minor units are sen)
            default_language="id",
            time_zone="Asia/Jakarta",
            points_expire_after_days=365,
            referral_bonus_points=50,
            support_contact="halo@kopinusantara.example",
            texts=DEMO_TEXTS,
            tiers=[
                {"name": "Bronze", "threshold": 0, "multiplier_percent": 100},
                {"name": "Silver", "threshold": 500, "multiplier_percent": 125},
                {"name": "Gold", "threshold": 2000, "multiplier_percent": 150},
            ],
            rewards=[
                {"name": "Es Kopi Susu", "points_cost": 100},
                {"name": "Croissant", "points_cost": 150},
                {"name": "Kopi Tubruk 250 g", "points_cost": 600},
            ],
        )
        for rule in DEMO_RULES:
            rules.create_rule(program, **rule)
    elif not program.texts:  # a demo made before programs had texts per language
        programs.update_design(program, texts=DEMO_TEXTS)
    card = db.session.scalar(
        select(Card).join(Member).where(Card.program_id == program.id).order_by(Card.id)
    )
    if card is None:
        card = enrollment.enroll(
            program,
            enrollment.Enrollment(name="Siti Rahayu", email="siti@example.com", language="id",
                                  consent_terms=True, consent_source="cli"),
        )
        # Her purchases so far (the welcome gift came with her enrolment); without the
        # rules, so the demo starts the same on a weekend.
        earning.earn(card.serial_number, points=120, actor="cli:demo", reference="demo",
                    idempotency_key="demo-welcome", apply_rules=False)
    issued = {role.value: keys.create(f"demo {role.value}", role)[1] for role in Role}
    return DemoResult(program=program, card=card, keys=issued, till=_demo_till(program),
                      console=_demo_console(program))


def _demo_console(program: Program) -> DemoConsole:
    """The demo's marketer account (made once), with a password that is new on every call."""
    password = secrets.token_urlsafe(12)
    account = accounts.by_email(DEMO_MARKETER)
    if account is None:
        accounts.create(DEMO_MARKETER, AccountRole.MARKETER, password=password,
                        name="Demo marketer", language="id", program_ids=[program.id])
    else:
        accounts.set_password(account, password)
    return DemoConsole(email=DEMO_MARKETER, password=password)


def _demo_till(program: Program) -> DemoTill:
    """The demo's shop and its staff member (made once), with a PIN and a one-time link to
    enrol a till that are new on every call: no fixed credential, the old PIN stops working."""
    location = db.session.scalar(select(ProgramLocation).where(
        ProgramLocation.program_id == program.id).order_by(ProgramLocation.id))
    if location is None:
        location = programs.add_location(program, name=DEMO_LOCATION, latitude=-6.2088,
                                          longitude=106.8456,
                                          relevant_text="Kopi Nusantara is nearby")
    pin = f"{secrets.randbelow(10**6):06d}"
    staff = next((m for m in members.at_location(location.id) if m.name == DEMO_STAFF), None)
    if staff is None:
        staff = members.create(DEMO_STAFF, pin, [location.id], language="id")
    else:
        staff = members.update(staff.id, pin=pin, active=True)
    new = devices.create(location.id, name="Demo till")
    return DemoTill(location=location, staff=staff, pin=pin, enrol_url=new.enrol_url)
