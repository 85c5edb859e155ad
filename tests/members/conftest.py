"""The member-rights tests use the Google Wallet test server's fixtures."""

from tests.wallet.google.conftest import (  # noqa: F401 (fixtures)
    _no_regional_access_boundary_lookup,
    service_account_info,
    wallet_server,
)
