"""User bearer tokens: JWT, HS256 pinned, ``sub`` is the user id, ``exp`` required."""

from __future__ import annotations

import re
from typing import Final

import jwt

from geodrop.errors import Unauthorized

ALGORITHM: Final = "HS256"
USER_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}\Z")


def mint_token(key: str, user: str, *, now: float, lifetime_seconds: int = 30 * 24 * 3600) -> str:
    """A token for ``user`` valid ``lifetime_seconds`` from ``now``.

    Raises:
        ValueError: ``user`` is not a valid user id.
    """
    if not USER_ID.match(user):
        raise ValueError(f"not a valid user id: {user!r}")
    claims = {"sub": user, "iat": int(now), "exp": int(now) + lifetime_seconds}
    return jwt.encode(claims, key, algorithm=ALGORITHM)


def verify_token(key: str, token: str) -> str:
    """The user id a valid token names.

    Raises:
        Unauthorized: the token is malformed, forged, expired or lacks ``sub``/``exp``.
    """
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.PyJWTError:
        raise Unauthorized("invalid token") from None
    user = claims.get("sub")
    if not isinstance(user, str) or not USER_ID.match(user):
        raise Unauthorized("invalid token subject")
    return user


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer …`` header.

    Raises:
        Unauthorized: the header is missing or not a bearer token.
    """
    if not authorization:
        raise Unauthorized("missing Authorization: Bearer token")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("expected Authorization: Bearer token")
    return token.strip()
