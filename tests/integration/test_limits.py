"""Limits (issue 5, item 6) against real processes with small limits.

File size past the declared length, per-user quotas (bytes held, uploads a day) and
request rates per client IP and per user. Every test speaks from source addresses of
its own, so one test's throttling never touches another's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any, Final

import aiohttp
import jwt
import pytest

from support.cluster import Cluster, client_address, user_token
from support.http import session_from
from support.region_state import holdings, set_limits
from support.transfer_checks import (
    TUS_VERSION,
    expect_error,
    tus_headers,
    unique_user,
)

QUOTA_BYTES: Final = 1000
UPLOADS_PER_DAY: Final = 3
PER_IP: Final = 60
PER_USER: Final = 30
# The middleware lets a quarter of a minute's allowance through at once.
IP_BURST: Final = PER_IP // 4
USER_BURST: Final = PER_USER // 4
DAY: Final = 24 * 3600
# Where an unbound loopback socket speaks from: how regions reach the directory and
# each other, heartbeats and peer calls included.
SERVERS_SOURCE: Final = "127.0.0.1"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("limits"))
    set_limits(
        cluster,
        user_quota_bytes=QUOTA_BYTES,
        user_uploads_per_day=UPLOADS_PER_DAY,
        requests_per_minute_per_ip=PER_IP,
        requests_per_minute_per_user=PER_USER,
    )
    try:
        cluster.start_all()
        yield cluster
    finally:
        cluster.stop_all()


def _ip(host: int, region: str = "north") -> str:
    """A client of ``region``/telecom; each test uses hosts of its own."""
    return client_address(region, "telecom", host)


def _metadata(filename: str, receiver: str) -> str:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return f"filename {b64(filename)},receivers {b64(receiver)}"


async def _negotiate(
    session: aiohttp.ClientSession, cluster: Cluster, size: int, receiver: str
) -> aiohttp.ClientResponse:
    answer = await session.post(
        cluster.access_url("north") + "/v1/uploads",
        json={"name": "f.bin", "size": size, "receivers": [receiver]},
    )
    await answer.read()
    return answer


async def _tus_create(
    session: aiohttp.ClientSession, cluster: Cluster, size: int, receiver: str, body: Any = None
) -> aiohttp.ClientResponse:
    headers = {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Length": str(size),
        "Upload-Metadata": _metadata("f.bin", receiver),
    }
    if body is not None:
        headers["Content-Type"] = "application/offset+octet-stream"
    answer = await session.post(
        cluster.link_url("north", "telecom") + "/tus", headers=headers, data=body
    )
    await answer.read()
    return answer


async def _past_the_end(first: bytes) -> AsyncIterator[bytes]:
    """A chunked body (no Content-Length): ``first``, a pause, then one byte too many."""
    yield first
    # Apart, the two pieces reach the server as two chunks: the first fits.
    await asyncio.sleep(0.3)
    yield b"!"


# -- maximum file size: nothing past the declared length --------------------------------


async def test_chunked_patch_past_the_upload_length_keeps_nothing(limited: Cluster) -> None:
    data = b"0123456789"
    async with session_from(_ip(60), user_token(unique_user("sender"))) as session:
        answer = await session.post(
            limited.access_url("north") + "/v1/uploads",
            json={
                "name": "f.bin",
                "size": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
                "receivers": [unique_user("bob")],
            },
        )
        assert answer.status == 201, await answer.text()
        upload = await answer.json()
    area = limited.root / "north" / "blobs" / "uploads" / upload["upload_id"]
    async with session_from(_ip(61)) as session:
        answer = await session.patch(
            upload["upload_url"], data=_past_the_end(data), headers=tus_headers(0)
        )
        await expect_error(answer, 413, "too_large")
        assert answer.headers["Tus-Resumable"] == TUS_VERSION
        assert area.stat().st_size == 0
        head = await session.head(upload["upload_url"], headers={"Tus-Resumable": TUS_VERSION})
        assert head.headers["Upload-Offset"] == "0"
        answer = await session.patch(upload["upload_url"], data=data, headers=tus_headers(0))
        assert answer.status == 204, await answer.text()


async def test_creation_with_upload_past_the_length_leaves_nothing(limited: Cluster) -> None:
    sender = unique_user("sender")
    receiver = unique_user("bob")
    before = holdings(limited, sender)
    async with session_from(_ip(62), user_token(sender)) as session:
        declared = await _tus_create(session, limited, 10, receiver, b"0123456789!")
        await expect_error(declared, 413, "too_large")
        assert "Location" not in declared.headers
        chunked = await _tus_create(session, limited, 10, receiver, _past_the_end(b"0123456789"))
        await expect_error(chunked, 413, "too_large")
        assert "Location" not in chunked.headers
        assert holdings(limited, sender) == before
        whole = await _tus_create(session, limited, 10, receiver, b"0123456789")
        assert whole.status == 201, await whole.text()
        assert whole.headers["Upload-Offset"] == "10"


# -- per-user quotas ------------------------------------------------------------------


async def test_quota_of_bytes_held_refuses_and_creates_nothing(limited: Cluster) -> None:
    sender = unique_user("hoarder")
    refused_receiver = unique_user("carol")
    async with session_from(_ip(10), user_token(sender)) as session:
        first = await _negotiate(session, limited, 600, unique_user("bob"))
        assert first.status == 201
        upload = await first.json()
        async with session_from(_ip(11)) as uploader:
            sent = await uploader.patch(
                upload["upload_url"], data=b"x" * 600, headers=tus_headers(0)
            )
            assert sent.status == 204, await sent.text()
        before = holdings(limited, sender)

        over = await _negotiate(session, limited, QUOTA_BYTES - 600 + 1, refused_receiver)
        error = await expect_error(over, 429, "quota_exceeded")
        assert f"quota of {QUOTA_BYTES} bytes" in error["message"]
        assert over.headers["Retry-After"] == "3600"
        creation = await _tus_create(session, limited, QUOTA_BYTES - 600 + 1, refused_receiver)
        await expect_error(creation, 429, "quota_exceeded")
        assert creation.headers["Tus-Resumable"] == TUS_VERSION
        assert "Location" not in creation.headers
        assert holdings(limited, sender) == before

        # A file larger than the whole quota could never fit: too large, not "later".
        whole = await _negotiate(session, limited, QUOTA_BYTES + 1, refused_receiver)
        error = await expect_error(whole, 413, "too_large")
        assert str(QUOTA_BYTES) in error["message"]
        assert holdings(limited, sender) == before

        # Up to the quota exactly is allowed; then not one byte more.
        exact = await _negotiate(session, limited, QUOTA_BYTES - 600, unique_user("bob"))
        assert exact.status == 201, await exact.text()
        await expect_error(
            await _negotiate(session, limited, 1, refused_receiver), 429, "quota_exceeded"
        )
    async with session_from(_ip(12), user_token(refused_receiver)) as session:
        inbox = await session.get(limited.directory_url + "/v1/inbox")
        assert (await inbox.json())["entries"] == []


async def test_uploads_a_day_refuses_the_next_one(limited: Cluster) -> None:
    sender = unique_user("busy-sender")
    async with session_from(_ip(13), user_token(sender)) as session:
        for _ in range(UPLOADS_PER_DAY):
            answer = await _negotiate(session, limited, 0, unique_user("bob"))
            assert answer.status == 201, await answer.text()
        started = time.time()
        before = holdings(limited, sender)
        over = await _negotiate(session, limited, 0, unique_user("bob"))
        error = await expect_error(over, 429, "quota_exceeded")
        assert str(UPLOADS_PER_DAY) in error["message"]
        # Until the first of the three leaves the 24-hour window.
        assert DAY - 120 <= int(over.headers["Retry-After"]) <= DAY
        creation = await _tus_create(session, limited, 0, unique_user("bob"))
        await expect_error(creation, 429, "quota_exceeded")
        assert holdings(limited, sender) == before
    assert time.time() - started < 60
    async with session_from(_ip(13), user_token(unique_user("other-sender"))) as session:
        assert (await _negotiate(session, limited, 0, unique_user("bob"))).status == 201


async def _negotiation(
    session: aiohttp.ClientSession, cluster: Cluster, receiver: str
) -> aiohttp.ClientResponse:
    return await _negotiate(session, cluster, 400, receiver)


async def _whole_small_file(
    session: aiohttp.ClientSession, cluster: Cluster, receiver: str
) -> aiohttp.ClientResponse:
    return await _tus_create(session, cluster, 400, receiver, b"w" * 400)


@pytest.mark.parametrize(
    ("create", "ip"), [(_negotiation, 14), (_whole_small_file, 15)], ids=["negotiated", "whole"]
)
async def test_concurrent_uploads_cannot_share_one_quota_check(
    limited: Cluster,
    create: Callable[[aiohttp.ClientSession, Cluster, str], Awaitable[aiohttp.ClientResponse]],
    ip: int,
) -> None:
    sender = unique_user("racer")
    before = holdings(limited, sender)[0]
    async with session_from(_ip(ip), user_token(sender)) as session:
        answers = await asyncio.gather(
            *(create(session, limited, unique_user("bob")) for _ in range(6))
        )
    statuses = sorted(answer.status for answer in answers)
    assert statuses == [201, 201, 429, 429, 429, 429], statuses
    stored, transfers = holdings(limited, sender)
    assert transfers == 2
    # A refused one that made its upload area (or wrote its whole file) before losing
    # the check with the record removed it again: what is stored is the accepted ones'.
    assert len(stored - before) == 2


# -- request rates ----------------------------------------------------------------------


async def _until_refused(
    session: aiohttp.ClientSession, method: str, url: str, most: int
) -> tuple[int, aiohttp.ClientResponse]:
    """Send requests until one is refused with 429: how many passed, and the refusal."""
    for passed in range(most):
        answer = await session.request(method, url)
        await answer.read()
        if answer.status == 429:
            return passed, answer
        assert answer.status < 400, (answer.status, await answer.text())
    raise AssertionError(f"{most} requests and none refused")


async def test_per_ip_limit_refuses_one_address_not_another(limited: Cluster) -> None:
    locate = limited.directory_url + "/v1/locate"
    async with session_from(_ip(20)) as flooder:
        passed, refused = await _until_refused(flooder, "GET", locate, IP_BURST + 20)
        # The burst, and at most what refills (one a second) while it is sent.
        assert IP_BURST <= passed <= IP_BURST + 3, passed
        await expect_error(refused, 429, "too_many_requests")
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= 60
        async with session_from(_ip(21)) as neighbour:
            assert (await neighbour.get(locate)).status == 200
        await asyncio.sleep(retry_after)
        assert (await flooder.get(locate)).status == 200

        # The file server counts on its own, and its 429s on tus paths still speak tus.
        status = limited.access_url("north") + "/v1/status"
        passed, refused = await _until_refused(flooder, "GET", status, IP_BURST + 20)
        assert passed >= IP_BURST
        await expect_error(refused, 429, "too_many_requests")
        options = await flooder.options(limited.link_url("north", "telecom") + "/tus")
        await expect_error(options, 429, "too_many_requests")
        assert options.headers["Tus-Resumable"] == TUS_VERSION


async def test_per_user_limit_follows_the_user_across_addresses(limited: Cluster) -> None:
    user = unique_user("chatty")
    inbox = limited.directory_url + "/v1/inbox"
    refused = None
    for n in range(USER_BURST + 10):
        # Four addresses, each far below its own limit.
        async with session_from(_ip(30 + n % 4), user_token(user)) as session:
            answer = await session.get(inbox)
            await answer.read()
        if answer.status == 429:
            refused = answer
            break
        assert answer.status == 200
    assert refused is not None, "the user was never refused"
    assert USER_BURST <= n <= USER_BURST + 2, n
    await expect_error(refused, 429, "too_many_requests")
    assert int(refused.headers["Retry-After"]) >= 1
    async with session_from(_ip(30), user_token(unique_user("calm"))) as session:
        assert (await session.get(inbox)).status == 200


async def test_forged_tokens_do_not_spend_the_named_users_allowance(limited: Cluster) -> None:
    victim = unique_user("victim")
    now = int(time.time())
    forged = jwt.encode(
        {"sub": victim, "iat": now, "exp": now + 3600}, "not-the-cluster-key" * 3, algorithm="HS256"
    )
    inbox = limited.directory_url + "/v1/inbox"
    for n in range(USER_BURST + 3):
        async with session_from(_ip(40 + n % 3), forged) as session:
            answer = await session.get(inbox)
            await expect_error(answer, 401, "unauthorized")
    async with session_from(_ip(43), user_token(victim)) as session:
        answer = await session.get(inbox)
        assert answer.status == 200, await answer.text()


async def _flood(url: str, stop: asyncio.Event) -> int:
    """Requests from the servers' own source address until ``stop``: how many were refused."""
    refused = 0
    async with session_from(SERVERS_SOURCE) as session:
        while not stop.is_set():
            answer = await session.get(url)
            await answer.read()
            refused += answer.status == 429
            await asyncio.sleep(0.01)
    return refused


