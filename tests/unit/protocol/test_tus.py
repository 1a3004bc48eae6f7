"""Tests of geodrop.protocol.tus: tus 1.0 header rules."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodrop.errors import (
    BadRequest,
    OffsetMismatch,
    PayloadTooLarge,
    PreconditionFailed,
    UnsupportedMediaType,
    UnsupportedTusVersion,
)
from geodrop.protocol.tus import (
    CHECKSUM_ALGORITHMS,
    MAX_METADATA_LENGTH,
    MAX_METADATA_PAIRS,
    OFFSET_CONTENT_TYPE,
    TUS_EXTENSIONS,
    TUS_VERSION,
    check_patch,
    check_tus_resumable,
    encode_metadata,
    http_date,
    options_headers,
    parse_checksum,
    parse_metadata,
    parse_upload_length,
    parse_upload_offset,
)

MAX_INT64 = 2**63 - 1
offsets = st.integers(min_value=0, max_value=MAX_INT64)
keys = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=","),
    min_size=1,
    max_size=16,
)
texts = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=24)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def test_constants() -> None:
    assert TUS_VERSION == "1.0.0"
    assert OFFSET_CONTENT_TYPE == "application/offset+octet-stream"
    assert "checksum" in TUS_EXTENSIONS
    assert CHECKSUM_ALGORITHMS == ("sha1", "sha256", "md5")


@pytest.mark.parametrize("value", ["1.0.0", " 1.0.0 "])
def test_tus_resumable_accepts_1_0_0(value: str) -> None:
    check_tus_resumable(value)


@pytest.mark.parametrize(
    ("value", "words"), [(None, "missing"), ("0.2.2", "'0.2.2' is not supported"), ("", "''")]
)
def test_tus_resumable_rejects_others(value: str | None, words: str) -> None:
    with pytest.raises(UnsupportedTusVersion, match=words) as caught:
        check_tus_resumable(value)
    assert isinstance(caught.value, PreconditionFailed)
    assert caught.value.status == 412
    assert caught.value.headers == {"Tus-Version": "1.0.0"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0), ("1024", 1024), ("007", 7), (" 5 ", 5), ("1" * 19, int("1" * 19))],
)
def test_upload_length(value: str, expected: int) -> None:
    assert parse_upload_length(value, max_size=10**19) == expected


@pytest.mark.parametrize(
    "value", [None, "", "-1", "+1", "1.0", "1e3", "0x10", "1 2", "١٢", "1" * 20, "1_000"]
)
def test_upload_length_rejects_non_decimals(value: str | None) -> None:
    with pytest.raises(BadRequest, match="Upload-Length") as caught:
        parse_upload_length(value, max_size=10**19)
    assert caught.value.status == 400


@given(max_size=offsets, excess=st.integers(min_value=1, max_value=10**6))
def test_upload_length_over_the_limit_is_413(max_size: int, excess: int) -> None:
    length = max_size + excess
    with pytest.raises(PayloadTooLarge, match=f"{length} exceeds .* {max_size}") as caught:
        parse_upload_length(str(length), max_size=max_size)
    assert caught.value.status == 413
    assert caught.value.headers["Tus-Max-Size"] == str(max_size)


@given(max_size=offsets, data=st.data())
def test_upload_length_within_the_limit_round_trips(max_size: int, data: st.DataObject) -> None:
    length = data.draw(st.integers(min_value=0, max_value=max_size))
    assert parse_upload_length(str(length), max_size=max_size) == length


@given(offset=offsets)
def test_upload_offset_round_trips(offset: int) -> None:
    assert parse_upload_offset(str(offset)) == offset


@given(
    value=st.text(max_size=25).filter(
        lambda text: re.fullmatch(r"[ \t]*[0-9]{1,19}[ \t]*", text) is None
    )
)
def test_upload_offset_rejects_everything_else(value: str) -> None:
    with pytest.raises(BadRequest, match="Upload-Offset"):
        parse_upload_offset(value)


def test_upload_offset_missing() -> None:
    with pytest.raises(BadRequest, match="Upload-Offset header is missing"):
        parse_upload_offset(None)


def test_metadata_example_from_the_spec() -> None:
    header = "filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential"
    assert parse_metadata(header) == {
        "filename": "world_domination_plan.pdf",
        "is_confidential": "",
    }


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, {}),
        ("", {}),
        ("a YQ==, b Yg== ,", {"a": "a", "b": "b"}),
        ("name 8J+Qjg==", {"name": "🐎"}),
        ("k ", {"k": ""}),
    ],
)
def test_metadata_parses(header: str | None, expected: dict[str, str]) -> None:
    assert parse_metadata(header) == expected


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ("a YQ==,a Yg==", "key 'a' appears more than once"),
        ("a YQ", "key 'a' is not valid base64"),  # padding is required
        ("a YR==", "key 'a' is not valid base64"),  # not the canonical spelling
        ("a Y Q==", "key 'a' is not valid base64"),
        ("a YQ==YQ==", "key 'a' is not valid base64"),
        ("a YQ-_", "key 'a' is not valid base64"),  # the URL-safe alphabet is not allowed
        ("a éé==", "key 'a' is not valid base64"),
        ("a /w==", "key 'a' is not UTF-8"),
        ("ké YQ==", "key 'ké' must be printable ASCII"),
        ("k\tx YQ==", "key 'k\\\\tx' must be printable"),
        ("a YQ==,\x7f YQ==", "key '\\\\x7f' must be printable"),
    ],
)
def test_metadata_violations_name_the_key(header: str, words: str) -> None:
    with pytest.raises(BadRequest, match=words) as caught:
        parse_metadata(header)
    assert caught.value.status == 400


def test_metadata_limits() -> None:
    many = ",".join(f"k{index}" for index in range(MAX_METADATA_PAIRS))
    assert len(parse_metadata(many)) == MAX_METADATA_PAIRS
    with pytest.raises(BadRequest, match="more than 64 pairs"):
        parse_metadata(many + ",extra")
    with pytest.raises(BadRequest, match="longer than 8192"):
        parse_metadata("k " + "A" * MAX_METADATA_LENGTH)


def test_encode_metadata() -> None:
    assert encode_metadata({"filename": "a.txt", "flag": ""}) == "filename YS50eHQ=,flag"
    assert encode_metadata({}) == ""


@pytest.mark.parametrize("key", ["", "a b", "a,b", "é", "a\n"])
def test_encode_metadata_rejects_bad_keys(key: str) -> None:
    with pytest.raises(ValueError, match="invalid Upload-Metadata key"):
        encode_metadata({key: "x"})


@given(values=st.dictionaries(keys, texts, max_size=16))
def test_metadata_round_trips(values: dict[str, str]) -> None:
    parsed = parse_metadata(encode_metadata(values))
    assert parsed == values
    assert list(parsed) == list(values)


@pytest.mark.parametrize("algorithm", CHECKSUM_ALGORITHMS)
@given(data=st.binary(max_size=64))
def test_checksum_round_trips(algorithm: str, data: bytes) -> None:
    digest = hashlib.new(algorithm, data, usedforsecurity=False).digest()
    assert parse_checksum(f"{algorithm} {b64(digest)}") == (algorithm, digest)
    assert parse_checksum(f"{algorithm.upper()} {b64(digest)}") == (algorithm, digest)


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ("crc32 AAAAAA==", "'crc32' is not supported; use one of sha1, sha256, md5"),
        ("sha1", "an algorithm and a base64 digest"),
        ("", "an algorithm and a base64 digest"),
        (f"sha1 {b64(bytes(20))[:-1]}", "not valid base64"),
        (f"sha1  {b64(bytes(20))}", "not valid base64"),
        (f"sha1 {b64(bytes(32))}", "has 32 bytes, not 20"),
        (f"sha256 {b64(bytes(20))}", "has 20 bytes, not 32"),
        (f"md5 {b64(bytes(15))}", "has 15 bytes, not 16"),
    ],
)
def test_checksum_violations(header: str, words: str) -> None:
    with pytest.raises(BadRequest, match=words) as caught:
        parse_checksum(header)
    assert caught.value.status == 400


def patch(
    offset_header: str | None = "10",
    *,
    length: int = 100,
    current_offset: int = 10,
    content_type: str | None = OFFSET_CONTENT_TYPE,
    content_length: int | None = 90,
) -> int:
    return check_patch(
        length=length,
        current_offset=current_offset,
        offset_header=offset_header,
        content_type=content_type,
        content_length=content_length,
    )


@pytest.mark.parametrize(
    "content_type",
    [OFFSET_CONTENT_TYPE, "Application/Offset+Octet-Stream", f"{OFFSET_CONTENT_TYPE}; x=1"],
)
def test_patch_accepts(content_type: str) -> None:
    assert patch(content_type=content_type) == 10
    assert patch(content_type=content_type, content_length=None) == 10


@pytest.mark.parametrize(
    "content_type", [None, "", "application/octet-stream", "application/offset+octet-streamx"]
)
def test_patch_needs_the_offset_media_type(content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType) as caught:
        patch("not even a number", content_type=content_type)
    assert caught.value.status == 415


def test_patch_body_may_reach_but_not_pass_the_end() -> None:
    assert patch("10", length=100, content_length=90) == 10
    with pytest.raises(PayloadTooLarge, match="Upload-Offset 10 plus Content-Length 91"):
        patch("10", length=100, content_length=91)


def test_patch_rejects_bad_offsets_and_lengths() -> None:
    with pytest.raises(BadRequest, match="Upload-Offset header is missing"):
        patch(None)
    with pytest.raises(BadRequest, match="negative"):
        patch(content_length=-1)


@given(current=offsets, offset=offsets)
def test_patch_offset_must_match(current: int, offset: int) -> None:
    if offset == current:
        assert (
            patch(str(offset), current_offset=current, length=MAX_INT64, content_length=0) == offset
        )
        return
    with pytest.raises(OffsetMismatch, match=f"Upload-Offset {offset} .* {current}") as caught:
        patch(str(offset), current_offset=current, length=MAX_INT64, content_length=0)
    assert caught.value.status == 409


@given(length=offsets, data=st.data())
def test_patch_body_must_fit_the_upload(length: int, data: st.DataObject) -> None:
    offset = data.draw(st.integers(min_value=0, max_value=length))
    body = data.draw(st.integers(min_value=0, max_value=2 * (length - offset) + 1))
    if offset + body <= length:
        assert (
            patch(str(offset), length=length, current_offset=offset, content_length=body) == offset
        )
        return
    with pytest.raises(PayloadTooLarge, match="exceeds Upload-Length") as caught:
        patch(str(offset), length=length, current_offset=offset, content_length=body)
    assert caught.value.status == 413


def test_http_date_examples() -> None:
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(784111777.4) == "Sun, 06 Nov 1994 08:49:37 GMT"


@given(timestamp=st.integers(min_value=0, max_value=253402300799))
def test_http_date_is_imf_fixdate(timestamp: int) -> None:
    text = http_date(timestamp)
    assert re.fullmatch(
        r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} "
        r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT",
        text,
    )
    assert email.utils.parsedate_to_datetime(text).timestamp() == timestamp


def test_options_headers() -> None:
    assert options_headers(1 << 30) == {
        "Tus-Resumable": "1.0.0",
        "Tus-Version": "1.0.0",
        "Tus-Extension": (
            "creation,creation-with-upload,checksum,termination,expiration,concatenation"
        ),
        "Tus-Max-Size": "1073741824",
        "Tus-Checksum-Algorithm": "sha1,sha256,md5",
    }
