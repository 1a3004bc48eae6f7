"""Resume records: what a sender needs to pick an interrupted upload up again."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """An unfinished upload: one tus upload, or the partial uploads of a parallel one.

    A parallel upload (tus concatenation) has no upload of its own until its final
    upload is made, at the very end: ``file_id`` and ``upload_url`` stay empty, and
    ``creation_url`` says where its uploads are created.
    """

    file_id: str
    upload_url: str
    region: str
    link: str
    creation_url: str = ""
    # How the file is split (sizes in file order), and the partial uploads created so
    # far: the first len(partial_urls) pieces.
    partial_sizes: tuple[int, ...] = ()
    partial_urls: tuple[str, ...] = ()

    @property
    def parallel(self) -> bool:
        return bool(self.creation_url)


class ResumeRecords:
    """One small JSON file per unfinished upload, keyed by what makes an upload the same."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @staticmethod
    def key(directory_url: str, sha256: str, size: int, name: str, receivers: list[str]) -> str:
        text = json.dumps([directory_url, sha256, size, name, sorted(receivers)])
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def load(self, key: str) -> PendingUpload | None:
        try:
            data = json.loads((self.folder / f"{key}.json").read_text())
            pending = PendingUpload(**data)
        except (OSError, ValueError, TypeError):
            return None
        # JSON has lists where the record has tuples.
        sizes, urls = pending.partial_sizes, pending.partial_urls
        if not isinstance(sizes, list | tuple) or not isinstance(urls, list | tuple):
            return None
        if not all(isinstance(size, int) and size > 0 for size in sizes):
            return None
        if not all(isinstance(url, str) for url in urls) or len(urls) > len(sizes):
            return None
        return replace(pending, partial_sizes=tuple(sizes), partial_urls=tuple(urls))

    def save(self, key: str, pending: PendingUpload) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.folder / f".{key}.tmp"
        temporary.write_text(json.dumps(asdict(pending)))
        os.replace(temporary, self.folder / f"{key}.json")

    def forget(self, key: str) -> None:
        (self.folder / f"{key}.json").unlink(missing_ok=True)
