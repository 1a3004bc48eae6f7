"""Header rules of the tus 1.0 resumable-upload protocol.

Covers the core protocol and the creation, creation-with-upload, checksum,
termination, expiration and concatenation extensions of https://tus.io/protocols/resumable-upload
(section names below refer to that document). Every function is pure and
raises from :mod:`geodrop.errors`, so a handler passes header values in and
lets the front door answer with the error.
"""

from __future__ import annotations

import base64
import email.utils
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from geodrop.errors import (
    BadRequest,
    OffsetMismatch,
    PayloadTooLarge,
    UnsupportedMediaType,
    UnsupportedTusVersion,
)

TUS_VERSION: Final = "1.0.0"
TUS_EXTENSIONS: Final = (
    "creation",
    "creation-with-upload",
    "checksum",
    "termination",
    "expiration",
    "concatenation",
)
CHECKSUM_ALGORITHMS: Final = ("sha1", "sha256", "md5")
OFFSET_CONTENT_TYPE: Final = "application/offset+octet-stream"

# The spec sets no limits; these bound the work one header can cause.
MAX_METADATA_LENGTH: Final = 8 * 1024
MAX_METADATA_PAIRS: Final = 64
# Each partial upload of a final one costs the server a look-up and a lock.
MAX_CONCAT_PARTIALS: Final = 64
MAX_UPLOAD_CONCAT_LENGTH: Final = 16 * 1024

# Digest sizes are spelled out rather than asked of hashlib, which may refuse
# md5 on FIPS builds even though we only check a length here.
_DIGEST_SIZES: Final = {"sha1": 20, "sha256": 32, "md5": 16}

# Core protocol, Upload-Length / Upload-Offset: "a non-negative integer". Digits
# only (no sign, no \d, which takes non-ASCII digits too), and at most 19 of
# them: no real upload comes near 10**19 bytes, and no header makes int() work hard.
_DECIMAL: Final = re.compile(r"[0-9]{1,19}")

# Creation, Upload-Metadata: "The key MUST NOT contain spaces and commas and MUST
# NOT be empty. The key SHOULD be ASCII encoded". We require printable ASCII.
_METADATA_KEY: Final = re.compile(r"[\x21-\x2b\x2d-\x7e]+")

# RFC 9110 §5.6.3: OWS = *( SP / HTAB ).
_OWS: Final = " \t"


def check_tus_resumable(value: str | None) -> None:
    """Check the Tus-Resumable header of a request.

    Core protocol, Tus-Resumable: every request but OPTIONS carries it, and a
    version the server does not support gets 412 with a Tus-Version header.

    Args:
        value: The Tus-Resumable field value, or None when absent.

    Raises:
        UnsupportedTusVersion: The header is missing or names another version.
    """
    if value is None or value.strip(_OWS) != TUS_VERSION:
        problem = "header is missing" if value is None else f"{_shown(value)} is not supported"
        raise UnsupportedTusVersion(
            f"Tus-Resumable {problem}; this server speaks tus {TUS_VERSION}",
            headers={"Tus-Version": TUS_VERSION},
        )


def parse_upload_length(value: str | None, *, max_size: int) -> int:
    """Parse the Upload-Length header of an upload-creation request.

    Args:
        value: The Upload-Length field value, or None when absent.
        max_size: The largest upload the server accepts (its Tus-Max-Size).

    Returns:
        The announced upload length in bytes.

    Raises:
        BadRequest: The header is missing or not a non-negative decimal integer.
        PayloadTooLarge: The length exceeds ``max_size`` (Creation: "the Server
            MUST respond with the 413 Request Entity Too Large status").
    """
    length = _parse_decimal("Upload-Length", value)
    if length > max_size:
        raise PayloadTooLarge(
            f"Upload-Length {length} exceeds the maximum upload size {max_size}",
            headers={"Tus-Max-Size": str(max_size)},
        )
    return length


def parse_upload_offset(value: str | None) -> int:
    """Parse the Upload-Offset header of a PATCH request.

    Args:
        value: The Upload-Offset field value, or None when absent.

    Returns:
        The offset in bytes.

    Raises:
        BadRequest: The header is missing or not a non-negative decimal integer.
    """
    return _parse_decimal("Upload-Offset", value)


