"""The demo program that the README's first command sets up."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from app.auth import keys
from app.auth.models import Role
from app.enrollment import service as enrollment
from app.extensions import db
from app.loyalty import ledger, programs
from app.loyalty.models import Card, Member, Program

DEMO_SLUG = "kopi-nusantara"


@dataclass
class DemoResult:
    program: Program
    card: Card
    keys: dict[str, str]


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
            referral_bonus_points=50,
            support_contact="halo@kopinusantara.example",
            # Pointpass does not expire points (yet): the terms must not promise it.
            terms="Points have no cash value and cannot be transferred to another card.",
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
    card = db.session.scalar(
        select(Card).join(Member).where(Card.program_id == program.id).order_by(Card.id)
    )
    if card is None:
        card = enrollment.enroll(
            program,
            enrollment.Enrollment(name="Siti Rahayu", email="siti@example.com", language="id",
                                  consent_terms=True),
        )
        ledger.earn(card.serial_number, points=120, actor="cli:demo", reference="demo",
                    idempotency_key="demo-welcome")
    issued = {role.value: keys.create(f"demo {role.value}", role)[1] for role in Role}
    return DemoResult(program=program, card=card, keys=issued)
