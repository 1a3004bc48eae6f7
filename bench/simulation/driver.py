"""The simulated users: run inside the clients' namespace, driven by a JSON plan.

``python driver.py PLAN.json`` waits until the directory reports every region alive,
locates every user's client once (a logged-in user already knows its region), prints
``READY <unix time>`` after an untimed warm-up transfer per group, and runs the plan's
transfers with the geodrop client library: each transfer is one user's ``send`` then
the receiver's ``receive`` of that file, both timed. Closed loop (``concurrency``
workers) or open loop (each transfer starts at its ``at`` seconds). Every transfer
still running at ``deadline_seconds`` is cancelled and recorded as unfinished. The
records go to the plan's ``output`` file as JSON.

Self-contained on purpose (stdlib, aiohttp, geodrop): it is started by path with
``ip netns exec``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from geodrop.client import Client, Progress

STARTED = time.time()


def _note(what: str) -> None:
    """A progress line in the driver's log (stderr), seconds since the process started."""
    print(f"driver: {what} at {time.time() - STARTED:.2f} s", file=sys.stderr, flush=True)


async def wait_ready(plan: dict[str, Any]) -> None:
    """Until the directory reports every region alive (or the plan's ready timeout)."""
    source = next(iter(plan["group_addresses"].values()))
    deadline = time.monotonic() + plan["ready_timeout"]
    url = plan["directory_url"] + "/v1/regions"
    wanted = set(plan["regions"])
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        while True:
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as answer:
                    data = await answer.json()
                alive = {entry["region"] for entry in data["regions"] if entry["alive"]}
                if wanted <= alive:
                    return
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"cluster not ready after {plan['ready_timeout']} s")
            await asyncio.sleep(0.2)


class Run:
    def __init__(self, plan: dict[str, Any]) -> None:
        self.plan = plan
        work = Path(plan["work_dir"])
        self.download_dir = work / "downloads"
        self.download_dir.mkdir(parents=True, exist_ok=True)
        self.files = [Path(p) for p in plan["files"]]
        self.clients: dict[str, Client] = {}
        for user, group in plan["users"].items():
            self.clients[user] = Client(
                plan["directory_url"],
                plan["tokens"][user],
                source_address=plan["group_addresses"][group],
                state_dir=work / "state" / user,
                retries=2,
                timeout=120.0,
            )
        self.records: dict[int, dict[str, Any]] = {}
        self.base = 0.0

    async def locate_all(self) -> None:
        for user, client in self.clients.items():
            location = await client.locate()
            self.plan.setdefault("located", {})[user] = [location.region, location.carrier]

    async def warm_up(self) -> None:
        """One small untimed transfer per group, so no timed one pays for cold caches.

        A file server's first request opens its database and its connections to the
        directory and to other regions; a long-running service has done that long ago.
        """
        small = Path(self.plan["work_dir"]) / "warm-up.bin"
        small.write_bytes(b"w" * 65536)
        senders = sorted(u for u in self.clients if u.startswith("s-"))
        receivers = sorted(u for u in self.clients if u.startswith("r-"))

        async def one(i: int, user: str) -> None:
            receiver = receivers[(i + 1) % len(receivers)]
            sent = await self.clients[user].send(small, [receiver], name=f"warm-up-{i}.bin")
            target = self.download_dir / f"warm-up-{i}.bin"
            await self.clients[receiver].receive(sent.file_id, target)
            target.unlink()

        await asyncio.gather(*(one(i, user) for i, user in enumerate(senders)))

    async def transfer(self, spec: dict[str, Any]) -> None:
        record: dict[str, Any] = {
            "id": spec["id"],
            "sender_group": spec["sender_group"],
            "receiver_group": spec["receiver_group"],
            "start": time.monotonic() - self.base,
            "upload_s": None,
            "download_s": None,
            "finished": False,
            "error": None,
        }
        self.records[spec["id"]] = record
        sender = self.clients[spec["sender"]]
        receiver = self.clients[spec["receiver"]]
        source = self.files[spec["id"] % len(self.files)]
        # When each progress phase was last reported: where the time went.
        last: dict[str, float] = {}

        def progress(report: Progress) -> None:
            last[report.phase] = time.monotonic()

        t0 = time.monotonic()
        try:
            sent = await sender.send(
                source, [spec["receiver"]], name=f"t{spec['id']}.bin", progress=progress
            )
            t1 = time.monotonic()
            record.update(upload_s=t1 - t0, up_region=sent.region, up_link=sent.link)
            record["up_done"] = t1 - self.base
            record["hash_s"] = last.get("hashing", t0) - t0
            target = self.download_dir / f"t{spec['id']}.bin"
            got = await receiver.receive(sent.file_id, target, progress=progress)
            t2 = time.monotonic()
            record.update(download_s=t2 - t1, down_region=got.region, down_link=got.link)
            record["down_start"] = t1 - self.base
            # After the last byte is written: close, sha256 check, rename.
            record["verify_s"] = t2 - last.get("download", t2)
            record["finished"] = True
            await asyncio.to_thread(target.unlink)
        except asyncio.CancelledError:
            record["elapsed_s"] = time.monotonic() - t0
            raise
        except Exception as exc:  # a failed transfer is a figure, not a crash
            record["error"] = f"{type(exc).__name__}: {exc}"
            record["elapsed_s"] = time.monotonic() - t0

    async def closed_loop(self) -> None:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        for spec in self.plan["transfers"]:
            queue.put_nowait(spec)

        async def worker() -> None:
            while not queue.empty():
                await self.transfer(queue.get_nowait())

        await asyncio.gather(*(worker() for _ in range(self.plan["concurrency"])))

    async def open_loop(self) -> None:
        tasks = []
        for spec in self.plan["transfers"]:
            delay = spec["at"] - (time.monotonic() - self.base)
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(self.transfer(spec)))
        await asyncio.gather(*tasks)

    async def run(self) -> list[dict[str, Any]]:
        try:
            await wait_ready(self.plan)
            _note("cluster ready")
            await self.locate_all()
            await self.warm_up()
            _note("warmed up")
            print(f"READY {time.time():.6f}", flush=True)
            self.base = time.monotonic()
            work = self.closed_loop() if self.plan.get("concurrency") else self.open_loop()
            # At the deadline, records of cancelled transfers stay unfinished.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(work, timeout=self.plan["deadline_seconds"])
        finally:
            for client in self.clients.values():
                await client.close()
        return [self.records[k] for k in sorted(self.records)]


def main() -> int:
    _note("imported")
    plan = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    run = Run(plan)
    records = asyncio.run(run.run())
    output = {"records": records, "located": plan.get("located", {})}
    Path(plan["output"]).write_text(json.dumps(output), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
