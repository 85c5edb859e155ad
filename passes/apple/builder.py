"""Assembling signed ``.pkpass`` archives."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass

from passes.apple.archive import PassFile, ZipBlock, ZipMember, write_zip
from passes.apple.errors import PassValidationError
from passes.apple.images import ImageSet
from passes.apple.localization import card_localization_files
from passes.apple.model import StoreCardContent
from passes.apple.signing import PassSigner

PKPASS_MIME_TYPE = "application/vnd.apple.pkpass"

_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False)
_MAX_SHARED_PARTS = 256


@dataclass(frozen=True, slots=True)
class _SharedPart:
    """What every pass with the same images and strings files has in common."""

    images: tuple[PassFile, ...]
    strings: tuple[PassFile, ...]
    manifest_tail: bytes  # the manifest's entries for these files, after pass.json's
    block: ZipBlock


_shared_parts: dict[tuple[int, int], _SharedPart] = {}
_shared_lock = threading.Lock()


def _shared_part(images: tuple[PassFile, ...], strings: tuple[PassFile, ...]) -> _SharedPart:
    # Keyed by identity: the image and strings caches hand out the same tuples for unchanged
    # files, and hashing the tuples' contents would cost more than it saves. Each entry holds
    # its tuples, so their ids cannot be reused while it is cached.
    key = (id(images), id(strings))
    part = _shared_parts.get(key)
    if part is not None and part.images is images and part.strings is strings:
        return part
    files = (*images, *strings)
    names = [f.name for f in files]
    if "pass.json" in names or "manifest.json" in names or "signature" in names:
        raise PassValidationError("images", "must not contain pass.json, manifest or signature")
    entries = _JSON.encode({f.name: f.sha1 for f in files}).encode()
    part = _SharedPart(
        images,
        strings,
        b"," + entries[1:] if files else b"}",
        ZipBlock.of(f.member for f in files),
    )
    with _shared_lock:
        if len(_shared_parts) >= _MAX_SHARED_PARTS:
            _shared_parts.clear()
        _shared_parts[key] = part
    return part


def build_pkpass(content: StoreCardContent, images: ImageSet, signer: PassSigner) -> bytes:
    """Return a signed ``.pkpass`` (ZIP bytes) for ``content`` with ``images``.

    The archive holds the images, ``<lang>.lproj/pass.strings`` for every language,
    ``pass.json``, ``manifest.json`` (SHA-1 of each of those) and ``signature`` (detached
    PKCS#7 over the manifest). Only ``pass.json``, the manifest, the signature and the strings
    files that hold the card's translated activity are made per call; images and the program's
    strings files arrive hashed and ZIP-ready from their caches, and their manifest entries and
    ZIP records are reused while they stay the same.

    Raises :class:`PassValidationError` if ``content`` names a different pass type or team
    than ``signer``'s certificate (Wallet would reject the pass) or ``images`` lacks
    ``icon.png``.
    """
    if content.pass_type_identifier != signer.pass_type_identifier:
        raise PassValidationError(
            "pass_type_identifier",
            f"{content.pass_type_identifier!r} does not match the signing certificate's "
            f"{signer.pass_type_identifier!r}",
        )
    if content.team_identifier != signer.team_identifier:
        raise PassValidationError(
            "team_identifier",
            f"{content.team_identifier!r} does not match the signing certificate's "
            f"{signer.team_identifier!r}",
        )
    if not any(f.name == "icon.png" for f in images.files):
        raise PassValidationError("images", "icon.png is required by Wallet")

    strings, own_strings = card_localization_files(
        content.program_strings, content.wording, content.card_strings
    )
    shared = _shared_part(images.files, strings)
    pass_json = PassFile.create("pass.json", content.pass_json())
    manifest = b'{"pass.json":"' + pass_json.sha1.encode() + b'"'
    for own in own_strings:
        manifest += b',"' + own.name.encode() + b'":"' + own.sha1.encode() + b'"'
    manifest += shared.manifest_tail
    signature = signer.sign(manifest)
    return write_zip(
        (
            pass_json.member,
            *(own.member for own in own_strings),
            ZipMember.create("manifest.json", manifest),
            ZipMember.create("signature", signature),
        ),
        head=shared.block,
    )
