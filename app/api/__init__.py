"""HTTP API blueprints that compose several domains.

The loyalty API answers with cards that carry their wallet links (Apple pass download, Google
save link) and enrolls members, so it sits above ``app.loyalty``, ``app.enrollment`` and
``app.wallet``, which know nothing of it. Blueprints of a single domain stay in their domain
package (``app.redemption.api``, ``app.wallet.api``, ``app.auth.api``).
"""
