"""The small-file load generator, run as ``python -m bench.smallclient SPEC.json``.

A separate process (its own CPU, measured apart from the servers'). ``workers``
coroutines each run whole transactions back to back until ``seconds`` have passed; a
transaction started before the deadline is finished (each request has a 30 s timeout).
Prints one JSON object: completed transactions, elapsed seconds, latency percentiles.

geodrop's transaction, five requests across two regions (sender in north / telecom,
receiver in south / unicom, a distinct pair per worker so inbox waits do not mix):

1. sender: `GET /v1/locate` at the directory → north's access unit;
2. sender: `POST /tus` there, tus creation-with-upload of the 4 KiB body;
3. receiver: `GET /v1/inbox?after=CURSOR&wait=30` at the directory until the entry is in;
4. receiver: `POST /v1/downloads` at south's access unit (south asks north, relays a URL);
5. receiver: `GET` that signed URL on north's unicom link.

@tus/server's: `POST /files` creation-with-upload of the body, then `GET` its Location.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

BODY_SIZE: Final = 4096
TIMEOUT: Final = aiohttp.ClientTimeout(total=30)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _session(source: str | None) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        local_addr=(source, 0) if source else None, limit=0, force_close=False
    )
    return aiohttp.ClientSession(connector=connector, timeout=TIMEOUT)


async def _check(response: aiohttp.ClientResponse, status: int, what: str) -> None:
    if response.status != status:
        raise RuntimeError(f"{what}: HTTP {response.status}: {(await response.text())[:300]}")


class GeodropWorker:
    def __init__(self, spec: dict[str, Any], worker: dict[str, str]) -> None:
        self.directory = spec["directory"]
        self.receiver_access = spec["receiver_access"]
        self.w = worker
        self.sender = _session(worker["sender_ip"])
        self.receiver = _session(worker["receiver_ip"])
        self.cursor = 0
        self.body = os.urandom(BODY_SIZE)

    async def transaction(self) -> None:
        send_auth = {"Authorization": f"Bearer {self.w['sender_token']}"}
        recv_auth = {"Authorization": f"Bearer {self.w['receiver_token']}"}
        async with self.sender.get(f"{self.directory}/v1/locate") as r:
            await _check(r, 200, "locate")
            access = (await r.json())["access_url"]
        headers = {
            **send_auth,
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(BODY_SIZE),
            "Upload-Metadata": f"filename {_b64('small.bin')},receivers {_b64(self.w['receiver'])}",
            "Content-Type": "application/offset+octet-stream",
        }
        async with self.sender.post(f"{access}/tus", data=self.body, headers=headers) as r:
            await _check(r, 201, "tus creation-with-upload")
            if r.headers.get("Upload-Offset") != str(BODY_SIZE):
                raise RuntimeError(f"creation-with-upload stopped at {r.headers}")
            file_id = urlsplit(r.headers["Location"]).path.rsplit("/", 1)[1]
        while True:
            url = f"{self.directory}/v1/inbox?after={self.cursor}&wait=30"
            async with self.receiver.get(url, headers=recv_auth) as r:
                await _check(r, 200, "inbox")
                answer = await r.json()
            self.cursor = answer["cursor"]
            if any(e["file_id"] == file_id for e in answer["entries"]):
                break
        async with self.receiver.post(
            f"{self.receiver_access}/v1/downloads", json={"file_id": file_id}, headers=recv_auth
        ) as r:
            await _check(r, 200, "download negotiation")
            link_url = (await r.json())["url"]
        async with self.receiver.get(link_url) as r:
            await _check(r, 200, "download")
            if len(await r.read()) != BODY_SIZE:
                raise RuntimeError("short download")

    async def close(self) -> None:
        await self.sender.close()
        await self.receiver.close()


class TusWorker:
    def __init__(self, spec: dict[str, Any], worker: dict[str, str]) -> None:
        self.base = spec["tus"]
        self.session = _session(worker.get("sender_ip"))
        self.body = os.urandom(BODY_SIZE)

    async def transaction(self) -> None:
        headers = {
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(BODY_SIZE),
            "Upload-Metadata": f"filename {_b64('small.bin')}",
            "Content-Type": "application/offset+octet-stream",
        }
        async with self.session.post(f"{self.base}/files", data=self.body, headers=headers) as r:
            await _check(r, 201, "tus creation-with-upload")
            location = r.headers["Location"]
        async with self.session.get(location) as r:
            await _check(r, 200, "tus GET")
            if len(await r.read()) != BODY_SIZE:
                raise RuntimeError("short download")

    async def close(self) -> None:
        await self.session.close()


async def _loop(
    transaction: Callable[[], Awaitable[None]], deadline: float, latencies: list[float]
) -> None:
    while time.monotonic() < deadline:
        start = time.monotonic()
        await transaction()
        latencies.append(time.monotonic() - start)


async def main_async(spec: dict[str, Any]) -> dict[str, float]:
    kind = spec["kind"]
    workers: list[GeodropWorker | TusWorker] = [
        GeodropWorker(spec, w) if kind == "geodrop" else TusWorker(spec, w) for w in spec["workers"]
    ]
    try:
        # One untimed transaction per worker: connections up, caches warm.
        await asyncio.gather(*(w.transaction() for w in workers))
        latencies: list[float] = []
        start = time.monotonic()
        deadline = start + float(spec["seconds"])
        await asyncio.gather(*(_loop(w.transaction, deadline, latencies) for w in workers))
        elapsed = time.monotonic() - start
    finally:
        for w in workers:
            await w.close()
    latencies.sort()
    return {
        "transactions": len(latencies),
        "seconds": elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p90_ms": latencies[int(0.9 * (len(latencies) - 1))] * 1000,
    }


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    print(json.dumps(asyncio.run(main_async(spec))))


if __name__ == "__main__":
    main()
