"""Uploads, download negotiations and error checks against a running test cluster."""

from __future__ import annotations

import asyncio
import hashlib
import io
import secrets
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import aiohttp

from geodrop.protocol import peerauth, signing
from support.cluster import PEER_KEY, URL_KEY, Cluster, client_address, user_token
from support.http import session_from

TUS_VERSION: Final = "1.0.0"
OFFSET_CONTENT_TYPE: Final = "application/offset+octet-stream"


def tus_headers(offset: int, **extra: str) -> dict[str, str]:
    """The headers of a well-formed tus PATCH at ``offset``."""
    return {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": str(offset),
        "Content-Type": OFFSET_CONTENT_TYPE,
        **extra,
    }


def unique_user(prefix: str) -> str:
    """A user id no other test uses, so its inbox holds only what this test put there."""
    return f"{prefix}-{secrets.token_hex(4)}"


async def expect_error(response: aiohttp.ClientResponse, status: int, code: str) -> dict[str, Any]:
    """Assert ``response`` is the JSON error of DESIGN.md §7 with ``status`` and ``code``.

    Returns:
        The ``error`` object, for further checks of its message.
    """
    text = await response.text()
    assert response.status == status, f"expected {status}, got {response.status}: {text}"
    assert response.content_type == "application/json", text
    body = await response.json()
    assert isinstance(body, dict)
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error, dict)
    assert set(error) == {"code", "message", "request_id"}, error
    assert error["code"] == code, error
    # The id the server's access log names the request by.
    assert error["request_id"] == response.headers["X-Request-Id"], error
    assert isinstance(error["message"], str)
    assert error["message"].strip(), error
    return error


@dataclass(frozen=True, slots=True)
class Upload:
    """A negotiated upload."""

    file_id: str
    url: str
    link: str
    size: int


async def negotiate_upload(
    cluster: Cluster,
    sender: str,
    receivers: list[str],
    size: int,
    *,
    region: str = "north",
    carrier: str = "telecom",
    sha256: str | None = None,
) -> Upload:
    """Negotiate an upload of ``size`` bytes with ``region``, as a client of ``carrier`` there."""
    body: dict[str, Any] = {"name": "file.bin", "size": size, "receivers": receivers}
    if sha256 is not None:
        body["sha256"] = sha256
    async with session_from(client_address(region, carrier), user_token(sender)) as session:
        answer = await session.post(cluster.access_url(region) + "/v1/uploads", json=body)
        assert answer.status == 201, await answer.text()
        created = await answer.json()
    return Upload(created["file_id"], created["upload_url"], created["link"], size)


async def patch(
    url: str, data: bytes, offset: int, headers: dict[str, str] | None = None
) -> aiohttp.ClientResponse:
    """PATCH ``data`` at ``offset`` (headers override the well-formed defaults); body read."""
    # aiohttp warns when a big bytes body is sent as is; a BytesIO is streamed instead.
    body: bytes | io.BytesIO = io.BytesIO(data) if len(data) > 1024 * 1024 else data
    async with aiohttp.ClientSession() as session:
        answer = await session.patch(
            url, data=body, headers={**tus_headers(offset), **(headers or {})}
        )
        await answer.read()
    return answer


async def head_offset(url: str) -> int:
    """The offset the server holds for the upload at ``url``."""
    async with aiohttp.ClientSession() as session:
        answer = await session.head(url, headers={"Tus-Resumable": TUS_VERSION})
        assert answer.status == 200, answer.status
        return int(answer.headers["Upload-Offset"])


async def upload_file(
    cluster: Cluster,
    sender: str,
    receivers: list[str],
    data: bytes,
    *,
    region: str = "north",
    carrier: str = "telecom",
) -> Upload:
    """Upload ``data`` completely; the file is then downloadable by its receivers."""
    upload = await negotiate_upload(
        cluster,
        sender,
        receivers,
        len(data),
        region=region,
        carrier=carrier,
        sha256=hashlib.sha256(data).hexdigest(),
    )
    answer = await patch(upload.url, data, 0)
    assert answer.status == 204, answer.status
    return upload


async def negotiate_download(
    cluster: Cluster, user: str, file_id: str, *, region: str = "north", carrier: str = "telecom"
) -> aiohttp.ClientResponse:
    """``POST /v1/downloads`` at ``region`` as ``user``, a client of ``carrier``; body read."""
    async with session_from(client_address(region, carrier), user_token(user)) as session:
        answer = await session.post(
            cluster.access_url(region) + "/v1/downloads", json={"file_id": file_id}
        )
        await answer.read()
    return answer


def signed_blob_url(
    cluster: Cluster,
    file_id: str,
    user: str,
    *,
    region: str = "north",
    carrier: str = "telecom",
    expires: int | None = None,
    action: signing.Action = signing.Action.DOWNLOAD,
) -> str:
    """A URL signed with the cluster's URL key on ``region``'s ``carrier`` link."""
    grant = signing.Grant(
        action,
        file_id,
        carrier,
        user,
        int(time.time()) + 600 if expires is None else expires,
    )
    prefix = "blobs" if action is signing.Action.DOWNLOAD else "tus"
    query = urlencode(signing.query_for(URL_KEY.encode(), grant))
    return f"{cluster.link_url(region, carrier)}/{prefix}/{file_id}?{query}"


async def inbox_file_ids(cluster: Cluster, user: str, wait: float = 0) -> list[str]:
    """The file ids in ``user``'s inbox, long-polling up to ``wait`` seconds for one."""
    async with session_from(client_address("north", "telecom"), user_token(user)) as session:
        answer = await session.get(cluster.directory_url + "/v1/inbox", params={"wait": str(wait)})
        assert answer.status == 200, await answer.text()
        body = await answer.json()
    return [entry["file_id"] for entry in body["entries"]]


async def assert_inbox_stays_empty(cluster: Cluster, user: str, region: str = "north") -> None:
    """Assert ``user``'s inbox is empty once ``region`` has delivered what it had to announce.

    A witness file completed afterwards must reach its own receiver's inbox first, so
    a wrongly announced entry for ``user`` would have arrived by then.
    """
    witness = unique_user("witness")
    await upload_file(cluster, "witness-sender", [witness], b"", region=region)
    deadline = time.monotonic() + 10
    while not await inbox_file_ids(cluster, witness, wait=2):
        assert time.monotonic() < deadline, "the witness file never reached its inbox"
        await asyncio.sleep(0.05)
    assert await inbox_file_ids(cluster, user) == []


def peer_headers(path: str, body: bytes, peer: str, key: str = PEER_KEY) -> dict[str, str]:
    """Headers of a JSON server-to-server request signed as ``peer`` (with ``key``)."""
    signed = peerauth.sign_request(
        key.encode(), method="POST", path_qs=path, peer=peer, body=body, now=time.time()
    )
    return {**signed, "Content-Type": "application/json"}
