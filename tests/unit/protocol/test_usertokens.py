"""Tests of geodrop.protocol.usertokens: HS256 bearer tokens naming a user."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geodrop.config import KeysConfig
from geodrop.errors import Unauthorized
from geodrop.protocol.usertokens import bearer_token, mint_token, verify_token

KEY = "unit-test-user-token-key-0123456789abcdef"
OTHER_KEY = "unit-test-user-token-key-0123456789abcdeF"
LONG_KEY = KEY * 2  # long enough for HS512 without PyJWT's key-length warning
OLD_KEY = "unit-test-user-token-key-of-last-year-0123"
OLDER_KEY = "unit-test-user-token-key-of-two-years-ago-01"


def keys_of(
    current: str = KEY,
    *,
    kid: str = "default",
    previous: Mapping[str, str] | None = None,
    audience: str | None = None,
    issuer: str | None = None,
) -> KeysConfig:
    return KeysConfig(
        user_token=current,
        peer="unit-test-peer-key-0123456789abcdef-0123",
        url_signing="unit-test-url-key-0123456789abcdef-01234",
        user_token_kid=kid,
        user_token_previous=dict(previous or {}),
        token_audience=audience,
        token_issuer=issuer,
    )


KEYS = keys_of()


def forged(claims: dict[str, Any], *, key: str = KEY, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def in_an_hour() -> int:
    return int(time.time()) + 3600


def test_mint_and_verify() -> None:
    now = time.time()
    token = mint_token(KEYS, "alice@example.org", now=now, lifetime_seconds=600)
    assert verify_token(KEYS, token) == "alice@example.org"
    claims = jwt.decode(token, KEY, algorithms=["HS256"])
    assert claims == {"sub": "alice@example.org", "iat": int(now), "exp": int(now) + 600}
    assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT", "kid": "default"}


@settings(max_examples=50)
@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}", fullmatch=True))
def test_every_valid_user_id_round_trips(user: str) -> None:
    assert verify_token(KEYS, mint_token(KEYS, user, now=time.time())) == user


@pytest.mark.parametrize("user", ["", "-alice", ".alice", "al ice", "alice\n", "a" * 129, "ålice"])
def test_minting_refuses_bad_user_ids(user: str) -> None:
    with pytest.raises(ValueError, match="not a valid user id"):
        mint_token(KEYS, user, now=time.time())


def test_expired_token() -> None:
    token = mint_token(KEYS, "alice", now=time.time() - 7200, lifetime_seconds=3600)
    with pytest.raises(Unauthorized) as raised:
        verify_token(KEYS, token)
    assert raised.value.message == "token expired"
    assert raised.value.status == 401
    assert raised.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_wrong_key() -> None:
    token = mint_token(keys_of(OTHER_KEY), "alice", now=time.time())
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(KEYS, token)


def test_alg_none_is_refused() -> None:
    token = jwt.encode({"sub": "alice", "exp": in_an_hour()}, None, algorithm="none")
    assert token.endswith(".")
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(KEYS, token)


def test_other_hmac_algorithm_is_refused() -> None:
    token = forged({"sub": "alice", "exp": in_an_hour()}, key=LONG_KEY, algorithm="HS512")
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(keys_of(LONG_KEY), token)


@pytest.mark.parametrize(
    "claims",
    [
        {"exp": 10**10},
        {"sub": "alice"},
        {"sub": "alice", "exp": "tomorrow"},
        {},
    ],
    ids=["no-sub", "no-exp", "text-exp", "empty"],
)
def test_missing_or_malformed_claims(claims: dict[str, Any]) -> None:
    with pytest.raises(Unauthorized):
        verify_token(KEYS, forged(claims))


@pytest.mark.parametrize("subject", ["", "../etc/passwd", "al ice", "alice\n", "a" * 129, 42, None])
def test_bad_subject(subject: object) -> None:
    with pytest.raises(Unauthorized):
        verify_token(KEYS, forged({"sub": subject, "exp": in_an_hour()}))


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "a.b", "Bearer x", "\x00"])
def test_malformed_token(token: str) -> None:
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(KEYS, token)


def test_tampered_payload() -> None:
    header, _, signature = mint_token(KEYS, "alice", now=time.time()).split(".")
    other_payload = forged({"sub": "mallory", "exp": in_an_hour()}).split(".")[1]
    with pytest.raises(Unauthorized):
        verify_token(KEYS, f"{header}.{other_payload}.{signature}")


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def.ghi", "abc.def.ghi"),
        ("bearer abc", "abc"),
        ("BEARER   abc  ", "abc"),
    ],
)
def test_bearer_header(header: str, token: str) -> None:
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Bearer    ", "Basic YWxpY2U6cHc=", "Token abc", "abc"],
)
def test_bad_bearer_header(header: str | None) -> None:
    with pytest.raises(Unauthorized) as raised:
        bearer_token(header)
    assert raised.value.status == 401


# ---------------------------------------------------------------------------
# Key ids and rotation


def with_kid(kid: object, claims: dict[str, Any], key: str) -> str:
    """An HS256 token signed with ``key`` whose header names ``kid`` (any JSON value)."""
    return forged_header({"alg": "HS256", "typ": "JWT", "kid": kid}, claims, key)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged_header(header: dict[str, Any], claims: dict[str, Any], key: str) -> str:
    """A token with any header, signed with HMAC-SHA256 under ``key`` whatever ``alg`` says."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = hmac.new(key.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def test_a_token_names_its_key() -> None:
    token = mint_token(keys_of(kid="2025-06"), "alice", now=time.time())
    assert jwt.get_unverified_header(token)["kid"] == "2025-06"


