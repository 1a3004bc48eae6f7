"""File servers announce completed files to the directory in batches (``/v1/peer/inbox/entries``).

The directory stores a batch in one transaction: every entry or, on any refusal, none.
A file server sends what piled up while the directory was away in as many batches as it
takes, without waiting for its next periodic retry between them. Real processes: the
module's cluster (directory + north, east, south); requests signed as the file servers'.
"""

from __future__ import annotations

import json
import time
from typing import Any, Final

import aiohttp

from geodrop.protocol.fileid import new_file_id
from support.cluster import Cluster
from support.region_state import wait_until
from support.transfer_checks import (
    expect_error,
    inbox_file_ids,
    peer_headers,
    unique_user,
    upload_file,
)

PATH: Final = "/v1/peer/inbox/entries"
# The directory's MAX_ANNOUNCEMENTS.
MOST: Final = 25


def _announcement(receiver: str, region: str = "north", **changes: Any) -> dict[str, Any]:
    entry = {
        "receiver": receiver,
        "file_id": str(new_file_id(region)),
        "sender": "alice",
        "filename": "report.pdf",
        "size": 1234,
        "sha256": "ab" * 32,
        "region": region,
        "created_at": time.time(),
    }
    return {**entry, **changes}


async def _post(
    cluster: Cluster, body: object, peer: str = "region:north"
) -> aiohttp.ClientResponse:
    raw = json.dumps(body).encode()
    async with aiohttp.ClientSession() as session:
        answer = await session.post(
            cluster.directory_url + PATH, data=raw, headers=peer_headers(PATH, raw, peer)
        )
        await answer.read()
    return answer


async def test_a_batch_is_stored_in_order_and_again_as_stored(cluster: Cluster) -> None:
    bob, carol = unique_user("bob"), unique_user("carol")
    batch = [_announcement(bob), _announcement(carol), _announcement(bob)]
    answer = await _post(cluster, {"entries": batch})
    assert answer.status == 201, await answer.text()
    stored = (await answer.json())["entries"]
    assert [e["file_id"] for e in stored] == [e["file_id"] for e in batch]
    assert stored[0]["cursor"] < stored[2]["cursor"]
    assert await inbox_file_ids(cluster, bob) == [batch[0]["file_id"], batch[2]["file_id"]]
    assert await inbox_file_ids(cluster, carol) == [batch[1]["file_id"]]

    # Announced again (a file server that lost the answer): the same entries, same cursors.
    again = await _post(cluster, {"entries": batch})
    assert again.status == 201
    assert [e["cursor"] for e in (await again.json())["entries"]] == [e["cursor"] for e in stored]
    assert await inbox_file_ids(cluster, bob) == [batch[0]["file_id"], batch[2]["file_id"]]


async def test_a_refused_batch_stores_none_of_its_entries(cluster: Cluster) -> None:
    bob = unique_user("bob")
    good = _announcement(bob)
    refusals: list[tuple[object, str, int, str, str]] = [
        (
            {"entries": [good, _announcement(bob, size="big")]},
            "region:north",
            400,
            "bad_request",
            "entries[1]",
        ),
        ({"entries": [good, "not an object"]}, "region:north", 400, "bad_request", "entries[1]"),
        ({"entries": [good] * (MOST + 1)}, "region:north", 400, "bad_request", f"at most {MOST}"),
        ({"entries": []}, "region:north", 400, "bad_request", "non-empty"),
        ({"entries": good}, "region:north", 400, "bad_request", "non-empty list"),
        ({"entry": [good]}, "region:north", 400, "bad_request", "entries"),
        # north may announce only north's files: one east file refuses the whole batch.
        ({"entries": [good, _announcement(bob, "east")]}, "region:north", 403, "forbidden", ""),
    ]
    for body, peer, status, code, words in refusals:
        error = await expect_error(await _post(cluster, body, peer), status, code)
        assert words in error["message"], (body, error)
    assert await inbox_file_ids(cluster, bob) == []

    async with aiohttp.ClientSession() as session:
        raw = json.dumps({"entries": [good]}).encode()
        unsigned = await session.post(
            cluster.directory_url + PATH, data=raw, headers={"Content-Type": "application/json"}
        )
        await expect_error(unsigned, 401, "unauthorized")
    assert await inbox_file_ids(cluster, bob) == []


async def test_files_completed_while_the_directory_is_down_all_reach_their_inboxes(
    cluster: Cluster,
) -> None:
    receivers = [unique_user(f"r{i}") for i in range(MOST + 7)]  # more than one batch
    cluster.stop("directory")
    try:
        uploads = [await upload_file(cluster, "alice", [r], b"waits") for r in receivers]
    finally:
        cluster.start("directory")
    started = time.monotonic()

    async def all_delivered() -> bool:
        for receiver, upload in zip(receivers, uploads, strict=True):
            if await inbox_file_ids(cluster, receiver) != [upload.file_id]:
                return False
        return True

    # North retries every 2 s; every batch goes in that one retry, not one per 30 s sweep.
    await wait_until(all_delivered, 12, "every announcement to arrive")
    assert time.monotonic() - started < 12
