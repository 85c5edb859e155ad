"""The outbox: from "a card changed" to "its wallets were told", knowing no wallet by name.

Layers, lowest first (each imports only those below it)::

    app.extensions, app.background, app.dbutil, app.timeutil   plumbing
    app.outbox          the outbox table, the channel interface and registry, the drain
    app.loyalty         the points store; a change writes outbox rows (``changes.announce``)
    app.wallet.apple    channels: each supplies its audience (which changed cards it must
    app.wallet.google   tell) and its delivery, and registers in ``create_app``
    app.wallet.updates, app.enrollment, the HTTP blueprints

The outbox sits below the points store rather than inside ``app.wallet``: the points store
must write outbox rows in the same transaction as the change it records, and the wallet
channels read the points store, so an outbox among the wallets would make the loyalty layer
import the wallet layer above it. Here the loyalty layer names only the outbox, the outbox
names no wallet, and each wallet plugs in through :mod:`app.outbox.channels`.

- :mod:`app.outbox.models`: the outbox rows and the marketer updates they count towards.
- :mod:`app.outbox.channels`: what a channel supplies, the per-app registry, and the insert
  that writes one row per card and channel with someone to tell.
- :mod:`app.outbox.drain`: leasing rows and handing them to their channels, and the retry
  limit past which a row waits for an operator.
- :mod:`app.outbox.status`: the backlog per channel and the retry of given-up rows, for
  ``pointpass outbox`` and ``/api/v1/admin/outbox``.
"""
