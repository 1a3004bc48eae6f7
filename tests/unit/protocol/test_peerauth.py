"""Tests of geodrop.protocol.peerauth: signed server-to-server requests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodrop.errors import Unauthorized
from geodrop.protocol.peerauth import (
    NONCE_HEADER,
    PEER_HEADER,
    REPLAY_WINDOW_SECONDS,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayGuard,
    sign_request,
    verify_request,
)

KEY = b"unit-test-peer-key-0123456789abcdef-0123"
NOW = 1_700_000_000.25
METHOD = "POST"
PATH = "/v1/peer/inbox?region=north"
BODY = b'{"file_id": "north.abcdefghijklmnopqrstuvwxyz"}'


def signed(*, now: float = NOW, peer: str = "north", key: bytes = KEY) -> dict[str, str]:
    return sign_request(key, method=METHOD, path_qs=PATH, peer=peer, body=BODY, now=now)


def check(
    headers: dict[str, str],
    *,
    method: str = METHOD,
    path_qs: str = PATH,
    body: bytes = BODY,
    now: float = NOW,
    guard: ReplayGuard | None = None,
) -> str:
    return verify_request(
        KEY,
        method=method,
        path_qs=path_qs,
        headers=headers,
        body=body,
        now=now,
        guard=guard or ReplayGuard(),
    )


def test_round_trip_names_the_peer() -> None:
    headers = signed(peer="east")
    assert set(headers) == {PEER_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER}
    assert headers[PEER_HEADER] == "east"
    assert headers[TIMESTAMP_HEADER] == str(int(NOW))
    assert check(headers) == "east"


def test_every_request_gets_a_fresh_nonce() -> None:
    nonces = {signed()[NONCE_HEADER] for _ in range(100)}
    assert len(nonces) == 100


def test_method_case_does_not_matter() -> None:
    assert check(signed(), method="post") == "north"


@pytest.mark.parametrize(
    "change",
    [
        {"body": BODY + b" "},
        {"body": b""},
        {"path_qs": "/v1/peer/inbox?region=east"},
        {"path_qs": "/v1/peer/inbox"},
        {"method": "PUT"},
    ],
    ids=["body", "empty-body", "query", "no-query", "method"],
)
def test_changed_request_is_unauthorized(change: dict[str, object]) -> None:
    headers = signed()
    request: dict[str, object] = {"method": METHOD, "path_qs": PATH, "body": BODY, **change}
    with pytest.raises(Unauthorized) as raised:
        verify_request(
            KEY,
            method=str(request["method"]),
            path_qs=str(request["path_qs"]),
            headers=headers,
            body=request["body"],  # type: ignore[arg-type]
            now=NOW,
            guard=ReplayGuard(),
        )
    assert raised.value.status == 401
    assert "WWW-Authenticate" in raised.value.headers


@pytest.mark.parametrize("header", [PEER_HEADER, TIMESTAMP_HEADER, NONCE_HEADER])
def test_changed_header_is_unauthorized(header: str) -> None:
    headers = signed()
    headers[header] = "south" if header == PEER_HEADER else str(int(NOW) + 1)
    if header == NONCE_HEADER:
        headers[header] = "another-nonce"
    with pytest.raises(Unauthorized):
        check(headers)


def test_wrong_key_is_unauthorized() -> None:
    with pytest.raises(Unauthorized):
        check(signed(key=b"another-peer-key-0123456789abcdef-01234"))


@pytest.mark.parametrize("header", [PEER_HEADER, TIMESTAMP_HEADER, NONCE_HEADER, SIGNATURE_HEADER])
def test_missing_header_is_unauthorized(header: str) -> None:
    headers = signed()
    del headers[header]
    with pytest.raises(Unauthorized):
        check(headers)
    headers[header] = ""
    with pytest.raises(Unauthorized):
        check(headers)


@pytest.mark.parametrize("timestamp", ["²", "-5", "1.5", "1e9", "9" * 13, " 1700000000"])
def test_malformed_timestamp_is_unauthorized(timestamp: str) -> None:
    headers = signed()
    headers[TIMESTAMP_HEADER] = timestamp
    with pytest.raises(Unauthorized):
        check(headers)


@pytest.mark.parametrize("skew", [-REPLAY_WINDOW_SECONDS, REPLAY_WINDOW_SECONDS])
def test_timestamp_at_the_edge_of_the_window_is_accepted(skew: int) -> None:
    assert check(signed(now=NOW), now=int(NOW) + skew) == "north"


@pytest.mark.parametrize("skew", [-REPLAY_WINDOW_SECONDS - 1, REPLAY_WINDOW_SECONDS + 1, 10**6])
def test_timestamp_outside_the_window_is_unauthorized(skew: int) -> None:
    with pytest.raises(Unauthorized) as raised:
        check(signed(now=NOW), now=int(NOW) + skew)
    assert "window" in raised.value.message


def test_replay_is_unauthorized() -> None:
    guard = ReplayGuard()
    headers = signed()
    assert check(headers, guard=guard) == "north"
    with pytest.raises(Unauthorized) as raised:
        check(headers, guard=guard, now=NOW + 30)
    assert "replayed" in raised.value.message
    # Another request, with its own nonce, still passes.
    assert check(signed(), guard=guard, now=NOW + 30) == "north"


def test_a_failed_request_does_not_burn_its_nonce() -> None:
    guard = ReplayGuard()
    headers = signed()
    with pytest.raises(Unauthorized):
        check(headers, body=b"tampered", guard=guard)
    assert check(headers, guard=guard) == "north"


def test_guard_remembers_nonces_for_two_windows() -> None:
    guard = ReplayGuard()
    assert guard.first_sighting("n", 1000.0)
    assert not guard.first_sighting("n", 1000.0 + 2 * REPLAY_WINDOW_SECONDS)
    # Past two windows the timestamp check refuses the request anyway, so the nonce may go.
    assert guard.first_sighting("n", 1000.0 + 2 * REPLAY_WINDOW_SECONDS + 1)


def test_full_guard_forgets_the_oldest_nonce_only() -> None:
    guard = ReplayGuard(capacity=3)
    for nonce in ("a", "b", "c"):
        assert guard.first_sighting(nonce, 0.0)
    # Every remembered nonce is still refused while the guard is full.
    for nonce in ("a", "b", "c"):
        assert not guard.first_sighting(nonce, 1.0)
    assert guard.first_sighting("d", 1.0)
    assert guard.first_sighting("a", 1.0)  # the oldest made room for "d"
    assert not guard.first_sighting("d", 1.0)


@given(st.lists(st.text(min_size=1, max_size=8), max_size=60), st.integers(1, 10))
def test_guard_refuses_any_of_its_last_capacity_nonces(nonces: list[str], capacity: int) -> None:
    guard = ReplayGuard(capacity=capacity)
    recent: list[str] = []
    for nonce in nonces:
        assert guard.first_sighting(nonce, 0.0) is (nonce not in recent)
        if nonce not in recent:
            recent.append(nonce)
            del recent[:-capacity]
