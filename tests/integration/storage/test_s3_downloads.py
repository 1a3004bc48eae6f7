"""Downloads of files kept in S3, through a real cluster whose north and east use SeaweedFS.

North hands out presigned URLs (the link answers 302, the store serves the bytes and
the Range); east streams from S3 through its links (Range and If-Range answered by
geodrop, the bytes read by ranged GETs).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote

import pytest

from geodrop.fileserver.blob_handlers import content_disposition
from support.blobstores import MIB
from support.cluster import Cluster, RegionLayout, client_address, running_cluster, user_token
from support.e2e_flows import (
    LocalFile,
    download,
    negotiate_download,
    negotiate_upload,
    post_json,
    send_file,
    write_random_file,
)
from support.http import session_from
from support.observability import scrape, series
from support.seaweedfs import SeaweedFS
from support.transfer_checks import patch

pytestmark = pytest.mark.s3

# Quotes, a semicolon, spaces and CJK: all of it must survive the trip through S3.
NAME: Final = 'q3 "report"; 报告.html'
HTML: Final = b"<html><body><script>document.title = 'ran'</script></body></html>"


@pytest.fixture(scope="module")
def s3_cluster(seaweedfs: SeaweedFS, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    buckets = {"north": seaweedfs.new_bucket(), "east": seaweedfs.new_bucket()}
    layouts = {
        region: RegionLayout(
            storage=seaweedfs.storage_table(
                bucket, part_size=5 * MIB, downloads="presign" if region == "north" else "stream"
            ),
            metadata=f'{{ kind = "sqlite", path = "{region}/metadata.sqlite3" }}',
        )
        for region, bucket in buckets.items()
    }
    try:
        with running_cluster(tmp_path_factory.mktemp("s3-cluster"), layouts=layouts) as cluster:
            yield cluster
    finally:
        for bucket in buckets.values():
            seaweedfs.drop_bucket(bucket)


async def _upload(cluster: Cluster, region: str, file: LocalFile) -> str:
    async with session_from(client_address(region, "telecom"), user_token("alice")) as session:
        upload = await negotiate_upload(session, cluster.access_url(region), file, ["bob"])
        await send_file(session, upload["upload_url"], file, patch_size=3 * MIB)
    file_id = upload["file_id"]
    assert isinstance(file_id, str)
    return file_id


async def _download_url(cluster: Cluster, region: str, file_id: str) -> dict[str, Any]:
    async with session_from(client_address(region, "unicom"), user_token("bob")) as session:
        return await negotiate_download(session, cluster.access_url(region), file_id)


async def test_presign_redirects_to_the_store(
    s3_cluster: Cluster, seaweedfs: SeaweedFS, tmp_path: Path
) -> None:
    file = write_random_file(tmp_path / "report.bin", 7 * MIB + 3)
    data = file.path.read_bytes()
    file_id = await _upload(s3_cluster, "north", file)
    address = await _download_url(s3_cluster, "north", file_id)
    async with session_from(client_address("north", "unicom")) as session:
        async with session.get(address["url"], allow_redirects=False) as response:
            assert response.status == 302
            location = response.headers["Location"]
            assert location.startswith(f"{seaweedfs.endpoint_url}/")
            assert response.headers["Cache-Control"] == "no-store"
            assert response.headers["Content-Security-Policy"] == "sandbox; default-src 'none'"
            assert response.headers["X-Content-Type-Options"] == "nosniff"
        ranged = {"Range": f"bytes={5 * MIB - 10}-{5 * MIB + 9}"}
        async with session.get(location, headers=ranged) as response:
            assert response.status == 206
            assert await response.read() == data[5 * MIB - 10 : 5 * MIB + 10]
        # A client that follows redirects (curl -L, aria2c) gets the range from the store.
        async with session.get(address["url"], headers={"Range": "bytes=-5"}) as response:
            assert response.status == 206
            assert str(response.url).startswith(seaweedfs.endpoint_url)
            assert await response.read() == data[-5:]
        async with session.get(address["url"]) as response:
            assert response.status == 200
            assert await response.read() == data
        # HEAD is answered by the link itself.
        async with session.head(address["url"], allow_redirects=False) as response:
            assert response.status == 200
            assert response.headers["Content-Length"] == str(file.size)
        # A range outside the file is refused by the link, before any redirect.
        async with session.get(
            address["url"], headers={"Range": f"bytes={file.size}-"}, allow_redirects=False
        ) as response:
            assert response.status == 416


async def test_presigned_answers_name_and_type_the_file_as_the_link_does(
    s3_cluster: Cluster,
) -> None:
    async with session_from(client_address("north", "telecom"), user_token("alice")) as session:
        body = {
            "name": NAME,
            "size": len(HTML),
            "sha256": hashlib.sha256(HTML).hexdigest(),
            "receivers": ["bob"],
            "content_type": "text/html",
        }
        access = s3_cluster.access_url("north")
        upload = await post_json(session, access + "/v1/uploads", body, expected=201)
    assert (await patch(upload["upload_url"], HTML, 0)).status == 204
    address = await _download_url(s3_cluster, "north", upload["file_id"])
    async with session_from(client_address("north", "unicom")) as session:
        async with session.head(address["url"]) as own:  # answered by the link itself
            assert own.status == 200
            disposition = own.headers["Content-Disposition"]
            assert own.content_type == "application/octet-stream"
        async with session.get(address["url"], allow_redirects=False) as redirect:
            assert redirect.status == 302
            location = redirect.headers["Location"]
        async with session.get(location) as stored:
            assert stored.status == 200
            assert stored.headers.getall("Content-Disposition") == [disposition]
            # Never the uploader's text/html, from the store either.
            assert stored.content_type == "application/octet-stream"
            assert await stored.read() == HTML
    assert disposition == content_disposition(NAME)
    assert unquote(disposition.rpartition("UTF-8''")[2], errors="strict") == NAME


async def test_metrics_leave_out_the_free_bytes_s3_cannot_tell(s3_cluster: Cluster) -> None:
    samples = await scrape(s3_cluster.access_url("north") + "/metrics")
    assert series("geodrop_storage_free_bytes") not in samples
    assert samples[series("geodrop_storage_used_bytes")] >= 0
    # A region on local disk reports its free bytes.
    south = await scrape(s3_cluster.access_url("south") + "/metrics")
    assert south[series("geodrop_storage_free_bytes")] > 0


async def test_stream_serves_ranges_from_the_store(s3_cluster: Cluster, tmp_path: Path) -> None:
    file = write_random_file(tmp_path / "notes.bin", 6 * MIB + 17)
    data = file.path.read_bytes()
    file_id = await _upload(s3_cluster, "east", file)
    address = await _download_url(s3_cluster, "east", file_id)
    url = address["url"]
    async with session_from(client_address("east", "unicom")) as session:
        async with session.get(url, allow_redirects=False) as response:
            assert response.status == 200
            etag = response.headers["ETag"]
            assert await response.read() == data
        across = {"Range": f"bytes={5 * MIB - 3}-{5 * MIB + 2}"}
        async with session.get(url, headers=across, allow_redirects=False) as response:
            assert response.status == 206
            assert response.headers["Content-Range"] == (
                f"bytes {5 * MIB - 3}-{5 * MIB + 2}/{file.size}"
            )
            assert await response.read() == data[5 * MIB - 3 : 5 * MIB + 3]
        same = {"Range": "bytes=100-", "If-Range": etag}
        async with session.get(url, headers=same, allow_redirects=False) as response:
            assert response.status == 206
            assert await response.read() == data[100:]
        changed = {"Range": "bytes=100-", "If-Range": '"not-the-etag"'}
        async with session.get(url, headers=changed, allow_redirects=False) as response:
            assert response.status == 200
            assert await response.read() == data
        # A download stopped half-way leaves the link serving the next one.
        response = await session.get(url, allow_redirects=False)
        await response.content.readexactly(MIB)
        response.close()
        async with session.get(url, headers={"Range": "bytes=-7"}) as response:
            assert response.status == 206
            assert await response.read() == data[-7:]


async def test_an_upload_resumed_across_patches_is_whole(
    s3_cluster: Cluster, tmp_path: Path
) -> None:
    file = write_random_file(tmp_path / "big.bin", 11 * MIB + 1)
    file_id = await _upload(s3_cluster, "east", file)
    address = await _download_url(s3_cluster, "east", file_id)
    assert address["sha256"] == file.sha256
    assert address["size"] == file.size
    async with session_from(client_address("east", "unicom")) as session:
        sha = await download(session, address["url"], tmp_path / "got.bin")
    assert sha == file.sha256