def test_a_token_of_a_previous_key_verifies_after_rotation() -> None:
    before = keys_of(OLD_KEY, kid="2024")
    old_token = mint_token(before, "alice", now=time.time())
    after = keys_of(KEY, kid="2025", previous={"2024": OLD_KEY})
    assert verify_token(after, old_token) == "alice"
    new_token = mint_token(after, "bob", now=time.time())
    assert jwt.get_unverified_header(new_token)["kid"] == "2025"
    assert verify_token(after, new_token) == "bob"
    # Servers not yet rotated do not know the new key id.
    with pytest.raises(Unauthorized, match="unknown key id"):
        verify_token(before, new_token)


def test_several_previous_keys_are_each_accepted() -> None:
    keys = keys_of(KEY, kid="2025", previous={"2024": OLD_KEY, "2023": OLDER_KEY})
    for kid, key in (("2023", OLDER_KEY), ("2024", OLD_KEY), ("2025", KEY)):
        assert verify_token(keys, mint_token(keys_of(key, kid=kid), "alice", now=time.time()))


def test_a_retired_key_no_longer_verifies() -> None:
    old_token = mint_token(keys_of(OLD_KEY, kid="2024"), "alice", now=time.time())
    assert verify_token(keys_of(KEY, kid="2025", previous={"2024": OLD_KEY}), old_token)
    with pytest.raises(Unauthorized, match="unknown key id") as raised:
        verify_token(keys_of(KEY, kid="2025"), old_token)
    assert raised.value.status == 401


def test_an_unknown_kid_is_refused_even_when_signed_with_the_current_key() -> None:
    token = with_kid("nobody-knows", {"sub": "alice", "exp": in_an_hour()}, KEY)
    with pytest.raises(Unauthorized, match="unknown key id"):
        verify_token(keys_of(KEY, kid="2025", previous={"2024": OLD_KEY}), token)


def test_a_kid_must_match_the_key_that_signed() -> None:
    keys = keys_of(KEY, kid="2025", previous={"2024": OLD_KEY})
    signed_with_current = with_kid("2024", {"sub": "alice", "exp": in_an_hour()}, KEY)
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(keys, signed_with_current)


@pytest.mark.parametrize("kid", [7, None, ["2025"], {"k": "2025"}, ""])
def test_a_kid_that_is_not_a_known_string_is_refused(kid: object) -> None:
    token = with_kid(kid, {"sub": "alice", "exp": in_an_hour()}, KEY)
    with pytest.raises(Unauthorized):
        verify_token(keys_of(KEY, kid="2025"), token)


def test_a_token_without_kid_is_checked_against_the_current_key_only() -> None:
    keys = keys_of(KEY, kid="2025", previous={"2024": OLD_KEY})
    claims = {"sub": "alice", "exp": in_an_hour()}
    assert verify_token(keys, forged(claims, key=KEY)) == "alice"
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(keys, forged(claims, key=OLD_KEY))


# ---------------------------------------------------------------------------
# Audience and issuer


AUDIENCE = "geodrop.example"
ISSUER = "https://login.example/"


def test_minted_tokens_carry_the_configured_audience_and_issuer() -> None:
    keys = keys_of(audience=AUDIENCE, issuer=ISSUER)
    token = mint_token(keys, "alice", now=time.time())
    claims = jwt.decode(token, KEY, algorithms=["HS256"], audience=AUDIENCE)
    assert claims["aud"] == AUDIENCE
    assert claims["iss"] == ISSUER
    assert verify_token(keys, token) == "alice"


@pytest.mark.parametrize(
    "extra",
    [
        {"aud": AUDIENCE, "iss": ISSUER},
        {"aud": ["someone-else", AUDIENCE], "iss": ISSUER},
    ],
    ids=["exact", "audience-list"],
)
def test_matching_audience_and_issuer_are_accepted(extra: dict[str, Any]) -> None:
    keys = keys_of(audience=AUDIENCE, issuer=ISSUER)
    assert verify_token(keys, forged({"sub": "alice", "exp": in_an_hour(), **extra})) == "alice"


