"""A program's rewards and tiers as marketers manage them (the console and the API).

Rewards are listed in the program's own order (``position``, lowest first). Retiring a reward
stops it being offered anywhere (the pass, the join and card pages, the till, redemption) but
keeps its row, so the ledger entries and redemptions that name it still do; a retired reward
cannot come back (add a new one). Tiers: changing a threshold, adding or deleting a tier
moves every card to the tier its lifetime points now reach. Every change is recorded in the
audit trail in its own transaction and every change a pass shows rebuilds the program's passes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from app import audit
from app.errors import Conflict, NotFound, Unprocessable
from app.extensions import db
from app.loyalty import changes, fanout
from app.loyalty.models import Card, EarningRule, Program, Reward, Tier
from app.timeutil import utcnow

REWARD_FIELDS = ("name", "points_cost", "active")
TIER_FIELDS = ("name", "threshold", "multiplier_percent")


def offered(program: Program) -> list[Reward]:
    """The rewards members can have now: active, not retired, in the program's order."""
    return [r for r in program.rewards if r.active and r.retired_at is None]


def current(program: Program) -> list[Reward]:
    """The rewards not retired (active or not), in the program's order."""
    return program.current_rewards


def retired(program: Program) -> list[Reward]:
    """The retired rewards, most recently retired first."""
    gone = [r for r in program.rewards if r.retired_at is not None]
    return sorted(gone, key=lambda r: (r.retired_at, r.id), reverse=True)


def get(program: Program, reward_id: int) -> Reward:
    """One of ``program``'s rewards (retired ones too); ``NotFound`` for any other id."""
    reward = db.session.get(Reward, reward_id)
    if reward is None or reward.program_id != program.id:
        raise NotFound(f"Program {program.id} has no reward {reward_id}.")
    return reward


def _details(reward: Reward) -> dict[str, Any]:
    return {"name": reward.name, "points_cost": reward.points_cost, "active": reward.active}


def create(program: Program, *, name: str, points_cost: int, active: bool = True) -> Reward:
    """Add a reward at the end of the program's list; every card's pass follows. Commits."""
    last = db.session.scalar(select(func.max(Reward.position)).where(
        Reward.program_id == program.id))
    reward = Reward(program=program, name=name, points_cost=points_cost, active=active,
                    position=0 if last is None else last + 1)
    db.session.add(reward)
    db.session.flush()
    audit.record("reward.create", program_id=program.id, target=f"reward:{reward.id}",
                  details=_details(reward))
    fanout.program_changed(program.id, {"rewards"})
    db.session.commit()
    return reward


def _not_retired(reward: Reward) -> None:
    if reward.retired_at is not None:
        raise Conflict(f"Reward {reward.id} is retired: it can no longer change.",
                       code="reward-retired")


def edit(program: Program, reward_id: int, **fields: Any) -> Reward:
    """Change a reward's ``name``, ``points_cost`` or ``active``; passes follow. Commits.
    ``Conflict`` (``reward-retired``) for a retired reward."""
    for name in fields:
        if name not in REWARD_FIELDS:
            raise ValueError(f"{name} is not a reward field")
    reward = get(program, reward_id)
    _not_retired(reward)
    changed = {name: value for name, value in fields.items() if getattr(reward, name) != value}
    if changed:
        for name, value in changed.items():
            setattr(reward, name, value)
        audit.record("reward.update", program_id=program.id, target=f"reward:{reward.id}",
                     details=changed)
        fanout.program_changed(program.id, {"rewards"})
    db.session.commit()
    return reward


def reorder(program: Program, reward_ids: Sequence[int]) -> list[Reward]:
    """Put the program's rewards in the order of ``reward_ids``, which must name every reward
    not retired exactly once (``Unprocessable`` otherwise). Commits. The passes show no order
    (they show the next reward by cost), so they are not rebuilt."""
    # The program's row is locked so that two reorders do not interleave: each sees the list
    # as the other left it. (FOR NO KEY UPDATE: enrolments, whose rows point at the program,
    # do not wait for it.)
    db.session.execute(select(Program.id).where(Program.id == program.id)
                       .with_for_update(key_share=True))
    db.session.expire(program, ["rewards"])
    rewards = current(program)
    known = {r.id for r in rewards}
    problems = []
    if len(set(reward_ids)) != len(reward_ids):
        problems.append("names a reward more than once")
    if unknown := [i for i in reward_ids if i not in known]:
        problems.append("names rewards that are not this program's current rewards: "
                        + ", ".join(map(str, unknown)))
    if missing := sorted(known - set(reward_ids)):
        problems.append("leaves out rewards " + ", ".join(map(str, missing)))
    if problems:
        db.session.rollback()
        message = "The order " + "; ".join(problems) + "."
        raise Unprocessable(message, errors=[
            {"location": "json", "field": "reward_ids", "message": message}])
    by_id = {r.id: r for r in rewards}
    before = [r.id for r in rewards]
    for position, reward_id in enumerate(reward_ids):
        by_id[reward_id].position = position
    if before != list(reward_ids):
        audit.record("reward.reorder", program_id=program.id,
                     details={"reward_ids": list(reward_ids)})
    db.session.commit()
    return current(program)


def move(program: Program, reward_id: int, steps: int) -> list[Reward]:
    """Move a current reward ``steps`` places (negative: up) in the list; see :func:`reorder`."""
    order = [r.id for r in current(program)]
    if reward_id not in order:  # another program's (NotFound) or retired (Conflict)
        _not_retired(get(program, reward_id))
    index = order.index(reward_id)
    target = max(0, min(len(order) - 1, index + steps))
    order.insert(target, order.pop(index))
    return reorder(program, order)


