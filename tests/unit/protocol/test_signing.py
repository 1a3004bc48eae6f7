"""Tests of geodrop.protocol.signing: signed, expiring transfer URLs."""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodrop.errors import Forbidden, Gone
from geodrop.protocol.signing import Action, Grant, query_for, sign, verify

KEY = b"unit-test-url-signing-key-0123456789abcdef"
OTHER_KEY = b"unit-test-url-signing-key-0123456789abcdeF"
NOW = 1_700_000_000

file_ids = st.from_regex(r"[a-z][a-z0-9-]{0,30}\.[a-z2-7]{26}", fullmatch=True)
link_names = st.from_regex(r"[a-z0-9][a-z0-9-]{0,30}", fullmatch=True)
users = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}", fullmatch=True)
expiries = st.integers(min_value=NOW, max_value=NOW + 10**9)
grants = st.builds(Grant, st.sampled_from(Action), file_ids, link_names, users, expiries)

GRANT = Grant(Action.DOWNLOAD, "north.abcdefghijklmnopqrstuvwxyz", "telecom", "alice", NOW + 60)


def check(
    grant: Grant,
    query: dict[str, str | None],
    *,
    key: bytes = KEY,
    now: float = NOW,
) -> Grant:
    """Verify ``query`` as arriving for the action, file and link of ``grant``."""
    return verify(
        key,
        action=grant.action,
        file_id=grant.file_id,
        link=grant.link,
        user=query.get("u"),
        expires_text=query.get("exp"),
        signature=query.get("sig"),
        now=now,
    )


def signed_query(grant: Grant, key: bytes = KEY) -> dict[str, str | None]:
    return dict(query_for(key, grant))


def test_query_carries_user_expiry_and_signature() -> None:
    query = query_for(KEY, GRANT)
    assert set(query) == {"u", "exp", "sig"}
    assert query["u"] == "alice"
    assert query["exp"] == str(NOW + 60)
    assert query["sig"] == sign(KEY, GRANT)


@given(grants)
def test_signature_is_url_safe_and_unpadded(grant: Grant) -> None:
    # 32 bytes of HMAC-SHA256 in unpadded base64url.
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", sign(KEY, grant))


@given(grants)
def test_a_signed_grant_verifies(grant: Grant) -> None:
    assert check(grant, signed_query(grant)) == grant


@given(grants, st.data())
def test_any_single_change_is_forbidden(grant: Grant, data: st.DataObject) -> None:
    query = signed_query(grant)
    field = data.draw(
        st.sampled_from(["action", "file_id", "link", "user", "expires", "key", "sig"]),
        label="field",
    )
    arriving = grant
    key = KEY
    if field == "action":
        other = Action.UPLOAD if grant.action is Action.DOWNLOAD else Action.DOWNLOAD
        arriving = dataclasses.replace(grant, action=other)
    elif field == "file_id":
        file_id = data.draw(file_ids.filter(lambda f: f != grant.file_id), label="file_id")
        arriving = dataclasses.replace(grant, file_id=file_id)
    elif field == "link":
        link = data.draw(link_names.filter(lambda n: n != grant.link), label="link")
        arriving = dataclasses.replace(grant, link=link)
    elif field == "user":
        query["u"] = data.draw(users.filter(lambda u: u != grant.user), label="user")
    elif field == "expires":
        expires = data.draw(expiries.filter(lambda e: e != grant.expires), label="expires")
        query["exp"] = str(expires)
    elif field == "key":
        key = OTHER_KEY
    else:
        signature = query["sig"]
        assert signature is not None
        position = data.draw(st.integers(0, len(signature) - 1), label="position")
        replacement = "A" if signature[position] != "A" else "B"
        query["sig"] = signature[:position] + replacement + signature[position + 1 :]

    with pytest.raises(Forbidden) as raised:
        check(arriving, query, key=key)
    assert raised.value.status == 403


def test_expired_signature_is_gone() -> None:
    query = signed_query(GRANT)
    assert check(GRANT, query, now=GRANT.expires - 0.5) == GRANT
    with pytest.raises(Gone) as raised:
        check(GRANT, query, now=GRANT.expires + 0.5)
    assert raised.value.status == 410


def test_expired_and_forged_is_forbidden_not_gone() -> None:
    # Expiry is only news to someone holding a genuine URL.
    query = signed_query(GRANT, OTHER_KEY)
    with pytest.raises(Forbidden):
        check(GRANT, query, now=GRANT.expires + 3600)


@pytest.mark.parametrize("missing", ["u", "exp", "sig"])
def test_missing_query_value_is_forbidden(missing: str) -> None:
    query = signed_query(GRANT)
    query[missing] = None
    with pytest.raises(Forbidden):
        check(GRANT, query)
    query[missing] = ""
    with pytest.raises(Forbidden):
        check(GRANT, query)


@pytest.mark.parametrize(
    "expires_text",
    [
        "²",  # a digit to str.isdigit, not to int()
        "١٢٣",  # Arabic-Indic digits: int() would read them as 123
        "+123",
        "-1",
        " 123",
        "123 ",
        "1e9",
        "0x7b",
        "12.5",
        "9" * 13,
        "9" * 400,
    ],
)
def test_malformed_expiry_is_forbidden(expires_text: str) -> None:
    grant = dataclasses.replace(GRANT, expires=123)
    query = signed_query(grant)
    query["exp"] = expires_text
    with pytest.raises(Forbidden):
        check(grant, query, now=100)


garbage = st.one_of(st.none(), st.text(), st.text(alphabet="0123456789²³¹٠١٢", max_size=14))


@given(garbage, garbage, garbage)
def test_garbage_query_values_are_forbidden(
    user: str | None, expires_text: str | None, signature: str | None
) -> None:
    with pytest.raises(Forbidden):
        check(GRANT, {"u": user, "exp": expires_text, "sig": signature})


@given(st.text(), st.text())
def test_garbage_signature_with_genuine_user_and_expiry_is_forbidden(
    signature: str, user_suffix: str
) -> None:
    query = signed_query(GRANT)
    query["sig"] = signature
    with pytest.raises(Forbidden):
        check(GRANT, query)
    query = signed_query(GRANT)
    query["u"] = f"alice{user_suffix}" if user_suffix else "bob"
    with pytest.raises(Forbidden):
        check(GRANT, query)
