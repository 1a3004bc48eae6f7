"""Exit codes of the ``geodrop`` command, documented in the README."""

from __future__ import annotations

from typing import Final

from geodrop.errors import (
    ConfigError,
    Forbidden,
    GeodropError,
    Gone,
    IntegrityError,
    NetworkError,
    NotFound,
    Unauthorized,
    Unavailable,
)

OK: Final = 0
FAILURE: Final = 1  # the server refused for another reason (e.g. 413, 507)
USAGE: Final = 2  # bad command line (argparse's own code)
AUTH: Final = 3  # no token, an invalid or expired one, or not allowed (401/403)
NOT_FOUND: Final = 4  # no such file for this user, or it expired (404/410)
NETWORK: Final = 5  # a server could not be reached, or a region is down (503)
INTEGRITY: Final = 6  # bytes do not match their sha256
INTERRUPTED: Final = 130  # Ctrl-C; a rerun resumes
CONFIG: Final = 78  # EX_CONFIG of sysexits.h: the cluster configuration is invalid


def exit_code_for(error: GeodropError) -> int:
    """The exit status that tells a script what kind of failure ``error`` was."""
    kinds: tuple[tuple[type[GeodropError], int], ...] = (
        (ConfigError, CONFIG),
        ((Unauthorized), AUTH),
        (Forbidden, AUTH),
        (NotFound, NOT_FOUND),
        (Gone, NOT_FOUND),
        (NetworkError, NETWORK),
        (Unavailable, NETWORK),
        (IntegrityError, INTEGRITY),
    )
    for kind, code in kinds:
        if isinstance(error, kind):
            return code
    return FAILURE
