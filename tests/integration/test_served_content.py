"""Names, paths and served content (item 8), against a real cluster.

File names are metadata only: storage uses ids, and a name reaches a client only in
one safely encoded ``Content-Disposition`` header. Every answer under ``/blobs``,
refusals included, forbids script and sniffing, so an uploaded HTML or SVG file can
never run in a browser, and leaks no referrer.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import subprocess
import time
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs, unquote, urlencode, urlsplit, urlunsplit

import aiohttp
import pytest

from support.cluster import Cluster, client_address, user_token
from support.http import session_from
from support.region_state import file_path, storage_root
from support.transfer_checks import (
    TUS_VERSION,
    expect_error,
    negotiate_upload,
    patch,
    signed_blob_url,
    unique_user,
)

SERVED_CONTENT: Final = {
    "Content-Security-Policy": "sandbox; default-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
HOSTILE_NAME: Final = '../../a"b;c\\d%e évil 报告.html'
HTML: Final = b"<html><body><script>document.title = 'ran'</script></body></html>"
FILE_ID: Final = re.compile(r"^north\.[a-z2-7]{26}$")
DISPOSITION: Final = re.compile(
    r"""^attachment; filename="([^"\\/;%]*)"; filename\*=UTF-8''([A-Za-z0-9%._~-]*)$"""
)


async def _upload_html(cluster: Cluster, receiver: str, name: str = HOSTILE_NAME) -> str:
    async with session_from(client_address("north", "telecom"), user_token("alice")) as session:
        answer = await session.post(
            cluster.access_url("north") + "/v1/uploads",
            json={
                "name": name,
                "size": len(HTML),
                "sha256": hashlib.sha256(HTML).hexdigest(),
                "receivers": [receiver],
                "content_type": "text/html",
            },
        )
        assert answer.status == 201, await answer.text()
        created = await answer.json()
    assert (await patch(created["upload_url"], HTML, 0)).status == 204
    file_id: str = created["file_id"]
    return file_id


