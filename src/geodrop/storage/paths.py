"""Paths inside a local storage root, proven to stay inside it.

Every path part comes from a validated id, and a symbolic link below the root is
followed only if the path still lies under the root, so no id, however crafted,
can name a file outside the storage unit (as Synapse's ``media/filepath.py`` does).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Final

_PART: Final = re.compile(r"^[a-z0-9][a-z0-9.-]{0,63}\Z")
# A file being written whole, in its file's folder (no file id ends so).
STAGED_SUFFIX: Final = ".part"


class StoragePaths:
    """Where uploads and files of one root live."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._root_text = str(self.root)
        self.uploads = self.root / "uploads"
        self.files = self.root / "files"

    def _inside(self, *parts: str) -> Path:
        for part in parts:
            if not _PART.match(part) or ".." in part:
                raise ValueError(f"unsafe path part: {part!r}")
        path = self.root.joinpath(*parts)
        # The root is resolved already: only a part below it can be a link out of it.
        # An lstat of each such part costs a third of resolving the whole path from /.
        here = self._root_text
        for part in parts:
            here = os.path.join(here, part)
            try:
                mode = os.lstat(here).st_mode
            except OSError:
                break  # nothing further down exists (yet): nothing there can lead out
            if stat.S_ISLNK(mode):
                if not path.resolve().is_relative_to(self.root):
                    raise ValueError(f"path escapes the storage root: {path}")
                break
        return path

    def upload(self, upload_id: str) -> Path:
        return self._inside("uploads", upload_id)

    def staged_file(self, file_id: str) -> Path:
        """Where a whole file is written before it is renamed to :meth:`file` (same folder)."""
        region, _, token = file_id.partition(".")
        return self._inside("files", region, token[:2], file_id + STAGED_SUFFIX)

    def file(self, file_id: str) -> Path:
        # Two levels of fan-out keep directories small at millions of files.
        region, _, token = file_id.partition(".")
        return self._inside("files", region, token[:2], file_id)
