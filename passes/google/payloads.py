"""Google Wallet loyalty classes and objects as REST bodies, built from validated content.

:class:`LoyaltyClassContent` (one per program, :mod:`passes.google.loyalty_class`) and
:class:`LoyaltyObjectContent` (one per card, :mod:`passes.google.loyalty_object`) check
themselves when constructed and raise :class:`GooglePayloadError` naming the offending field,
so content that exists turns into a body the ``walletobjects`` v1 API accepts:

* :func:`loyalty_class_body` is the ``loyaltyClass`` insert/patch body,
* :func:`loyalty_object_body` is the full ``loyaltyObject`` insert/update body,
* :func:`loyalty_object_patch_body` is a ``loyaltyObject`` PATCH body holding only the parts a
  card changes every day (balance, tier, barcode, state) plus the notification preference.

This module is the one place callers import them from; the shared pieces (ids, localized
texts, text modules, links) are in :mod:`passes.google.fields`.
"""

from passes.google.fields import (
    MAX_LINKS,
    MAX_TEXT_MODULES,
    GooglePayloadError,
    Link,
    TextModule,
    localized,
    localized_string,
    resource_id,
    split_resource_id,
    validate_id_suffix,
    validate_issuer_id,
)
from passes.google.loyalty_class import (
    DEFAULT_ACCOUNT_ID_LABEL,
    DEFAULT_ACCOUNT_NAME_LABEL,
    LoyaltyClassContent,
    MultipleDevicesAndHolders,
    loyalty_class_body,
)
from passes.google.loyalty_object import (
    DEFAULT_TIER_LABEL,
    INT32_MAX,
    INT32_MIN,
    NOTIFY_ON_UPDATE,
    NOTIFY_UNSPECIFIED,
    LoyaltyObjectContent,
    ObjectState,
    loyalty_object_body,
    loyalty_object_patch_body,
)

__all__ = [
    "DEFAULT_ACCOUNT_ID_LABEL",
    "DEFAULT_ACCOUNT_NAME_LABEL",
    "DEFAULT_TIER_LABEL",
    "INT32_MAX",
    "INT32_MIN",
    "MAX_LINKS",
    "MAX_TEXT_MODULES",
    "NOTIFY_ON_UPDATE",
    "NOTIFY_UNSPECIFIED",
    "GooglePayloadError",
    "Link",
    "LoyaltyClassContent",
    "LoyaltyObjectContent",
    "MultipleDevicesAndHolders",
    "ObjectState",
    "TextModule",
    "localized",
    "localized_string",
    "loyalty_class_body",
    "loyalty_object_body",
    "loyalty_object_patch_body",
    "resource_id",
    "split_resource_id",
    "validate_id_suffix",
    "validate_issuer_id",
]
