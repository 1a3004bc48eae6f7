"""Tests of geodrop.protocol.usertokens: HS256 bearer tokens naming a user."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geodrop.errors import Unauthorized
from geodrop.protocol.usertokens import bearer_token, mint_token, verify_token

KEY = "unit-test-user-token-key-0123456789abcdef"
OTHER_KEY = "unit-test-user-token-key-0123456789abcdeF"
LONG_KEY = KEY * 2  # long enough for HS512 without PyJWT's key-length warning


def forged(claims: dict[str, Any], *, key: str = KEY, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key, algorithm=algorithm)


def in_an_hour() -> int:
    return int(time.time()) + 3600


def test_mint_and_verify() -> None:
    now = time.time()
    token = mint_token(KEY, "alice@example.org", now=now, lifetime_seconds=600)
    assert verify_token(KEY, token) == "alice@example.org"
    claims = jwt.decode(token, KEY, algorithms=["HS256"])
    assert claims == {"sub": "alice@example.org", "iat": int(now), "exp": int(now) + 600}
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


@settings(max_examples=50)
@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}", fullmatch=True))
def test_every_valid_user_id_round_trips(user: str) -> None:
    assert verify_token(KEY, mint_token(KEY, user, now=time.time())) == user


@pytest.mark.parametrize("user", ["", "-alice", ".alice", "al ice", "alice\n", "a" * 129, "ålice"])
def test_minting_refuses_bad_user_ids(user: str) -> None:
    with pytest.raises(ValueError, match="not a valid user id"):
        mint_token(KEY, user, now=time.time())


def test_expired_token() -> None:
    token = mint_token(KEY, "alice", now=time.time() - 7200, lifetime_seconds=3600)
    with pytest.raises(Unauthorized) as raised:
        verify_token(KEY, token)
    assert raised.value.message == "token expired"
    assert raised.value.status == 401
    assert raised.value.headers["WWW-Authenticate"].startswith("Bearer")


def test_wrong_key() -> None:
    token = mint_token(OTHER_KEY, "alice", now=time.time())
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(KEY, token)


def test_alg_none_is_refused() -> None:
    token = jwt.encode({"sub": "alice", "exp": in_an_hour()}, None, algorithm="none")
    assert token.endswith(".")
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(KEY, token)


def test_other_hmac_algorithm_is_refused() -> None:
    token = forged({"sub": "alice", "exp": in_an_hour()}, key=LONG_KEY, algorithm="HS512")
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(LONG_KEY, token)


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
        verify_token(KEY, forged(claims))


@pytest.mark.parametrize("subject", ["", "../etc/passwd", "al ice", "alice\n", "a" * 129, 42, None])
def test_bad_subject(subject: object) -> None:
    with pytest.raises(Unauthorized):
        verify_token(KEY, forged({"sub": subject, "exp": in_an_hour()}))


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "a.b", "Bearer x", "\x00"])
def test_malformed_token(token: str) -> None:
    with pytest.raises(Unauthorized, match="invalid token"):
        verify_token(KEY, token)


def test_tampered_payload() -> None:
    header, _, signature = mint_token(KEY, "alice", now=time.time()).split(".")
    other_payload = forged({"sub": "mallory", "exp": in_an_hour()}).split(".")[1]
    with pytest.raises(Unauthorized):
        verify_token(KEY, f"{header}.{other_payload}.{signature}")


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
