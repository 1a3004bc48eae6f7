"""The inbox tells a waiting receiver of a new file at once: long-poll and server-sent events."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time

import aiohttp

from support.cluster import Cluster, client_address, user_token
from support.http import session_from

TUS = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}


async def _send(cluster: Cluster, sender: str, receiver: str, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    async with session_from(client_address("north", "telecom"), user_token(sender)) as session:
        answer = await session.post(
            cluster.access_url("north") + "/v1/uploads",
            json={"name": "note.txt", "size": len(data), "sha256": digest, "receivers": [receiver]},
        )
        assert answer.status == 201
        upload = await answer.json()
        patched = await session.patch(
            upload["upload_url"], data=data, headers={**TUS, "Upload-Offset": "0"}
        )
        assert patched.status == 204
    return str(upload["file_id"])


async def _next_event(response: aiohttp.ClientResponse) -> dict[str, str]:
    event: dict[str, str] = {}
    async for raw in response.content:
        line = raw.decode().rstrip("\n")
        if not line:
            if "data" in event:
                return event
            continue
        if line.startswith(":"):
            continue
        key, _, value = line.partition(": ")
        event[key] = value
    raise AssertionError("event stream ended")


async def test_server_sent_events_announce_and_resume(cluster: Cluster) -> None:
    receiver = f"carol{os.getpid()}"
    async with session_from(client_address("south", "unicom"), user_token(receiver)) as session:
        stream = await session.get(cluster.directory_url + "/v1/inbox/events")
        assert stream.status == 200
        assert stream.headers["Content-Type"] == "text/event-stream"
        sent_at = time.monotonic()
        first = await _send(cluster, "alice", receiver, b"first file")
        event = await asyncio.wait_for(_next_event(stream), 10)
        assert time.monotonic() - sent_at < 5
        assert event["event"] == "entry"
        assert json.loads(event["data"])["file_id"] == first
        first_cursor = event["id"]
        stream.close()

        second = await _send(cluster, "alice", receiver, b"second file")
        resumed = await session.get(
            cluster.directory_url + "/v1/inbox/events", headers={"Last-Event-ID": first_cursor}
        )
        event = await asyncio.wait_for(_next_event(resumed), 10)
        assert json.loads(event["data"])["file_id"] == second
        resumed.close()


async def test_long_poll_returns_when_entry_arrives(cluster: Cluster) -> None:
    receiver = f"dave{os.getpid()}"
    async with session_from(client_address("east", "mobile"), user_token(receiver)) as session:
        empty = await session.get(cluster.directory_url + "/v1/inbox")
        assert (await empty.json())["entries"] == []
        waiting = asyncio.create_task(
            session.get(cluster.directory_url + "/v1/inbox", params={"wait": "30"})
        )
        await asyncio.sleep(0.3)
        assert not waiting.done()
        file_id = await _send(cluster, "alice", receiver, b"hello")
        answer = await asyncio.wait_for(waiting, 10)
        body = await answer.json()
        assert [entry["file_id"] for entry in body["entries"]] == [file_id]
        assert body["cursor"] == body["entries"][0]["cursor"]
        later = await session.get(
            cluster.directory_url + "/v1/inbox", params={"after": str(body["cursor"])}
        )
        assert (await later.json())["entries"] == []


async def test_inbox_is_private(cluster: Cluster) -> None:
    receiver = f"erin{os.getpid()}"
    file_id = await _send(cluster, "alice", receiver, b"for erin only")
    async with session_from(client_address("south", "unicom"), user_token(receiver)) as session:
        own = await (
            await session.get(cluster.directory_url + "/v1/inbox", params={"wait": "10"})
        ).json()
        assert [entry["file_id"] for entry in own["entries"]] == [file_id]
    async with session_from(client_address("south", "unicom"), user_token("mallory")) as session:
        answer = await session.get(
            cluster.directory_url + "/v1/inbox", params={"user": receiver, "receiver": receiver}
        )
        body = await answer.json()
        assert body["user"] == "mallory"
        assert body["entries"] == []
