"""Authenticating server-to-server requests (file server ↔ file server, → directory).

Each request carries the sender's name, a timestamp, a random nonce and an
HMAC-SHA256 over method, path with query, those three and the body's sha256,
under the cluster's peer key. The receiver refuses a request whose timestamp is
outside a bounded window or whose nonce it has already seen within that window,
so a captured request cannot be replayed.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import OrderedDict
from typing import Final

from geodrop.errors import Unauthorized

PEER_HEADER: Final = "X-Geodrop-Peer"
TIMESTAMP_HEADER: Final = "X-Geodrop-Timestamp"
NONCE_HEADER: Final = "X-Geodrop-Nonce"
SIGNATURE_HEADER: Final = "X-Geodrop-Signature"
REPLAY_WINDOW_SECONDS: Final = 60


def _signature(
    key: bytes, method: str, path_qs: str, peer: str, timestamp: str, nonce: str, body: bytes
) -> str:
    message = "\n".join(
        (
            "geodrop-peer-v1",
            method.upper(),
            path_qs,
            peer,
            timestamp,
            nonce,
            hashlib.sha256(body).hexdigest(),
        )
    ).encode()
    return base64.b64encode(hmac.digest(key, message, "sha256")).decode("ascii")


def sign_request(
    key: bytes, *, method: str, path_qs: str, peer: str, body: bytes, now: float
) -> dict[str, str]:
    """Headers that authenticate one request from ``peer``."""
    timestamp = str(int(now))
    nonce = secrets.token_urlsafe(16)
    return {
        PEER_HEADER: peer,
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: _signature(key, method, path_qs, peer, timestamp, nonce, body),
    }


class ReplayGuard:
    """Remembers the nonces seen within the replay window."""

    def __init__(self, capacity: int = 100_000) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._capacity = capacity

    def first_sighting(self, nonce: str, now: float) -> bool:
        while self._seen:
            oldest, seen_at = next(iter(self._seen.items()))
            if seen_at >= now - 2 * REPLAY_WINDOW_SECONDS:
                break
            del self._seen[oldest]
        # Check before making room: a full guard must not forget the very nonce it is asked about.
        if nonce in self._seen:
            return False
        while len(self._seen) >= self._capacity:
            self._seen.popitem(last=False)
        self._seen[nonce] = now
        return True


def verify_request(
    key: bytes,
    *,
    method: str,
    path_qs: str,
    headers: dict[str, str],
    body: bytes,
    now: float,
    guard: ReplayGuard,
) -> str:
    """Check a peer request's headers; return the peer's name.

    Raises:
        Unauthorized: missing or wrong signature, a stale timestamp, or a replay.
    """
    peer = headers.get(PEER_HEADER, "")
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    nonce = headers.get(NONCE_HEADER, "")
    signature = headers.get(SIGNATURE_HEADER, "")
    if not (peer and timestamp.isdigit() and nonce and signature) or len(timestamp) > 12:
        raise Unauthorized("peer request without valid authentication headers")
    expected = _signature(key, method, path_qs, peer, timestamp, nonce, body)
    if not hmac.compare_digest(expected.encode(), signature.encode("ascii", "replace")):
        raise Unauthorized("peer request signature does not match")
    if abs(now - int(timestamp)) > REPLAY_WINDOW_SECONDS:
        raise Unauthorized("peer request timestamp is outside the replay window")
    if not guard.first_sighting(nonce, now):
        raise Unauthorized("peer request replayed")
    return peer
