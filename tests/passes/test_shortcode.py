"""Short codes: typeable, unambiguous, bound to card and code version, unforgeable."""

from __future__ import annotations

import random
import re

import pytest

from passes.barcode import InvalidCode, derive_key
from passes.shortcode import (
    ALPHABET,
    SHORT_CODE_TEXT_PATTERN,
    looks_like_short_code,
    make_short_code,
    normalize,
    read_short_code,
    verified_version,
)

KEY = derive_key("test secret")
SERIAL = "9BD0DB859CECAA0E0D7C"
# Pairs read as one another in print or handwriting: at most one of each may be in the
# alphabet (0, O, 1 and I are in none). 2/Z, 5/S, 8/B and U/V differ in print and stay.
LOOK_ALIKES = ["0O", "1I", "1L", "IL", "0D", "OD", "0Q", "OQ", "IJ", "1J", "1T", "IT"]


def _serials(count: int) -> list[str]:
    rng = random.Random(15)
    return [f"{rng.getrandbits(80):020X}" for _ in range(count)]


def test_shape_grouped_in_the_alphabet() -> None:
    code = make_short_code(KEY, SERIAL, 0)
    assert re.fullmatch(r"[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}-[2-9A-HJ-NP-Z]{4}", code), code
    assert make_short_code(KEY, SERIAL, 0) == code  # deterministic
    assert make_short_code(KEY, SERIAL, 1) != code


def test_round_trip_over_many_cards_and_versions() -> None:
    for serial in _serials(200):
        for version in (0, 1, 31, 32, 33, 1000, 36**7 - 1):
            code = read_short_code(make_short_code(KEY, serial, version))
            assert verified_version(KEY, code, serial, version) == version
            low, high = code.serial_range()
            assert low <= serial and (high is None or serial < high)


def test_alphabet_has_no_ambiguous_characters() -> None:
    assert len(ALPHABET) == len(set(ALPHABET)) == 32
    assert not set(ALPHABET) & set("0O1I")
    for pair in LOOK_ALIKES:
        assert len(set(pair) & set(ALPHABET)) <= 1, pair
    assert ALPHABET.upper() == ALPHABET and ALPHABET.isalnum()
    # Every symbol is used: the first and last symbols of the alphabet appear in codes.
    seen = set("".join(make_short_code(KEY, s, v).replace("-", "")
                       for s in _serials(100) for v in range(3)))
    assert seen == set(ALPHABET)


@pytest.mark.parametrize("typed", [
    lambda c: c.lower(),
    lambda c: c.replace("-", ""),
    lambda c: c.replace("-", " "),
    lambda c: c.replace("-", "."),
    lambda c: f"  {c.lower().replace('-', ' . ')}\r\n",
    lambda c: " ".join(c.replace("-", "")),
    lambda c: c.title(),
])
def test_case_and_separators_do_not_matter(typed) -> None:  # type: ignore[no-untyped-def]
    code = make_short_code(KEY, SERIAL, 7)
    sent = typed(code)
    assert normalize(sent) == code.replace("-", "")
    assert re.match(SHORT_CODE_TEXT_PATTERN, sent), sent
    assert verified_version(KEY, read_short_code(sent), SERIAL, 7) == 7


@pytest.mark.parametrize("text", [
    "", "K7QM-4XZ9-H3P", "K7QM-4XZ9-H3PAA", "K7QM-4XZ9-H3P0", "K7QM-4XZ9-H3PO", "K7QM-4XZ9-H3P1",
    "K7QM-4XZ9-H3PI", "K7QM_4XZ9_H3PA", "K7QM/4XZ9/H3PA", "K7QM-4XZ9-H3P\u00c4", "\x00K7QM4XZ9H3PA",
    "PP1:9BD0DB859CECAA0E0D7C:0:" + "A" * 24, "K7QM-4XZ9-H3PA\u202e", "K7QM" * 50,
])
def test_malformed_text_is_not_a_short_code(text: str) -> None:
    assert not looks_like_short_code(text)
    assert not re.match(SHORT_CODE_TEXT_PATTERN, text), text
    with pytest.raises(InvalidCode):
        read_short_code(text)


def test_every_one_symbol_change_is_refused() -> None:
    code = make_short_code(KEY, SERIAL, 3).replace("-", "")
    for position in range(len(code)):
        for symbol in ALPHABET:
            if symbol == code[position]:
                continue
            tampered = read_short_code(code[:position] + symbol + code[position + 1:])
            assert verified_version(KEY, tampered, SERIAL, 3) is None, (position, symbol)


def test_another_card_or_key_is_refused() -> None:
    code = read_short_code(make_short_code(KEY, SERIAL, 0))
    # Same handle (the first 35 bits), another serial: the MAC covers the whole serial.
    same_handle = SERIAL[:9] + "0" * 11
    assert read_short_code(make_short_code(KEY, same_handle, 0)).handle == code.handle
    assert verified_version(KEY, code, same_handle, 0) is None
    assert verified_version(derive_key("another secret"), code, SERIAL, 0) is None
    assert verified_version(KEY, code, "NOT-A-SERIAL", 0) is None


def test_wrong_version_is_refused_and_a_rotated_code_names_its_version() -> None:
    old = read_short_code(make_short_code(KEY, SERIAL, 5))
    # The card is now at version 6: the code is genuine, for version 5 (the caller: 409).
    assert verified_version(KEY, old, SERIAL, 6) == 5
    assert verified_version(KEY, old, SERIAL, 36) == 5
    # A code for a version the card has not reached, or 32+ versions old: not verified.
    assert verified_version(KEY, old, SERIAL, 4) is None
    assert verified_version(KEY, old, SERIAL, 5 + 32) is None
    newer = read_short_code(make_short_code(KEY, SERIAL, 9))
    assert verified_version(KEY, newer, SERIAL, 5) is None


def test_serials_a_short_code_cannot_name_are_refused_when_making_one() -> None:
    for serial in ("x1", "ABCDEF01", "abcdef0123456789abcd", "G" * 20):
        with pytest.raises(ValueError):
            make_short_code(KEY, serial, 0)
    with pytest.raises(ValueError):
        make_short_code(KEY, SERIAL, -1)


def test_serial_range_is_what_the_handle_covers() -> None:
    top = read_short_code(make_short_code(KEY, "F" * 20, 0))
    assert top.serial_range() == ("FFFFFFFFE", None)
    bottom = read_short_code(make_short_code(KEY, "0" * 20, 0))
    assert bottom.serial_range() == ("000000000", "000000002")
    assert bottom.serial_range()[1] > "000000001" + "F" * 11  # type: ignore[operator]
