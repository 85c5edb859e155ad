"""The files of a pass, and the ZIP container (``.pkpass``) that carries them.

A :class:`PassFile` is computed once and then reused for every pass that contains the same
bytes: it keeps the SHA-1 that goes into ``manifest.json`` and the finished ZIP local record
(header, CRC-32 and data) side by side. Building an archive is then mostly concatenation.
The stdlib ``zipfile`` recomputes CRC-32 over every byte on each write, which for a pass full of
PNGs costs more than the RSA signature itself; that is why the writer below exists.
Every member is STORED: PNGs do not deflate, and the JSON and strings files are tiny.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

_LOCAL_HEADER = struct.Struct("<IHHHHHIIIHH")
_CENTRAL_HEADER = struct.Struct("<IHHHHHHIIIHHHHHI")  # everything up to the offset field
_OFFSET = struct.Struct("<I")
_END_OF_CENTRAL_DIR = struct.Struct("<IHHHHIIH")

_VERSION_NEEDED = 20
_VERSION_MADE_BY = (3 << 8) | 20  # Unix, so unzip honours the permission bits below
_EXTERNAL_ATTR = 0o100644 << 16
_UTF8_NAME_FLAG = 0x800
# A fixed timestamp (2020-01-01 00:00) keeps identical content byte-identical.
_DOS_TIME = 0
_DOS_DATE = ((2020 - 1980) << 9) | (1 << 5) | 1
_MAX_MEMBER_SIZE = 0xFFFFFFFF


@dataclass(frozen=True, slots=True, repr=False)
class ZipMember:
    """One archive member, stored uncompressed, with its local record pre-built."""

    name: str
    crc32: int
    size: int
    local_record: bytes
    central_prefix: bytes
    raw_name: bytes

    @classmethod
    def create(cls, name: str, data: bytes) -> ZipMember:
        """Return the member for ``data`` stored under ``name``."""
        if len(data) > _MAX_MEMBER_SIZE:
            raise ValueError(f"{name} is too large for a pass")
        raw_name = name.encode("utf-8")
        flags = 0 if raw_name.isascii() else _UTF8_NAME_FLAG
        crc = zlib.crc32(data)
        size = len(data)
        # What the local header and the central directory both say of the member: version
        # needed, flags, method (stored), time, date, CRC, both sizes, name and extra lengths.
        shared = (_VERSION_NEEDED, flags, 0, _DOS_TIME, _DOS_DATE, crc, size, size,
                  len(raw_name), 0)
        local = _LOCAL_HEADER.pack(0x04034B50, *shared)
        # ... then the comment length, disk number and internal attributes (all 0).
        central = _CENTRAL_HEADER.pack(0x02014B50, _VERSION_MADE_BY, *shared, 0, 0, 0,
                                       _EXTERNAL_ATTR)
        return cls(name, crc, size, local + raw_name + data, central, raw_name)

    @property
    def data(self) -> bytes:
        """The member's content (a copy; the member keeps only its local record)."""
        return self.local_record[len(self.local_record) - self.size :]

    def __repr__(self) -> str:
        return f"ZipMember({self.name!r}, {self.size} bytes)"


@dataclass(frozen=True, slots=True, repr=False)
class PassFile:
    """A file inside a pass: its name, SHA-1 hex digest for the manifest, and ZIP member."""

    name: str
    sha1: str
    member: ZipMember

    @classmethod
    def create(cls, name: str, data: bytes) -> PassFile:
        """Hash ``data`` and prepare its ZIP member; do this once per distinct content."""
        digest = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        return cls(name, digest, ZipMember.create(name, data))

    @property
    def data(self) -> bytes:
        """The file's content."""
        return self.member.data

    @property
    def size(self) -> int:
        """The file's length in bytes."""
        return self.member.size

    def __repr__(self) -> str:
        return f"PassFile({self.name!r}, {self.size} bytes, sha1={self.sha1})"


@dataclass(frozen=True, slots=True, repr=False)
class ZipBlock:
    """Members laid out once, to open every archive that starts with the same files."""

    names: frozenset[str]
    count: int
    local_records: bytes
    central_records: bytes

    @classmethod
    def of(cls, members: Iterable[ZipMember]) -> ZipBlock:
        """Lay ``members`` out from offset 0. Raises :class:`ValueError` on duplicate names."""
        members = tuple(members)
        names = _unique_names(members)
        central: list[bytes] = []
        offset = 0
        for member in members:
            central += (member.central_prefix, _OFFSET.pack(offset), member.raw_name)
            offset += len(member.local_record)
        return cls(
            names,
            len(members),
            b"".join(member.local_record for member in members),
            b"".join(central),
        )


_EMPTY_BLOCK = ZipBlock(frozenset(), 0, b"", b"")


def _unique_names(members: tuple[ZipMember, ...]) -> frozenset[str]:
    names = [member.name for member in members]
    unique = frozenset(names)
    if len(unique) != len(names):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f"duplicate archive members: {', '.join(duplicates)}")
    return unique


def write_zip(members: Iterable[ZipMember], *, head: ZipBlock = _EMPTY_BLOCK) -> bytes:
    """Return a ZIP archive holding ``head``'s members, then ``members``, in order.

    Raises :class:`ValueError` on duplicate names.
    """
    members = tuple(members)
    if not head.names.isdisjoint(_unique_names(members)):
        raise ValueError("archive members repeat names from the head block")
    parts = [head.local_records]
    central = [head.central_records]
    offset = len(head.local_records)
    for member in members:
        parts.append(member.local_record)
        central += (member.central_prefix, _OFFSET.pack(offset), member.raw_name)
        offset += len(member.local_record)
    directory = b"".join(central)
    count = head.count + len(members)
    parts.append(directory)
    parts.append(
        _END_OF_CENTRAL_DIR.pack(0x06054B50, 0, 0, count, count, len(directory), offset, 0)
    )
    return b"".join(parts)
