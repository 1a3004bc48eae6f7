"""Tests of geodrop.protocol.cors: which origins may call, and what preflights get."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodrop.protocol.cors import (
    ALLOWED_HEADERS,
    EXPOSED_HEADERS,
    MAX_AGE_SECONDS,
    is_preflight,
    policy_for,
    preflight,
    response_headers,
    vary_with_origin,
)

APP = "http://127.0.0.1:7700"
CHAT = "https://chat.example"
POLICY = policy_for([APP, CHAT], extra_exposed=["X-Request-Id"])


@pytest.mark.parametrize(
    ("method", "headers", "expected"),
    [
        ("OPTIONS", {"Origin": APP, "Access-Control-Request-Method": "PATCH"}, True),
        # tus discovery: OPTIONS without the preflight's request-method header.
        ("OPTIONS", {"Origin": APP}, False),
        ("OPTIONS", {"Access-Control-Request-Method": "PATCH"}, False),
        ("OPTIONS", {}, False),
        ("PATCH", {"Origin": APP, "Access-Control-Request-Method": "PATCH"}, False),
    ],
)
def test_a_preflight_is_options_with_origin_and_request_method(
    method: str, headers: dict[str, str], expected: bool
) -> None:
    assert is_preflight(method, headers) is expected


def test_an_allowed_origin_gets_every_method_and_header_tus_and_ranges_need() -> None:
    answer = preflight(POLICY, APP, "PATCH", "tus-resumable, upload-offset, content-type")
    assert answer.allowed
    assert answer.headers["Access-Control-Allow-Origin"] == APP
    methods = answer.headers["Access-Control-Allow-Methods"].split(", ")
    assert methods == ["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"]
    allowed = set(answer.headers["Access-Control-Allow-Headers"].split(", "))
    assert {
        "Authorization",
        "Content-Type",
        "Tus-Resumable",
        "Upload-Length",
        "Upload-Offset",
        "Upload-Metadata",
        "Upload-Checksum",
        "Upload-Concat",
        "Upload-Defer-Length",
        "Range",
        "If-Range",
        "X-HTTP-Method-Override",
    } <= allowed
    assert answer.headers["Access-Control-Max-Age"] == str(MAX_AGE_SECONDS)
    assert "Access-Control-Allow-Credentials" not in answer.headers


def test_the_second_origin_is_allowed_too_and_answered_with_its_own_name() -> None:
    answer = preflight(POLICY, CHAT, "POST", "Authorization")
    assert answer.headers["Access-Control-Allow-Origin"] == CHAT


@pytest.mark.parametrize(
    "origin",
    [
        None,
        "null",
        "http://127.0.0.1:7701",  # another port is another origin
        "https://127.0.0.1:7700",  # another scheme too
        "http://127.0.0.1:7700/",  # browsers never send a path; no loose matching
        "HTTP://127.0.0.1:7700",
        "https://chat.example.evil.test",
        "*",
    ],
)
def test_other_origins_are_refused_without_cors_headers(origin: str | None) -> None:
    answer = preflight(POLICY, origin, "GET", None)
    assert not answer.allowed
    assert answer.headers == {}
    assert "origin" in answer.reason
    assert response_headers(POLICY, origin) == {}


@pytest.mark.parametrize(
    ("method", "requested", "reason"),
    [
        ("PUT", None, "method PUT"),
        ("TRACE", None, "method TRACE"),
        (None, None, "method None"),
        ("PATCH", "Tus-Resumable, Cookie", "header Cookie"),
        ("GET", "X-Secret", "header X-Secret"),
    ],
)
def test_methods_and_headers_outside_the_policy_are_refused(
    method: str | None, requested: str | None, reason: str
) -> None:
    answer = preflight(POLICY, APP, method, requested)
    assert not answer.allowed
    assert answer.headers == {}
    assert reason in answer.reason


@given(
    st.lists(st.sampled_from(ALLOWED_HEADERS), max_size=8),
    st.sampled_from([", ", ",", " , "]),
    st.booleans(),
)
def test_requested_headers_are_matched_whatever_their_case_and_spacing(
    names: list[str], separator: str, upper: bool
) -> None:
    requested = separator.join(n.upper() if upper else n.lower() for n in names)
    assert preflight(POLICY, APP, "PATCH", requested).allowed


def test_actual_answers_expose_what_tus_range_downloads_and_errors_need() -> None:
    headers = response_headers(POLICY, APP)
    assert headers["Access-Control-Allow-Origin"] == APP
    exposed = headers["Access-Control-Expose-Headers"].split(", ")
    for name in (
        "Location",
        "Upload-Offset",
        "Upload-Length",
        "Upload-Metadata",
        "Tus-Resumable",
        "Tus-Version",
        "Tus-Extension",
        "Tus-Max-Size",
        "Upload-Expires",
        "Content-Range",
        "Content-Length",
        "Accept-Ranges",
        "ETag",
        "Retry-After",
        "X-Request-Id",
    ):
        assert name in exposed
    assert len(exposed) == len(set(exposed)) == len(EXPOSED_HEADERS) + 1


def test_an_extra_exposed_header_already_in_the_list_is_not_repeated() -> None:
    policy = policy_for([APP], extra_exposed=["Location"])
    assert policy.expose_headers == EXPOSED_HEADERS


@pytest.mark.parametrize(
    ("vary", "expected"),
    [
        (None, "Origin"),
        ("", "Origin"),
        ("Accept-Encoding", "Accept-Encoding, Origin"),
        ("accept-encoding,origin", "accept-encoding, origin"),
        ("Origin", "Origin"),
        ("*", "*"),
    ],
)
def test_vary_names_origin_once(vary: str | None, expected: str) -> None:
    assert vary_with_origin(vary) == expected
