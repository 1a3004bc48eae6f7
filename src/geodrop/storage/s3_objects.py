"""The S3 operations the S3 storage unit is built from, on one lazily opened client.

Every key is built here from a validated id, so no request can name an object outside
``{prefix}uploads/`` and ``{prefix}files/``. S3's errors are translated once, here:
a missing object is :class:`NotFound`, a full store :class:`InsufficientStorage`, an
unreachable one :class:`Unavailable`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from aiobotocore.config import AioConfig
from aiobotocore.response import StreamingBody
from aiobotocore.session import get_session
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)

from geodrop.config import S3StorageConfig
from geodrop.errors import ConfigError, InsufficientStorage, NotFound, Unavailable

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import CompletedPartTypeDef

logger = logging.getLogger(__name__)

# Ids become object keys: only ids shaped like file ids (REGION.TOKEN, lowercase
# letters, digits and dashes) are accepted, so a key can never hold "/", "..", or
# anything an S3 implementation might read as a path.
_SAFE_ID: Final = re.compile(r"^[a-z][a-z0-9-]{0,30}\.[a-z0-9]{1,64}\Z")
OCTET_STREAM: Final = "application/octet-stream"
# Enough connections for every upload's parallel parts plus downloads; aiohttp opens
# them on demand, so an idle store holds none.
_MAX_CONNECTIONS: Final = 64
# Error codes by which S3 implementations say "no room": AWS for an oversized object,
# MinIO and others for a full disk or a quota, any store answering 507 (below).
_FULL_CODES: Final = frozenset(
    {"EntityTooLarge", "QuotaExceeded", "InsufficientStorage", "XMinioStorageFull", "StorageFull"}
)
# SeaweedFS answers a full cluster with a 500 whose message names the cause.
_FULL_MESSAGES: Final = (
    "no free volume",
    "no writable volume",
    "not enough space",
    "no space left",
    "disk full",
    "volume full",
    "is full",
)
_MISSING_CODES: Final = frozenset({"404", "NoSuchKey", "NotFound", "NoSuchUpload"})
_UNREACHABLE: Final = (
    EndpointConnectionError,
    ConnectTimeoutError,
    ConnectionClosedError,
    ReadTimeoutError,
)


def checked_id(value: str) -> str:
    """``value`` if it is safe in an object key.

    Raises:
        ValueError: it is not shaped like a file id.
    """
    if not _SAFE_ID.match(value):
        raise ValueError(f"unsafe object key part: {value!r}")
    return value


def error_code(exc: ClientError) -> str:
    """The S3 error code of a failed call ("NoSuchKey", "404", …)."""
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_missing(exc: ClientError) -> bool:
    """True when S3 says the object or the multipart upload does not exist."""
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error_code(exc) in _MISSING_CODES or status == 404


def means_full(exc: ClientError) -> bool:
    """True when S3 refused a write for lack of room (quota, full disks, too large)."""
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if str(error.get("Code", "")) in _FULL_CODES or status == 507:
        return True
    message = str(error.get("Message", "")).lower()
    return status == 500 and any(words in message for words in _FULL_MESSAGES)


@contextmanager
def translated_errors() -> Iterator[None]:
    """S3's failures as geodrop's: full → 507, unreachable → 503; the rest as they are."""
    try:
        yield
    except ClientError as exc:
        if means_full(exc):
            raise InsufficientStorage(
                "this region's storage is full; what was stored is kept, retry later"
            ) from exc
        if error_code(exc) in {"SlowDown", "ServiceUnavailable", "503"}:
            raise Unavailable("this region's storage is busy; retry later") from exc
        raise
    except _UNREACHABLE as exc:
        raise Unavailable("this region's storage cannot be reached; retry later") from exc


@dataclass(frozen=True, slots=True)
class ObjectHead:
    """What a HEAD tells about an object."""

    size: int
    metadata: Mapping[str, str]


class S3Objects:
    """One bucket of one S3 store, as the storage unit uses it."""

    def __init__(self, config: S3StorageConfig) -> None:
        self.config = config
        self.bucket = config.bucket
        self._prefix = config.prefix
        self._stack = AsyncExitStack()
        self._client: S3Client | None = None
        self._opening = asyncio.Lock()

    def state_key(self, upload_id: str) -> str:
        """Where the state object of an upload lives."""
        return f"{self._prefix}uploads/{checked_id(upload_id)}/state"

    def file_key(self, file_id: str) -> str:
        """Where a committed file (or an upload assembled before its commit) lives."""
        return f"{self._prefix}files/{checked_id(file_id)}"

    async def client(self) -> S3Client:
        """The client, opened (and the bucket checked or created) on first use."""
        if self._client is not None:
            return self._client
        async with self._opening:
            if self._client is None:
                self._client = await self._open()
        return self._client

    async def _open(self) -> S3Client:
        config = self.config
        client_config = AioConfig(
            # Over TLS the connection protects a part's bytes, so they go unsigned rather
            # than hashed (SHA-256) once more on the event loop; over plain HTTP the
            # signature covers them.
            s3={
                "addressing_style": "path",
                "payload_signing_enabled": not config.endpoint_url.startswith("https:"),
            },
            signature_version="s3v4",
            max_pool_connections=_MAX_CONNECTIONS,
            connect_timeout=10,
            read_timeout=120,
            retries={"max_attempts": 3, "mode": "standard"},
            # Checksums only where S3 requires them: every part is signed or sent over TLS,
            # and the whole file's sha256 is checked at completion.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        client: S3Client = await self._stack.enter_async_context(
            get_session().create_client(
                "s3",
                endpoint_url=config.endpoint_url,
                region_name=config.region_name,
                aws_access_key_id=config.access_key,
                aws_secret_access_key=config.secret_key,
                config=client_config,
            )
        )
        try:
            await self._check_bucket(client)
        except BaseException:
            await self._stack.aclose()
            raise
        return client

    async def _check_bucket(self, client: S3Client) -> None:
        with translated_errors():
            try:
                await client.head_bucket(Bucket=self.bucket)
            except ClientError as exc:
                if error_code(exc) in {"403", "AccessDenied", "InvalidAccessKeyId"}:
                    raise ConfigError(
                        f"storage: {self.config.endpoint_url} refused access to bucket "
                        f"{self.bucket!r}; check storage.access_key and storage.secret_key"
                    ) from None
                if not is_missing(exc):
                    raise
                if not self.config.create_bucket:
                    raise ConfigError(
                        f"storage.bucket: bucket {self.bucket!r} does not exist at "
                        f"{self.config.endpoint_url}; create it or set storage.create_bucket"
                    ) from None
                logger.info("creating bucket %s at %s", self.bucket, self.config.endpoint_url)
                try:
                    await client.create_bucket(Bucket=self.bucket)
                except ClientError as race:
                    # Another access unit created it first.
                    if error_code(race) not in {"BucketAlreadyOwnedByYou", "BucketAlreadyExists"}:
                        raise

    async def close(self) -> None:
        """Close the client (and its connections); the next call opens a new one."""
        async with self._opening:
            self._client = None
            await self._stack.aclose()

    async def head(self, key: str) -> ObjectHead | None:
        """Size and user metadata of ``key``, or None when it does not exist."""
        client = await self.client()
        with translated_errors():
            try:
                answer = await client.head_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if is_missing(exc):
                    return None
                raise
        return ObjectHead(answer["ContentLength"], answer.get("Metadata", {}))

    async def get(self, key: str) -> bytes | None:
        """All of a (small) object, or None when it does not exist."""
        client = await self.client()
        with translated_errors():
            try:
                answer = await client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if is_missing(exc):
                    return None
                raise
            async with answer["Body"] as body:
                return await body.read()

    async def get_range(self, key: str, start: int, stop: int) -> bytes:
        """The bytes ``[start, stop)`` of an object (a small range: read whole).

        Raises:
            NotFound: the object does not exist.
        """
        body = await self.open_range(key, start, stop)
        try:
            data = await body.read()
        finally:
            body.close()
        if len(data) != stop - start:
            raise NotFound(f"object {key!r} is shorter than expected")
        return data

    async def open_range(self, key: str, start: int, stop: int) -> StreamingBody:
        """A streaming body of the bytes ``[start, stop)``, ``stop > start``; close it.

        Raises:
            NotFound: the object does not exist.
        """
        client = await self.client()
        with translated_errors():
            try:
                answer = await client.get_object(
                    Bucket=self.bucket, Key=key, Range=f"bytes={start}-{stop - 1}"
                )
            except ClientError as exc:
                if is_missing(exc):
                    raise NotFound("no such file") from None
                raise
        body: StreamingBody = answer["Body"]
        return body

    async def put(self, key: str, body: bytes, metadata: Mapping[str, str] | None = None) -> None:
        """Create or replace ``key`` atomically."""
        client = await self.client()
        with translated_errors():
            await client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                ContentType=OCTET_STREAM,
                Metadata=dict(metadata or {}),
            )

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error (S3 answers 204 either way)."""
        client = await self.client()
        with translated_errors():
            try:
                await client.delete_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if not is_missing(exc):
                    raise

    async def create_multipart(self, key: str) -> str:
        """Begin a multipart upload into ``key``; its id."""
        client = await self.client()
        with translated_errors():
            answer = await client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=OCTET_STREAM
            )
        return answer["UploadId"]

    async def upload_part(self, key: str, multipart_id: str, number: int, body: bytes) -> str:
        """Send one part (replacing any earlier part of that number); its ETag."""
        client = await self.client()
        with translated_errors():
            answer = await client.upload_part(
                Bucket=self.bucket, Key=key, UploadId=multipart_id, PartNumber=number, Body=body
            )
        return answer["ETag"]

    async def copy_part(
        self, key: str, multipart_id: str, number: int, source: str, start: int, stop: int
    ) -> str:
        """Make ``[start, stop)`` of object ``source`` part ``number``, inside S3; its ETag."""
        client = await self.client()
        with translated_errors():
            answer = await client.upload_part_copy(
                Bucket=self.bucket,
                Key=key,
                UploadId=multipart_id,
                PartNumber=number,
                CopySource={"Bucket": self.bucket, "Key": source},
                CopySourceRange=f"bytes={start}-{stop - 1}",
            )
        return answer["CopyPartResult"]["ETag"]

    async def complete(self, key: str, multipart_id: str, parts: Sequence[tuple[int, str]]) -> None:
        """Complete a multipart upload from ``(number, etag)`` pairs, in order."""
        client = await self.client()
        completed: list[CompletedPartTypeDef] = [
            {"PartNumber": number, "ETag": etag} for number, etag in parts
        ]
        with translated_errors():
            await client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=multipart_id,
                MultipartUpload={"Parts": completed},
            )

    async def abort(self, key: str, multipart_id: str) -> None:
        """Abort a multipart upload, dropping its parts; a finished one is not an error."""
        client = await self.client()
        with translated_errors():
            try:
                await client.abort_multipart_upload(
                    Bucket=self.bucket, Key=key, UploadId=multipart_id
                )
            except ClientError as exc:
                if not is_missing(exc):
                    raise

    async def presigned_get(
        self, key: str, ttl_seconds: int, *, content_type: str, content_disposition: str
    ) -> str:
        """A URL that lets its holder GET ``key`` (with Range) for ``ttl_seconds``; the
        store answers it with these ``Content-Type`` and ``Content-Disposition`` values
        (S3's signed response-header overrides), whatever the object was stored with."""
        client = await self.client()
        return await client.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ResponseContentType": content_type,
                "ResponseContentDisposition": content_disposition,
            },
            ExpiresIn=ttl_seconds,
        )
