"""Paths inside a local storage root, proven to stay inside it.

Every path part comes from a validated id, and the result is checked to lie
under the root after resolution, so no id, however crafted, can name a file
outside the storage unit (as Synapse's ``media/filepath.py`` does).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

_PART: Final = re.compile(r"^[a-z0-9][a-z0-9.-]{0,63}\Z")


class StoragePaths:
    """Where uploads and files of one root live."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.uploads = self.root / "uploads"
        self.files = self.root / "files"

    def _inside(self, *parts: str) -> Path:
        for part in parts:
            if not _PART.match(part) or ".." in part:
                raise ValueError(f"unsafe path part: {part!r}")
        path = self.root.joinpath(*parts)
        if not path.resolve().is_relative_to(self.root):
            raise ValueError(f"path escapes the storage root: {path}")
        return path

    def upload(self, upload_id: str) -> Path:
        return self._inside("uploads", upload_id)

    def file(self, file_id: str) -> Path:
        # Two levels of fan-out keep directories small at millions of files.
        region, _, token = file_id.partition(".")
        return self._inside("files", region, token[:2], file_id)
