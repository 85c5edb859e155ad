"""A local SMTP server (aiosmtpd) that keeps what it receives: tests send real e-mail to it."""

from __future__ import annotations

import email
import email.policy
import re
import threading
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller


class Inbox:
    """What the server received, as parsed messages (``messages``); thread-safe."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self._arrived:
            self.messages.append(message)  # type: ignore[arg-type]
            self._arrived.notify_all()
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        with self._lock:
            return [m for m in self.messages if m["To"] == address]

    def wait_for(self, address: str, count: int = 1, timeout: float = 10) -> list[EmailMessage]:
        """The messages to ``address`` once there are ``count`` (fails after ``timeout`` s)."""
        with self._arrived:
            arrived = self._arrived.wait_for(
                lambda: len([m for m in self.messages if m["To"] == address]) >= count, timeout)
        assert arrived, f"no {count} message(s) to {address} within {timeout} s"
        return self.to(address)


def link_in(message: EmailMessage) -> str:
    """The one https link in a message's text."""
    body = message.get_content()
    found = re.findall(r"https?://\S+", body)
    assert len(found) == 1, body
    return str(found[0])


class SMTPTestServer:
    """aiosmtpd on 127.0.0.1 at ``port``; ``url`` is the app's ``SMTP_URL`` for it."""

    def __init__(self, port: int) -> None:
        self.inbox = Inbox()
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=port)
        self.url = f"smtp://127.0.0.1:{port}"

    def start(self) -> SMTPTestServer:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