def _with_query(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    query.update(changes)
    return urlunsplit(parts._replace(query=urlencode(query)))


def _assert_protected(answer: aiohttp.ClientResponse, what: str) -> None:
    for name, value in SERVED_CONTENT.items():
        assert answer.headers.getall(name, []) == [value], (what, answer.status, name)


async def test_every_blob_answer_forbids_script_and_sniffing(cluster: Cluster) -> None:
    receiver = unique_user("bob")
    file_id = await _upload_html(cluster, receiver)
    url = signed_blob_url(cluster, file_id, receiver)
    etag = f'"{hashlib.sha256(HTML).hexdigest()}"'
    pending = await negotiate_upload(cluster, "alice", [receiver], 10)
    link = cluster.link_url("north", "telecom")
    cases: list[tuple[str, str, str, dict[str, str], int]] = [
        ("whole file", "GET", url, {}, 200),
        ("a range", "GET", url, {"Range": "bytes=0-5"}, 206),
        ("HEAD", "HEAD", url, {}, 200),
        ("not modified", "GET", url, {"If-None-Match": etag}, 304),
        ("range beyond the end", "GET", url, {"Range": "bytes=9999-"}, 416),
        ("If-Match mismatch", "GET", url, {"If-Match": '"other"'}, 412),
        ("tampered signature", "GET", _with_query(url, u="mallory"), {}, 403),
        (
            "expired URL",
            "GET",
            signed_blob_url(cluster, file_id, receiver, expires=int(time.time()) - 5),
            {},
            410,
        ),
        ("unknown file", "GET", signed_blob_url(cluster, "north." + "a" * 26, receiver), {}, 404),
        ("someone else's file", "GET", signed_blob_url(cluster, file_id, "mallory"), {}, 404),
        ("upload not finished", "GET", signed_blob_url(cluster, pending.file_id, "alice"), {}, 409),
        ("malformed id", "GET", link + "/blobs/..%2F..%2Fetc%2Fpasswd", {}, 404),
        ("id with a newline", "GET", link + f"/blobs/{file_id}%0A", {}, 404),
        ("no id", "GET", link + "/blobs/", {}, 404),
        ("wrong method", "POST", url, {}, 405),
    ]
    async with aiohttp.ClientSession() as session:
        for what, method, target, headers, status in cases:
            async with session.request(method, target, headers=headers) as answer:
                body = await answer.read()
                assert answer.status == status, (what, answer.status, body[:200])
                _assert_protected(answer, what)
                if status == 200 and method == "GET":
                    assert body == HTML
                if status in (200, 206):
                    # Never the uploader's text/html: a browser must not render it.
                    assert answer.content_type == "application/octet-stream", what
                    assert answer.headers["Content-Disposition"].startswith("attachment;")


async def test_a_hostile_name_gives_one_safe_content_disposition(
    cluster: Cluster, tmp_path: Path
) -> None:
    receiver = unique_user("bob")
    file_id = await _upload_html(cluster, receiver)
    url = signed_blob_url(cluster, file_id, receiver)
    async with aiohttp.ClientSession() as session, session.get(url) as answer:
        assert answer.status == 200
        await answer.read()
        values = answer.headers.getall("Content-Disposition")
    assert len(values) == 1, values
    match = DISPOSITION.fullmatch(values[0])
    assert match is not None, values[0]
    fallback, encoded = match.groups()
    assert fallback == ".._.._a_b_c_d_e _vil __.html"
    assert unquote(encoded, errors="strict") == HOSTILE_NAME

    # curl -OJ saves under the server's name: in the folder it was asked to, and nowhere else.
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    saved = await asyncio.to_thread(
        subprocess.run,
        ["curl", "--silent", "--show-error", "--fail", "-O", "-J", url],
        cwd=downloads,
        capture_output=True,
        check=False,
    )
    assert saved.returncode == 0, saved.stderr
    files = await asyncio.to_thread(lambda: sorted(tmp_path.rglob("*")))
    assert files == [downloads, downloads / fallback], files
    assert await asyncio.to_thread((downloads / fallback).read_bytes) == HTML


@pytest.mark.parametrize(
    "name", ["evil\r\nSet-Cookie: session=1", "evil\nX-Injected: 1", "tab\there", "nul\x00"]
)
async def test_names_that_could_inject_headers_are_refused(cluster: Cluster, name: str) -> None:
    async with session_from(client_address("north", "telecom"), user_token("alice")) as session:
        answer = await session.post(
            cluster.access_url("north") + "/v1/uploads",
            json={"name": name, "size": 1, "receivers": [unique_user("bob")]},
        )
        error = await expect_error(answer, 400, "bad_request")
    assert "name" in error["message"]


async def test_storage_names_files_by_id_only(cluster: Cluster) -> None:
    receiver = unique_user("bob")
    file_id = await _upload_html(cluster, receiver, name="../../../../tmp/escaped.html")
    pending = await negotiate_upload(cluster, "alice", [receiver], 10)
    assert (await patch(pending.url, b"01234", 0)).status == 204
    assert file_path(cluster, "north", file_id).read_bytes() == HTML
    root = storage_root(cluster, "north")
    stored = [path for path in root.rglob("*") if path.is_file()]
    assert stored, "nothing stored?"
    for path in stored:
        assert FILE_ID.fullmatch(path.name), path
        assert path.resolve().is_relative_to(root.resolve()), path
    assert (root / "uploads" / pending.file_id).stat().st_size == 5
    escaped = Path("/tmp/escaped.html")  # noqa: S108 - the path a name tried to reach
    assert not await asyncio.to_thread(escaped.exists)
    async with aiohttp.ClientSession() as session:
        head = await session.head(pending.url, headers={"Tus-Resumable": TUS_VERSION})
        assert head.status == 200
