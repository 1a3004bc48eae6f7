"""The operator's JSON status (``/v1/status``) and the access logs, from real processes.

The cluster logs JSON lines. Every answer names its request in ``X-Request-Id``; an
error body carries the same id, and exactly one access-log line of the server that
answered names it too. No query string (where signed URLs and tokens keep their
secrets) ever reaches a log.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import aiohttp
import pytest

from support.cluster import REGIONS, client_address, user_token
from support.http import session_from
from support.observability import (
    OPERATOR,
    OperatedCluster,
    access_records,
    operator_status,
    running_operated_cluster,
)
from support.transfer_checks import (
    expect_error,
    negotiate_download,
    negotiate_upload,
    patch,
    unique_user,
    upload_file,
)

REGION_NAMES = [name for name, _, _ in REGIONS]
GENERATED_ID = re.compile(r"^[0-9a-f]{16}\Z")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OperatedCluster]:
    with running_operated_cluster(tmp_path_factory.mktemp("operated")) as running:
        yield running


def _lines_of(cluster: OperatedCluster, name: str, request_id: str) -> list[dict[str, Any]]:
    return [r for r in access_records(cluster, name) if r["request_id"] == request_id]


async def _line_of(cluster: OperatedCluster, name: str, request_id: str) -> dict[str, Any]:
    """The one access-log line of ``request_id`` in process ``name``'s log.

    A streamed answer's line is written when its handler ends, a moment after the client
    may have read the last byte: it is waited for.
    """
    deadline = time.monotonic() + 5
    while True:
        lines = _lines_of(cluster, name, request_id)
        if lines or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert len(lines) == 1, lines
    return lines[0]


# -- /v1/status ---------------------------------------------------------------------------


async def test_status_needs_a_token(cluster: OperatedCluster) -> None:
    async with aiohttp.ClientSession() as session:
        answer = await session.get(cluster.directory_url + "/v1/status")
        error = await expect_error(answer, 401, "unauthorized")
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    line = await _line_of(cluster, "directory", error["request_id"])
    assert (line["method"], line["path"], line["status"]) == ("GET", "/v1/status", 401)


async def test_status_is_for_operators_only(cluster: OperatedCluster) -> None:
    async with session_from(client_address("north", "telecom"), user_token("alice")) as session:
        answer = await session.get(cluster.directory_url + "/v1/status")
        error = await expect_error(answer, 403, "forbidden")
    line = await _line_of(cluster, "directory", error["request_id"])
    assert (line["status"], line["user"]) == (403, "alice")
    assert line["client_ip"] == client_address("north", "telecom")


async def test_operators_see_every_region_alive_with_its_links(cluster: OperatedCluster) -> None:
    status = await operator_status(cluster)
    assert status["heartbeat_interval_seconds"] == cluster.heartbeat_interval
    assert status["heartbeat_timeout_seconds"] == cluster.heartbeat_timeout
    assert abs(status["generated_at"] - time.time()) < 5
    assert [r["region"] for r in status["regions"]] == REGION_NAMES
    for region, (name, _, fallback) in zip(status["regions"], REGIONS, strict=True):
        assert region["alive"] is True, region
        assert region["access_url"] == cluster.access_url(name)
        assert region["fallback"] == list(fallback)
        assert region["clients_sent_to"] == name
        assert region["heartbeats"] >= 1
        assert 0 <= region["seconds_since_heartbeat"] < cluster.heartbeat_timeout
        assert abs(region["last_heartbeat_at"] - time.time()) < cluster.heartbeat_timeout + 1
        assert [link["name"] for link in region["links"]] == ["telecom", "unicom", "mobile"]
        for link in region["links"]:
            assert link["carrier"] == link["name"]
            assert link["capacity_mbps"] == 1000.0
            assert link["reported"] is True
            assert link["url"].startswith(cluster.link_url(name, link["carrier"]))


async def test_status_shows_a_transfer_s_bytes_on_its_link(cluster: OperatedCluster) -> None:
    data = os.urandom(70_001)
    await upload_file(cluster, "status-alice", [unique_user("status-bob")], data, region="east")
    deadline = time.monotonic() + 10
    while True:
        status = await operator_status(cluster)
        east = next(r for r in status["regions"] if r["region"] == "east")
        links = {link["name"]: link for link in east["links"]}
        if links["telecom"]["bytes_received"] >= len(data) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert links["telecom"]["bytes_received"] == len(data)
    assert links["unicom"]["bytes_received"] == links["mobile"]["bytes_received"] == 0


# -- request ids and the access log --------------------------------------------------------


async def test_an_error_s_request_id_names_one_access_log_line(cluster: OperatedCluster) -> None:
    upload = await negotiate_upload(cluster, "log-alice", [unique_user("log-bob")], 64)
    answer = await patch(upload.url, b"x" * 8, offset=5)
    error = await expect_error(answer, 409, "offset_mismatch")
    request_id = error["request_id"]
    assert GENERATED_ID.match(request_id), request_id

    line = await _line_of(cluster, "north", request_id)
    assert line["method"] == "PATCH"
    assert line["path"] == urlsplit(upload.url).path
    assert line["status"] == 409
    assert line["link"] == "telecom"
    assert line["client_ip"] == "127.0.0.1"
    assert line["bytes"] > 0
    assert line["duration_ms"] >= 0
    assert line["level"] == "INFO"
    assert line["role"] == "fileserver-north"
    for other in ("directory", "east", "south"):
        assert _lines_of(cluster, other, request_id) == []


async def test_a_sane_request_id_is_kept_and_any_other_replaced(cluster: OperatedCluster) -> None:
    url = cluster.access_url("south") + "/v1/downloads"
    async with aiohttp.ClientSession() as session:
        body = {"file_id": "south." + "a" * 26}
        kept = await session.post(url, json=body, headers={"X-Request-Id": "trace-1.2:3_4"})
        error = await expect_error(kept, 401, "unauthorized")
        assert error["request_id"] == "trace-1.2:3_4"
        for insane in ("two words", "x" * 65, "-leading-dash", 'quote"d'):
            answer = await session.post(url, json=body, headers={"X-Request-Id": insane})
            error = await expect_error(answer, 401, "unauthorized")
            assert GENERATED_ID.match(error["request_id"]), (insane, error)
        ok = await session.get(cluster.access_url("south") + "/healthz")
        assert GENERATED_ID.match(ok.headers["X-Request-Id"])
    line = await _line_of(cluster, "south", "trace-1.2:3_4")
    assert (line["method"], line["path"], line["status"], line["link"]) == (
        "POST",
        "/v1/downloads",
        401,
        None,
    )


async def test_no_query_string_reaches_a_log(cluster: OperatedCluster) -> None:
    receiver = unique_user("query-bob")
    data = os.urandom(50_003)
    upload = await upload_file(cluster, "query-alice", [receiver], data, carrier="mobile")
    negotiated = await negotiate_download(cluster, receiver, upload.file_id, carrier="unicom")
    offer = await negotiated.json()
    token = user_token(receiver)
    async with session_from(client_address("north", "unicom")) as session:
        answer = await session.get(offer["url"])
        assert await answer.read() == data
        download_id = answer.headers["X-Request-Id"]
        # The plain-HTTP form carries the user's token in the query.
        redirect = await session.get(
            f"{cluster.directory_url}/v1/files/{upload.file_id}?access_token={quote(token)}",
            allow_redirects=False,
        )
        assert redirect.status == 307
        redirect_id = redirect.headers["X-Request-Id"]

    line = await _line_of(cluster, "north", download_id)
    assert (line["method"], line["path"], line["status"]) == (
        "GET",
        f"/blobs/{upload.file_id}",
        200,
    )
    assert (line["bytes"], line["link"]) == (len(data), "unicom")
    line = await _line_of(cluster, "directory", redirect_id)
    assert (line["path"], line["status"]) == (f"/v1/files/{upload.file_id}", 307)
    assert line["user"] == receiver  # from the token in the query, which stays out of the log

    secrets = [token, *parse_qs(urlsplit(upload.url).query)["sig"]]
    secrets += parse_qs(urlsplit(offer["url"]).query)["sig"]
    for log in cluster.root.glob("*.log"):
        text = log.read_text(errors="replace")
        assert "?" not in "".join(r["path"] for r in access_records(cluster, log.stem))
        assert "sig=" not in text, log
        assert "access_token" not in text, log
        for secret in secrets:
            assert secret not in text, log


async def test_a_download_the_client_cuts_short_is_logged_with_what_it_got(
    cluster: OperatedCluster,
) -> None:
    # Bigger than every buffer between the server and a client that stops reading.
    data = os.urandom(48 * 1024 * 1024)
    receiver = unique_user("short-bob")
    upload = await upload_file(cluster, "short-alice", [receiver], data)
    negotiated = await negotiate_download(cluster, receiver, upload.file_id)
    target = urlsplit((await negotiated.json())["url"])
    request_id = "cut-short-download-1"
    reader, writer = await asyncio.open_connection(
        target.hostname, target.port, local_addr=(client_address("north", "telecom"), 0)
    )
    writer.write(
        f"GET {target.path}?{target.query} HTTP/1.1\r\nHost: {target.netloc}\r\n"
        f"X-Request-Id: {request_id}\r\n\r\n".encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), head
    got = len(await reader.readexactly(256 * 1024))
    writer.transport.abort()  # gone, with most of the body unread

    line = await _line_of(cluster, "north", request_id)
    # As nginx logs it: the status the answer went out with, and the body bytes sent.
    assert line["status"] == 200
    assert got <= line["bytes"] < len(data)


async def test_the_operator_s_own_requests_are_logged_as_theirs(cluster: OperatedCluster) -> None:
    headers = {"Authorization": f"Bearer {user_token(OPERATOR)}"}
    async with aiohttp.ClientSession() as session:
        answer = await session.get(cluster.directory_url + "/v1/status", headers=headers)
        assert answer.status == 200
        request_id = answer.headers["X-Request-Id"]
    line = await _line_of(cluster, "directory", request_id)
    assert (line["user"], line["status"], line["client_ip"]) == (OPERATOR, 200, "127.0.0.1")
