"""Test files for the transfers, made in the work folder."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Final

_BLOCK: Final = 16 * 1024 * 1024


def random_file(path: Path, size: int) -> Path:
    """``size`` incompressible bytes (a random 16 MiB block, repeated)."""
    block = os.urandom(min(_BLOCK, size))
    with path.open("wb") as out:
        left = size
        while left:
            n = min(left, len(block))
            out.write(block[:n])
            left -= n
    return path


def sha256_of(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_BLOCK):
            sha.update(chunk)
    return sha.hexdigest()
