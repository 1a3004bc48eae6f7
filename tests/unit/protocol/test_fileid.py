"""Tests of geodrop.protocol.fileid: ``REGION.TOKEN`` ids."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodrop.errors import NotFound
from geodrop.protocol.fileid import FileId, new_file_id, parse_file_id

TOKEN = "abcdefghijklmnopqrstuvwxyz"  # 26 characters of the base32 alphabet
REGION_CHARS = string.ascii_lowercase + string.digits + "-"
TOKEN_CHARS = string.ascii_lowercase + "234567"

regions = st.from_regex(r"[a-z][a-z0-9-]{0,30}", fullmatch=True)
tokens = st.text(alphabet=TOKEN_CHARS, min_size=26, max_size=26)


def is_file_id(text: str) -> bool:
    """The format, stated without a regular expression."""
    region, dot, token = text.rpartition(".")
    return (
        dot == "."
        and 1 <= len(region) <= 31
        and region[0] in string.ascii_lowercase
        and all(ch in REGION_CHARS for ch in region)
        and len(token) == 26
        and all(ch in TOKEN_CHARS for ch in token)
    )


def test_new_ids_round_trip() -> None:
    file_id = new_file_id("north")
    assert file_id.region == "north"
    assert len(file_id.token) == 26
    assert set(file_id.token) <= set(TOKEN_CHARS)
    assert str(file_id) == f"north.{file_id.token}"
    assert parse_file_id(str(file_id)) == file_id


def test_new_ids_are_unguessable() -> None:
    tokens_seen = {new_file_id("east").token for _ in range(1000)}
    assert len(tokens_seen) == 1000


@given(regions)
def test_any_region_round_trips(region: str) -> None:
    file_id = new_file_id(region)
    assert parse_file_id(str(file_id)) == FileId(region, file_id.token)


@given(regions, tokens)
def test_well_formed_ids_parse(region: str, token: str) -> None:
    assert parse_file_id(f"{region}.{token}") == FileId(region, token)


near_misses = st.builds(
    lambda region, token, junk, where: (
        f"{region}.{token}"[:where] + junk + f"{region}.{token}"[where:]
    ),
    regions,
    tokens,
    st.sampled_from(["", ".", "/", "\n", " ", "A", "1", "8", "-", "..", "%2e", "\x00", "é"]),
    st.integers(min_value=0, max_value=60),
)


@given(st.one_of(st.text(), near_misses, st.text(alphabet=REGION_CHARS + ".", max_size=70)))
def test_text_parses_only_if_it_has_the_format(text: str) -> None:
    if is_file_id(text):
        assert str(parse_file_id(text)) == text
    else:
        with pytest.raises(NotFound):
            parse_file_id(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "north",
        "north.",
        f".{TOKEN}",
        f"North.{TOKEN}",
        f"1north.{TOKEN}",
        f"-north.{TOKEN}",
        f"no_rth.{TOKEN}",
        f"no/rth.{TOKEN}",
        f"north..{TOKEN}",
        f"north.{TOKEN[:-1]}",
        f"north.{TOKEN}a",
        f"north.{TOKEN.upper()}",
        f"north.{TOKEN[:-1]}1",
        f"north.{TOKEN[:-1]}8",
        f"north.{TOKEN}\n",
        f" north.{TOKEN}",
        f"{'n' * 32}.{TOKEN}",
        f"../north.{TOKEN}",
    ],
)
def test_malformed_ids_are_not_found(text: str) -> None:
    with pytest.raises(NotFound) as raised:
        parse_file_id(text)
    assert raised.value.status == 404
    # A malformed id is answered exactly like an unknown one: nothing about the input.
    assert raised.value.message == "no such file"


def test_longest_region_is_accepted() -> None:
    region = "n" * 31
    assert parse_file_id(f"{region}.{TOKEN}") == FileId(region, TOKEN)
