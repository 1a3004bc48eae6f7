"""The S3 backend's pure parts: state objects, concatenation plans, keys and error mapping."""

from __future__ import annotations

import itertools

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from hypothesis import given
from hypothesis import strategies as st

from geodrop.config import S3StorageConfig
from geodrop.errors import InsufficientStorage, Unavailable
from geodrop.storage.s3 import Segment, plan_parts
from geodrop.storage.s3_objects import S3Objects, checked_id, means_full, translated_errors
from geodrop.storage.s3_uploads import Part, UploadState, part_ranges

CONFIG = S3StorageConfig(
    endpoint_url="http://127.0.0.1:9", bucket="b", access_key="k", secret_key="s", prefix="r1/"
)


def client_error(code: str, status: int, message: str = "") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {
                "HTTPStatusCode": status,
                "HTTPHeaders": {},
                "HostId": "",
                "RequestId": "",
                "RetryAttempts": 0,
            },
        },
        "PutObject",
    )


@given(
    parts=st.lists(st.tuples(st.integers(1, 10**9), st.text(max_size=40)), max_size=5),
    tail=st.binary(max_size=64),
    assembled=st.booleans(),
)
def test_state_round_trip(parts: list[tuple[int, str]], tail: bytes, assembled: bool) -> None:
    state = UploadState(
        "mp-1",
        tuple(Part(n, size, etag) for n, (size, etag) in enumerate(parts, 1)),
        tail,
        assembled,
    )
    assert UploadState.decode(state.encode()) == state
    assert state.offset == sum(size for size, _ in parts) + len(tail)
    assert state.metadata() == {"offset": str(state.offset), "multipart-id": "mp-1"}
    assert state.next_number == len(parts) + 1


def test_a_state_must_be_whole() -> None:
    raw = UploadState("mp", (), b"tail bytes").encode()
    with pytest.raises(ValueError, match="not a geodrop upload state"):
        UploadState.decode(raw[:-1])


@given(size=st.integers(1, 10**4), max_part=st.integers(1, 10**4))
def test_part_ranges_cover_evenly(size: int, max_part: int) -> None:
    ranges = part_ranges(size, max_part)
    assert ranges[0][0] == 0
    assert ranges[-1][1] == size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert all(0 < stop - start <= max_part for start, stop in ranges)
    assert len(ranges) == -(-size // max_part)


@given(st.lists(st.integers(0, 60), max_size=8))
def test_plans_keep_every_byte_in_order_within_s3_rules(sizes: list[int]) -> None:
    min_part, max_part = 10, 25
    sources = [Segment(f"k{i}", 3, 3 + size) for i, size in enumerate(sizes) if size]
    parts, tail = plan_parts(sources, min_part, max_part)
    flattened = [segment for part in parts for segment in part] + tail
    # The same bytes, in order: consecutive segments continue each other or a new source.
    covered = [(s.key, offset) for s in flattened for offset in range(s.start, s.stop)]
    expected = [(s.key, offset) for s in sources for offset in range(s.start, s.stop)]
    assert covered == expected
    for part in parts:
        size = sum(segment.size for segment in part)
        assert min_part <= size <= max_part
        if len(part) > 1:
            assert size == min_part  # read through: never more than S3's smallest part
    assert sum(segment.size for segment in tail) < min_part


def test_large_sources_are_copied_whole() -> None:
    sources = [Segment("a", 0, 30), Segment("b", 0, 4), Segment("c", 0, 12), Segment("d", 0, 3)]
    parts, tail = plan_parts(sources, 10, 100)
    assert parts == [
        [Segment("a", 0, 30)],
        [Segment("b", 0, 4), Segment("c", 0, 6)],
    ]
    assert tail == [Segment("c", 6, 12), Segment("d", 0, 3)]


def test_keys_are_under_the_prefix_and_checked() -> None:
    objects = S3Objects(CONFIG)
    assert objects.state_key("north.abc234") == "r1/uploads/north.abc234/state"
    assert objects.file_key("north.abc234") == "r1/files/north.abc234"
    for unsafe in ("", "north", "../x.y", "north.a/b", "North.abc", "north.ab.c", "north.ab "):
        with pytest.raises(ValueError, match="unsafe"):
            checked_id(unsafe)


@pytest.mark.parametrize(
    ("code", "status", "message", "full"),
    [
        ("EntityTooLarge", 400, "", True),
        ("QuotaExceeded", 403, "", True),
        ("XMinioStorageFull", 507, "", True),
        ("InternalError", 500, "assign volume: no writable volumes", True),
        ("InternalError", 500, "We encountered an internal error", False),
        ("AccessDenied", 403, "Access Denied", False),
        ("NoSuchKey", 404, "", False),
    ],
)
def test_which_errors_mean_full(code: str, status: int, message: str, full: bool) -> None:
    assert means_full(client_error(code, status, message)) is full


def test_errors_are_translated() -> None:
    with pytest.raises(InsufficientStorage), translated_errors():
        raise client_error("EntityTooLarge", 400)
    with pytest.raises(Unavailable), translated_errors():
        raise client_error("SlowDown", 503)
    with pytest.raises(Unavailable), translated_errors():
        raise EndpointConnectionError(endpoint_url="http://127.0.0.1:9")
    with pytest.raises(ClientError), translated_errors():
        raise client_error("AccessDenied", 403)
