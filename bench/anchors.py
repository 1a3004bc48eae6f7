"""Starting the servers geodrop is compared with, each on a loopback address of its own."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from bench import nginx
from bench.procs import Service, Services, port_open
from geodrop.testbed import free_port

NODE_DIR: Final = Path(__file__).parent / "node"
# 127.50.0.0/24 is not part of the geodrop testbed (DESIGN.md §6): no collisions.
NGINX_HOST: Final = "127.50.0.1"
SENDFILE_HOST: Final = "127.50.0.2"
JSON_HOST: Final = "127.50.0.3"
TUS_HOST: Final = "127.50.0.4"
UPLOAD_HOST: Final = "127.50.0.5"


@dataclass(frozen=True, slots=True)
class Anchor:
    service: Service
    url: str  # base URL, no trailing slash


def _raw(services: Services, kind: str, host: str, path: Path | None = None) -> Anchor:
    port = free_port([host])
    argv = [sys.executable, "-m", "bench.rawservers", kind, "--host", host, "--port", str(port)]
    if path is not None:
        argv += ["--path", str(path)]
    service = services.start(
        f"raw-{kind}",
        argv,
        ready=lambda: port_open(host, port),
        cwd=Path(__file__).parent.parent,
    )
    return Anchor(service, f"http://{host}:{port}")


def sendfile_server(services: Services, file: Path) -> Anchor:
    """Python ``socket.sendfile``, a thread per connection; GET ``/file``."""
    return _raw(services, "sendfile", SENDFILE_HOST, file)


def upload_ceiling(services: Services, folder: Path) -> Anchor:
    """``recv_into`` + ``os.write`` + ``fsync``; PUT anything."""
    folder.mkdir(parents=True, exist_ok=True)
    return _raw(services, "upload", UPLOAD_HOST, folder)


def bare_json(services: Services) -> Anchor:
    """A bare aiohttp JSON handler; GET ``/json``."""
    return _raw(services, "json", JSON_HOST)


def nginx_server(services: Services, work: Path, files_dir: Path) -> Anchor:
    """nginx: ``/files/NAME`` from ``files_dir`` by sendfile, ``/dav/NAME`` PUT, ``/json``."""
    port = free_port([NGINX_HOST])
    service = nginx.start(services, work, NGINX_HOST, port, files_dir)
    return Anchor(service, f"http://{NGINX_HOST}:{port}")


def tus_server(services: Services, folder: Path, *, fsync: bool = True) -> Anchor:
    """@tus/server + @tus/file-store (fsync on finish unless told not to); ``/files``."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port([TUS_HOST])
    argv = ["node", str(NODE_DIR / "tus-server.mjs"), TUS_HOST, str(port), str(folder)]
    if not fsync:
        argv.append("--no-fsync")
    service = services.start(
        "tus-server",
        argv,
        ready=lambda: port_open(TUS_HOST, port),
        cwd=NODE_DIR,
        env={**os.environ, "NODE_ENV": "production"},
    )
    return Anchor(service, f"http://{TUS_HOST}:{port}")
