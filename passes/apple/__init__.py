"""Apple Wallet loyalty cards: content model, images, localization, signing and packaging.

Typical use::

    signer = PassSigner.from_files("pass.pem", "pass.key", "wwdr.pem", key_password=...)
    renderer = ImageRenderer()          # one per process; caches rendered images
    content = StoreCardContent(...)     # validated on construction
    images = renderer.render(content.brand, RewardProgress(120, 500, "Free coffee"))
    pkpass = build_pkpass(content, images, signer)
"""

from passes.apple.archive import PassFile
from passes.apple.builder import PKPASS_MIME_TYPE, build_pkpass
from passes.apple.errors import PassError, PassValidationError, SigningConfigError
from passes.apple.images import ImageRenderer, ImageSet, render_images
from passes.apple.localization import (
    DEFAULT_POINTS_LABEL,
    FIXED_STRINGS,
    SUPPORTED_LANGUAGES,
    LocalizedText,
)
from passes.apple.model import (
    MAX_LOCATIONS,
    Barcode,
    Brand,
    LedgerEntry,
    Location,
    RewardProgress,
    StoreCardContent,
)
from passes.apple.signing import PassSigner

__all__ = [
    "DEFAULT_POINTS_LABEL",
    "FIXED_STRINGS",
    "MAX_LOCATIONS",
    "PKPASS_MIME_TYPE",
    "SUPPORTED_LANGUAGES",
    "Barcode",
    "Brand",
    "ImageRenderer",
    "ImageSet",
    "LedgerEntry",
    "LocalizedText",
    "Location",
    "PassError",
    "PassFile",
    "PassSigner",
    "PassValidationError",
    "RewardProgress",
    "SigningConfigError",
    "StoreCardContent",
    "build_pkpass",
    "render_images",
]
