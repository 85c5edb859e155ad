"""Redemption codes: compact, QR-alphanumeric, bound to card and version, unforgeable."""

from __future__ import annotations

import pytest

from passes.barcode import InvalidCode, derive_key, make_code, read_code

KEY = derive_key("test secret")


def test_round_trip_and_shape() -> None:
    code = make_code(KEY, "9BD0DB859CECAA0E0D7C", 12345)
    assert len(code) < 100
    assert set(code) <= set("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ:")
    assert read_code(KEY, code) == ("9BD0DB859CECAA0E0D7C", 12345)
    assert read_code(KEY, code.lower()) == ("9BD0DB859CECAA0E0D7C", 12345)


@pytest.mark.parametrize("mutate", [
    lambda c: c.replace(":1:", ":2:"),  # another version
    lambda c: c[:4] + ("B" if c[4] != "B" else "C") + c[5:],  # another serial
    lambda c: c[:-1] + ("A" if c[-1] != "A" else "B"),  # another MAC
    lambda c: c + "A",
    lambda c: "XX1" + c[3:],
    lambda c: "",
])
def test_altered_codes_are_refused(mutate) -> None:  # type: ignore[no-untyped-def]
    code = make_code(KEY, "ABCDEF0123456789ABCD", 1)
    with pytest.raises(InvalidCode):
        read_code(KEY, mutate(code))


def test_other_key_refuses() -> None:
    code = make_code(KEY, "ABCDEF0123456789ABCD", 1)
    with pytest.raises(InvalidCode):
        read_code(derive_key("another secret"), code)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        make_code(KEY, "lowercase", 1)
    with pytest.raises(ValueError):
        make_code(KEY, "ABC", -1)
