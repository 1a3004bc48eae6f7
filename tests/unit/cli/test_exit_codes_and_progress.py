"""Exit codes and the progress display of the command line."""

from __future__ import annotations

import io

import pytest

from geodrop.cli import exitcodes
from geodrop.cli.progress import ProgressDisplay, human_bytes
from geodrop.client import Progress
from geodrop.errors import (
    ConfigError,
    Forbidden,
    GeodropError,
    Gone,
    IntegrityError,
    NetworkError,
    NotFound,
    PayloadTooLarge,
    PeerUnavailable,
    Unauthorized,
)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (Unauthorized("x"), 3),
        (Forbidden("x"), 3),
        (NotFound("x"), 4),
        (Gone("x"), 4),
        (NetworkError("x"), 5),
        (PeerUnavailable("x"), 5),
        (IntegrityError("x"), 6),
        (ConfigError("x"), 78),
        (PayloadTooLarge("x"), 1),
        (GeodropError("x"), 1),
    ],
)
def test_exit_code_for(error: GeodropError, code: int) -> None:
    assert exitcodes.exit_code_for(error) == code


def test_exit_codes_are_distinct() -> None:
    codes = [
        exitcodes.OK,
        exitcodes.FAILURE,
        exitcodes.USAGE,
        exitcodes.AUTH,
        exitcodes.NOT_FOUND,
        exitcodes.NETWORK,
        exitcodes.INTEGRITY,
        exitcodes.CONFIG,
        exitcodes.INTERRUPTED,
    ]
    assert len(set(codes)) == len(codes)


@pytest.mark.parametrize(
    ("count", "text"), [(0, "0 B"), (999, "999 B"), (1500, "1.5 kB"), (50_000_000, "50.0 MB")]
)
def test_human_bytes(count: int, text: str) -> None:
    assert human_bytes(count) == text


def test_plain_progress_prints_one_line_per_ten_percent() -> None:
    stream = io.StringIO()
    display = ProgressDisplay(stream)
    for done in range(0, 1001, 5):
        display(Progress("upload", done, 1000))
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11
    assert lines[0].startswith("upload 0%")
    assert lines[-1].startswith("upload 100% 1.0 kB/1.0 kB")


def test_disabled_progress_prints_nothing() -> None:
    stream = io.StringIO()
    display = ProgressDisplay(stream, enabled=False)
    display(Progress("download", 5, 10))
    display.finish()
    assert stream.getvalue() == ""


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_progress_draws_a_bar_with_rate_and_eta() -> None:
    stream = _Terminal()
    display = ProgressDisplay(stream)
    display(Progress("download", 0, 100))
    display(Progress("download", 100, 100))
    display.finish()
    text = stream.getvalue()
    assert text.startswith("\rdownload")
    assert "100.0%" in text
    assert "ETA" in text
    assert "/s" in text
    assert text.endswith("\n")
