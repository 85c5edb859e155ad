"""Outbound webhooks (Standard Webhooks): a program's endpoints hear about its events.

Layers, lowest first (each imports only those below it)::

    app.webhooks.models     endpoints, their subscriptions, events, deliveries, attempts
    app.webhooks.signing    secrets (``whsec_``) and ``webhook-signature`` values
    app.webhooks.targets    which URLs may be called (the SSRF guard), name resolution
    app.webhooks.sender     one HTTP POST to the address that was checked
    app.webhooks.drain      leasing due deliveries, sending them, backing off, giving up
    app.webhooks.emit       ``emit()``: the event row and one delivery row per subscribed
                            enabled endpoint, in the transaction of the change (the domains
                            call it: app.loyalty, app.enrollment, app.wallet, ...)
    app.webhooks.endpoints  the endpoints' service: create, change, rotate, delete, replay
    app.webhooks.api        ``/api/v1/webhooks``

It is the wallet outbox's mechanism (:mod:`app.outbox`) with rows of its own: rows written
with the change, a coalesced drain asked for after commit, leases that a dead drain's rows
outlive, and the periodic sweep (``app.wallet.sweep``) that asks for a drain.
"""
