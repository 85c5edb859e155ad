"""The barcode message survives QR encoding and decoding exactly."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import qrcode
from qrcode.constants import ERROR_CORRECT_M

from passes.apple import Barcode, StoreCardContent

zxingcpp = pytest.importorskip("zxingcpp")


@pytest.mark.parametrize(
    "message",
    ["PP1:card-0001:9f2c", "PP1:Café-ß-42:ÿ", "x" * 300],
)
def test_qr_round_trip(make_content: Callable[..., StoreCardContent], message: str) -> None:
    document = make_content(barcode=Barcode(message)).pass_dict()
    (entry,) = document["barcodes"]
    assert entry["format"] == "PKBarcodeFormatQR"
    payload = entry["message"].encode(entry["messageEncoding"])

    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=4, border=4)
    qr.add_data(payload)
    qr.make(fit=True)
    image = qr.make_image(fill_color="black", back_color="white").get_image().convert("L")

    (result,) = zxingcpp.read_barcodes(image)
    assert result.format == zxingcpp.BarcodeFormat.QRCode
    decoded = result.bytes.decode(entry["messageEncoding"])
    assert decoded == message