async def test_heartbeats_and_peer_calls_are_never_throttled(limited: Cluster) -> None:
    bob = unique_user("bob")
    async with session_from(_ip(50), user_token(unique_user("sender"))) as session:
        created = await _negotiate(session, limited, 0, bob)
        assert created.status == 201
        file_id = (await created.json())["file_id"]

    async def beats() -> dict[str, int]:
        async with session_from(_ip(51)) as session:
            answer = await session.get(limited.directory_url + "/v1/regions")
            assert answer.status == 200
            regions = (await answer.json())["regions"]
        assert all(r["alive"] for r in regions), regions
        return {r["region"]: r["heartbeats"] for r in regions}

    before = await beats()
    stop = asyncio.Event()
    floods = [
        asyncio.create_task(_flood(limited.directory_url + "/v1/locate", stop)),
        asyncio.create_task(_flood(limited.access_url("north") + "/v1/status", stop)),
    ]
    try:
        # Past the directory's heartbeat timeout (1.5 s) with 127.0.0.1 throttled.
        await asyncio.sleep(3)
        after = await beats()
        # Bob downloads a north file through south: south asks north over the peer channel.
        async with session_from(client_address("south", "unicom", 52), user_token(bob)) as s:
            answer = await s.post(
                limited.access_url("south") + "/v1/downloads", json={"file_id": file_id}
            )
            assert answer.status == 200, await answer.text()
            assert (await answer.json())["region"] == "north"
    finally:
        stop.set()
        refused = await asyncio.gather(*floods)
    assert all(count > 50 for count in refused), refused
    # A heartbeat every 0.3 s: about ten each, none of them refused.
    assert all(after[name] - before[name] >= 6 for name in before), (before, after)
