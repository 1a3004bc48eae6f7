"""What bad input gets (DESIGN.md §7), from real directory and file-server processes.

Every refusal is checked for its status, its ``{"error": {"code", "message", "request_id"}}``
body and the headers that matter; where bad input must change nothing, that is checked too.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import aiohttp
import jwt
import pytest

from geodrop.protocol import signing
from support.cluster import (
    Cluster,
    client_address,
    running_cluster,
    user_token,
)
from support.http import session_from
from support.transfer_checks import (
    TUS_VERSION,
    assert_inbox_stays_empty,
    expect_error,
    head_offset,
    inbox_file_ids,
    negotiate_download,
    negotiate_upload,
    patch,
    peer_headers,
    signed_blob_url,
    unique_user,
    upload_file,
)

UNKNOWN_NORTH_ID = "north." + "a" * 26


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _with_host(url: str, host: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{host}:{parts.port}"))


def _with_path(url: str, path: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=path))


def _tampered(signature: str) -> str:
    return ("B" if signature[0] == "A" else "A") + signature[1:]


def _alg_none_token(user: str) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"sub": user, "iat": int(time.time()), "exp": int(time.time()) + 3600}
    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}."


# -- 400 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "JSON"),
        (b"\xff\xfe", "JSON"),
        (b"[1, 2, 3]", "object"),
        (b'"a string"', "object"),
        (b'{"size": 5, "receivers": ["bob"]}', "name"),
        (b'{"name": "", "size": 5, "receivers": ["bob"]}', "name"),
        (b'{"name": "a\\u0000b", "size": 5, "receivers": ["bob"]}', "name"),
        (b'{"name": "a", "receivers": ["bob"]}', "size"),
        (b'{"name": "a", "size": -1, "receivers": ["bob"]}', "size"),
        (b'{"name": "a", "size": "5", "receivers": ["bob"]}', "size"),
        (b'{"name": "a", "size": true, "receivers": ["bob"]}', "size"),
        (b'{"name": "a", "size": 1.5, "receivers": ["bob"]}', "size"),
        (b'{"name": "a", "size": 5, "sha256": "xyz", "receivers": ["bob"]}', "sha256"),
        (
            b'{"name": "a", "size": 5, "sha256": "' + b"A" * 64 + b'", "receivers": ["bob"]}',
            "sha256",
        ),
        (b'{"name": "a", "size": 5}', "receivers"),
        (b'{"name": "a", "size": 5, "receivers": []}', "receivers"),
        (b'{"name": "a", "size": 5, "receivers": "bob"}', "receivers"),
        (b'{"name": "a", "size": 5, "receivers": ["bad user!"]}', "receivers"),
        (b'{"name": "a", "size": 5, "receivers": [7]}', "receivers"),
    ],
)
async def test_upload_negotiation_rejects_malformed_body(
    cluster: Cluster, body: bytes, field: str
) -> None:
    sender = unique_user("sender")
    async with session_from(client_address("north", "telecom"), user_token(sender)) as session:
        answer = await session.post(
            cluster.access_url("north") + "/v1/uploads",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        error = await expect_error(answer, 400, "bad_request")
    assert field in error["message"]


async def test_download_negotiation_without_file_id_is_bad_request(cluster: Cluster) -> None:
    async with session_from(client_address("north", "telecom"), user_token("bob")) as session:
        answer = await session.post(cluster.access_url("north") + "/v1/downloads", json={})
        error = await expect_error(answer, 400, "bad_request")
    assert "file_id" in error["message"]


@pytest.mark.parametrize("length", [None, "abc", "-1", "1.5", "1e3", "99999999999999999999"])
async def test_tus_creation_rejects_bad_upload_length(cluster: Cluster, length: str | None) -> None:
    headers = {"Tus-Resumable": TUS_VERSION, "Upload-Metadata": _metadata("a.txt", "bob")}
    if length is not None:
        headers["Upload-Length"] = length
    async with session_from(client_address("north", "telecom"), user_token("alice")) as session:
        answer = await session.post(cluster.link_url("north", "telecom") + "/tus", headers=headers)
        error = await expect_error(answer, 400, "bad_request")
    assert answer.headers["Tus-Resumable"] == TUS_VERSION
    assert "Upload-Length" in error["message"]


def _metadata(filename: str, receivers: str) -> str:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    return f"filename {b64(filename)},receivers {b64(receivers)}"


@pytest.mark.parametrize(
    "metadata",
    [
        "filename !!!notbase64",
        "filename YQ",  # not canonical (unpadded) base64
        "filename YQ==,filename YQ==",  # duplicate key
        "filename //79",  # base64 of bytes that are not UTF-8
        f"filename {base64.b64encode(b'a').decode()}",  # no receivers
        _metadata("a.txt", "not a user!"),
        _metadata("a\x01b", "bob"),
    ],
)
async def test_tus_creation_rejects_bad_upload_metadata(cluster: Cluster, metadata: str) -> None:
    receiver = unique_user("bob")
    headers = {"Tus-Resumable": TUS_VERSION, "Upload-Length": "5", "Upload-Metadata": metadata}
    async with session_from(client_address("north", "telecom"), user_token("alice")) as session:
        answer = await session.post(cluster.link_url("north", "telecom") + "/tus", headers=headers)
        error = await expect_error(answer, 400, "bad_request")
    assert answer.headers["Tus-Resumable"] == TUS_VERSION
    assert "Location" not in answer.headers
    assert "Upload-Metadata" in error["message"]
    await assert_inbox_stays_empty(cluster, receiver)


@pytest.mark.parametrize(
    "checksum",
    ["crc32 AAAAAA==", "sha512 " + base64.b64encode(b"x" * 64).decode(), "sha256", "sha1 ???"],
)
async def test_patch_rejects_bad_upload_checksum(cluster: Cluster, checksum: str) -> None:
    upload = await negotiate_upload(cluster, "alice", [unique_user("bob")], 10)
    answer = await patch(upload.url, b"12345", 0, {"Upload-Checksum": checksum})
    error = await expect_error(answer, 400, "bad_request")
    assert "Upload-Checksum" in error["message"]
    assert answer.headers["Tus-Resumable"] == TUS_VERSION
    assert await head_offset(upload.url) == 0


@pytest.mark.parametrize(
    "query",
    [
        {"after": "abc"},
        {"after": "-1"},
        {"after": "inf"},
        {"after": "nan"},
        {"wait": "soon"},
        {"wait": "-5"},
        {"wait": "nan"},
        {"wait": "1e400"},
    ],
)
async def test_inbox_rejects_garbage_cursor_and_wait(
    cluster: Cluster, query: dict[str, str]
) -> None:
    async with session_from(client_address("south", "unicom"), user_token("bob")) as session:
        started = time.monotonic()
        answer = await session.get(cluster.directory_url + "/v1/inbox", params=query)
        error = await expect_error(answer, 400, "bad_request")
    assert next(iter(query)) in error["message"]
    assert time.monotonic() - started < 5, "a bad request must not long-poll"


# -- 401 ---------------------------------------------------------------------------


def _expired_token(user: str) -> str:
    return user_token(user, lifetime=-60)


def _foreign_token(user: str) -> str:
    now = int(time.time())
    claims = {"sub": user, "iat": now, "exp": now + 3600}
    return jwt.encode(claims, "another-cluster-key-0123456789abcdef-xyz", algorithm="HS256")


BAD_TOKENS = {
    "no token": None,
    "forged with another key": _foreign_token,
    "expired": _expired_token,
    "alg none": _alg_none_token,
    "garbage": lambda user: "not.a.jwt",
}


def _authorization(kind: str, user: str) -> dict[str, str]:
    make = BAD_TOKENS[kind]
    return {} if make is None else {"Authorization": f"Bearer {make(user)}"}


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_upload_negotiation_needs_a_valid_token(cluster: Cluster, kind: str) -> None:
    receiver = unique_user("bob")
    async with session_from(client_address("north", "telecom")) as session:
        answer = await session.post(
            cluster.access_url("north") + "/v1/uploads",
            json={"name": "a", "size": 0, "receivers": [receiver]},
            headers=_authorization(kind, "alice"),
        )
        await expect_error(answer, 401, "unauthorized")
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    # Even a 0-byte upload, which would complete at once, left nothing behind.
    await assert_inbox_stays_empty(cluster, receiver)


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_download_negotiation_needs_a_valid_token(cluster: Cluster, kind: str) -> None:
    upload = await upload_file(cluster, "alice", ["bob"], b"secret bytes")
    async with session_from(client_address("north", "telecom")) as session:
        for path in ("/v1/downloads", f"/v1/files/{upload.file_id}"):
            if path == "/v1/downloads":
                answer = await session.post(
                    cluster.access_url("north") + path,
                    json={"file_id": upload.file_id},
                    headers=_authorization(kind, "bob"),
                )
            else:
                answer = await session.get(
                    cluster.access_url("north") + path,
                    headers=_authorization(kind, "bob"),
                    allow_redirects=False,
                )
            await expect_error(answer, 401, "unauthorized")
            assert answer.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_inbox_needs_a_valid_token(cluster: Cluster, kind: str) -> None:
    async with session_from(client_address("north", "telecom")) as session:
        answer = await session.get(
            cluster.directory_url + "/v1/inbox", headers=_authorization(kind, "bob")
        )
        await expect_error(answer, 401, "unauthorized")
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("kind", ["no token", "forged with another key", "alg none"])
async def test_tus_creation_needs_a_valid_token(cluster: Cluster, kind: str) -> None:
    headers = {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Length": "5",
        "Upload-Metadata": _metadata("a.txt", "bob"),
        **_authorization(kind, "alice"),
    }
    async with session_from(client_address("north", "telecom")) as session:
        answer = await session.post(cluster.link_url("north", "telecom") + "/tus", headers=headers)
        await expect_error(answer, 401, "unauthorized")
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert answer.headers["Tus-Resumable"] == TUS_VERSION


async def test_peer_endpoints_refuse_unsigned_and_replayed_requests(cluster: Cluster) -> None:
    upload = await upload_file(cluster, "alice", ["bob"], b"peer-only")
    body = json.dumps({"file_id": upload.file_id, "user": "bob", "carrier": "telecom"}).encode()
    path = "/v1/peer/download-address"
    async with aiohttp.ClientSession() as session:
        unsigned = await session.post(
            cluster.access_url("north") + path,
            data=body,
            headers={"Content-Type": "application/json"},
        )
        await expect_error(unsigned, 401, "unauthorized")

        signed = peer_headers(path, body, "region:south", key="not-the-peer-key-0123456789abcdef")
        forged = await session.post(
            cluster.access_url("north") + path,
            data=body,
            headers=signed,
        )
        await expect_error(forged, 401, "unauthorized")

        signed = peer_headers(path, body, "region:south")
        headers = signed
        first = await session.post(cluster.access_url("north") + path, data=body, headers=headers)
        assert first.status == 200, await first.text()
        replayed = await session.post(
            cluster.access_url("north") + path, data=body, headers=headers
        )
        await expect_error(replayed, 401, "unauthorized")


# -- 403 ---------------------------------------------------------------------------


async def test_tampered_signatures_are_forbidden(cluster: Cluster) -> None:
    done = await upload_file(cluster, "alice", ["bob"], b"0123456789")
    download = await negotiate_download(cluster, "bob", done.file_id)
    blob_url = (await download.json())["url"]
    pending = await negotiate_upload(cluster, "alice", ["bob"], 10)
    async with aiohttp.ClientSession() as session:
        for url, changes in (
            (blob_url, {"sig": _tampered(parse_qs(urlsplit(blob_url).query)["sig"][0])}),
            (blob_url, {"exp": str(int(time.time()) + 10_000)}),
            (blob_url, {"u": "alice"}),  # signed for bob
            (blob_url, {"sig": ""}),
        ):
            answer = await session.get(_with_query(url, **changes))
            await expect_error(answer, 403, "forbidden")

        intact = await session.get(blob_url)
        assert intact.status == 200
        assert await intact.read() == b"0123456789"

    for changes in (
        {"sig": _tampered(parse_qs(urlsplit(pending.url).query)["sig"][0])},
        {"u": "mallory"},  # signed for alice
        {"exp": str(int(time.time()) + 10_000)},
    ):
        answer = await patch(_with_query(pending.url, **changes), b"12345", 0)
        await expect_error(answer, 403, "forbidden")
        assert answer.headers["Tus-Resumable"] == TUS_VERSION
    assert await head_offset(pending.url) == 0


async def test_signed_url_is_bound_to_its_link(cluster: Cluster) -> None:
    done = await upload_file(cluster, "alice", ["bob"], b"0123456789")
    download = await negotiate_download(cluster, "bob", done.file_id, carrier="telecom")
    address = await download.json()
    assert address["link"] == "telecom"
    pending = await negotiate_upload(cluster, "alice", ["bob"], 10, carrier="telecom")
    assert pending.link == "telecom"
    unicom_host = cluster.link_host("north", "unicom")
    async with aiohttp.ClientSession() as session:
        answer = await session.get(_with_host(address["url"], unicom_host))
        await expect_error(answer, 403, "forbidden")
    answer = await patch(_with_host(pending.url, unicom_host), b"12345", 0)
    await expect_error(answer, 403, "forbidden")
    assert await head_offset(pending.url) == 0


async def test_upload_and_download_urls_are_not_interchangeable(cluster: Cluster) -> None:
    done = await upload_file(cluster, "alice", ["bob"], b"0123456789")
    download = await negotiate_download(cluster, "bob", done.file_id)
    blob_url = (await download.json())["url"]
    pending = await negotiate_upload(cluster, "alice", ["bob"], 10)
    async with aiohttp.ClientSession() as session:
        # The finished upload's own tus URL, turned into a blob URL.
        as_blob = _with_path(done.url, f"/blobs/{done.file_id}")
        answer = await session.get(as_blob)
        await expect_error(answer, 403, "forbidden")
    # A download URL, turned into a tus URL for the same id.
    as_tus = _with_path(blob_url, f"/tus/{done.file_id}")
    answer = await patch(as_tus, b"12345", 0)
    await expect_error(answer, 403, "forbidden")
    assert answer.headers["Tus-Resumable"] == TUS_VERSION
    # A signed download grant for a pending upload's id cannot write to it.
    grant_url = signed_blob_url(cluster, pending.file_id, "alice")
    answer = await patch(_with_path(grant_url, f"/tus/{pending.file_id}"), b"12345", 0)
    await expect_error(answer, 403, "forbidden")
    assert await head_offset(pending.url) == 0


async def test_transfers_are_refused_on_the_access_address(cluster: Cluster) -> None:
    done = await upload_file(cluster, "alice", ["bob"], b"0123456789")
    download = await negotiate_download(cluster, "bob", done.file_id)
    blob_url = (await download.json())["url"]
    pending = await negotiate_upload(cluster, "alice", ["bob"], 10)
    access_host = cluster.access_host("north")
    async with aiohttp.ClientSession() as session:
        answer = await session.get(_with_host(blob_url, access_host))
        await expect_error(answer, 403, "forbidden")
    answer = await patch(_with_host(pending.url, access_host), b"12345", 0)
    await expect_error(answer, 403, "forbidden")
    assert answer.headers["Tus-Resumable"] == TUS_VERSION
    assert await head_offset(pending.url) == 0


async def test_peer_may_speak_only_for_its_own_region(cluster: Cluster) -> None:
    body = json.dumps({"region": "east", "links": []}).encode()
    path = "/v1/peer/heartbeat"
    signed = peer_headers(path, body, "region:north")
    async with aiohttp.ClientSession() as session:
        answer = await session.post(
            cluster.directory_url + path,
            data=body,
            headers=signed,
        )
        await expect_error(answer, 403, "forbidden")


# -- 404 ---------------------------------------------------------------------------


async def test_a_file_one_may_not_see_is_indistinguishable_from_none(cluster: Cluster) -> None:
    done = await upload_file(cluster, "alice", ["bob"], b"for bob only")
    ids = {
        "not yours": done.file_id,
        "unknown": UNKNOWN_NORTH_ID,
        "malformed": "../../etc/passwd",
        "malformed, no region": "a" * 26,
        "unknown region": "mars." + "b" * 26,
    }
    seen: set[tuple[int, str, str]] = set()
    for region in ("north", "south"):  # answered locally, and relayed from the owner
        for file_id in ids.values():
            answer = await negotiate_download(cluster, "carol", file_id, region=region)
            error = await expect_error(answer, 404, "not_found")
            seen.add((answer.status, error["code"], error["message"]))
            async with session_from(
                client_address(region, "telecom"), user_token("carol")
            ) as session:
                redirect = await session.get(
                    cluster.access_url(region) + f"/v1/files/{file_id}", allow_redirects=False
                )
                error = await expect_error(redirect, 404, "not_found")
                if "/" not in file_id:
                    seen.add((redirect.status, error["code"], error["message"]))
    assert len(seen) == 1, seen
    # The receiver still gets it: the 404 above was about carol, not the file.
    allowed = await negotiate_download(cluster, "bob", done.file_id, region="south")
    assert allowed.status == 200


async def test_signed_urls_for_unseen_or_unknown_files_answer_the_same(cluster: Cluster) -> None:
    done = await upload_file(cluster, "alice", ["bob"], b"for bob only")
    async with aiohttp.ClientSession() as session:
        errors = []
        for file_id, user in ((done.file_id, "carol"), (UNKNOWN_NORTH_ID, "bob")):
            answer = await session.get(signed_blob_url(cluster, file_id, user))
            errors.append(await expect_error(answer, 404, "not_found"))
        malformed = await session.get(cluster.link_url("north", "telecom") + "/blobs/nonsense")
        errors.append(await expect_error(malformed, 404, "not_found"))
    # The same answer, but for the id naming each request.
    same = [{k: v for k, v in error.items() if k != "request_id"} for error in errors]
    assert same[0] == same[1] == same[2]


async def test_tus_head_and_patch_of_unknown_upload_are_not_found(cluster: Cluster) -> None:
    url = signed_blob_url(cluster, UNKNOWN_NORTH_ID, "alice", action=signing.Action.UPLOAD)
    answer = await patch(url, b"12345", 0)
    await expect_error(answer, 404, "not_found")
    assert answer.headers["Tus-Resumable"] == TUS_VERSION
    async with aiohttp.ClientSession() as session:
        head = await session.head(url, headers={"Tus-Resumable": TUS_VERSION})
        assert head.status == 404


@pytest.mark.parametrize(
    ("role", "path"),
    [("directory", "/v1/nope"), ("north", "/v1/nope"), ("north", "/"), ("directory", "/v2/locate")],
)
async def test_unknown_route_is_not_found(cluster: Cluster, role: str, path: str) -> None:
    base = cluster.directory_url if role == "directory" else cluster.access_url(role)
    async with aiohttp.ClientSession() as session:
        answer = await session.get(base + path)
        await expect_error(answer, 404, "not_found")


# -- 405 ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "method", "path", "allowed"),
    [
        ("north", "PUT", "/v1/uploads", "POST"),
        ("north", "GET", "/v1/downloads", "POST"),
        ("directory", "POST", "/v1/locate", "GET"),
        ("directory", "DELETE", "/v1/inbox", "GET"),
        ("north", "PUT", "/tus/" + UNKNOWN_NORTH_ID, "PATCH"),
    ],
)
async def test_wrong_method_is_not_allowed(
    cluster: Cluster, role: str, method: str, path: str, allowed: str
) -> None:
    base = cluster.directory_url if role == "directory" else cluster.access_url(role)
    async with aiohttp.ClientSession() as session:
        answer = await session.request(method, base + path)
        await expect_error(answer, 405, "method_not_allowed")
    assert allowed in answer.headers["Allow"]
    if path.startswith("/tus"):
        assert answer.headers["Tus-Resumable"] == TUS_VERSION


# -- 409 ---------------------------------------------------------------------------


async def test_patch_at_the_wrong_offset_conflicts_and_changes_nothing(cluster: Cluster) -> None:
    data = b"0123456789"
    upload = await negotiate_upload(
        cluster, "alice", [unique_user("bob")], len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    assert (await patch(upload.url, data[:4], 0)).status == 204
    for wrong in (0, 3, 5, 10):
        answer = await patch(upload.url, data[wrong : wrong + 2], wrong)
        error = await expect_error(answer, 409, "offset_mismatch")
        assert "4" in error["message"]
        assert answer.headers["Tus-Resumable"] == TUS_VERSION
        assert await head_offset(upload.url) == 4
    # The upload still completes byte-identical from where it really was.
    assert (await patch(upload.url, data[4:], 4)).status == 204
    blob = await negotiate_download(cluster, "alice", upload.file_id)
    async with aiohttp.ClientSession() as session:
        got = await session.get((await blob.json())["url"])
        assert await got.read() == data


async def test_download_of_an_incomplete_upload_conflicts(cluster: Cluster) -> None:
    receiver = unique_user("bob")
    upload = await negotiate_upload(cluster, "alice", [receiver], 10)
    assert (await patch(upload.url, b"01234", 0)).status == 204
    for region in ("north", "south"):
        answer = await negotiate_download(cluster, receiver, upload.file_id, region=region)
        await expect_error(answer, 409, "conflict")
    # Only the sender and receivers learn that much; anyone else gets the plain 404.
    stranger = await negotiate_download(cluster, "carol", upload.file_id)
    await expect_error(stranger, 404, "not_found")
    await assert_inbox_stays_empty(cluster, receiver)


# -- 410 ---------------------------------------------------------------------------


async def test_expired_signed_urls_are_gone(cluster: Cluster) -> None:
    done = await upload_file(cluster, "alice", ["bob"], b"0123456789")
    past = int(time.time()) - 5
    async with aiohttp.ClientSession() as session:
        answer = await session.get(signed_blob_url(cluster, done.file_id, "bob", expires=past))
        await expect_error(answer, 410, "gone")
        fresh = await session.get(signed_blob_url(cluster, done.file_id, "bob"))
        assert fresh.status == 200
        assert await fresh.read() == b"0123456789"

    pending = await negotiate_upload(cluster, "alice", ["bob"], 10)
    expired_upload = signed_blob_url(
        cluster, pending.file_id, "alice", expires=past, action=signing.Action.UPLOAD
    )
    answer = await patch(expired_upload, b"12345", 0)
    await expect_error(answer, 410, "gone")
    assert answer.headers["Tus-Resumable"] == TUS_VERSION
    assert await head_offset(pending.url) == 0


# -- 412 ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", [None, "0.2.2", "1.0", ""])
async def test_tus_requests_need_tus_resumable_1_0_0(cluster: Cluster, version: str | None) -> None:
    upload = await negotiate_upload(cluster, "alice", ["bob"], 10)
    headers = {} if version is None else {"Tus-Resumable": version}
    async with aiohttp.ClientSession() as session:
        patch_headers = {
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
            **headers,
        }
        answer = await session.patch(upload.url, data=b"12345", headers=patch_headers)
        await expect_error(answer, 412, "unsupported_tus_version")
        assert answer.headers["Tus-Version"] == TUS_VERSION
        assert answer.headers["Tus-Resumable"] == TUS_VERSION

        head = await session.head(upload.url, headers=headers)
        assert head.status == 412
        assert head.headers["Tus-Version"] == TUS_VERSION

        creation = await session.post(
            cluster.link_url("north", "telecom") + "/tus",
            headers={
                "Authorization": f"Bearer {user_token('alice')}",
                "Upload-Length": "5",
                "Upload-Metadata": _metadata("a.txt", "bob"),
                **headers,
            },
        )
        await expect_error(creation, 412, "unsupported_tus_version")
        assert creation.headers["Tus-Version"] == TUS_VERSION
    assert await head_offset(upload.url) == 0


async def test_if_match_mismatch_is_precondition_failed(cluster: Cluster) -> None:
    done = await upload_file(cluster, "alice", ["bob"], b"0123456789")
    async with aiohttp.ClientSession() as session:
        answer = await session.get(
            signed_blob_url(cluster, done.file_id, "bob"), headers={"If-Match": '"other"'}
        )
        await expect_error(answer, 412, "precondition_failed")


# -- 413 ---------------------------------------------------------------------------

MAX_FILE_SIZE = 209715200  # limits.max_file_size of the test cluster


async def test_negotiation_over_the_size_limit_is_too_large(cluster: Cluster) -> None:
    receiver = unique_user("bob")
    async with session_from(client_address("north", "telecom"), user_token("alice")) as session:
        answer = await session.post(
            cluster.access_url("north") + "/v1/uploads",
            json={"name": "big.iso", "size": MAX_FILE_SIZE + 1, "receivers": [receiver]},
        )
        error = await expect_error(answer, 413, "too_large")
        assert str(MAX_FILE_SIZE) in error["message"]
        huge = await session.post(
            cluster.access_url("north") + "/v1/uploads",
            json={"name": "x" * 100_000, "size": 1, "receivers": [receiver]},
        )
        await expect_error(huge, 413, "too_large")
    await assert_inbox_stays_empty(cluster, receiver)


async def test_tus_creation_over_the_size_limit_is_too_large(cluster: Cluster) -> None:
    async with session_from(client_address("north", "telecom"), user_token("alice")) as session:
        answer = await session.post(
            cluster.link_url("north", "telecom") + "/tus",
            headers={
                "Tus-Resumable": TUS_VERSION,
                "Upload-Length": str(MAX_FILE_SIZE + 1),
                "Upload-Metadata": _metadata("big.iso", "bob"),
            },
        )
        await expect_error(answer, 413, "too_large")
    assert answer.headers["Tus-Resumable"] == TUS_VERSION
    assert answer.headers["Tus-Max-Size"] == str(MAX_FILE_SIZE)
    assert "Location" not in answer.headers


async def test_patch_past_the_upload_length_is_too_large(cluster: Cluster) -> None:
    data = b"0123456789"
    upload = await negotiate_upload(
        cluster, "alice", [unique_user("bob")], len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    answer = await patch(upload.url, data + b"extra", 0)
    await expect_error(answer, 413, "too_large")
    assert answer.headers["Tus-Resumable"] == TUS_VERSION
    assert await head_offset(upload.url) == 0

    assert (await patch(upload.url, data[:6], 0)).status == 204
    answer = await patch(upload.url, data[6:] + b"!", 6)
    await expect_error(answer, 413, "too_large")
    assert await head_offset(upload.url) == 6
    assert (await patch(upload.url, data[6:], 6)).status == 204


# -- 415 ---------------------------------------------------------------------------


async def test_negotiation_needs_a_json_body(cluster: Cluster) -> None:
    receiver = unique_user("bob")
    body = json.dumps({"name": "a", "size": 0, "receivers": [receiver]})
    async with session_from(client_address("north", "telecom"), user_token("alice")) as session:
        for path in ("/v1/uploads", "/v1/downloads"):
            answer = await session.post(
                cluster.access_url("north") + path,
                data=body,
                headers={"Content-Type": "text/plain"},
            )
            await expect_error(answer, 415, "unsupported_media_type")
    await assert_inbox_stays_empty(cluster, receiver)


@pytest.mark.parametrize("content_type", ["application/octet-stream", "text/plain", None])
async def test_patch_needs_the_offset_content_type(
    cluster: Cluster, content_type: str | None
) -> None:
    upload = await negotiate_upload(cluster, "alice", [unique_user("bob")], 10)
    headers = {"Tus-Resumable": TUS_VERSION, "Upload-Offset": "0"}
    async with aiohttp.ClientSession() as session:
        # aiohttp labels a bytes body application/octet-stream unless told otherwise.
        if content_type is not None:
            headers["Content-Type"] = content_type
            answer = await session.patch(upload.url, data=b"12345", headers=headers)
        else:
            answer = await session.patch(
                upload.url, data=b"12345", headers=headers, skip_auto_headers=["Content-Type"]
            )
        await expect_error(answer, 415, "unsupported_media_type")
    assert answer.headers["Tus-Resumable"] == TUS_VERSION
    assert await head_offset(upload.url) == 0


# -- 416 ---------------------------------------------------------------------------


@pytest.mark.parametrize("range_header", ["bytes=10-", "bytes=100-200", "bytes=-0"])
async def test_range_beyond_the_end_is_not_satisfiable(cluster: Cluster, range_header: str) -> None:
    done = await upload_file(cluster, "alice", ["bob"], b"0123456789")
    async with aiohttp.ClientSession() as session:
        answer = await session.get(
            signed_blob_url(cluster, done.file_id, "bob"), headers={"Range": range_header}
        )
        await expect_error(answer, 416, "range_not_satisfiable")
        assert answer.headers["Content-Range"] == "bytes */10"


# -- 460 ---------------------------------------------------------------------------


async def test_chunk_checksum_mismatch_discards_the_chunk(cluster: Cluster) -> None:
    data = b"0123456789"
    upload = await negotiate_upload(
        cluster, "alice", [unique_user("bob")], len(data), sha256=hashlib.sha256(data).hexdigest()
    )
    wrong = base64.b64encode(hashlib.sha256(b"something else").digest()).decode()
    answer = await patch(upload.url, data[:5], 0, {"Upload-Checksum": f"sha256 {wrong}"})
    await expect_error(answer, 460, "checksum_mismatch")
    assert answer.headers["Tus-Resumable"] == TUS_VERSION
    assert await head_offset(upload.url) == 0

    right = base64.b64encode(hashlib.sha1(data[:5], usedforsecurity=False).digest()).decode()
    accepted = await patch(upload.url, data[:5], 0, {"Upload-Checksum": f"sha1 {right}"})
    assert accepted.status == 204
    assert await head_offset(upload.url) == 5


async def test_whole_file_sha256_mismatch_restarts_the_upload(cluster: Cluster) -> None:
    receiver = unique_user("bob")
    upload = await negotiate_upload(
        cluster, "alice", [receiver], 10, sha256=hashlib.sha256(b"0123456789").hexdigest()
    )
    answer = await patch(upload.url, b"9876543210", 0)
    await expect_error(answer, 460, "checksum_mismatch")
    assert await head_offset(upload.url) == 0
    refused = await negotiate_download(cluster, receiver, upload.file_id)
    await expect_error(refused, 409, "conflict")
    await assert_inbox_stays_empty(cluster, receiver)


# -- forwarded-for --------------------------------------------------------------


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(cluster: Cluster) -> None:
    source = client_address("north", "telecom", host=9)
    async with session_from(source, user_token("alice")) as session:
        answer = await session.get(
            cluster.directory_url + "/v1/locate",
            headers={"X-Forwarded-For": "127.103.2.9"},
        )
        assert answer.status == 200
        located = await answer.json()
        upload = await session.post(
            cluster.access_url("north") + "/v1/uploads",
            json={"name": "a", "size": 1, "receivers": ["bob"]},
            headers={"X-Forwarded-For": "127.103.2.9, 127.102.3.9"},
        )
        assert upload.status == 201
        negotiated = await upload.json()
    assert located["client_ip"] == source
    assert (located["region"], located["carrier"]) == ("north", "telecom")
    assert located["match"] == "override"
    assert negotiated["client_carrier"] == "telecom"
    assert negotiated["link"] == "telecom"


# -- 503 and 507: clusters of their own ----------------------------------------------


async def test_owner_region_down_is_unavailable_with_retry_after(cluster_root: Path) -> None:
    with running_cluster(cluster_root) as own:
        done = await upload_file(own, "alice", ["bob"], b"kept in north")
        assert (await negotiate_download(own, "bob", done.file_id, region="south")).status == 200
        own.stop("north")
        for path in ("/v1/downloads", f"/v1/files/{done.file_id}"):
            async with session_from(client_address("south", "unicom"), user_token("bob")) as s:
                if path == "/v1/downloads":
                    answer = await s.post(
                        own.access_url("south") + path, json={"file_id": done.file_id}
                    )
                else:
                    answer = await s.get(own.access_url("south") + path, allow_redirects=False)
                await expect_error(answer, 503, "peer_unavailable")
            assert int(answer.headers["Retry-After"]) > 0


async def test_locate_with_region_and_fallbacks_down_is_unavailable(cluster_root: Path) -> None:
    with running_cluster(cluster_root) as own:
        for region in ("north", "east", "south"):
            own.stop(region)
        async with session_from(client_address("east", "mobile")) as session:
            deadline = time.monotonic() + 10
            while True:
                answer = await session.get(own.directory_url + "/v1/locate")
                if answer.status != 200 or time.monotonic() > deadline:
                    break
                await answer.read()
                await asyncio.sleep(0.1)
            await expect_error(answer, 503, "unavailable")
            assert int(answer.headers["Retry-After"]) > 0
            redirect = await session.get(
                own.directory_url + f"/v1/files/{UNKNOWN_NORTH_ID}", allow_redirects=False
            )
            await expect_error(redirect, 503, "unavailable")
            assert int(redirect.headers["Retry-After"]) > 0


async def test_storage_full_is_insufficient_storage(cluster_root: Path) -> None:
    full = Cluster(cluster_root)
    text = full.config_path.read_text()
    assert "[limits]\n" in text
    full.config_path.write_text(
        text.replace("[limits]\n", "[limits]\nmin_free_bytes = 1000000000000000\n", 1)
    )
    receiver = unique_user("bob")
    try:
        full.start_all()
        async with session_from(client_address("north", "telecom"), user_token("alice")) as s:
            answer = await s.post(
                full.access_url("north") + "/v1/uploads",
                json={"name": "a", "size": 10, "receivers": [receiver]},
            )
            await expect_error(answer, 507, "insufficient_storage")
            creation = await s.post(
                full.link_url("north", "telecom") + "/tus",
                headers={
                    "Tus-Resumable": TUS_VERSION,
                    "Upload-Length": "10",
                    "Upload-Metadata": _metadata("a.txt", receiver),
                },
            )
            await expect_error(creation, 507, "insufficient_storage")
            assert creation.headers["Tus-Resumable"] == TUS_VERSION
        assert await inbox_file_ids(full, receiver) == []
        assert not any((cluster_root / "north" / "blobs").rglob("north.*"))
    finally:
        full.stop_all()
