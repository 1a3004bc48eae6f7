"""How the client splits a file into partial uploads, and its resume records of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodrop.client._parallel import (
    DEFAULT_PARTIALS,
    MAX_PARTIALS,
    PARALLEL_THRESHOLD,
    PIECE_GRANULE,
    pieces,
    split,
)
from geodrop.client._state import PendingUpload, ResumeRecords

MIB = 1024 * 1024
S3_MIN_PART = 5 * MIB


def test_200_mb_is_four_pieces_of_48_mib() -> None:
    assert split(200_000_000, 4) == [48 * MIB, 48 * MIB, 48 * MIB, 200_000_000 - 144 * MIB]


@pytest.mark.parametrize(
    ("size", "parts", "expected"),
    [
        (0, 4, [0]),
        (1, 4, [1]),
        (PIECE_GRANULE, 4, [PIECE_GRANULE]),
        (PIECE_GRANULE + 1, 4, [PIECE_GRANULE, 1]),
        (32 * MIB, 4, [8 * MIB] * 4),
        (32 * MIB + 1, 4, [16 * MIB, 16 * MIB, 1]),
        (100 * MIB, 1, [100 * MIB]),
        (100 * MIB, 2, [56 * MIB, 44 * MIB]),
    ],
)
def test_split_examples(size: int, parts: int, expected: list[int]) -> None:
    assert split(size, parts) == expected


@given(
    size=st.integers(min_value=0, max_value=1 << 40),
    parts=st.integers(min_value=1, max_value=MAX_PARTIALS),
)
def test_split_rules(size: int, parts: int) -> None:
    got = split(size, parts)
    assert sum(got) == size
    assert 1 <= len(got) <= parts
    if len(got) > 1:
        *most, last = got
        assert len(set(most)) == 1, "every piece but the last has the same size"
        assert most[0] % PIECE_GRANULE == 0
        assert most[0] >= S3_MIN_PART
        assert 0 < last <= most[0]
    # No more pieces than needed: one fewer could not hold the file in granules.
    if len(got) > 1:
        assert (len(got) - 1) * got[0] < size


def test_pieces_by_size_unless_told() -> None:
    assert pieces(PARALLEL_THRESHOLD - 1, None) == [PARALLEL_THRESHOLD - 1]
    assert len(pieces(PARALLEL_THRESHOLD, None)) == DEFAULT_PARTIALS
    assert pieces(PARALLEL_THRESHOLD, 1) == [PARALLEL_THRESHOLD]
    assert len(pieces(20 * MIB, 2)) == 2  # asked for: split below the threshold too


def test_parallel_record_round_trip(tmp_path: Path) -> None:
    records = ResumeRecords(tmp_path)
    pending = PendingUpload(
        "",
        "",
        "north",
        "telecom",
        creation_url="http://l/tus",
        partial_sizes=(16 * MIB, 5),
        partial_urls=("http://l/tus/north.a?sig",),
    )
    assert pending.parallel
    records.save("k", pending)
    assert records.load("k") == pending


def test_single_upload_records_of_before_still_load(tmp_path: Path) -> None:
    (tmp_path / "k.json").write_text(
        json.dumps({"file_id": "north.x", "upload_url": "u", "region": "north", "link": "l"})
    )
    loaded = ResumeRecords(tmp_path).load("k")
    assert loaded == PendingUpload("north.x", "u", "north", "l")
    assert loaded is not None
    assert not loaded.parallel


@pytest.mark.parametrize(
    "change",
    [
        {"partial_sizes": 5},
        {"partial_sizes": ["5"]},
        {"partial_sizes": [0]},
        {"partial_urls": "http://l/tus/a"},
        {"partial_urls": [1]},
        {"partial_sizes": [5], "partial_urls": ["a", "b"]},
    ],
)
def test_corrupt_parallel_record_reads_as_none(tmp_path: Path, change: dict[str, object]) -> None:
    data = {
        "file_id": "",
        "upload_url": "",
        "region": "north",
        "link": "l",
        "creation_url": "http://l/tus",
        "partial_sizes": [5, 5],
        "partial_urls": [],
        **change,
    }
    (tmp_path / "k.json").write_text(json.dumps(data))
    assert ResumeRecords(tmp_path).load("k") is None
