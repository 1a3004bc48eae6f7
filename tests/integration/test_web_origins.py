"""CORS on real servers, and the web client's page as the directory serves it.

The cluster's web origins are the default: the directory's own origin, which serves the
web client. Its pages call the access units and links across origins: preflights from
it are allowed, from anyone else refused; every answer to it, errors, redirects and
streamed bodies included, names it in Access-Control-Allow-Origin, and every answer
varies by Origin.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import quote

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from support.cluster import Cluster, user_token
from support.transfer_checks import (
    expect_error,
    negotiate_upload,
    tus_headers,
    unique_user,
    upload_file,
)
from support.webclient import require_web_client_build

OTHER_ORIGIN = "https://evil.example"


def preflight_headers(origin: str, method: str, headers: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": headers,
    }


def assert_allows(headers: Mapping[str, str], origin: str) -> None:
    assert headers.get("Access-Control-Allow-Origin") == origin, dict(headers)
    assert "Origin" in headers.get("Vary", ""), dict(headers)


def assert_no_cors(headers: Mapping[str, str]) -> None:
    assert "Access-Control-Allow-Origin" not in headers, dict(headers)
    assert "Origin" in headers.get("Vary", ""), dict(headers)


def exposed(headers: CIMultiDictProxy[str]) -> set[str]:
    return {name.strip() for name in headers["Access-Control-Expose-Headers"].split(",")}


async def test_preflights_from_the_web_client_are_allowed_everywhere(cluster: Cluster) -> None:
    origin = cluster.directory_url
    north = cluster.access_url("north")
    link = cluster.link_url("north", "unicom")
    targets = [
        (north + "/v1/uploads", "POST", "authorization, content-type"),
        (north + "/v1/downloads", "POST", "authorization, content-type"),
        (north + "/v1/files/north.abc/status", "GET", "authorization"),
        (link + "/tus/north.abc?u=x", "PATCH", "tus-resumable, upload-offset, content-type"),
        (link + "/tus/north.abc?u=x", "HEAD", "tus-resumable"),
        (link + "/tus/north.abc?u=x", "DELETE", "tus-resumable"),
        (link + "/blobs/north.abc?u=x", "GET", "range, if-range"),
        (cluster.directory_url + "/v1/locate", "GET", "authorization"),
        (cluster.directory_url + "/v1/inbox/events", "GET", "authorization, last-event-id"),
    ]
    async with aiohttp.ClientSession() as session:
        for url, method, requested in targets:
            async with session.options(
                url, headers=preflight_headers(origin, method, requested)
            ) as answer:
                assert answer.status == 204, (url, answer.status, await answer.text())
                assert_allows(answer.headers, origin)
                assert method in answer.headers["Access-Control-Allow-Methods"]
                allowed = answer.headers["Access-Control-Allow-Headers"].lower()
                for name in requested.split(", "):
                    assert name in allowed, (url, name)
                assert int(answer.headers["Access-Control-Max-Age"]) > 0
                # A preflight to /tus is answered as CORS, not as tus discovery.
                assert "Tus-Version" not in answer.headers, url


async def test_preflights_from_other_origins_are_refused(cluster: Cluster) -> None:
    async with aiohttp.ClientSession() as session:
        for url in (
            cluster.access_url("north") + "/v1/uploads",
            cluster.link_url("north", "telecom") + "/tus/north.abc",
            cluster.directory_url + "/v1/locate",
        ):
            async with session.options(
                url, headers=preflight_headers(OTHER_ORIGIN, "POST", "authorization")
            ) as answer:
                error = await expect_error(answer, 403, "forbidden")
                assert OTHER_ORIGIN in error["message"]
                assert_no_cors(answer.headers)
        # An allowed origin asking for a header outside the policy is refused too.
        async with session.options(
            cluster.access_url("north") + "/v1/uploads",
            headers=preflight_headers(cluster.directory_url, "POST", "x-secret"),
        ) as answer:
            await expect_error(answer, 403, "forbidden")
            assert_no_cors(answer.headers)


async def test_tus_discovery_stays_for_a_plain_options(cluster: Cluster) -> None:
    origin = cluster.directory_url
    async with (
        aiohttp.ClientSession() as session,
        session.options(
            cluster.link_url("north", "mobile") + "/tus", headers={"Origin": origin}
        ) as answer,
    ):
        assert answer.status == 204
        assert answer.headers["Tus-Version"] == "1.0.0"
        assert "creation" in answer.headers["Tus-Extension"]
        assert_allows(answer.headers, origin)
        assert "Tus-Max-Size" in exposed(answer.headers)


async def test_errors_carry_cors_headers_for_allowed_origins_only(cluster: Cluster) -> None:
    url = cluster.access_url("north") + "/v1/uploads"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={}, headers={"Origin": cluster.directory_url}) as answer:
            await expect_error(answer, 401, "unauthorized")
            assert_allows(answer.headers, cluster.directory_url)
            # The page can read the request id its error names, and a Retry-After.
            assert {"X-Request-Id", "Retry-After"} <= exposed(answer.headers)
        async with session.post(url, json={}, headers={"Origin": OTHER_ORIGIN}) as answer:
            await expect_error(answer, 401, "unauthorized")
            assert_no_cors(answer.headers)
        # An unknown path and a wrong method (aiohttp's own answers) too.
        async with session.get(
            cluster.access_url("north") + "/nowhere", headers={"Origin": cluster.directory_url}
        ) as answer:
            await expect_error(answer, 404, "not_found")
            assert_allows(answer.headers, cluster.directory_url)


async def test_a_whole_transfer_from_the_web_origin_is_readable_by_the_page(
    cluster: Cluster,
) -> None:
    origin = cluster.directory_url
    sender, receiver = unique_user("cors-sender"), unique_user("cors-receiver")
    data = b"x" * 70_000
    upload = await negotiate_upload(cluster, sender, [receiver], len(data))
    async with aiohttp.ClientSession(headers={"Origin": origin}) as session:
        async with session.patch(upload.url, data=data[:1000], headers=tus_headers(0)) as answer:
            assert answer.status == 204
            assert_allows(answer.headers, origin)
            assert {"Upload-Offset", "Upload-Expires", "Tus-Resumable"} <= exposed(answer.headers)
        async with session.head(upload.url, headers={"Tus-Resumable": "1.0.0"}) as answer:
            assert answer.headers["Upload-Offset"] == "1000"
            assert_allows(answer.headers, origin)
        async with session.patch(upload.url, data=data[1000:], headers=tus_headers(1000)) as answer:
            assert answer.status == 204, await answer.text()

        # The plain-HTTP redirects: the directory's 307 and the access unit's 302.
        token = quote(user_token(receiver))
        async with session.get(
            f"{cluster.directory_url}/v1/files/{upload.file_id}?access_token={token}",
            allow_redirects=False,
        ) as redirect:
            assert redirect.status == 307
            assert_allows(redirect.headers, origin)
        async with session.get(
            f"{cluster.access_url('north')}/v1/files/{upload.file_id}?access_token={token}",
            allow_redirects=False,
        ) as found:
            assert found.status == 302
            assert_allows(found.headers, origin)
            blob_url = found.headers["Location"]
        # A Range download, streamed by the link itself (sendfile).
        async with session.get(blob_url, headers={"Range": "bytes=10-19"}) as blob:
            assert blob.status == 206
            assert await blob.read() == data[10:20]
            assert_allows(blob.headers, origin)
            assert {"Content-Range", "Content-Disposition", "ETag"} <= exposed(blob.headers)
            assert blob.headers["Content-Security-Policy"].startswith("sandbox")

        # The inbox event stream, prepared by its handler, names the origin too.
        async with session.get(
            cluster.directory_url + "/v1/inbox/events",
            headers={"Authorization": f"Bearer {user_token(receiver)}"},
        ) as events:
            assert events.status == 200
            assert events.content_type == "text/event-stream"
            assert_allows(events.headers, origin)


async def test_the_directory_serves_the_web_client(cluster: Cluster) -> None:
    require_web_client_build()
    async with aiohttp.ClientSession() as session:
        async with session.get(cluster.directory_url + "/") as page:
            assert page.status == 200
            assert page.content_type == "text/html"
            html = await page.text()
            policy = page.headers["Content-Security-Policy"]
            etag = page.headers["ETag"]
            assert page.headers["Cache-Control"] == "no-cache"
            assert page.headers["X-Frame-Options"] == "DENY"
        # No inline script or style anywhere, and the policy would refuse one.
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), "inline script"
        assert "<style" not in html
        assert " style=" not in html
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        assert directives["script-src"] == "'self'"
        assert directives["style-src"] == "'self'"
        assert directives["default-src"] == "'none'"
        connect = directives["connect-src"].split()
        assert connect[0] == "'self'"
        for region in ("north", "east", "south"):
            assert cluster.access_url(region) in connect
            for carrier in ("telecom", "unicom", "mobile"):
                assert cluster.link_url(region, carrier) in connect
        assert len(connect) == 1 + 3 * 4

        async with session.get(
            cluster.directory_url + "/", headers={"If-None-Match": etag}
        ) as again:
            assert again.status == 304
            assert await again.read() == b""
        for name, kind in [
            ("main.js", "text/javascript"),
            ("app.css", "text/css"),
            ("tus.min.js", "text/javascript"),
        ]:
            async with session.get(f"{cluster.directory_url}/app/{name}") as asset:
                assert asset.status == 200, name
                assert asset.content_type == kind
                assert asset.headers["X-Content-Type-Options"] == "nosniff"
        for missing in ("nothing.js", "tus.min.js.map", ".hidden"):
            async with session.get(f"{cluster.directory_url}/app/{missing}") as answer:
                await expect_error(answer, 404, "not_found")
        # The scripts the page names are all served.
        for src in re.findall(r'(?:src|href)="(/app/[^"]+)"', html):
            async with session.get(cluster.directory_url + src) as asset:
                assert asset.status == 200, src


@pytest.mark.parametrize("module", ["main.js", "send.js", "inbox.js", "sent.js", "api.js"])
async def test_the_modules_import_only_served_files(cluster: Cluster, module: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{cluster.directory_url}/app/{module}") as answer,
    ):
        source = await answer.text()
        for imported in re.findall(r"from '\./([^']+)'", source):
            async with session.get(f"{cluster.directory_url}/app/{imported}") as dependency:
                assert dependency.status == 200, (module, imported)
                assert dependency.content_type == "text/javascript"


async def test_requests_without_origin_get_no_cors_headers(cluster: Cluster) -> None:
    # Requests without Origin (curl, the CLI): only Vary, for caches.
    upload = await upload_file(cluster, unique_user("plain"), [unique_user("to")], b"abc")
    async with (
        aiohttp.ClientSession() as session,
        session.head(upload.url, headers={"Tus-Resumable": "1.0.0"}) as answer,
    ):
        assert answer.headers["Upload-Offset"] == "3"
        assert_no_cors(answer.headers)
