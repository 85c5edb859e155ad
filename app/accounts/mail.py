"""E-mail: invitations, password resets and card links, over SMTP.

``POINTPASS_SMTP_URL`` says where to send: ``smtp://host:port`` (plain, e.g. a local relay),
``smtp+starttls://user:password@host:587`` (STARTTLS required) or
``smtps://user:password@host:465`` (TLS from the start); user and password are
percent-encoded. ``POINTPASS_MAIL_FROM`` is the sender (default ``Pointpass
<pointpass@the BASE_URL's host>``). Without ``POINTPASS_SMTP_URL`` nothing is sent: the caller
shows the link to copy instead, and the log says the message was skipped (never whom it was
for, nor the link).
"""

from __future__ import annotations

import enum
import logging
import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formataddr
from urllib.parse import unquote, urlsplit

from flask import current_app

log = logging.getLogger("pointpass.mail")

TIMEOUT_SECONDS = 10
SCHEMES = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}


class Sent(enum.StrEnum):
    SENT = "sent"
    NOT_CONFIGURED = "not-configured"  # no POINTPASS_SMTP_URL: show the link instead
    FAILED = "failed"  # the server refused or could not be reached (logged)


def configured() -> bool:
    return bool(current_app.config.get("SMTP_URL"))


def sender() -> str:
    configured_from = current_app.config.get("MAIL_FROM")
    if configured_from:
        return str(configured_from)
    host = urlsplit(current_app.config["BASE_URL"]).hostname or "localhost"
    return formataddr(("Pointpass", f"pointpass@{host}"))


def send(to: str, subject: str, body: str, *, purpose: str) -> Sent:
    """Send a plain-text message. ``purpose`` names it in the log (``invitation``)."""
    url = current_app.config.get("SMTP_URL")
    if not url:
        log.info("e-mail (%s) not sent: POINTPASS_SMTP_URL is not set; the link is shown "
                 "to copy instead", purpose)
        return Sent.NOT_CONFIGURED
    message = EmailMessage()
    message["From"] = sender()
    message["To"] = to
    message["Subject"] = subject
    message.set_content(body)
    try:
        with _connect(str(url)) as smtp:
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as error:
        log.error("e-mail (%s) not sent: %s: %s", purpose, type(error).__name__, error)
        return Sent.FAILED
    log.info("e-mail (%s) sent", purpose)
    return Sent.SENT


def _connect(url: str) -> smtplib.SMTP:
    parts = urlsplit(url)  # checked when the app started (app.config)
    assert parts.hostname is not None
    port = parts.port or SCHEMES[parts.scheme]
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if parts.scheme == "smtps":
        smtp = smtplib.SMTP_SSL(parts.hostname, port, timeout=TIMEOUT_SECONDS, context=context)
    else:
        smtp = smtplib.SMTP(parts.hostname, port, timeout=TIMEOUT_SECONDS)
        if parts.scheme == "smtp+starttls":
            smtp.starttls(context=context)
    if parts.username:
        smtp.login(unquote(parts.username), unquote(parts.password or ""))
    return smtp
