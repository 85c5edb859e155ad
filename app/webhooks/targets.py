"""Which URLs a webhook may call (the SSRF guard), checked at registration and again before
every delivery, and the address a delivery connects to.

Outside development (``POINTPASS_ENV=development``) a URL must be ``https://`` and every
address its host resolves to must be public: no loopback, private, link-local, shared,
multicast, reserved or unspecified address, IPv4 or IPv6, IPv4 addresses mapped into IPv6
(``::ffff:10.0.0.1``, 6to4, NAT64) judged as the IPv4 address they carry. An address in
``POINTPASS_WEBHOOK_ALLOWED_NETWORKS`` (comma-separated CIDRs: receivers inside the
operator's own network) is allowed, and so is ``http://`` when every address is in them.

The delivery connects to the address checked here (:attr:`Target.address`), never resolving
the name again, so a name that resolves to a public address at the check and to a private
one at the connection (DNS rebinding) cannot slip through; TLS still verifies the
certificate for the URL's host name (SNI and ``Host`` are the name's).

Name resolution is :func:`resolve`, the one place that asks: a test (or an operator's
embedding) can set ``WEBHOOK_RESOLVER`` in the app's config to a callable
``(host, port) -> [addresses]``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from flask import current_app

from app.errors import Unprocessable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

MAX_URL_LENGTH = 2000
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class TargetRefused(Unprocessable, code="webhook-url-refused", title="Webhook URL refused"):
    """The URL is not one a webhook may call (scheme, form, or where it leads)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail, errors=[{"location": "json", "field": "url",
                                          "message": detail}])


@dataclass(frozen=True)
class Target:
    """Where one delivery goes: the URL's parts and the checked address to connect to."""

    scheme: str
    host: str  # as in the URL, without brackets
    port: int
    path: str  # path and query
    address: str  # the checked address the connection goes to

    @property
    def host_header(self) -> str:
        name = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return name if self.port == default else f"{name}:{self.port}"


def guarded() -> bool:
    """Whether the guard applies: everywhere but ``POINTPASS_ENV=development``."""
    return current_app.config.get("ENV") != "development"


def parse_networks(value: Any) -> tuple[Network, ...]:
    """``POINTPASS_WEBHOOK_ALLOWED_NETWORKS``: comma-separated CIDRs (or a list); ValueError
    naming the one at fault."""
    if not value:
        return ()
    items = value.split(",") if isinstance(value, str) else list(value)
    networks = []
    for item in items:
        item = str(item).strip()
        if item:
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"{item!r} is not a network (such as 10.20.0.0/16)") from None
    return tuple(networks)


def allowed_networks() -> tuple[Network, ...]:
    return parse_networks(current_app.config.get("WEBHOOK_ALLOWED_NETWORKS"))


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def resolve(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to (the one place names are resolved)."""
    resolver: Resolver = current_app.config.get("WEBHOOK_RESOLVER") or _system_resolver
    return resolver(host, port)


def embedded_ipv4(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, 6to4, NAT64), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def is_public(address: Address) -> bool:
    """Whether ``address`` is a public unicast address (judging an IPv6 address that carries
    an IPv4 one by that, and refusing Teredo, whose client address is hidden)."""
    inner = embedded_ipv4(address)
    if inner is not None:
        return is_public(inner)
    if isinstance(address, ipaddress.IPv6Address) and address.teredo is not None:
        return False
    return bool(address.is_global and not (
        address.is_multicast or address.is_private or address.is_loopback
        or address.is_link_local or address.is_reserved or address.is_unspecified))


def _in(address: Address, networks: tuple[Network, ...]) -> bool:
    candidates = [address]
    inner = embedded_ipv4(address)
    if inner is not None:
        candidates.append(inner)
    return any(candidate.version == network.version and candidate in network
               for candidate in candidates for network in networks)


def parse(url: str) -> tuple[str, str, int, str]:
    """The URL's scheme, host, port and path (with query); ``TargetRefused`` for a URL that is
    not an absolute http(s) URL of a host, or that carries credentials or a fragment."""
    if len(url) > MAX_URL_LENGTH or any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise TargetRefused("The URL is too long or contains spaces or control characters.")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise TargetRefused(f"The URL cannot be read: {error}.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("The URL must be an absolute https:// URL with a host.")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused("The URL must not carry a user name or password.")
    if parts.fragment:
        raise TargetRefused("The URL must not have a fragment (#...).")
    host = parts.hostname
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, host, port or (443 if scheme == "https" else 80), path


def check(url: str) -> Target:
    """The :class:`Target` for ``url`` if a webhook may call it now; ``TargetRefused`` (422)
    saying why not. Resolves the host (unless it is an address)."""
    scheme, host, port, path = parse(url)
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses: list[Address] = [literal]
    else:
        try:
            found = resolve(host, port)
        except (OSError, UnicodeError) as error:
            raise TargetRefused(f"The host {host!r} cannot be resolved ({error}).") from None
        addresses = []
        for text in found:
            try:
                addresses.append(ipaddress.ip_address(text.split("%")[0]))
            except ValueError:
                continue
        if not addresses:
            raise TargetRefused(f"The host {host!r} resolves to no address.")
    if guarded():
        networks = allowed_networks()
        inside = [_in(address, networks) for address in addresses]
        for address, allowed in zip(addresses, inside, strict=True):
            if not allowed and not is_public(address):
                raise TargetRefused(
                    f"The URL leads to {address}, which is not a public address (loopback, "
                    "private, link-local, multicast or reserved). A receiver in your own "
                    "network needs its network in POINTPASS_WEBHOOK_ALLOWED_NETWORKS.")
        if scheme != "https" and not all(inside):
            raise TargetRefused("The URL must be https:// (http:// only for receivers in "
                                "POINTPASS_WEBHOOK_ALLOWED_NETWORKS).")
    return Target(scheme, host, port, path, str(addresses[0]))
