"""Where a geodrop process spends its time under one of the bench's loads (py-spy).

    python -m bench.profile locate|upload-negotiation|download-negotiation|
                            cross-negotiation|download|upload|smallfiles [--seconds N]

Starts a bench cluster, runs the load against it while ``py-spy record`` samples the
process that serves it (``--native`` off, idle frames off), and prints the functions
with the most samples: inclusive and self. ``--raw FILE`` keeps py-spy's collapsed
stacks (flamegraph input); ``--gil`` keeps only the thread holding the GIL, so waits
in threads do not show. Loopback only; everything is stopped and removed afterwards.
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from bench import smallfiles, wrk
from bench.context import MiB
from bench.datafiles import random_file, sha256_of
from bench.procs import Services
from bench.testbed import Cluster, token

TARGETS = (
    "locate",
    "upload-negotiation",
    "download-negotiation",
    "cross-negotiation",
    "download",
    "upload",
    "smallfiles",
)


def _summary(collapsed: Path, top: int) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    out = [f"{total} samples", "", "inclusive:"]
    out += [f"{100 * n / total:6.1f}%  {f}" for f, n in inclusive.most_common(top)]
    out += ["", "self:"]
    out += [f"{100 * n / total:6.1f}%  {f}" for f, n in own.most_common(top)]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--size-mib", type=int, default=512, help="download/upload file size")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--raw", type=Path, help="keep py-spy's collapsed stacks here")
    parser.add_argument(
        "--gil",
        action="store_true",
        help="only samples of the thread holding the GIL: Python's own CPU, no waits",
    )
    args = parser.parse_args()
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    work = Path(tempfile.mkdtemp(prefix="geodrop-profile-"))
    try:
        with Services(work / "logs") as services:
            cluster = Cluster(work / "geodrop", services)
            cluster.start(["directory", "north", "east", "south"])
            load, process = _load(args, cluster, work)
            collapsed = args.raw or work / "stacks.txt"
            spy = subprocess.Popen(
                [
                    *(py_spy, "record", "-p", str(cluster.service(process).pid), "-r", "200"),
                    *("-d", str(int(args.seconds)), "-f", "raw", "-o", str(collapsed)),
                    *(("--gil",) if args.gil else ()),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            runner = threading.Thread(target=load)
            runner.start()
            spy.wait(args.seconds + 30)
            runner.join(args.seconds + 120)
            print(f"profile of {process} under {args.target}")
            print(_summary(collapsed, args.top))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _load(args: argparse.Namespace, cluster: Cluster, work: Path) -> tuple[Callable[[], None], str]:
    seconds = args.seconds
    scripts = work / "wrk"
    scripts.mkdir()
    if args.target == "locate":
        url = cluster.directory_url + "/v1/locate"
        return lambda: print(wrk.run(url, connections=64, seconds=seconds)), "directory"
    small = random_file(work / "small.bin", 4096)
    file_id, _, _ = cluster.upload(small, sha256=sha256_of(small))
    if args.target == "upload-negotiation":
        lua = wrk.lua_post(
            scripts / "u.lua",
            {"name": "w.bin", "size": 4096, "receivers": ["bob"]},
            {"Authorization": f"Bearer {token('alice')}"},
        )
        url = cluster.access_url("north") + "/v1/uploads"
        return lambda: print(wrk.run(url, connections=64, seconds=seconds, script=lua)), "north"
    if args.target in ("download-negotiation", "cross-negotiation"):
        lua = wrk.lua_post(
            scripts / "d.lua", {"file_id": file_id}, {"Authorization": f"Bearer {token('bob')}"}
        )
        region = "north" if args.target == "download-negotiation" else "east"
        url = cluster.access_url(region) + "/v1/downloads"
        return lambda: print(wrk.run(url, connections=64, seconds=seconds, script=lua)), region
    if args.target == "smallfiles":
        spec = work / "spec.json"
        spec.write_text(json.dumps(smallfiles._geodrop_spec(cluster, seconds)))

        def small_load() -> None:
            done = subprocess.run(
                [sys.executable, "-m", "bench.smallclient", str(spec)],
                capture_output=True,
                text=True,
                check=False,
                cwd=smallfiles.REPO,
            )
            print(done.stdout or done.stderr[-2000:])

        return small_load, "north"
    data = random_file(work / "data.bin", args.size_mib * MiB)
    sha = sha256_of(data)
    if args.target == "upload":

        def uploads() -> None:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                _, url, took = cluster.upload(data, sha256=sha)
                print(f"upload {data.stat().st_size / took / 1e9:.2f} GB/s")
                cluster.delete_upload(url)

        return uploads, "north"
    big_id, _, _ = cluster.upload(data, sha256=sha)
    link = cluster.download_url(big_id)
    curl = shutil.which("curl") or "curl"

    def downloads() -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            start = time.perf_counter()
            clients = [subprocess.Popen([curl, "-s", "-o", "/dev/null", link]) for _ in range(8)]
            for c in clients:
                c.wait()
            rate = 8 * data.stat().st_size / (time.perf_counter() - start) / 1e9
            print(f"8 streams {rate:.2f} GB/s")

    return downloads, "north"


if __name__ == "__main__":
    sys.exit(main())
