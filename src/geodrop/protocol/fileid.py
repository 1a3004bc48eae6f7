"""File ids: ``REGION.TOKEN``, naming the region that owns the file.

Like Matrix's ``mxc://server/id`` or a SeaweedFS volume id, the id alone says
where the bytes live, so a download needs no global look-up. The token is 128
random bits in lowercase base32 (26 characters), safe in paths and URLs.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass
from typing import Final

from geodrop.errors import NotFound

_TOKEN_CHARS: Final = 26
_FILE_ID: Final = re.compile(r"^([a-z][a-z0-9-]{0,30})\.([a-z2-7]{26})$")


@dataclass(frozen=True, slots=True)
class FileId:
    """A parsed file id."""

    region: str
    token: str

    def __str__(self) -> str:
        return f"{self.region}.{self.token}"


def new_file_id(region: str) -> FileId:
    """A fresh, unguessable id for a file owned by ``region``."""
    token = base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=").lower()
    return FileId(region, token[:_TOKEN_CHARS])


def parse_file_id(text: str) -> FileId:
    """Parse ``text`` as a file id.

    A malformed id names no file that could exist, so it is "not found" (404),
    exactly like a well-formed id nobody issued: a request never learns more.

    Raises:
        NotFound: ``text`` is not a file id.
    """
    match = _FILE_ID.fullmatch(text)
    if match is None:
        raise NotFound("no such file")
    return FileId(match.group(1), match.group(2))
