"""Resume records and safe download names of the client library."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from geodrop.client._state import PendingUpload, ResumeRecords
from geodrop.client._transfer import safe_file_name


def test_resume_record_round_trip_and_forget(tmp_path: Path) -> None:
    records = ResumeRecords(tmp_path / "uploads")
    key = records.key("http://d", "ab" * 32, 10, "a.txt", ["bob", "amy"])
    assert records.load(key) is None
    pending = PendingUpload("north.x", "http://l/tus/north.x?sig", "north", "telecom")
    records.save(key, pending)
    assert records.load(key) == pending
    records.forget(key)
    assert records.load(key) is None
    records.forget(key)  # forgetting twice is fine


def test_resume_key_ignores_receiver_order_but_not_content() -> None:
    key = ResumeRecords.key
    assert key("d", "h", 1, "n", ["a", "b"]) == key("d", "h", 1, "n", ["b", "a"])
    assert key("d", "h", 1, "n", ["a"]) != key("d", "h", 1, "n", ["a", "b"])
    assert key("d", "h", 1, "n", ["a"]) != key("d", "h", 2, "n", ["a"])
    assert key("d", "h", 1, "n", ["a"]) != key("other", "h", 1, "n", ["a"])


def test_corrupt_resume_record_reads_as_none(tmp_path: Path) -> None:
    records = ResumeRecords(tmp_path)
    (tmp_path / "k.json").write_text("{not json")
    assert records.load("k") is None
    (tmp_path / "k.json").write_text('{"unexpected": 1}')
    assert records.load("k") is None


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        ("/abs/path/x.bin", "x.bin"),
        ("..", "download"),
        ("", "download"),
        ("dir/", "download"),
        ("bad\nname\x07.txt", "badname.txt"),
    ],
)
def test_safe_file_name(name: str, safe: str) -> None:
    assert safe_file_name(name) == safe


@given(st.text(max_size=80))
def test_safe_file_name_never_leaves_the_folder(name: str) -> None:
    safe = safe_file_name(name)
    assert safe not in ("", ".", "..")
    assert "/" not in safe
    assert "\\" not in safe
    assert (Path("/base") / safe).parent == Path("/base")
