"""Range and conditional-request decisions for immutable blobs.

A committed blob never changes, so its strong entity tag names its bytes for
good. :func:`decide` turns the conditional and Range header fields of one
request into a :class:`RangeDecision`; the file server only has to render it.
Nothing here performs I/O.

The preconditions are evaluated in the order of RFC 9110 §13.2.2 (If-Match,
then If-None-Match; If-Unmodified-Since and If-Modified-Since are not used by
geodrop), and only then If-Range and Range (RFC 9110 §13.1.5, §14.2).

We deliberately serve at most one range: a request for several is answered
with the whole blob, which RFC 9110 §14.2 permits ("A server MAY ignore the
Range header field"), so there is no multipart/byteranges code to get wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Final

# Python turns any decimal string into an int, but beyond 4,300 digits it raises
# instead, and no blob is anywhere near 10**19 bytes: longer numbers are treated
# as an unusable Range (ignored) rather than parsed.
_MAX_DIGITS: Final = 19

# RFC 9110 §5.6.3: OWS = *( SP / HTAB ).
_OWS: Final = " \t"

# RFC 9110 §8.8.3: entity-tag = [ weak ] opaque-tag; weak = %s"W/";
# opaque-tag = DQUOTE *etagc DQUOTE; etagc = %x21 / %x23-7E / obs-text.
_ENTITY_TAG: Final = re.compile(r'(W/)?"([\x21\x23-\x7e\x80-\xff]*)"')

# RFC 9110 §14.1.1: int-range = first-pos "-" [ last-pos ]; suffix-range = "-" suffix-length.
# The classes are spelled [0-9] because \d would also accept non-ASCII digits.
_INT_RANGE: Final = re.compile(r"([0-9]+)-([0-9]*)")
_SUFFIX_RANGE: Final = re.compile(r"-([0-9]+)")


@dataclass(frozen=True, slots=True)
class ByteRange:
    """A half-open span ``[start, stop)`` of a blob's bytes.

    Attributes:
        start: Offset of the first byte.
        stop: Offset one past the last byte.
    """

    start: int
    stop: int

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.stop:
            raise ValueError(f"invalid byte range [{self.start}, {self.stop})")

    @property
    def length(self) -> int:
        """The number of bytes in the span."""
        return self.stop - self.start

    def content_range(self, size: int) -> str:
        """Render the Content-Range field value of a 206 response.

        Args:
            size: The complete length of the blob.

        Returns:
            ``bytes START-END/SIZE`` with END inclusive (RFC 9110 §14.4).

        Raises:
            ValueError: The span is empty or reaches past ``size``; neither can
                be expressed, because an incl-range needs last-pos >= first-pos.
        """
        if self.length == 0 or self.stop > size:
            raise ValueError(f"byte range [{self.start}, {self.stop}) of a {size}-byte blob")
        return f"bytes {self.start}-{self.stop - 1}/{size}"


class RangeOutcome(Enum):
    """How to answer a request for a blob."""

    FULL = "full"
    PARTIAL = "partial"
    UNSATISFIABLE = "unsatisfiable"
    NOT_MODIFIED = "not_modified"
    PRECONDITION_FAILED = "precondition_failed"


_STATUS: Final = {
    RangeOutcome.FULL: 200,
    RangeOutcome.PARTIAL: 206,
    RangeOutcome.UNSATISFIABLE: 416,
    RangeOutcome.NOT_MODIFIED: 304,
    RangeOutcome.PRECONDITION_FAILED: 412,
}


@dataclass(frozen=True, slots=True)
class RangeDecision:
    """The answer :func:`decide` chose.

    Attributes:
        outcome: Which kind of response to send.
        range: The bytes to send: the whole blob for FULL, the selected span
            for PARTIAL, and an empty ``0..0`` span when no body is sent.
    """

    outcome: RangeOutcome
    range: ByteRange

    @property
    def status(self) -> int:
        """The HTTP status code of the response."""
        return _STATUS[self.outcome]


_NO_BYTES: Final = ByteRange(0, 0)


def decide(
    *,
    method: str,
    size: int,
    etag: str,
    range_header: str | None,
    if_range: str | None,
    if_match: str | None,
    if_none_match: str | None,
    last_modified: str | None = None,
) -> RangeDecision:
    """Decide how to answer a request for an immutable blob.

    Args:
        method: The request method; methods are case-sensitive (RFC 9110 §9.1).
        size: The blob's length in bytes.
        etag: The blob's strong entity tag, quotes included, e.g. ``"abc"``.
        range_header: The Range field value, if any.
        if_range: The If-Range field value, if any.
        if_match: The If-Match field value, if any.
        if_none_match: The If-None-Match field value, if any.
        last_modified: The Last-Modified value a 200 response would carry, if
            any; an If-Range date must equal it exactly.

    Returns:
        The decision. Malformed Range or If-Range values never raise: they
        make the server send the whole blob, as RFC 9110 §14.2 allows.

    Raises:
        ValueError: ``size`` is negative or ``etag`` is not a strong entity tag
            (both are the caller's bug, not the client's).
    """
    if size < 0:
        raise ValueError(f"negative blob size {size}")
    own = _ENTITY_TAG.fullmatch(etag)
    if own is None or own.group(1) is not None:
        raise ValueError(f"not a strong entity tag: {etag!r}")
    opaque = own.group(2)

    # RFC 9110 §13.2.2 step 1 and §13.1.1: If-Match uses the strong comparison.
    if if_match is not None and not _list_matches(if_match, opaque, weak=False):
        return RangeDecision(RangeOutcome.PRECONDITION_FAILED, _NO_BYTES)
    # RFC 9110 §13.2.2 step 3 and §13.1.2: If-None-Match uses the weak comparison;
    # a match means 304 for GET and HEAD and 412 for every other method.
    if if_none_match is not None and _list_matches(if_none_match, opaque, weak=True):
        if method in ("GET", "HEAD"):
            return RangeDecision(RangeOutcome.NOT_MODIFIED, _NO_BYTES)
        return RangeDecision(RangeOutcome.PRECONDITION_FAILED, _NO_BYTES)

    full = RangeDecision(RangeOutcome.FULL, ByteRange(0, size))
    # RFC 9110 §14.2: GET is the only method for which range handling is defined.
    if method != "GET" or range_header is None:
        return full
    # RFC 9110 §13.1.5: a failed If-Range means "send the whole representation".
    if if_range is not None and not _if_range_matches(if_range, opaque, last_modified):
        return full
    spec = _single_range_spec(range_header)
    if spec is None:
        return full
    return _resolve(spec, size, full)


def unsatisfied_content_range(size: int) -> str:
    """Render the Content-Range field value of a 416 response.

    Args:
        size: The complete length of the blob.

    Returns:
        ``bytes */SIZE`` (RFC 9110 §14.4, unsatisfied-range).
    """
    return f"bytes */{size}"


def _list_matches(field: str, opaque: str, *, weak: bool) -> bool:
    """Whether an If-Match or If-None-Match value matches the blob's tag.

    A value that does not parse matches nothing: If-Match then fails (412),
    which is the safe side for a client that asked for a precondition, and
    If-None-Match is passed over, so the blob is simply sent.
    """
    value = field.strip(_OWS)
    # RFC 9110 §13.1.1, §13.1.2: "*" matches any current representation, and
    # the blob being decided on exists.
    if value == "*":
        return True
    tags = _entity_tags(value)
    if tags is None:
        return False
    # RFC 9110 §8.8.3.2: the strong comparison also requires neither tag be weak.
    return any(tag == opaque and (weak or not is_weak) for is_weak, tag in tags)


def _entity_tags(value: str) -> list[tuple[bool, str]] | None:
    """Parse ``#entity-tag`` into ``(is_weak, opaque)`` pairs, or None if malformed.

    A tag may itself contain commas (RFC 9110 §8.8.3), so the list is scanned
    tag by tag instead of being split on commas.
    """
    tags: list[tuple[bool, str]] = []
    pos = 0
    after_tag = False
    while pos < len(value):
        char = value[pos]
        if char in _OWS:
            pos += 1
        elif char == ",":
            # RFC 9110 §5.6.1: empty list elements are accepted and ignored.
            after_tag = False
            pos += 1
        elif after_tag:
            return None
        else:
            match = _ENTITY_TAG.match(value, pos)
            if match is None:
                return None
            tags.append((match.group(1) is not None, match.group(2)))
            pos = match.end()
            after_tag = True
    return tags


def _if_range_matches(field: str, opaque: str, last_modified: str | None) -> bool:
    """Whether an If-Range value (entity-tag / HTTP-date) validates the blob."""
    value = field.strip(_OWS)
    if value.startswith(('"', "W/")):
        match = _ENTITY_TAG.fullmatch(value)
        # RFC 9110 §13.1.5: strong comparison, so a weak tag never matches.
        return match is not None and match.group(1) is None and match.group(2) == opaque
    # RFC 9110 §13.1.5: an HTTP-date matches only if it exactly equals the
    # Last-Modified value a 200 response would carry.
    return last_modified is not None and value == last_modified.strip(_OWS)


def _single_range_spec(header: str) -> str | None:
    """Return the one byte range-spec of a Range value, or None to ignore it.

    None covers other units, bad syntax, and more than one range.
    """
    # RFC 9110 §14.2: ranges-specifier = range-unit "=" range-set, with no
    # whitespace around "="; only the field value as a whole is trimmed.
    unit, equals, range_set = header.strip(_OWS).partition("=")
    # RFC 9110 §14.1: range units are compared case-insensitively.
    if not equals or unit.lower() != "bytes" or range_set.startswith((" ", "\t")):
        return None
    # RFC 9110 §5.6.1: OWS may surround the commas and empty elements are ignored.
    specs = [spec for spec in (part.strip(_OWS) for part in range_set.split(",")) if spec]
    if len(specs) != 1:
        return None
    return specs[0]


def _resolve(spec: str, size: int, full: RangeDecision) -> RangeDecision:
    """Resolve one byte range-spec against a blob of ``size`` bytes."""
    unsatisfiable = RangeDecision(RangeOutcome.UNSATISFIABLE, _NO_BYTES)
    suffix = _SUFFIX_RANGE.fullmatch(spec)
    if suffix is not None:
        if len(suffix.group(1)) > _MAX_DIGITS:
            return full
        suffix_length = int(suffix.group(1))
        # RFC 9110 §14.1.1: a suffix-range is satisfiable only if suffix-length > 0.
        # The RFC would let a non-empty suffix select nothing from an empty blob,
        # but a 206 cannot describe zero bytes (§14.4 needs last-pos >= first-pos),
        # so an empty blob satisfies no range at all.
        if suffix_length == 0 or size == 0:
            return unsatisfiable
        return RangeDecision(RangeOutcome.PARTIAL, ByteRange(max(size - suffix_length, 0), size))

    bounds = _INT_RANGE.fullmatch(spec)
    if bounds is None:
        return full
    first_digits, last_digits = bounds.groups()
    if len(first_digits) > _MAX_DIGITS or len(last_digits) > _MAX_DIGITS:
        return full
    first = int(first_digits)
    last = int(last_digits) if last_digits else None
    # RFC 9110 §14.1.1: last-pos < first-pos makes the range-spec invalid, and an
    # invalid Range is ignored (§14.2).
    if last is not None and last < first:
        return full
    # RFC 9110 §14.1.1: an int-range is satisfiable only if first-pos < length.
    if first >= size:
        return unsatisfiable
    # RFC 9110 §14.1.1: a missing last-pos, or one past the end, means "to the end".
    stop = size if last is None else min(last + 1, size)
    return RangeDecision(RangeOutcome.PARTIAL, ByteRange(first, stop))
