"""The feedback link in the pass library (passes.feedback_link): only a link a wallet opens,
placed on the Apple pass's back right after the message, with a lock-screen message only
when asked; Google refuses what it cannot open, naming the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from passes.apple import PassValidationError, StoreCardContent
from passes.checks import ContentError
from passes.feedback_link import FeedbackLink
from passes.google.fields import GooglePayloadError
from passes.google.loyalty_object import LoyaltyObjectContent, loyalty_object_body

URL = "https://kopi.example/feedback/abc_DEF-123"


@pytest.mark.parametrize("url", ["", "javascript:alert(1)", "ftp://kopi.example/x",
                                 "https:///nohost", "https://kopi.example/a b",
                                 "https://kopi.example/\n", "x" * 2001, 42])
def test_only_a_link_a_wallet_opens(url: Any) -> None:
    with pytest.raises(ContentError, match=r"feedback\.url"):
        FeedbackLink(url)
    with pytest.raises(ContentError, match=r"feedback\.lock_screen"):
        FeedbackLink(URL, lock_screen="yes")  # type: ignore[arg-type]


def test_the_back_field_follows_the_message(make_content: Callable[..., StoreCardContent]
                                            ) -> None:
    back = make_content(marketer_message="Promo", feedback=FeedbackLink(URL)).pass_dict()[
        "storeCard"]["backFields"]
    keys = [f["key"] for f in back]
    assert keys[:2] == ["message", "feedback"]
    assert back[1] == {"key": "feedback", "label": "feedback_label", "value": URL}
    loud = make_content(feedback=FeedbackLink(URL, lock_screen=True)).pass_dict()
    [field] = [f for f in loud["storeCard"]["backFields"] if f["key"] == "feedback"]
    assert field["changeMessage"] == "feedback_change"
    assert "feedback" not in [f["key"] for f in make_content().pass_dict()["storeCard"][
        "backFields"]]
    with pytest.raises(PassValidationError, match="feedback"):
        make_content(feedback=URL)


def test_google_refuses_a_link_it_cannot_open() -> None:
    def content(url: str) -> LoyaltyObjectContent:
        return LoyaltyObjectContent(issuer_id="3388000000012345678", serial="CARD1",
                                    class_id="3388000000012345678.kopi", balance=1,
                                    barcode_value="PP1:CARD1", feedback=FeedbackLink(url))

    body = loyalty_object_body(content(URL))
    assert body["linksModuleData"]["uris"][0]["uri"] == URL
    for refused in ("http://kopi.example/feedback/x", "https://localhost/feedback/x"):
        with pytest.raises(GooglePayloadError, match=r"feedback\.uri"):
            content(refused)