def parse_metadata(value: str | None) -> dict[str, str]:
    """Parse the Upload-Metadata header (Creation extension).

    The value is comma-separated pairs of a key and its base64 value separated
    by one space; a lone key has the empty value. Values must be canonical
    standard base64 (padded) of UTF-8 text.

    Args:
        value: The Upload-Metadata field value, or None when absent.

    Returns:
        The metadata, in header order; empty when the header is absent.

    Raises:
        BadRequest: The header breaks any rule above, has a duplicate key, or
            exceeds :data:`MAX_METADATA_LENGTH` characters or
            :data:`MAX_METADATA_PAIRS` pairs; the message names the key.
    """
    if value is None:
        return {}
    if len(value) > MAX_METADATA_LENGTH:
        raise BadRequest(f"Upload-Metadata is longer than {MAX_METADATA_LENGTH} characters")
    # RFC 9110 §5.6.1: OWS may surround the commas of a list and empty elements
    # are ignored.
    pairs = [pair for pair in (part.strip(_OWS) for part in value.split(",")) if pair]
    if len(pairs) > MAX_METADATA_PAIRS:
        raise BadRequest(f"Upload-Metadata has more than {MAX_METADATA_PAIRS} pairs")
    metadata: dict[str, str] = {}
    for pair in pairs:
        key, _, encoded = pair.partition(" ")
        if _METADATA_KEY.fullmatch(key) is None:
            raise BadRequest(
                f"Upload-Metadata key {_shown(key)} must be printable ASCII"
                " without spaces or commas"
            )
        # Creation, Upload-Metadata: "All keys MUST be unique."
        if key in metadata:
            raise BadRequest(f"Upload-Metadata key {_shown(key)} appears more than once")
        raw = _decode_base64(encoded) if encoded else b""
        if raw is None:
            raise BadRequest(f"Upload-Metadata value of key {_shown(key)} is not valid base64")
        try:
            metadata[key] = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest(f"Upload-Metadata value of key {_shown(key)} is not UTF-8") from None
    return metadata


def encode_metadata(values: Mapping[str, str]) -> str:
    """Render metadata as an Upload-Metadata field value; the inverse of :func:`parse_metadata`.

    Args:
        values: Keys and their text values.

    Returns:
        The field value; an empty value is sent as a lone key.

    Raises:
        ValueError: A key is empty or not printable ASCII without spaces or commas.
    """
    pairs: list[str] = []
    for key, text in values.items():
        if _METADATA_KEY.fullmatch(key) is None:
            raise ValueError(f"invalid Upload-Metadata key {_shown(key)}")
        encoded = base64.b64encode(text.encode("utf-8")).decode("ascii")
        pairs.append(f"{key} {encoded}" if encoded else key)
    return ",".join(pairs)


def parse_checksum(value: str) -> tuple[str, bytes]:
    """Parse the Upload-Checksum header (Checksum extension).

    Args:
        value: The field value, ``ALGORITHM BASE64DIGEST``.

    Returns:
        The algorithm name, lower-cased, and the raw digest.

    Raises:
        BadRequest: The value is malformed, the algorithm is not one of
            :data:`CHECKSUM_ALGORITHMS` (Checksum: "the Server MUST respond with
            the 400 Bad Request status"), or the digest is not base64 or has the
            wrong length for the algorithm.
    """
    name, space, encoded = value.strip(_OWS).partition(" ")
    if not space:
        raise BadRequest("Upload-Checksum must be an algorithm and a base64 digest")
    algorithm = name.lower()
    digest_size = _DIGEST_SIZES.get(algorithm)
    if digest_size is None:
        raise BadRequest(
            f"Upload-Checksum algorithm {_shown(name)} is not supported;"
            f" use one of {', '.join(CHECKSUM_ALGORITHMS)}"
        )
    digest = _decode_base64(encoded)
    if digest is None:
        raise BadRequest(f"Upload-Checksum {algorithm} digest is not valid base64")
    if len(digest) != digest_size:
        raise BadRequest(
            f"Upload-Checksum {algorithm} digest has {len(digest)} bytes, not {digest_size}"
        )
    return algorithm, digest


