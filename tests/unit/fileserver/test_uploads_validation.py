"""Tests of upload negotiation input and of the download's Content-Disposition header."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodrop.errors import BadRequest, PayloadTooLarge
from geodrop.fileserver.blob_handlers import content_disposition
from geodrop.fileserver.uploads import (
    MAX_NAME_LENGTH,
    UploadRequest,
    parse_receivers,
    parse_upload_request,
    validate_name,
)

SHA = "0123456789abcdef" * 4
MAX_SIZE = 1000
MAX_RECEIVERS = 3


def body(**changes: Any) -> dict[str, Any]:
    """A valid negotiation body with ``changes``; a value of ``...`` removes the field."""
    base: dict[str, Any] = {"name": "report.pdf", "size": 10, "sha256": SHA, "receivers": ["bob"]}
    base.update(changes)
    return {key: value for key, value in base.items() if value is not ...}


def parse(document: dict[str, Any]) -> UploadRequest:
    return parse_upload_request(document, max_size=MAX_SIZE, max_receivers=MAX_RECEIVERS)


# ---------------------------------------------------------------------------
# Negotiation bodies


def test_valid_body() -> None:
    request = parse(body(content_type="text/plain", receivers=["bob", "carol", "bob"]))
    assert request == UploadRequest(
        name="report.pdf",
        size=10,
        sha256=SHA,
        receivers=("bob", "carol"),
        content_type="text/plain",
    )


def test_optional_fields_default() -> None:
    request = parse(body(sha256=..., size=0))
    assert request.sha256 is None
    assert request.size == 0
    assert request.content_type == "application/octet-stream"


def test_size_at_the_limit_is_accepted() -> None:
    assert parse(body(size=MAX_SIZE)).size == MAX_SIZE


def test_size_over_the_limit_is_too_large() -> None:
    with pytest.raises(PayloadTooLarge) as raised:
        parse(body(size=MAX_SIZE + 1))
    assert raised.value.status == 413
    assert raised.value.message.startswith("size: ")


BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("no name", body(name=...), "name"),
    ("empty name", body(name=""), "name"),
    ("blank name", body(name="   "), "name"),
    ("numeric name", body(name=5), "name"),
    ("list name", body(name=["a"]), "name"),
    ("long name", body(name="a" * (MAX_NAME_LENGTH + 1)), "name"),
    ("newline in name", body(name="a\nb.txt"), "name"),
    ("CR in name", body(name="a\rb.txt"), "name"),
    ("NUL in name", body(name="a\x00b"), "name"),
    ("DEL in name", body(name="a\x7fb"), "name"),
    ("lone surrogate in name", body(name="a\ud800b.txt"), "name"),
    ("no size", body(size=...), "size"),
    ("negative size", body(size=-1), "size"),
    ("bool size", body(size=True), "size"),
    ("float size", body(size=1.5), "size"),
    ("text size", body(size="10"), "size"),
    ("uppercase sha256", body(sha256=SHA.upper()), "sha256"),
    ("short sha256", body(sha256=SHA[:-1]), "sha256"),
    ("sha256 with newline", body(sha256=SHA + "\n"), "sha256"),
    ("numeric sha256", body(sha256=123), "sha256"),
    ("no receivers", body(receivers=...), "receivers"),
    ("empty receivers", body(receivers=[]), "receivers"),
    ("receivers as text", body(receivers="bob"), "receivers"),
    ("too many receivers", body(receivers=["a", "b", "c", "d"]), "receivers"),
    ("bad receiver", body(receivers=["bob", "bad user"]), "receivers[1]"),
    ("receiver with newline", body(receivers=["bob\n"]), "receivers[0]"),
    ("numeric receiver", body(receivers=[7]), "receivers[0]"),
    ("bare content type", body(content_type="text"), "content_type"),
    ("content type parameters", body(content_type="text/plain; charset=utf-8"), "content_type"),
    ("content type header split", body(content_type="text/plain\r\nX-Evil: 1"), "content_type"),
    ("content type newline", body(content_type="text/plain\n"), "content_type"),
    ("numeric content type", body(content_type=5), "content_type"),
]


@pytest.mark.parametrize(
    ("document", "field"),
    [pytest.param(document, field, id=name) for name, document, field in BAD_BODIES],
)
def test_bad_body_names_the_field(document: dict[str, Any], field: str) -> None:
    with pytest.raises(BadRequest) as raised:
        parse(document)
    assert raised.value.status == 400
    assert raised.value.message.startswith(f"{field}: "), raised.value.message


# ---------------------------------------------------------------------------
# Names and receivers


@pytest.mark.parametrize(
    "name",
    ["a", "报告 final (2).pdf", "résumé.docx", "a" * MAX_NAME_LENGTH, 'quote"and\\slash;%.txt'],
)
def test_sane_names_are_kept_exactly(name: str) -> None:
    assert validate_name(name) == name


# Every code point, lone surrogates included (JSON's "\\ud800" decodes to one).
any_code_point = st.characters(exclude_categories=())


@given(st.text(any_code_point, min_size=1, max_size=MAX_NAME_LENGTH))
def test_validate_name_accepts_only_what_can_be_stored(name: str) -> None:
    unstorable = any(0xD800 <= ord(ch) <= 0xDFFF for ch in name)
    control = any(ord(ch) < 32 or ord(ch) == 127 for ch in name)
    if not name.strip() or control or unstorable:
        with pytest.raises(BadRequest, match=r"^name: "):
            validate_name(name)
    else:
        assert validate_name(name) == name
        name.encode("utf-8")  # metadata stores are UTF-8: this must not raise


def test_receivers_at_the_limit_and_deduplicated_in_order() -> None:
    assert parse_receivers(["c", "a", "b"], 3) == ("c", "a", "b")
    assert parse_receivers(["bob", "alice", "bob", "alice"], 4) == ("bob", "alice")


def test_receivers_limit_counts_the_list_as_sent() -> None:
    with pytest.raises(BadRequest, match=r"^receivers: at most 2$"):
        parse_receivers(["a", "a", "a"], 2)


# ---------------------------------------------------------------------------
# Content-Disposition (RFC 6266 with an RFC 5987 filename*)

_HEADER = re.compile(r"""attachment; filename="([^"\\]*)"; filename\*=UTF-8''([A-Za-z0-9%._~-]*)""")


