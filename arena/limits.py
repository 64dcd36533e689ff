"""Who a visitor is (their IP address, proxy-aware) and how much they may do: pure functions.

The counts behind the limits live in the database (battles per client hash), so every replica
enforces the same limit; this module only decides.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from arena.messages import Message

__all__ = ["IPV6_PREFIX", "Limit", "check_limit", "client_ip", "visitor_address"]


def _valid_ip(text: str) -> str | None:
    text = text.strip()
    if text.startswith("[") and "]" in text:  # "[::1]:8080"
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # "1.2.3.4:5678"
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def client_ip(peer: str | None, headers: Mapping[str, str], trusted_hops: int) -> str:
    """The visitor's IP address.

    ``peer`` is the address that connected to us. X-Forwarded-For is only believed when
    ``trusted_hops`` proxies that we run sit in front of the arena: each appends the address it saw,
    so the visitor is the ``trusted_hops``-th entry from the right. Entries to the left of it were
    written by the client and may be forged, so they are never used. With ``trusted_hops=0`` the
    header is ignored entirely.

    Returns ``peer`` (or ``"unknown"``) when the header is missing, too short or not an address.
    """
    fallback = (_valid_ip(peer) if peer else None) or (peer or "unknown")
    if trusted_hops <= 0:
        return fallback
    # Several X-Forwarded-For headers are equivalent to one comma-joined header (RFC 7230 3.2.2).
    values = [v for k, v in _header_items(headers) if k.lower() == "x-forwarded-for"]
    entries = [e.strip() for value in values for e in value.split(",") if e.strip()]
    if len(entries) < trusted_hops:
        return fallback
    return _valid_ip(entries[-trusted_hops]) or fallback


IPV6_PREFIX = 64
"""IPv6 addresses in one network of this size are one visitor (a subscriber's whole /64)."""


def visitor_address(ip: str) -> str:
    """The address that stands for one visitor: an IPv4 address, or an IPv6 address's /64 network.

    An IPv6 subscriber gets a whole /64 (2^64 addresses; privacy extensions change the address by
    themselves, and anyone can pick any of them): counted per address, every request could be a
    new visitor, free of the limits. An IPv4 address written as IPv6 (``::ffff:192.0.2.1``) is the
    IPv4 address. Anything that is not an address is returned as it is.
    """
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_PREFIX), strict=False))
    return str(address)


def _header_items(headers: Mapping[str, str]) -> list[tuple[str, str]]:
    # Starlette's Headers keeps repeated headers; .items() of a plain dict gives one each.
    multi = getattr(headers, "multi_items", None)
    return list(multi()) if callable(multi) else list(headers.items())


@dataclass(frozen=True)
class Limit:
    """At most ``count`` events per ``window`` seconds; ``count == 0`` means no limit.

    ``refusal`` is the catalog key of what a visitor over the limit is told; it fills ``{count}``
    (``msg.limit_battles``, ``msg.limit_votes``).
    """

    count: int
    window: float
    refusal: str

    def __post_init__(self) -> None:
        Message(self.refusal, {"count": self.count})  # an unknown key fails where the limit is made


def check_limit(limit: Limit, used: int) -> Message | None:
    """None when one more event is allowed after ``used`` in the window, else the visitor's message."""
    if limit.count <= 0 or used < limit.count:
        return None
    return Message(limit.refusal, {"count": limit.count})