def check_patch(
    *,
    length: int,
    current_offset: int,
    offset_header: str | None,
    content_type: str | None,
    content_length: int | None,
) -> int:
    """Validate the headers of a PATCH request against the upload's state.

    Args:
        length: The upload's announced Upload-Length.
        current_offset: How many bytes the server has stored so far.
        offset_header: The Upload-Offset field value, or None when absent.
        content_type: The Content-Type field value, or None when absent.
        content_length: The request's Content-Length, or None when unknown
            (chunked transfer coding).

    Returns:
        The validated offset, equal to ``current_offset``.

    Raises:
        UnsupportedMediaType: The media type is not
            ``application/offset+octet-stream``.
        BadRequest: Upload-Offset is missing or malformed, or Content-Length
            is negative.
        OffsetMismatch: Upload-Offset differs from ``current_offset``.
        PayloadTooLarge: The body would run past the upload's length.
    """
    # Core protocol, PATCH: "All PATCH requests MUST use Content-Type:
    # application/offset+octet-stream, otherwise the server SHOULD return a 415".
    # Media types compare case-insensitively and may carry parameters
    # (RFC 9110 §8.3.1).
    media_type = (content_type or "").partition(";")[0].strip(_OWS).lower()
    if media_type != OFFSET_CONTENT_TYPE:
        shown = "missing" if content_type is None else _shown(content_type)
        raise UnsupportedMediaType(f"PATCH needs Content-Type {OFFSET_CONTENT_TYPE}, got {shown}")
    offset = parse_upload_offset(offset_header)
    # Core protocol, PATCH: "If the offsets do not match, the Server MUST
    # respond with the 409 Conflict status without modifying the upload resource."
    if offset != current_offset:
        raise OffsetMismatch(
            f"Upload-Offset {offset} does not match the upload's current offset {current_offset}"
        )
    if content_length is not None:
        if content_length < 0:
            raise BadRequest(f"Content-Length {content_length} is negative")
        if offset + content_length > length:
            raise PayloadTooLarge(
                f"Upload-Offset {offset} plus Content-Length {content_length}"
                f" exceeds Upload-Length {length}"
            )
    return offset


@dataclass(frozen=True, slots=True)
class UploadConcat:
    """What an Upload-Concat header says (Concatenation extension).

    Attributes:
        final: False for a partial upload, True for a final upload.
        partial_ids: For a final upload, the ids of its partial uploads in the order
            their bytes follow each other; empty for a partial upload.
    """

    final: bool
    partial_ids: tuple[str, ...] = ()


PARTIAL: Final = UploadConcat(final=False)

# Where a transfer's tus_metadata keeps its Upload-Concat value, as the header would
# spell it. parse_metadata refuses keys with a space, so no client's Upload-Metadata
# can forge or overwrite this one.
CONCAT_METADATA_KEY: Final = "geodrop upload-concat"


def parse_upload_concat(value: str | None) -> UploadConcat | None:
    """Parse the Upload-Concat header of an upload-creation request (Concatenation extension).

    ``partial`` creates a partial upload; ``final;URL URL ...`` a final upload made of
    the partial uploads at those URLs, in order. A URL is absolute (http or https) or
    an absolute path, with or without a query (a signature); the upload id is its last
    path segment, which must follow a ``tus`` segment (``.../tus/ID``).

    Args:
        value: The Upload-Concat field value, or None when absent.

    Returns:
        What the header asks for; None when it is absent (an ordinary upload).

    Raises:
        BadRequest: The value is neither form, a URL is not an upload URL, the list is
            empty, names an upload twice, or is longer than :data:`MAX_CONCAT_PARTIALS`
            URLs or :data:`MAX_UPLOAD_CONCAT_LENGTH` characters.
    """
    if value is None:
        return None
    if len(value) > MAX_UPLOAD_CONCAT_LENGTH:
        raise BadRequest(f"Upload-Concat is longer than {MAX_UPLOAD_CONCAT_LENGTH} characters")
    text = value.strip(_OWS)
    if text == "partial":
        return PARTIAL
    kind, semicolon, urls = text.partition(";")
    if kind != "final" or not semicolon:
        raise BadRequest(
            "Upload-Concat must be 'partial', or 'final;' followed by the URLs of partial"
            f" uploads separated by spaces; got {_shown(value)}"
        )
    # Concatenation: "a space-separated list of the partial uploads' URLs".
    tokens = [token for token in re.split(r"[ \t]+", urls) if token]
    if not tokens:
        raise BadRequest("Upload-Concat: a final upload must name at least one partial upload")
    if len(tokens) > MAX_CONCAT_PARTIALS:
        raise BadRequest(f"Upload-Concat names more than {MAX_CONCAT_PARTIALS} partial uploads")
    ids = tuple(_upload_id_in(token) for token in tokens)
    seen: set[str] = set()
    for upload_id in ids:
        if upload_id in seen:
            raise BadRequest(f"Upload-Concat names the partial upload {_shown(upload_id)} twice")
        seen.add(upload_id)
    return UploadConcat(final=True, partial_ids=ids)


