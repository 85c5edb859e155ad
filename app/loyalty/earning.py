"""Earning: a purchase's points (or points given directly) and the awards of the program's
earning rules on it, in one posting (:mod:`app.loyalty.ledger` for the posting,
:mod:`app.loyalty.rules` for the rules)."""

from __future__ import annotations

from app.errors import Unprocessable
from app.loyalty import rules, visits
from app.loyalty.ledger import AtTheTill, Posting, fingerprint, points_for_amount, posting
from app.loyalty.models import EntryKind


def earn(
    serial_number: str,
    *,
    actor: str,
    points: int | None = None,
    amount: int | None = None,
    currency: str | None = None,
    reference: str | None = None,
    idempotency_key: str | None = None,
    till: AtTheTill | None = None,
    location_id: int | None = None,
    apply_rules: bool = True,
) -> Posting:
    """Credit points, given directly or computed from a purchase amount, and the awards of
    the program's earning rules (:mod:`app.loyalty.rules`; the answer is then a
    ``rules.EarnPosting`` with the breakdown, a retry's too), then commit.
    ``till``: who earned it for the member at a till (recorded on the entry); ``location_id``:
    the program's store it was earned at (else the till's). ``apply_rules`` False: the points
    alone (the program's referral bonus credit)."""
    request_fp = fingerprint(op="earn", points=points, amount=amount, currency=currency,
                             reference=reference,
                             **({} if location_id is None else {"location_id": location_id}))
    with posting(serial_number, idempotency_key, request_fp) as p:
        if p.replay is not None:
            return rules.replayed_earn(p.replay) if apply_rules else p.replay
        card = p.card
        tiers = p.tier_rules()
        if amount is not None:
            if currency != card.currency:
                raise Unprocessable(
                    f"This program earns in {card.currency}; the purchase is in {currency}.",
                    errors=[{"location": "json", "field": "currency",
                             "message": f"Must be {card.currency}."}],
                )
            tier = next((t for t in tiers if t.id == card.tier_id), None)
            points = points_for_amount(card.earn_points, card.earn_amount,
                                       tier.multiplier_percent if tier else 100, amount)
            if points <= 0:
                raise Unprocessable(
                    f"A purchase of {amount} minor units earns no points at this program's "
                    "rate.",
                    errors=[{"location": "json", "field": "amount",
                             "message": "Too small to earn a point."}],
                )
        if points is None or points <= 0:
            raise Unprocessable("Earn needs a positive number of points or a purchase amount.")
        if location_id is not None:
            rules.check_location(p, location_id)
        plan = rules.plan_earn(
            p, points, amount=amount, currency=currency,
            location_id=location_id if location_id is not None else (
                till.location_id if till else None)) if apply_rules else None
        earned = p.post(EntryKind.EARN, points, actor=actor, tiers=tiers, reference=reference,
                        amount=amount, currency=currency, till=till, location_id=location_id)
        if not apply_rules:
            return earned
        result = rules.award_on_earn(p, earned, plan, base_points=points, tiers=tiers,
                                     actor=actor, till=till, location_id=location_id)
        if not result.replayed:
            visits.visited(p, visits.Visit(
                entry_id=earned.entry.id, kind=EntryKind.EARN, at=earned.entry.created_at,
                location_id=location_id if location_id is not None else (
                    till.location_id if till else None),
                staff_member_id=till.staff_member_id if till else None,
                device_id=till.device_id if till else None))
        return result
