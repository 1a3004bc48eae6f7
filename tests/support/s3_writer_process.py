"""A process that writes into an S3 upload, then waits to be killed mid-way.

Run as ``python -m support.s3_writer_process JSON`` (``tests`` on the path) with the
fields of :class:`Job`; it prints ``wrote N`` after each chunk and ``waiting`` once
``kill_after`` bytes are written, then sleeps inside the open writer: the test kills
it there, with no chance to record its tail, as a crash would.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass

from geodrop.config import S3StorageConfig
from geodrop.storage.s3 import S3BlobStore
from support.blobstores import MIB, pieces, random_bytes


@dataclass(frozen=True, slots=True)
class Job:
    endpoint_url: str
    bucket: str
    access_key: str
    secret_key: str
    part_size: int
    upload_id: str
    size: int
    seed: int
    kill_after: int
    settle_seconds: float


async def run(job: Job) -> None:
    store = S3BlobStore(
        S3StorageConfig(
            endpoint_url=job.endpoint_url,
            bucket=job.bucket,
            access_key=job.access_key,
            secret_key=job.secret_key,
            part_size=job.part_size,
        )
    )
    data = random_bytes(job.size, job.seed)
    offset = await store.upload_offset(job.upload_id)
    async with store.open_writer(job.upload_id, offset) as writer:
        for chunk in pieces(data[offset : job.kill_after], MIB):
            await writer.write(chunk)
            print(f"wrote {writer.offset}", flush=True)
        # Parts on their way land (or not) meanwhile; the tail stays in memory only.
        await asyncio.sleep(job.settle_seconds)
        print("waiting", flush=True)
        await asyncio.sleep(3600)


if __name__ == "__main__":
    asyncio.run(run(Job(**json.loads(sys.argv[1]))))
