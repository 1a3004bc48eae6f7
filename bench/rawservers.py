"""The bench's own reference servers, each run as ``python -m bench.rawservers KIND …``.

- ``sendfile``: plain Python, a thread per connection, ``socket.sendfile`` of one file
  (with ``Range``, which aria2c's split downloads send): the ceiling of a Python download.
- ``upload``: a thread per connection, ``recv_into`` + ``os.write`` into a new file, then
  ``fsync``: the ceiling of a Python upload with the data made durable.
- ``json``: a bare aiohttp handler answering a fixed JSON body: the ceiling of an aiohttp
  control-plane endpoint.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import socketserver
import uuid
from pathlib import Path
from typing import Final

RECV_BUFFER: Final = 1024 * 1024
_RANGE: Final = re.compile(r"bytes=(\d*)-(\d*)$")

# The same shape as geodrop's /v1/locate answer.
LOCATE_LIKE: Final = {
    "client_ip": "127.0.0.1",
    "region": "north",
    "carrier": "telecom",
    "match": "override",
    "access_url": "http://127.1.0.1:7701",
    "home_region": "north",
}


def _read_head(sock: socket.socket, buffer: bytearray) -> tuple[str, dict[str, str]] | None:
    """One request head (request line, lower-cased headers); leftover bytes stay in ``buffer``."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    buffer[:] = rest
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers


class SendfileHandler(socketserver.BaseRequestHandler):
    """GET of the one file, keep-alive, ``Range: bytes=a-b`` answered with 206."""

    server: SendfileServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        buffer = bytearray()
        with open(self.server.path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            while (got := _read_head(sock, buffer)) is not None:
                request_line, headers = got
                start, stop, status = 0, size, "200 OK"
                extra = ""
                match = _RANGE.match(headers.get("range", ""))
                if match and (match.group(1) or match.group(2)):
                    if match.group(1):
                        start = int(match.group(1))
                        stop = min(size, int(match.group(2)) + 1) if match.group(2) else size
                    else:
                        start = max(0, size - int(match.group(2)))
                    status = "206 Partial Content"
                    extra = f"Content-Range: bytes {start}-{stop - 1}/{size}\r\n"
                sock.sendall(
                    (
                        f"HTTP/1.1 {status}\r\nContent-Length: {stop - start}\r\n"
                        f"Content-Type: application/octet-stream\r\nAccept-Ranges: bytes\r\n"
                        f"{extra}\r\n"
                    ).encode("latin-1")
                )
                if request_line.startswith("GET") and stop > start:
                    sock.sendfile(file, start, stop - start)
                if headers.get("connection", "").lower() == "close":
                    return


class SendfileServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], path: Path) -> None:
        self.path = path
        super().__init__(address, SendfileHandler)


class UploadHandler(socketserver.BaseRequestHandler):
    """Any request with a body: ``recv_into`` + ``os.write`` into a new file, ``fsync``, 201."""

    server: UploadServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        buffer = bytearray()
        while (got := _read_head(sock, buffer)) is not None:
            _, headers = got
            remaining = int(headers.get("content-length", "0"))
            target = self.server.directory / uuid.uuid4().hex
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                if buffer:
                    os.write(fd, buffer[:remaining])
                    remaining -= min(len(buffer), remaining)
                    buffer.clear()
                chunk = bytearray(RECV_BUFFER)
                view = memoryview(chunk)
                while remaining > 0:
                    n = sock.recv_into(view, min(RECV_BUFFER, remaining))
                    if n == 0:
                        return
                    written = 0
                    while written < n:
                        written += os.write(fd, view[written:n])
                    remaining -= n
                os.fsync(fd)
            finally:
                os.close(fd)
            sock.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
            if headers.get("connection", "").lower() == "close":
                return


class UploadServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], directory: Path) -> None:
        self.directory = directory
        super().__init__(address, UploadHandler)


def _serve_json(host: str, port: int) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(LOCATE_LIKE)

    app = web.Application()
    app.router.add_get("/json", handler)
    web.run_app(app, host=host, port=port, access_log=None, print=None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=["sendfile", "upload", "json"])
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", type=Path, help="the file (sendfile) or folder (upload)")
    args = parser.parse_args()
    if args.kind == "json":
        _serve_json(args.host, args.port)
        return
    server: socketserver.TCPServer
    if args.kind == "sendfile":
        server = SendfileServer((args.host, args.port), args.path)
    else:
        server = UploadServer((args.host, args.port), args.path)
    with server:
        server.serve_forever()


if __name__ == "__main__":
    main()