def disposition_parts(filename: str) -> tuple[str, str]:
    value = content_disposition(filename)
    match = _HEADER.fullmatch(value)
    assert match is not None, value
    return match.group(1), match.group(2)


def test_plain_ascii_name() -> None:
    assert content_disposition("report.pdf") == (
        "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
    )


def test_quotes_backslashes_and_separators_never_reach_the_quoted_string() -> None:
    fallback, encoded = disposition_parts('a"b\\c;d%e.txt')
    assert fallback == "a_b_c_d_e.txt"
    assert encoded == "a%22b%5Cc%3Bd%25e.txt"


def test_non_ascii_name() -> None:
    fallback, encoded = disposition_parts("résumé 报告.pdf")
    assert fallback == "r_sum_ __.pdf"
    assert encoded == "r%C3%A9sum%C3%A9%20%E6%8A%A5%E5%91%8A.pdf"


def test_cr_lf_are_encoded() -> None:
    value = content_disposition("evil\r\nSet-Cookie: session=1.txt")
    assert "\r" not in value
    assert "\n" not in value
    fallback, encoded = disposition_parts("evil\r\nSet-Cookie: session=1.txt")
    assert fallback == "evil__Set-Cookie: session=1.txt"
    assert "%0D%0A" in encoded


def test_directory_parts_never_reach_the_fallback() -> None:
    fallback, encoded = disposition_parts("../../etc/passwd")
    assert fallback == ".._.._etc_passwd"
    assert encoded == "..%2F..%2Fetc%2Fpasswd"


@given(st.text(max_size=300))
def test_any_name_gives_a_safe_header_that_decodes_to_the_name(filename: str) -> None:
    value = content_disposition(filename)
    assert value.isascii()
    assert all(32 <= ord(ch) < 127 for ch in value)
    fallback, encoded = disposition_parts(filename)
    assert len(fallback) == len(filename)
    assert "/" not in fallback
    assert unquote(encoded, errors="strict") == filename


def test_empty_file_must_declare_the_empty_sha256() -> None:
    empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    body = {"name": "e", "size": 0, "receivers": ["bob"]}
    assert (
        parse_upload_request({**body, "sha256": empty}, max_size=10, max_receivers=5).sha256
        == empty
    )
    with pytest.raises(BadRequest, match="sha256"):
        parse_upload_request({**body, "sha256": "0" * 64}, max_size=10, max_receivers=5)
