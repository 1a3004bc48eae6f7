"""Resume records: what a sender needs to pick an interrupted upload up again."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class PendingUpload:
    file_id: str
    upload_url: str
    region: str
    link: str


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
            return PendingUpload(**data)
        except (OSError, ValueError, TypeError):
            return None

    def save(self, key: str, pending: PendingUpload) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        temporary = self.folder / f".{key}.tmp"
        temporary.write_text(json.dumps(asdict(pending)))
        os.replace(temporary, self.folder / f"{key}.json")

    def forget(self, key: str) -> None:
        (self.folder / f"{key}.json").unlink(missing_ok=True)