def retire(program: Program, reward_id: int) -> Reward:
    """Stop offering a reward for good; it stays for the entries that name it. Commits.
    ``Conflict`` (``reward-retired``) when it is retired already."""
    reward = get(program, reward_id)
    _not_retired(reward)
    reward.retired_at = utcnow()
    audit.record("reward.retire", program_id=program.id, target=f"reward:{reward.id}",
                 details={"name": reward.name})
    fanout.program_changed(program.id, {"rewards"})
    db.session.commit()
    return reward


# --- Tiers -------------------------------------------------------------------------------------


@contextmanager
def _threshold_taken(threshold: int) -> Iterator[None]:
    try:
        yield
    except IntegrityError as exc:
        db.session.rollback()
        raise Conflict(f"The program already has a tier at {threshold} points.",
                       code="tier-threshold-taken") from exc


def get_tier(program: Program, tier_id: int) -> Tier:
    """One of ``program``'s tiers; ``NotFound`` for any other id."""
    tier = db.session.get(Tier, tier_id)
    if tier is None or tier.program_id != program.id:
        raise NotFound(f"Program {program.id} has no tier {tier_id}.")
    return tier


def _retier(program: Program, *, without: int | None = None) -> None:
    """Move every card of the program to the tier its lifetime points reach (leaving out the
    tier ``without``, about to go) and rebuild their passes."""
    candidates = select(Tier.id).where(Tier.program_id == program.id,
                                       Tier.threshold <= Card.lifetime_points)
    if without is not None:
        candidates = candidates.where(Tier.id != without)
    reached = candidates.order_by(Tier.threshold.desc()).limit(1).scalar_subquery()
    db.session.execute(
        update(Card).where(Card.program_id == program.id).values(tier_id=reached)
        .execution_options(synchronize_session=False))
    changes.touch_cards(Card.program_id == program.id)


def _tier_details(tier: Tier) -> dict[str, Any]:
    return {"name": tier.name, "threshold": tier.threshold,
            "multiplier_percent": tier.multiplier_percent}


def add_tier(program: Program, *, name: str, threshold: int,
             multiplier_percent: int = 100) -> Tier:
    """Add a tier and move every card to the tier its lifetime points now reach. Commits.
    ``Conflict`` (``tier-threshold-taken``) for a threshold another tier has."""
    tier = Tier(program=program, name=name, threshold=threshold,
                multiplier_percent=multiplier_percent)
    db.session.add(tier)
    with _threshold_taken(threshold):
        db.session.flush()
    audit.record("tier.create", program_id=program.id, target=f"tier:{tier.id}",
                 details=_tier_details(tier))
    _retier(program)
    db.session.commit()
    return tier


def _rules_naming(program: Program, tier_name: str) -> list[EarningRule]:
    live = db.session.scalars(select(EarningRule).where(
        EarningRule.program_id == program.id, EarningRule.deleted_at.is_(None)))
    return [rule for rule in live if tier_name in ((rule.conditions or {}).get("tiers") or ())]


def edit_tier(program: Program, tier_id: int, **fields: Any) -> Tier:
    """Change a tier's ``name``, ``threshold`` or ``multiplier_percent``. Commits.

    A new threshold moves every card to the tier it now reaches; a new name is carried into
    the conditions of the rules that name the tier. The base tier (at 0 points) stays at 0
    (``Conflict`` ``base-tier``), so every card keeps a tier."""
    for name in fields:
        if name not in TIER_FIELDS:
            raise ValueError(f"{name} is not a tier field")
    tier = get_tier(program, tier_id)
    changed = {name: value for name, value in fields.items() if getattr(tier, name) != value}
    if "threshold" in changed and tier.threshold == 0:
        raise Conflict("The base tier (at 0 points) stays at 0: every card has a tier.",
                       code="base-tier")
    if "name" in changed:
        for rule in _rules_naming(program, tier.name):
            conditions = dict(rule.conditions or {})
            conditions["tiers"] = sorted({changed["name"] if t == tier.name else t
                                          for t in conditions["tiers"]})
            rule.conditions = conditions
            rule.updated_at = utcnow()
    for name, value in changed.items():
        setattr(tier, name, value)
    if changed:
        with _threshold_taken(fields.get("threshold", tier.threshold)):
            db.session.flush()
        audit.record("tier.update", program_id=program.id, target=f"tier:{tier.id}",
                     details=changed)
        if "threshold" in changed:
            _retier(program)
        else:  # the passes show the tier's name
            fanout.program_changed(program.id, {"tiers"})
    db.session.commit()
    return tier


def delete_tier(program: Program, tier_id: int) -> None:
    """Delete a tier; its cards move to the tier their lifetime points reach. Commits.
    ``Conflict``: ``base-tier`` for the tier at 0 points, ``tier-in-use`` while a rule names
    it in its conditions."""
    tier = get_tier(program, tier_id)
    if tier.threshold == 0:
        raise Conflict("The base tier (at 0 points) cannot be deleted: every card has a tier.",
                       code="base-tier")
    naming = _rules_naming(program, tier.name)
    if naming:
        raise Conflict(
            "Earning rules name this tier in their conditions: "
            + ", ".join(rule.name for rule in naming) + ". Change them first.",
            code="tier-in-use")
    audit.record("tier.delete", program_id=program.id, target=f"tier:{tier.id}",
                 details=_tier_details(tier))
    _retier(program, without=tier.id)
    db.session.delete(tier)
    db.session.commit()
    db.session.expire(program, ["tiers"])
