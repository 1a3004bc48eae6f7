"""Tests of geodrop.storage.paths: every path part validated, every path inside the root."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geodrop.storage.paths import StoragePaths

FILE_ID = "north.abcdefghijklmnopqrstuvwxyz"
PART_CHARS = string.ascii_lowercase + string.digits + ".-"


def is_safe_part(part: str) -> bool:
    """The part rule, stated without a regular expression."""
    return (
        1 <= len(part) <= 64
        and part[0] in string.ascii_lowercase + string.digits
        and all(ch in PART_CHARS for ch in part)
        and ".." not in part
    )


@pytest.fixture
def paths(tmp_path: Path) -> StoragePaths:
    return StoragePaths(tmp_path / "root")


def test_layout(paths: StoragePaths, tmp_path: Path) -> None:
    root = (tmp_path / "root").resolve()
    assert paths.root == root
    assert paths.uploads == root / "uploads"
    assert paths.files == root / "files"
    assert paths.upload(FILE_ID) == root / "uploads" / FILE_ID
    assert paths.file(FILE_ID) == root / "files" / "north" / "ab" / FILE_ID


def test_relative_root_is_made_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    paths = StoragePaths(Path("blobs"))
    assert paths.root == (tmp_path / "blobs").resolve()
    assert paths.upload(FILE_ID).is_absolute()


@pytest.mark.parametrize(
    "part",
    [
        "",
        ".",
        "..",
        "../etc",
        "a/..",
        "a..b",
        "a/b",
        "/abs",
        "a\\b",
        "North",
        "ABC",
        ".hidden",
        "-dash",
        "a b",
        "a\x00b",
        "abc\n",
        "\nabc",
        "a" * 65,
        "é",
        "a_b",
    ],
)
def test_unsafe_upload_ids_are_refused(paths: StoragePaths, part: str) -> None:
    with pytest.raises(ValueError, match="unsafe path part"):
        paths.upload(part)


@pytest.mark.parametrize(
    "file_id",
    ["north", ".abcdef", "north.", "north./x", "../north.abcdef", "north.a\n", "No.abc", "n..a"],
)
def test_unsafe_file_ids_are_refused(paths: StoragePaths, file_id: str) -> None:
    with pytest.raises(ValueError, match="unsafe path part"):
        paths.file(file_id)


def test_longest_part_is_accepted(paths: StoragePaths) -> None:
    part = "a" * 64
    assert paths.upload(part).name == part


def test_a_symlink_out_of_the_root_is_refused(paths: StoragePaths, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    paths.files.mkdir(parents=True)
    (paths.files / "north").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="escapes the storage root"):
        paths.file(FILE_ID)
    # Other regions are unaffected.
    assert paths.file("east.abcdef").parent == paths.files / "east" / "ab"


def test_a_symlink_deeper_down_is_followed_only_inside_the_root(
    paths: StoragePaths, tmp_path: Path
) -> None:
    fan_out = paths.file(FILE_ID).parent
    fan_out.parent.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    fan_out.symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError, match="escapes the storage root"):
        paths.file(FILE_ID)
    fan_out.unlink()
    inside = paths.root / "elsewhere"
    inside.mkdir()
    fan_out.symlink_to(inside, target_is_directory=True)
    assert paths.file(FILE_ID) == fan_out / FILE_ID
    (inside / FILE_ID).symlink_to(outside / "secret")
    with pytest.raises(ValueError, match="escapes the storage root"):
        paths.file(FILE_ID)


def test_a_symlinked_root_is_fine(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    paths = StoragePaths(tmp_path / "link")
    assert paths.root == real.resolve()
    assert paths.upload(FILE_ID) == real.resolve() / "uploads" / FILE_ID


parts = st.one_of(
    st.text(max_size=70),
    st.text(alphabet=PART_CHARS + "/\\A\n", max_size=70),
    st.from_regex(r"[a-z0-9][a-z0-9.-]{0,63}", fullmatch=True),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts)
def test_upload_paths_stay_inside_the_root(paths: StoragePaths, part: str) -> None:
    try:
        path = paths.upload(part)
    except ValueError:
        assert not is_safe_part(part)
        return
    assert is_safe_part(part)
    assert path.parent == paths.uploads
    assert path.name == part
    assert path.resolve().is_relative_to(paths.root)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(parts, st.builds("{}.{}".format, parts, parts)))
def test_file_paths_stay_inside_the_root(paths: StoragePaths, file_id: str) -> None:
    region, _, token = file_id.partition(".")
    try:
        path = paths.file(file_id)
    except ValueError:
        assert not all(is_safe_part(p) for p in (region, token[:2], file_id))
        return
    assert all(is_safe_part(p) for p in (region, token[:2], file_id))
    assert path == paths.files / region / token[:2] / file_id
    assert path.resolve().is_relative_to(paths.files)
