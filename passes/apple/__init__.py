"""Apple Wallet loyalty cards: content model, images, localization, signing and packaging.

Typical use::

    signer = PassSigner.from_files("pass.pem", "pass.key", "wwdr.pem", key_password=...)
    renderer = ImageRenderer()          # one per process; caches rendered images
    content = StoreCardContent(...)     # validated on construction; wording= translates it
    images = renderer.render(content.design, RewardProgress(120, 500, "Free coffee"))
    pkpass = build_pkpass(content, images, signer)
"""

from passes.apple.archive import PassFile
from passes.apple.builder import PKPASS_MIME_TYPE, build_pkpass
from passes.apple.errors import PassError, PassValidationError, SigningConfigError
from passes.apple.images import ImageRenderer, ImageSet, render_images
from passes.apple.localization import FIXED_WORDS
from passes.apple.model import StoreCardContent
from passes.apple.parts import (
    MAX_LOCATIONS,
    ActivityLine,
    Barcode,
    Location,
    PassDesign,
    RewardProgress,
)
from passes.apple.signing import PassSigner

__all__ = [
    "FIXED_WORDS",
    "MAX_LOCATIONS",
    "PKPASS_MIME_TYPE",
    "ActivityLine",
    "Barcode",
    "ImageRenderer",
    "ImageSet",
    "Location",
    "PassDesign",
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
