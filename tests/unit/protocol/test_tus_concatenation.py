"""Tests of the Upload-Concat rules of geodrop.protocol.tus (tus concatenation extension)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodrop.errors import BadRequest
from geodrop.protocol.tus import (
    CONCAT_METADATA_KEY,
    MAX_CONCAT_PARTIALS,
    MAX_UPLOAD_CONCAT_LENGTH,
    PARTIAL,
    TUS_EXTENSIONS,
    UploadConcat,
    client_metadata,
    format_upload_concat,
    parse_metadata,
    parse_upload_concat,
    stored_concat,
    with_concat,
)

ID_A = "north.aaaaaaaaaaaaaaaaaaaaaaaaaa"
ID_B = "north.bbbbbbbbbbbbbbbbbbbbbbbbbb"
# Path segments as upload ids may be: no slash, space, tab, query or fragment character.
segments = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#"),
    min_size=1,
    max_size=30,
)


def test_concatenation_is_advertised() -> None:
    assert "concatenation" in TUS_EXTENSIONS


def test_absent_header_is_an_ordinary_upload() -> None:
    assert parse_upload_concat(None) is None


@pytest.mark.parametrize("value", ["partial", " partial", "partial\t"])
def test_partial(value: str) -> None:
    assert parse_upload_concat(value) == PARTIAL
    assert not PARTIAL.final


@pytest.mark.parametrize(
    "url",
    [
        f"/tus/{ID_B}",
        f"http://127.1.1.1:7701/tus/{ID_B}",
        f"https://link.example/tus/{ID_B}?u=alice&exp=1&sig=abc",
        f"https://link.example/behind/a/proxy/tus/{ID_B}",
        f"/tus/{ID_B}#fragment",
    ],
)
def test_final_takes_urls_and_paths_signed_or_not(url: str) -> None:
    concat = parse_upload_concat(f"final;/tus/{ID_A} {url}")
    assert concat == UploadConcat(final=True, partial_ids=(ID_A, ID_B))


def test_final_list_separators_are_spaces_and_tabs() -> None:
    concat = parse_upload_concat(f"final; /tus/{ID_A}  \t/tus/{ID_B} ")
    assert concat is not None
    assert concat.partial_ids == (ID_A, ID_B)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("", "must be 'partial'"),
        ("Partial", "must be 'partial'"),
        ("partial;x", "must be 'partial'"),
        ("final", "must be 'partial'"),
        (f"final /tus/{ID_A}", "must be 'partial'"),
        ("final;", "at least one"),
        ("final;  ", "at least one"),
        ("final;tus/x", "not an http(s) URL or an absolute path"),
        ("final;ftp://h/tus/x", "not an http(s) URL or an absolute path"),
        ("final;//host/tus/x", "not an http(s) URL or an absolute path"),
        ("final;http:///tus/x", "not an http(s) URL or an absolute path"),
        ("final;http://[::1/tus/x", "not an http(s) URL or an absolute path"),
        ("final;/files/x", "not an upload URL"),
        ("final;/tus/", "not an upload URL"),
        ("final;/tus", "not an upload URL"),
        ("final;/mytus/x", "not an upload URL"),
        ("final;/tus/x/", "not an upload URL"),
        (f"final;/tus/{ID_A} /tus/{ID_A}", "twice"),
        (f"final;/tus/{ID_A} https://h/tus/{ID_A}?sig=1", "twice"),
    ],
)
def test_malformed_values_are_bad_requests(value: str, says: str) -> None:
    with pytest.raises(BadRequest, match=r"Upload-Concat") as refused:
        parse_upload_concat(value)
    assert says in refused.value.message
    assert refused.value.status == 400


def test_bounds() -> None:
    most = "final;" + " ".join(f"/tus/p{i}" for i in range(MAX_CONCAT_PARTIALS))
    concat = parse_upload_concat(most)
    assert concat is not None
    assert len(concat.partial_ids) == MAX_CONCAT_PARTIALS
    with pytest.raises(BadRequest, match="more than"):
        parse_upload_concat(most + " /tus/one-more")
    with pytest.raises(BadRequest, match="longer than"):
        parse_upload_concat("final;/tus/" + "x" * MAX_UPLOAD_CONCAT_LENGTH)


@given(st.lists(segments, min_size=1, max_size=MAX_CONCAT_PARTIALS, unique=True))
def test_format_and_parse_round_trip(ids: list[str]) -> None:
    concat = UploadConcat(final=True, partial_ids=tuple(ids))
    text = format_upload_concat(concat)
    assert text.startswith("final;/tus/")
    assert parse_upload_concat(text) == concat


@given(
    st.lists(segments, min_size=1, max_size=8, unique=True),
    st.sampled_from(["http://127.1.1.1:7701", "https://l.example", ""]),
    st.text(alphabet="abcxyz=&_-", max_size=20),
)
def test_any_upload_url_names_its_last_segment(ids: list[str], origin: str, query: str) -> None:
    urls = [f"{origin}/tus/{upload_id}" + (f"?{query}" if query else "") for upload_id in ids]
    concat = parse_upload_concat("final;" + " ".join(urls))
    assert concat is not None
    assert concat.partial_ids == tuple(ids)


@given(st.text(max_size=200))
def test_any_value_parses_or_is_a_bad_request(value: str) -> None:
    try:
        concat = parse_upload_concat(value)
    except BadRequest:
        return
    assert concat is not None
    assert concat == PARTIAL or (concat.final and concat.partial_ids)


def test_format_partial() -> None:
    assert format_upload_concat(PARTIAL) == "partial"


def test_stored_record_is_out_of_clients_reach() -> None:
    # A client's Upload-Metadata can never carry the record's key.
    with pytest.raises(BadRequest):
        parse_metadata(f"{CONCAT_METADATA_KEY} cGFydGlhbA==")
    sent = parse_metadata("filename YS5iaW4=,receivers Ym9i")
    kept = with_concat(sent, PARTIAL)
    assert stored_concat(kept) == PARTIAL
    assert client_metadata(kept) == sent
    assert stored_concat(sent) is None
    final = UploadConcat(final=True, partial_ids=(ID_A, ID_B))
    # Recording the final's role replaces any earlier record.
    assert stored_concat(with_concat(kept, final)) == final
    assert client_metadata(with_concat(kept, final)) == sent