def format_upload_concat(concat: UploadConcat, upload_path: str = "/tus/") -> str:
    """Render an Upload-Concat field value; the inverse of :func:`parse_upload_concat`.

    Args:
        concat: A partial or final upload.
        upload_path: The path the partial uploads' ids follow in a final's list.

    Returns:
        ``partial``, or ``final;`` and the partial uploads' paths (Concatenation: the
        answer to HEAD of a final upload lists them so).
    """
    if not concat.final:
        return "partial"
    return "final;" + " ".join(upload_path + upload_id for upload_id in concat.partial_ids)


def stored_concat(metadata: Mapping[str, str]) -> UploadConcat | None:
    """What a transfer's tus_metadata records of tus concatenation (None: an ordinary upload).

    Raises:
        BadRequest: The stored value is not an Upload-Concat value.
    """
    return parse_upload_concat(metadata.get(CONCAT_METADATA_KEY))


def with_concat(metadata: Mapping[str, str], concat: UploadConcat) -> dict[str, str]:
    """A client's metadata with the record of ``concat`` added, to keep as tus_metadata."""
    return {**client_metadata(metadata), CONCAT_METADATA_KEY: format_upload_concat(concat)}


def client_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """A transfer's tus_metadata without geodrop's own record: what the client sent."""
    return {key: text for key, text in metadata.items() if key != CONCAT_METADATA_KEY}


def _upload_id_in(url: str) -> str:
    """The upload id of one URL of an Upload-Concat final list."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        parts = None
    well_formed = parts is not None and (
        (parts.scheme in ("http", "https") and bool(parts.netloc))
        or (not parts.scheme and not parts.netloc)
    )
    if parts is None or not well_formed or not parts.path.startswith("/"):
        raise BadRequest(f"Upload-Concat: {_shown(url)} is not an http(s) URL or an absolute path")
    folder, _, upload_id = parts.path.rpartition("/")
    if not upload_id or folder.rpartition("/")[2] != "tus":
        raise BadRequest(f"Upload-Concat: {_shown(url)} is not an upload URL (.../tus/ID)")
    return upload_id


def http_date(timestamp: float) -> str:
    """Format a POSIX timestamp as an HTTP date, e.g. for Upload-Expires.

    Args:
        timestamp: Seconds since the epoch; fractions are dropped.

    Returns:
        An IMF-fixdate such as ``Sun, 06 Nov 1994 08:49:37 GMT`` (RFC 9110 §5.6.7),
        with English names whatever the process locale.
    """
    return email.utils.formatdate(timestamp, usegmt=True)


def options_headers(max_size: int) -> dict[str, str]:
    """Build the headers of the response to an OPTIONS request.

    Args:
        max_size: The largest upload the server accepts, in bytes.

    Returns:
        Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size and
        Tus-Checksum-Algorithm (core protocol, OPTIONS; Checksum extension).
    """
    return {
        "Tus-Resumable": TUS_VERSION,
        "Tus-Version": TUS_VERSION,
        "Tus-Extension": ",".join(TUS_EXTENSIONS),
        "Tus-Max-Size": str(max_size),
        "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
    }


def _parse_decimal(name: str, value: str | None) -> int:
    """Parse a header that holds a non-negative decimal integer."""
    if value is None:
        raise BadRequest(f"{name} header is missing")
    digits = value.strip(_OWS)
    if _DECIMAL.fullmatch(digits) is None:
        raise BadRequest(f"{name} must be a non-negative decimal integer, got {_shown(value)}")
    return int(digits)


def _decode_base64(text: str) -> bytes | None:
    """Decode canonical standard base64 with padding, or return None."""
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or characters outside ASCII
        return None
    # Only the canonical spelling is accepted, so one value has one encoding and
    # stray bits in the last character cannot hide data.
    if base64.b64encode(raw).decode("ascii") != text:
        return None
    return raw


def _shown(text: str) -> str:
    """Quote client-supplied text for an error message, cut to a sane length."""
    return repr(text if len(text) <= 40 else text[:40] + "…")