@pytest.mark.parametrize(
    "extra",
    [
        {"iss": ISSUER},
        {"aud": "other.example", "iss": ISSUER},
        {"aud": [], "iss": ISSUER},
        {"aud": AUDIENCE + ".evil", "iss": ISSUER},
        {"aud": AUDIENCE},
        {"aud": AUDIENCE, "iss": "https://evil.example/"},
        {"aud": AUDIENCE, "iss": ISSUER[:-1]},
        {"aud": AUDIENCE, "iss": [ISSUER]},
    ],
    ids=[
        "no-aud",
        "other-aud",
        "empty-aud",
        "longer-aud",
        "no-iss",
        "other-iss",
        "prefix-iss",
        "list-iss",
    ],
)
def test_missing_or_wrong_audience_or_issuer_is_refused(extra: dict[str, Any]) -> None:
    keys = keys_of(audience=AUDIENCE, issuer=ISSUER)
    # Built by hand: PyJWT itself refuses to encode some of these claims.
    token = forged_header({"alg": "HS256"}, {"sub": "alice", "exp": in_an_hour(), **extra}, KEY)
    with pytest.raises(Unauthorized, match="invalid token") as raised:
        verify_token(keys, token)
    assert raised.value.status == 401


def test_a_token_for_some_audience_is_refused_where_none_is_configured() -> None:
    # RFC 7519 §4.1.3: a recipient that does not identify itself with the audience rejects.
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(KEYS, forged({"sub": "alice", "exp": in_an_hour(), "aud": AUDIENCE}))


def test_without_configured_audience_and_issuer_neither_is_required() -> None:
    assert verify_token(KEYS, forged({"sub": "alice", "exp": in_an_hour()})) == "alice"
    issued = forged({"sub": "alice", "exp": in_an_hour(), "iss": ISSUER})
    assert verify_token(KEYS, issued) == "alice"


# ---------------------------------------------------------------------------
# The algorithm is pinned


def test_hs512_is_refused_with_or_without_kid() -> None:
    claims = {"sub": "alice", "exp": in_an_hour()}
    keys = keys_of(LONG_KEY, kid="2025")
    for headers in (None, {"kid": "2025"}):
        token = jwt.encode(claims, LONG_KEY, algorithm="HS512", headers=headers)
        with pytest.raises(Unauthorized, match="invalid token"):
            verify_token(keys, token)


@pytest.mark.parametrize(
    "alg", ["RS256", "ES256", "PS256", "none", "None", "hs256", "HS384", "HS512", ""]
)
def test_any_alg_header_but_hs256_is_refused_even_with_a_valid_hmac(alg: str) -> None:
    token = forged_header({"alg": alg, "kid": "2025"}, {"sub": "alice", "exp": in_an_hour()}, KEY)
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(keys_of(KEY, kid="2025"), token)


def test_alg_none_with_a_known_kid_is_refused() -> None:
    token = jwt.encode(
        {"sub": "alice", "exp": in_an_hour()}, None, algorithm="none", headers={"kid": "2025"}
    )
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(keys_of(KEY, kid="2025"), token)


# ---------------------------------------------------------------------------
# Tokens verified before


def test_a_token_verified_before_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    expires = int(time.time()) + 60
    token = forged({"sub": "alice", "exp": expires})
    assert verify_token(KEYS, token) == "alice"
    assert verify_token(KEYS, token) == "alice"  # from what was kept
    monkeypatch.setattr(time, "time", lambda: expires + 1.0)
    with pytest.raises(Unauthorized, match="token expired"):
        verify_token(KEYS, token)


def test_a_token_verified_before_is_not_valid_before_its_nbf(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = time.time()
    token = forged({"sub": "alice", "exp": int(now) + 3600, "nbf": int(now) - 10})
    assert verify_token(KEYS, token) == "alice"
    monkeypatch.setattr(time, "time", lambda: now - 60)
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(KEYS, token)


def test_what_one_set_of_keys_verified_does_not_hold_under_another() -> None:
    """After a rotation that retires a key, its tokens fail even if verified before."""
    old_token = mint_token(keys_of(OLD_KEY, kid="2024"), "alice", now=time.time())
    during = keys_of(KEY, kid="2025", previous={"2024": OLD_KEY})
    assert verify_token(during, old_token) == "alice"
    with pytest.raises(Unauthorized, match="unknown key id"):
        verify_token(keys_of(KEY, kid="2025"), old_token)


def test_a_forged_copy_of_a_verified_token_is_refused() -> None:
    token = forged({"sub": "alice", "exp": in_an_hour()})
    assert verify_token(KEYS, token) == "alice"
    header, payload, signature = token.split(".")
    with pytest.raises(Unauthorized):
        verify_token(KEYS, f"{header}.{payload}.{signature[:-2]}AA")
