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


def test_totp_matches_rfc_6238_vectors() -> None:
    from passes.barcode import totp_value

    secret = b"12345678901234567890"  # RFC 6238 appendix B, SHA-1
    assert totp_value(secret, 59 // 30) == "94287082"
    assert totp_value(secret, 1111111109 // 30) == "07081804"
    assert totp_value(secret, 2000000000 // 30) == "69279037"


def test_rotating_code_accepts_a_small_clock_skew_only() -> None:
    from passes.barcode import read_rotating_code, rotating_pattern, totp_key, totp_value

    serial, now = "ABCDEF0123456789ABCD", 1_800_000_000.0
    secret = totp_key(KEY, serial)

    def code(at: float) -> str:
        return rotating_pattern(serial).replace("{totp_value_0}", totp_value(secret,
                                                                             int(at // 30)))

    assert read_rotating_code(KEY, code(now), now) == (serial, int(now // 30))
    assert read_rotating_code(KEY, code(now - 30), now)[1] == int(now // 30) - 1
    assert read_rotating_code(KEY, code(now + 30), now)[1] == int(now // 30) + 1
    for bad in (code(now - 90), code(now + 90), code(now)[:-1] + "X",
                code(now).replace(serial, "ABCDEF0123456789ABCE")):
        with pytest.raises(InvalidCode):
            read_rotating_code(KEY, bad, now)
    with pytest.raises(InvalidCode):
        read_rotating_code(derive_key("other"), code(now), now)


def test_the_code_text_pattern_takes_what_the_readers_take() -> None:
    """CODE_TEXT_PATTERN (stated in the API document) matches every code the readers accept,
    in the forms people and scanners send, and none of the malformed ones."""
    import re

    from passes.barcode import CODE_TEXT_PATTERN, read_rotating_code, totp_key, totp_value

    pattern = re.compile(CODE_TEXT_PATTERN)
    serial = "9BD0DB859CECAA0E0D7C"
    rotating = f"PPT:{serial}:{totp_value(totp_key(KEY, serial), 1000)}"
    for code in (make_code(KEY, serial, 0), make_code(KEY, "Z", 36**7 - 1), rotating):
        for sent in (code, code.lower(), f" {code}\r\n", f"\t{code.title()}"):
            assert pattern.match(sent), sent
            if code == rotating:
                assert read_rotating_code(KEY, sent, 1000 * 30) == (serial, 1000)
            else:
                assert read_code(KEY, sent)
    for text in ("", "PP1", f"PP1:{serial}:0:{'A' * 23}", f"PPT:{serial}:1234567",
                 f"PP1:{serial}:12345678:{'A' * 24}", make_code(KEY, serial, 0) + "\u202e",
                 "\x00" + make_code(KEY, serial, 0), f"PP1:{'A' * 41}:0:{'A' * 24}"):
        assert not pattern.match(text), text
