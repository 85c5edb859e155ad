"""Exceptions raised by the Apple Wallet pass builder."""

from __future__ import annotations

from passes.checks import ContentError


class PassError(Exception):
    """Base class for every error raised by :mod:`passes.apple`."""


class PassValidationError(PassError, ContentError):
    """Pass content that Apple Wallet would reject or display wrongly.

    ``field`` names the offending field (dotted for nested values, e.g. ``brand.logo_image``
    or ``locations[3].latitude``) and ``problem`` says what is wrong with it.
    """


class SigningConfigError(PassError):
    """The signing certificate, key or WWDR intermediate cannot be used to sign passes."""
