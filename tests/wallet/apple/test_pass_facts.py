"""A batch of passes reads what they show in a few queries for all its cards
(``pass_files.facts_of``), and each pass shows exactly what it shows when built alone."""

from __future__ import annotations

from typing import Any

from flask import Flask
from sqlalchemy import event, select

from app.extensions import db
from app.loyalty.models import Card
from app.wallet.apple import pass_files
from tests.factories import ApiClient, create_card, create_program
from tests.feedback.conftest import add_location, ask_for_feedback, earn
from tests.loyalty.test_challenges import add_challenge


def _statements(app: Flask) -> list[str]:
    seen: list[str] = []
    with app.app_context():
        event.listen(db.engine, "before_cursor_execute",
                     lambda _c, _cur, statement, *_: seen.append(statement))
    return seen


def test_facts_of_a_batch_are_each_cards_own_in_a_bounded_number_of_queries(
        app: Flask, api: ApiClient, program: dict[str, Any]) -> None:
    ask_for_feedback(api, program)
    add_challenge(api, program, kind="visits", name="2 visits", target=2, window_days=30,
                  bonus_points=5)
    location = add_location(api, program)
    busy, quiet, new = (create_card(api, program)["serial_number"] for _ in range(3))
    for _ in range(7):  # more entries than the pass shows, a badge and an invitation
        earn(api, busy, location, points=10)
    earn(api, quiet, points=3)
    second = create_program(api, name="Teh Kampung", slug="teh-kampung")
    other = create_card(api, second)["serial_number"]
    serials = [busy, quiet, new, other]

    with app.app_context():
        wallet = app.extensions["pointpass.apple"]

        def cards_of(wanted: list[str]) -> list[Card]:
            db.session.expunge_all()
            return list(db.session.scalars(select(Card).where(Card.serial_number.in_(wanted))))

        statements = _statements(app)
        queries = []
        for wanted in ([busy], [busy, quiet, new]):  # one program's cards: one card, three
            cards = cards_of(wanted)
            del statements[:]
            pass_files.facts_of(cards)
            queries.append(len(statements))
        cards = cards_of(serials)
        together = pass_files.facts_of(cards)
        built = {card.serial_number: pass_files.content_for(card, wallet, together[card.id])
                 for card in cards}
        alone = {card.serial_number: pass_files.content_for(card, wallet) for card in cards}
        db.session.rollback()

    assert queries[0] == queries[1]  # a query per kind of fact, not per card
    assert built == alone
    shown = {serial: (content.balance, len(content.activity), len(content.badges),
                      content.feedback is not None, content.organization_name)
             for serial, content in built.items()}
    assert shown[busy][:4] == (75, 5, 1, True)  # 7 x 10 + the badge's bonus; 5 lines of 8
    assert shown[quiet][:4] == (3, 1, 0, False)
    assert shown[new][:4] == (0, 0, 0, False)
    assert shown[other][4] != shown[busy][4]
