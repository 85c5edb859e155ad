"""Image files for the artwork tests: ordinary ones of any size and format, and bombs."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def image_bytes(size: tuple[int, int], fmt: str = "PNG", colour: tuple[int, ...] = (200, 30, 30),
                mode: str = "RGB") -> bytes:
    """A ``size`` image of one ``colour`` encoded as ``fmt`` (PNG, JPEG, GIF...)."""
    buffer = io.BytesIO()
    Image.new(mode, size, colour).save(buffer, fmt)
    return buffer.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A valid-looking PNG whose header claims ``width`` × ``height`` pixels: a few hundred
    bytes that would decompress to gigabytes if anyone decoded them."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    compressor = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    data = b"".join(compressor.compress(row) for _ in range(64)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
            + chunk(b"IEND", b""))
