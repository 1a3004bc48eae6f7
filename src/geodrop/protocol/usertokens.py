"""User bearer tokens: JWT, HS256 pinned, ``sub`` is the user id, ``exp`` required.

Keys rotate without downtime: a token names its key in the ``kid`` header, and the
verifier accepts the current key and every key still listed as previous
(``keys.user_token_previous``). A token without ``kid`` (minted before key ids existed)
is checked against the current key only. When the cluster configures an audience or
an issuer, tokens must carry and match ``aud`` / ``iss`` (RFC 7519 §4.1.1, §4.1.3).
"""

from __future__ import annotations

import re
import time
from typing import Any, Final

import jwt

from geodrop.config import KeysConfig
from geodrop.errors import Unauthorized

ALGORITHM: Final = "HS256"
USER_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}\Z")


def mint_token(
    keys: KeysConfig, user: str, *, now: float, lifetime_seconds: int = 30 * 24 * 3600
) -> str:
    """A token for ``user`` valid ``lifetime_seconds`` from ``now``, signed with the current key.

    The header names the key (``kid``); ``aud`` and ``iss`` are set when configured.

    Raises:
        ValueError: ``user`` is not a valid user id.
    """
    if not USER_ID.match(user):
        raise ValueError(f"not a valid user id: {user!r}")
    claims: dict[str, Any] = {"sub": user, "iat": int(now), "exp": int(now) + lifetime_seconds}
    if keys.token_audience is not None:
        claims["aud"] = keys.token_audience
    if keys.token_issuer is not None:
        claims["iss"] = keys.token_issuer
    return jwt.encode(
        claims, keys.user_token, algorithm=ALGORITHM, headers={"kid": keys.user_token_kid}
    )


def _signing_key(keys: KeysConfig, token: str) -> str:
    """The key a token claims to be signed with: its ``kid``'s, or the current one."""
    header = jwt.get_unverified_header(token)
    if "kid" not in header:
        return keys.user_token
    kid = header["kid"]
    known = keys.user_token_keys()
    if not isinstance(kid, str) or kid not in known:
        raise Unauthorized("invalid token: unknown key id")
    return known[kid]


# A client sends its token with every request: checking its HMAC and parsing its JSON
# again each time was a tenth of a download negotiation's CPU (bench/control.py). Kept:
# what a token verified as, under the keys it was verified with, until it expires.
VERIFIED_TOKENS_KEPT: Final = 16384
# By the keys' identity (a configuration's keys are one object for its whole life).
_verified: dict[tuple[int, str], tuple[KeysConfig, str, float, float]] = {}


def verify_token(keys: KeysConfig, token: str) -> str:
    """The user id a valid token names (a token verified before is only checked for
    expiry and ``nbf`` again).

    Raises:
        Unauthorized: the token is malformed, forged, expired, signed with an unknown or
            retired key, uses another algorithm than HS256, lacks ``sub``/``exp``, or
            lacks or mismatches the configured ``aud``/``iss``.
    """
    known = _verified.get((id(keys), token))
    if known is not None and known[0] is keys:
        _, user, expires, not_before = known
        now = time.time()
        if now < not_before:
            raise Unauthorized("invalid token")
        if now < expires:
            return user
        del _verified[(id(keys), token)]
        raise Unauthorized("token expired")
    user, expires, not_before = _verify_signed(keys, token)
    if len(_verified) >= VERIFIED_TOKENS_KEPT:
        del _verified[next(iter(_verified))]  # the oldest kept
    _verified[(id(keys), token)] = (keys, user, expires, not_before)
    return user


def _verify_signed(keys: KeysConfig, token: str) -> tuple[str, float, float]:
    """The user, ``exp`` and ``nbf`` (or -inf) of a token whose signature and claims hold."""
    required = ["exp", "sub"]
    if keys.token_audience is not None:
        required.append("aud")
    if keys.token_issuer is not None:
        required.append("iss")
    try:
        claims = jwt.decode(
            token,
            _signing_key(keys, token),
            algorithms=[ALGORITHM],
            audience=keys.token_audience,
            issuer=keys.token_issuer,
            options={"require": required},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.PyJWTError:
        raise Unauthorized("invalid token") from None
    user = claims.get("sub")
    if not isinstance(user, str) or not USER_ID.match(user):
        raise Unauthorized("invalid token subject")
    # PyJWT has checked both are numbers.
    not_before = claims.get("nbf", float("-inf"))
    return user, float(claims["exp"]), float(not_before)


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
