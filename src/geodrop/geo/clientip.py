"""Which address a request really comes from.

The socket peer is the only address nobody can forge. ``X-Forwarded-For`` is
believed only when that peer is one of the operator's trusted proxies, and even
then only its right-hand end: each proxy *appends* the address it saw, so the
entries left of the last trusted proxy's are whatever the client chose to send
(DESIGN.md §2, §7). ``X-Real-IP`` is never consulted: it has no chain to check.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Final

from geodrop.errors import BadRequest

IPAddress = IPv4Address | IPv6Address

# Bounds the work an (authenticated-by-address) proxy can make us do per request;
# a real chain of a handful of proxies needs a few hundred characters at most.
MAX_FORWARDED_FOR_CHARS: Final = 4096

# The two forms in which a proxy may have written a port after the address; a bare
# IPv6 address is never split on ':' since its last group would look like a port.
_IPV4_WITH_PORT: Final = re.compile(r"([0-9]{1,3}(?:\.[0-9]{1,3}){3}):([0-9]{1,5})")
_BRACKETED_IPV6: Final = re.compile(r"\[([^\[\]]+)\](?::([0-9]{1,5}))?")
_OWS: Final = " \t"


def client_ip(
    peer: str | None,
    forwarded_for: list[str],
    trusted_proxies: Sequence[IPv4Network | IPv6Network],
) -> IPAddress:
    """The address of the client a request comes from.

    When the socket peer is a trusted proxy, the ``X-Forwarded-For`` entries of
    all such headers, in order, are walked from the right past every trusted
    proxy; the first untrusted entry is the client. If every entry is trusted the
    leftmost is taken; with no entries at all, the peer itself. Headers sent by an
    untrusted peer are ignored without even being parsed. IPv4-mapped IPv6
    addresses (``::ffff:a.b.c.d``) come back as IPv4, and IPv6 zone ids are dropped.

    Args:
        peer: the socket peer address, as the transport reports it.
        forwarded_for: the values of every ``X-Forwarded-For`` header, in the order
            they arrived; each may hold comma-separated entries.
        trusted_proxies: the networks whose forwarded headers are believed.

    Returns:
        The client's address.

    Raises:
        BadRequest: the peer is missing or not an IP address; or, from a trusted
            peer only, the headers total more than ``MAX_FORWARDED_FOR_CHARS``
            characters or hold an entry that is not an IP address.
    """
    if peer is None:
        raise BadRequest("the connection has no peer address")
    peer_ip = _peer_address(peer)
    if not trusted_proxies or not _is_trusted(peer_ip, trusted_proxies):
        return peer_ip
    entries = _forwarded_entries(forwarded_for)
    if not entries:
        return peer_ip
    for entry in reversed(entries):
        if not _is_trusted(entry, trusted_proxies):
            return entry
    # Every hop is a trusted proxy: the leftmost is the closest we know to the client.
    return entries[0]


# A client's connections and requests come from the same few addresses: parsing one
# costs more than the dictionary probe that finds it again.
@lru_cache(maxsize=65536)
def _peer_address(peer: str) -> IPAddress:
    try:
        return _normalise(ip_address(peer))
    except ValueError:
        raise BadRequest(f"the peer address is not an IP address: {peer!r}") from None


@lru_cache(maxsize=65536)
def peer_address(peer: str) -> tuple[IPAddress, str]:
    """A socket peer's address and its text, remembered by the peer's own text (cheaper
    to find again than by the address: ``IPv4Address`` hashes in Python).

    Raises:
        BadRequest: ``peer`` is not an IP address.
    """
    ip = _peer_address(peer)
    return ip, str(ip)


@lru_cache(maxsize=65536)
def address_text(ip: IPAddress) -> str:
    """``str(ip)``, remembered: the rate limit, the locator's answer and the access log
    each write the client's address of every request."""
    return str(ip)


def _forwarded_entries(values: list[str]) -> list[IPAddress]:
    """Parse every entry of the given ``X-Forwarded-For`` values, left to right."""
    # Several header lines are one comma-separated list (RFC 9110 §5.3), so their
    # size limit is on the whole.
    total = sum(len(value) for value in values) + 2 * max(len(values) - 1, 0)
    if total > MAX_FORWARDED_FOR_CHARS:
        raise BadRequest(
            f"X-Forwarded-For is {total} characters long; "
            f"at most {MAX_FORWARDED_FOR_CHARS} are accepted"
        )
    entries: list[IPAddress] = []
    for value in values:
        for raw in value.split(","):
            text = raw.strip(_OWS)
            # RFC 9110 §5.6.1: recipients must accept and ignore empty list elements.
            if text:
                entries.append(_parse_entry(text))
    return entries


def _parse_entry(text: str) -> IPAddress:
    """One ``X-Forwarded-For`` entry: an address, ``a.b.c.d:port``, or ``[v6]:port``."""
    address = text
    port: str | None = None
    if match := _IPV4_WITH_PORT.fullmatch(text):
        address, port = match.group(1), match.group(2)
    elif match := _BRACKETED_IPV6.fullmatch(text):
        address, port = match.group(1), match.group(2)
        if "." in address and ":" not in address:
            # Brackets are for IPv6 only (RFC 3986 §3.2.2); "[1.2.3.4]" is garbage.
            raise _not_an_address(text)
    # A zone id only means something on the proxy's own link; no proxy writes one,
    # so an entry carrying one was made up.
    if "%" in address or (port is not None and int(port) > 65535):
        raise _not_an_address(text)
    try:
        return _normalise(ip_address(address))
    except ValueError:
        raise _not_an_address(text) from None


def _not_an_address(text: str) -> BadRequest:
    shown = text if len(text) <= 60 else text[:57] + "..."
    return BadRequest(f"X-Forwarded-For entry is not an IP address: {shown!r}")


def _normalise(ip: IPAddress) -> IPAddress:
    """Fold the forms one host can take into one, so trust checks and lookups agree."""
    if isinstance(ip, IPv6Address):
        if ip.ipv4_mapped is not None:
            # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; the trusted
            # proxy list and the geo tables speak plain IPv4.
            return ip.ipv4_mapped
        if ip.scope_id is not None:
            return IPv6Address(ip.packed)
    return ip


def _is_trusted(ip: IPAddress, trusted_proxies: Sequence[IPv4Network | IPv6Network]) -> bool:
    # `in` is simply False across address families, so mixed lists need no sorting.
    return any(ip in network for network in trusted_proxies)
