"""The one fast client every upload comparison uses: headers, then the kernel's sendfile.

A request body goes from the page cache to the socket by ``socket.sendfile``, so the
client costs next to nothing and the server is what is measured. The same function
sends geodrop's tus PATCH, @tus/server's PATCH, the raw ceiling's PUT and nginx's PUT.
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _target(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.hostname is None or not parts.hostname.startswith("127."):
        raise ValueError(f"the bench only talks to loopback addresses, not {url}")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return parts.hostname, parts.port or 80, path


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    file: Path | None = None,
    source: str | None = None,
    timeout: float = 300.0,
) -> Answer:
    """One HTTP/1.1 request on a fresh connection; ``file`` is sent with sendfile."""
    host, port, path = _target(url)
    length = file.stat().st_size if file is not None else len(body or b"")
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body is not None or file is not None or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {length}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    with socket.create_connection(
        (host, port), timeout=timeout, source_address=(source, 0) if source else None
    ) as sock:
        sock.sendall(head)
        if file is not None:
            with file.open("rb") as source_file:
                sock.sendfile(source_file)
        elif body:
            sock.sendall(body)
        response = http.client.HTTPResponse(sock, method=method)
        response.begin()
        data = response.read()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data)


def json_request(
    method: str,
    url: str,
    payload: Any,
    *,
    token: str | None = None,
    source: str | None = None,
) -> Answer:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return request(method, url, headers=headers, body=json.dumps(payload).encode(), source=source)


def expect(answer: Answer, *statuses: int, what: str) -> Answer:
    if answer.status not in statuses:
        raise RuntimeError(f"{what}: HTTP {answer.status}: {answer.body[:500]!r}")
    return answer


def tus_terminate(upload_url: str, *, what: str = "tus DELETE") -> None:
    """tus termination of an upload (204): its file goes, keeping the disk from filling."""
    expect(request("DELETE", upload_url, headers={"Tus-Resumable": "1.0.0"}), 204, what=what)
