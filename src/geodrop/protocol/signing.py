"""Signed, expiring transfer URLs.

A signed URL is a capability: whoever holds it may perform one kind of transfer
(``upload`` or ``download``) of one file, on one link, until it expires. The
signature is an HMAC-SHA256 over all of those, so it is useless for any other
file, link or action, and tampering with the expiry breaks it.
"""

from __future__ import annotations

import base64
import hmac
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from geodrop.errors import Forbidden, Gone

_SIGNATURE_BYTES: Final = 32


class Action(StrEnum):
    """What a signed URL allows."""

    UPLOAD = "upload"
    DOWNLOAD = "download"


@dataclass(frozen=True, slots=True)
class Grant:
    """The facts a signature binds together."""

    action: Action
    file_id: str
    link: str
    user: str
    expires: int

    def message(self) -> bytes:
        parts = (
            "geodrop-url-v1",
            self.action,
            self.file_id,
            self.link,
            self.user,
            str(self.expires),
        )
        return "\n".join(parts).encode()


def sign(key: bytes, grant: Grant) -> str:
    """The URL-safe signature of ``grant`` under ``key``."""
    # hmac.digest: OpenSSL's one-shot HMAC, without an HMAC object per signature.
    digest = hmac.digest(key, grant.message(), "sha256")
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def query_for(key: bytes, grant: Grant) -> dict[str, str]:
    """Query parameters that carry ``grant`` and its signature."""
    return {"u": grant.user, "exp": str(grant.expires), "sig": sign(key, grant)}


def verify(
    key: bytes,
    *,
    action: Action,
    file_id: str,
    link: str,
    user: str | None,
    expires_text: str | None,
    signature: str | None,
    now: float,
) -> Grant:
    """Check a signed URL's query against the request it arrived with.

    Raises:
        Forbidden: no signature, a malformed one, or one that does not match
            this action, file and link (403).
        Gone: the signature is valid but has expired (410): the holder should
            negotiate a fresh URL.
    """
    # isascii: str.isdigit also accepts digits int() rejects ("²") or reads ("١٢").
    if not (expires_text and signature and user) or not (
        expires_text.isascii() and expires_text.isdigit()
    ):
        raise Forbidden("this URL is not signed for this transfer")
    if len(expires_text) > 12:
        raise Forbidden("this URL is not signed for this transfer")
    grant = Grant(action, file_id, link, user, int(expires_text))
    expected = sign(key, grant)
    # compare_digest keeps the comparison constant-time.
    if not hmac.compare_digest(expected.encode(), signature.encode("ascii", "replace")):
        raise Forbidden("this URL is not signed for this transfer")
    if grant.expires < now:
        raise Gone("this signed URL has expired; negotiate the transfer again")
    return grant
