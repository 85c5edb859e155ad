"""APNs client for Apple Wallet pass update pushes.

Wallet learns that a pass changed from an empty push: an HTTP/2 ``POST`` of ``{}`` to
``https://api.push.apple.com/3/device/<push token>`` with ``apns-topic: <pass type identifier>``,
over TLS authenticated with the Pass Type ID certificate and key. The device then asks the
PassKit web service which passes changed and downloads them.

:class:`APNsClient` keeps one HTTP/2 connection open across calls and runs many streams on it
at once (up to ``max_concurrent_streams``, and never more than the server advertises). It is
raw ``h2`` over an asyncio TLS connection, driven by callbacks rather than a task per push,
because per-push overhead is what limits a fan-out of thousands of pushes.

Read it top down; each module imports only the ones below it:

- ``client``: :class:`APNsClient`, the synchronous and async entry points, and the private
  event-loop thread they share;
- ``pool``: the pushes in progress on that loop: queueing, retries with backoff, outcomes,
  and opening, watching (PING) and replacing connections;
- ``connection``: one HTTP/2 connection (an asyncio protocol) that sends pushes and reports
  their answers to the pool;
- ``tls``: the TLS context with the Pass Type ID certificate, and key-loading errors;
- ``results``: :class:`Outcome`, :class:`PushResult`, the errors, and reading APNs' answers.

Nothing here imports Flask or the database: callers map :class:`PushResult` outcomes to their
own bookkeeping (for example, delete registrations whose token came back ``UNREGISTERED``).
"""

from app.wallet.apple.apns.client import APNsClient
from app.wallet.apple.apns.results import (
    APNS_URL,
    BAD_TOKEN_REASONS,
    PAYLOAD,
    APNsClientClosed,
    APNsCredentialsError,
    Outcome,
    PushResult,
)

__all__ = [
    "APNS_URL",
    "BAD_TOKEN_REASONS",
    "PAYLOAD",
    "APNsClient",
    "APNsClientClosed",
    "APNsCredentialsError",
    "Outcome",
    "PushResult",
]
