"""Tests of geodrop.protocol.ranges: Range and conditional decisions (RFC 9110 §13, §14)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodrop.protocol.ranges import (
    ByteRange,
    RangeDecision,
    RangeOutcome,
    decide,
    unsatisfied_content_range,
)

ETAG = '"blob-1"'
OTHER = '"blob-2"'
DATE = "Sun, 06 Nov 1994 08:49:37 GMT"

sizes = st.integers(min_value=0, max_value=10**12)
positions = st.integers(min_value=0, max_value=10**13)


def get(
    range_header: str | None,
    size: int = 1000,
    *,
    method: str = "GET",
    if_range: str | None = None,
    if_match: str | None = None,
    if_none_match: str | None = None,
    last_modified: str | None = DATE,
) -> RangeDecision:
    return decide(
        method=method,
        size=size,
        etag=ETAG,
        range_header=range_header,
        if_range=if_range,
        if_match=if_match,
        if_none_match=if_none_match,
        last_modified=last_modified,
    )


def reference(size: int, first: int | None, last: int | None) -> tuple[RangeOutcome, int, int]:
    """A straightforward reading of RFC 9110 §14.1.1 through Python slicing.

    ``first is None`` means the suffix range ``-last``.
    """
    offsets = range(size)
    if first is None:
        assert last is not None
        if last == 0 or size == 0:
            return RangeOutcome.UNSATISFIABLE, 0, 0
        chosen = offsets[-last:] if last < size else offsets
    else:
        if first >= size:
            return RangeOutcome.UNSATISFIABLE, 0, 0
        chosen = offsets[first:] if last is None else offsets[first : last + 1]
    return RangeOutcome.PARTIAL, chosen[0], chosen[-1] + 1


def test_byte_range_length_and_content_range() -> None:
    span = ByteRange(10, 20)
    assert span.length == 10
    assert span.content_range(100) == "bytes 10-19/100"


@pytest.mark.parametrize(("start", "stop"), [(-1, 3), (5, 4)])
def test_byte_range_rejects_inverted_or_negative_spans(start: int, stop: int) -> None:
    with pytest.raises(ValueError, match="invalid byte range"):
        ByteRange(start, stop)


@pytest.mark.parametrize(("span", "size"), [(ByteRange(0, 0), 10), (ByteRange(5, 11), 10)])
def test_content_range_refuses_what_it_cannot_express(span: ByteRange, size: int) -> None:
    with pytest.raises(ValueError, match="byte range"):
        span.content_range(size)


def test_unsatisfied_content_range() -> None:
    assert unsatisfied_content_range(1234) == "bytes */1234"


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        (RangeOutcome.FULL, 200),
        (RangeOutcome.PARTIAL, 206),
        (RangeOutcome.UNSATISFIABLE, 416),
        (RangeOutcome.NOT_MODIFIED, 304),
        (RangeOutcome.PRECONDITION_FAILED, 412),
    ],
)
def test_status_of_each_outcome(outcome: RangeOutcome, status: int) -> None:
    assert RangeDecision(outcome, ByteRange(0, 0)).status == status


def test_no_range_is_the_whole_blob() -> None:
    assert get(None) == RangeDecision(RangeOutcome.FULL, ByteRange(0, 1000))


@pytest.mark.parametrize(
    ("header", "start", "stop"),
    [
        ("bytes=0-0", 0, 1),
        ("bytes=0-499", 0, 500),
        ("bytes=500-999", 500, 1000),
        ("bytes=500-", 500, 1000),
        ("bytes=-1", 999, 1000),
        ("bytes=-500", 500, 1000),
        ("bytes=-5000", 0, 1000),
        ("bytes=900-5000", 900, 1000),
        ("bytes=0-", 0, 1000),  # the whole blob is still a 206
        ("BYTES=1-2", 1, 3),  # §14.1: range units are case-insensitive
        ("  bytes=1-2  ", 1, 3),
        ("bytes=1-2, ", 1, 3),  # §5.6.1: empty list elements are ignored
        ("bytes=,1-2", 1, 3),
        ("bytes=999-999", 999, 1000),
        ("bytes=0000000000000000005-6", 5, 7),  # 19 digits are still fine
    ],
)
def test_single_ranges(header: str, start: int, stop: int) -> None:
    decision = get(header)
    assert decision == RangeDecision(RangeOutcome.PARTIAL, ByteRange(start, stop))
    assert decision.status == 206


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-1,5-6",  # multipart/byteranges is never served
        "bytes=0-1, 5-6",
        "bytes=-1,0-0",
        "items=0-1",
        "bytes 0-1",
        "bytes=",
        "bytes=,",
        "bytes=abc",
        "bytes=5-1",  # last-pos < first-pos is invalid
        "bytes=1-2-3",
        "bytes=--1",
        "bytes=-",
        "bytes=+1-2",
        "bytes=1 -2",
        "bytes = 1-2",  # no whitespace around "="
        "bytes= 1-2",
        "bytes=١-٢",  # non-ASCII digits
        "bytes=0-" + "9" * 20,  # more than 19 digits
        "bytes=" + "1" * 20 + "-",
        "bytes=-" + "1" * 20,
        "bytes=-" + "1" * 5000,  # beyond Python's int conversion limit
        "",
    ],
)
def test_ignored_ranges_give_the_whole_blob(header: str) -> None:
    assert get(header) == RangeDecision(RangeOutcome.FULL, ByteRange(0, 1000))


@pytest.mark.parametrize(
    ("header", "size"),
    [
        ("bytes=1000-", 1000),
        ("bytes=1000-2000", 1000),
        ("bytes=-0", 1000),
        ("bytes=0-", 0),
        ("bytes=0-0", 0),
        ("bytes=-1", 0),
        ("bytes=" + "9" * 19 + "-", 1000),
    ],
)
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    decision = get(header, size)
    assert decision == RangeDecision(RangeOutcome.UNSATISFIABLE, ByteRange(0, 0))
    assert decision.status == 416


@pytest.mark.parametrize("method", ["HEAD", "PUT", "DELETE", "get"])
def test_range_is_only_for_get(method: str) -> None:
    assert get("bytes=0-1", method=method).outcome is RangeOutcome.FULL


@pytest.mark.parametrize(
    "if_range",
    [ETAG, f"  {ETAG} ", DATE],
)
def test_matching_if_range_allows_the_range(if_range: str) -> None:
    assert get("bytes=0-9", if_range=if_range).range == ByteRange(0, 10)


@pytest.mark.parametrize(
    "if_range",
    [
        OTHER,
        "W/" + ETAG,  # a weak tag never matches (§13.1.5)
        ETAG + "x",
        f"{ETAG}, {OTHER}",
        '"blob-1',
        "Mon, 07 Nov 1994 08:49:37 GMT",
        "sun, 06 nov 1994 08:49:37 gmt",  # exact equality only
        "",
    ],
)
def test_failing_if_range_gives_the_whole_blob(if_range: str) -> None:
    assert get("bytes=0-9", if_range=if_range).outcome is RangeOutcome.FULL


def test_if_range_date_without_last_modified_never_matches() -> None:
    assert get("bytes=0-9", if_range=DATE, last_modified=None).outcome is RangeOutcome.FULL


def test_if_range_without_range_is_ignored() -> None:
    assert get(None, if_range=OTHER).outcome is RangeOutcome.FULL


@pytest.mark.parametrize(
    "if_match", [ETAG, "*", f"{OTHER}, {ETAG}", f" ,{OTHER} ,, {ETAG}, ", '"a,b", "blob-1"']
)
def test_if_match_that_matches_proceeds(if_match: str) -> None:
    assert get("bytes=0-1", if_match=if_match).outcome is RangeOutcome.PARTIAL


@pytest.mark.parametrize(
    "if_match",
    ["W/" + ETAG, OTHER, "", "garbage", f"{ETAG} {OTHER}", f"{ETAG}W/{OTHER}", '"blob-1'],
)
def test_if_match_that_fails_is_412(if_match: str) -> None:
    decision = get("bytes=0-1", if_match=if_match)
    assert decision == RangeDecision(RangeOutcome.PRECONDITION_FAILED, ByteRange(0, 0))
    assert decision.status == 412


@pytest.mark.parametrize("if_none_match", [ETAG, "W/" + ETAG, "*", f'{OTHER}, W/"blob-1"'])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_if_none_match_that_matches_is_304(if_none_match: str, method: str) -> None:
    decision = get("bytes=0-1", method=method, if_none_match=if_none_match)
    assert decision == RangeDecision(RangeOutcome.NOT_MODIFIED, ByteRange(0, 0))
    assert decision.status == 304


def test_if_none_match_that_matches_other_methods_is_412() -> None:
    assert get(None, method="DELETE", if_none_match=ETAG).status == 412


@pytest.mark.parametrize("if_none_match", [OTHER, "W/" + OTHER, "", "garbage", '"blob-1'])
def test_if_none_match_that_fails_proceeds(if_none_match: str) -> None:
    assert get("bytes=0-1", if_none_match=if_none_match).outcome is RangeOutcome.PARTIAL


def test_if_match_is_evaluated_before_if_none_match() -> None:
    decision = get(None, if_match=OTHER, if_none_match=ETAG)
    assert decision.outcome is RangeOutcome.PRECONDITION_FAILED


def test_if_none_match_wins_over_range() -> None:
    assert get("bytes=5000-", if_none_match=ETAG).outcome is RangeOutcome.NOT_MODIFIED


@pytest.mark.parametrize("etag", ["blob", 'W/"blob"', '"a"b"', ""])
def test_own_etag_must_be_strong(etag: str) -> None:
    with pytest.raises(ValueError, match="strong entity tag"):
        decide(
            method="GET",
            size=1,
            etag=etag,
            range_header=None,
            if_range=None,
            if_match=None,
            if_none_match=None,
        )


def test_negative_size_is_a_bug() -> None:
    with pytest.raises(ValueError, match="negative"):
        get(None, -1)


@given(size=sizes, first=positions, length=st.none() | positions)
def test_int_ranges_match_the_reference(size: int, first: int, length: int | None) -> None:
    last = None if length is None else first + length
    header = f"bytes={first}-{'' if last is None else last}"
    outcome, start, stop = reference(size, first, last)
    decision = get(header, size)
    assert decision.outcome is outcome
    assert (decision.range.start, decision.range.stop) == (start, stop)


@given(size=sizes, suffix=positions)
def test_suffix_ranges_match_the_reference(size: int, suffix: int) -> None:
    outcome, start, stop = reference(size, None, suffix)
    decision = get(f"bytes=-{suffix}", size)
    assert decision.outcome is outcome
    assert (decision.range.start, decision.range.stop) == (start, stop)


@given(size=sizes, header=st.text(max_size=40) | st.from_regex(r"bytes=[-0-9, ]{0,30}"))
def test_any_header_gives_a_sane_decision(size: int, header: str) -> None:
    decision = get(header, size)
    assert decision.outcome in (
        RangeOutcome.FULL,
        RangeOutcome.PARTIAL,
        RangeOutcome.UNSATISFIABLE,
    )
    span = decision.range
    if decision.outcome is RangeOutcome.FULL:
        assert span == ByteRange(0, size)
    elif decision.outcome is RangeOutcome.PARTIAL:
        assert 0 <= span.start < span.stop <= size
        match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+)", span.content_range(size))
        assert match is not None
        assert [int(part) for part in match.groups()] == [span.start, span.stop - 1, size]
    else:
        assert span.length == 0


@given(
    size=st.integers(min_value=1, max_value=10**9),
    a=st.integers(min_value=0, max_value=10**9),
    b=st.integers(min_value=0, max_value=10**9),
)
def test_several_ranges_are_never_partial(size: int, a: int, b: int) -> None:
    assert get(f"bytes={a}-,-{b}", size).outcome is RangeOutcome.FULL


@given(
    size=st.integers(min_value=1, max_value=10**6),
    tag=st.from_regex(r'"[a-z0-9]{0,8}"', fullmatch=True),
)
def test_a_weak_or_foreign_if_range_never_gives_partial(size: int, tag: str) -> None:
    assert get("bytes=0-0", size, if_range="W/" + tag).outcome is RangeOutcome.FULL
    if tag != ETAG:
        assert get("bytes=0-0", size, if_range=tag).outcome is RangeOutcome.FULL


@given(
    others=st.lists(st.from_regex(r'(W/)?"[a-z0-9,]{0,8}"', fullmatch=True), max_size=5),
    position=st.integers(min_value=0, max_value=5),
    weak=st.booleans(),
)
def test_if_none_match_finds_the_tag_anywhere_in_a_list(
    others: list[str], position: int, weak: bool
) -> None:
    tags = [*others]
    tags.insert(position, ("W/" if weak else "") + ETAG)
    assert get(None, if_none_match=", ".join(tags)).outcome is RangeOutcome.NOT_MODIFIED
    # Without our tag the list matches nothing, so the request goes through.
    if ETAG not in {tag.removeprefix("W/") for tag in others}:
        assert get(None, if_none_match=", ".join(others)).outcome is RangeOutcome.FULL
