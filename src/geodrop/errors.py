"""The one exception tree of geodrop.

Every failure a request can meet is one of these classes; the front door
(:mod:`geodrop.web.frontdoor`, through :mod:`geodrop.web.error_responses`) turns them
into ``{"error": {"code", "message"}}`` JSON bodies with the status below
(DESIGN.md §7)::

    GeodropError                      500 internal
    ├── ConfigError                   (start-up only: the process exits non-zero)
    ├── BadRequest                    400 bad_request
    │   └── UnsupportedMediaType      415 unsupported_media_type
    ├── Unauthorized                  401 unauthorized
    ├── Forbidden                     403 forbidden
    ├── NotFound                      404 not_found
    ├── MethodNotAllowed              405 method_not_allowed
    ├── Conflict                      409 conflict
    │   └── OffsetMismatch            409 offset_mismatch
    ├── Locked                        423 locked
    ├── TooManyRequests               429 too_many_requests (+ Retry-After)
    │   └── QuotaExceeded             429 quota_exceeded
    ├── Gone                          410 gone
    ├── PreconditionFailed            412 precondition_failed
    │   └── UnsupportedTusVersion     412 unsupported_tus_version
    ├── PayloadTooLarge               413 too_large
    ├── RangeNotSatisfiable           416 range_not_satisfiable
    ├── ChecksumMismatch              460 checksum_mismatch (tus checksum extension)
    ├── Unavailable                   503 unavailable (+ Retry-After)
    │   └── PeerUnavailable           503 peer_unavailable
    ├── InsufficientStorage           507 insufficient_storage
    ├── NetworkError                  (client side: a server could not be reached)
    └── IntegrityError                (client side: received bytes do not match their sha256)
"""

from __future__ import annotations

from typing import ClassVar


class GeodropError(Exception):
    """Base of every error geodrop raises on purpose."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers: dict[str, str] = dict(headers or {})


class ConfigError(GeodropError):
    """The cluster configuration is invalid; the message names the key."""

    code = "config"


class BadRequest(GeodropError):
    status = 400
    code = "bad_request"


class UnsupportedMediaType(BadRequest):
    status = 415
    code = "unsupported_media_type"


class Unauthorized(GeodropError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        merged = {"WWW-Authenticate": 'Bearer realm="geodrop"'}
        merged.update(headers or {})
        super().__init__(message, headers=merged)


class Forbidden(GeodropError):
    status = 403
    code = "forbidden"


class NotFound(GeodropError):
    status = 404
    code = "not_found"


class MethodNotAllowed(GeodropError):
    status = 405
    code = "method_not_allowed"


class Conflict(GeodropError):
    status = 409
    code = "conflict"


class OffsetMismatch(Conflict):
    code = "offset_mismatch"


class Gone(GeodropError):
    status = 410
    code = "gone"


class PreconditionFailed(GeodropError):
    status = 412
    code = "precondition_failed"


class UnsupportedTusVersion(PreconditionFailed):
    code = "unsupported_tus_version"


class BodyStalled(GeodropError, ConnectionError):
    """A request body brought no byte for ``limits.body_idle_seconds``: handled as a
    connection lost (what arrived is kept; the client resumes from a new one), and
    answered, as nginx's ``client_body_timeout`` is, with 408."""

    status = 408
    code = "body_stalled"


class PayloadTooLarge(GeodropError):
    status = 413
    code = "too_large"


class RangeNotSatisfiable(GeodropError):
    status = 416
    code = "range_not_satisfiable"


class Locked(GeodropError):
    status = 423
    code = "locked"


class TooManyRequests(GeodropError):
    status = 429
    code = "too_many_requests"

    def __init__(
        self, message: str, *, retry_after: int = 1, headers: dict[str, str] | None = None
    ) -> None:
        merged = {"Retry-After": str(max(1, retry_after))}
        merged.update(headers or {})
        super().__init__(message, headers=merged)


class QuotaExceeded(TooManyRequests):
    """A per-user quota (bytes held, uploads per day) would be exceeded."""

    code = "quota_exceeded"


class ChecksumMismatch(GeodropError):
    status = 460
    code = "checksum_mismatch"


class Unavailable(GeodropError):
    status = 503
    code = "unavailable"

    def __init__(
        self, message: str, *, retry_after: int = 5, headers: dict[str, str] | None = None
    ) -> None:
        merged = {"Retry-After": str(retry_after)}
        merged.update(headers or {})
        super().__init__(message, headers=merged)


class PeerUnavailable(Unavailable):
    code = "peer_unavailable"


class InsufficientStorage(GeodropError):
    status = 507
    code = "insufficient_storage"


class NetworkError(GeodropError):
    """The client could not reach a server, even after retrying."""

    code = "network"


class IntegrityError(GeodropError):
    """What arrived does not match its sha256: nothing was kept."""

    code = "integrity"


def error_for_status(status: int, message: str) -> GeodropError:
    """The error of this tree that answers with ``status`` (for relaying a peer's refusal,
    and for the client: a 408 is :class:`BodyStalled`, a connection lost, so the upload
    resumes)."""
    for kind in (
        BadRequest,
        UnsupportedMediaType,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        Gone,
        PreconditionFailed,
        PayloadTooLarge,
        RangeNotSatisfiable,
        BodyStalled,
        Locked,
        TooManyRequests,
        ChecksumMismatch,
        Unavailable,
        InsufficientStorage,
    ):
        if kind.status == status:
            return kind(message)
    return GeodropError(message)
