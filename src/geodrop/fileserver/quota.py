"""Per-user quotas: bytes held and uploads a day, checked before an upload is created.

A sender's uploads land in the region they negotiate with, and each region keeps its
own metadata, so the quota is counted per region: a sender holds up to
``user_quota_bytes`` and starts up to ``user_uploads_per_day`` uploads in each region
they upload to. (Clients are sent to their own region, so in practice that is one.)

Bytes held count every transfer the sender has in the region, unfinished uploads at
their declared size included: starting many uploads and never finishing them cannot
reserve more than the quota. They stop counting when the transfer is deleted (its
receivers have it, or it expired).
"""

from __future__ import annotations

import math
from typing import Final

from geodrop.config import LimitsConfig
from geodrop.errors import PayloadTooLarge, QuotaExceeded
from geodrop.metadata.base import TransferStore, Usage

UPLOADS_WINDOW_SECONDS: Final = 24 * 3600
# When bytes will be freed depends on receivers downloading; an hour is a fair retry.
BYTES_RETRY_AFTER_SECONDS: Final = 3600


async def check_quota(
    transfers: TransferStore, limits: LimitsConfig, sender: str, size: int, now: float
) -> None:
    """Refuse an upload of ``size`` bytes that would take ``sender`` over a quota.

    A look before any work: concurrent uploads of the sender may still take the room
    before this one is recorded, which :func:`admit` through
    :meth:`~geodrop.metadata.base.TransferStore.create_admitted` settles.

    Raises:
        PayloadTooLarge: the file alone is larger than ``user_quota_bytes`` (413).
        QuotaExceeded: over ``user_quota_bytes`` or ``user_uploads_per_day`` (429, with
            Retry-After).
    """
    _refuse_too_large(limits, size)  # before reading the usage: it can never fit
    admit(limits, size, now, await transfers.usage(sender, window_start(now)))


def window_start(now: float) -> float:
    """Uploads created since then count against ``user_uploads_per_day``."""
    return now - UPLOADS_WINDOW_SECONDS


def _refuse_too_large(limits: LimitsConfig, size: int) -> None:
    if size > limits.user_quota_bytes:
        # No amount of waiting makes room for it: "too large", not "try again later".
        raise PayloadTooLarge(
            f"size: {size} bytes is above the per-user quota of {limits.user_quota_bytes}"
        )


def admit(limits: LimitsConfig, size: int, now: float, usage: Usage) -> None:
    """Refuse an upload of ``size`` bytes at ``now`` for a sender with this ``usage``
    (since :func:`window_start`).

    Raises:
        PayloadTooLarge, QuotaExceeded: as :func:`check_quota`.
    """
    _refuse_too_large(limits, size)
    if usage.bytes_held + size > limits.user_quota_bytes:
        raise QuotaExceeded(
            f"this upload would take you over your quota of {limits.user_quota_bytes} bytes"
            f" in this region ({usage.bytes_held} held); retry once your receivers have"
            " their files",
            retry_after=BYTES_RETRY_AFTER_SECONDS,
        )
    if usage.uploads_since >= limits.user_uploads_per_day:
        retry_after = BYTES_RETRY_AFTER_SECONDS
        if usage.oldest_since is not None:
            retry_after = math.ceil(usage.oldest_since + UPLOADS_WINDOW_SECONDS - now)
        raise QuotaExceeded(
            f"you have started {usage.uploads_since} uploads in this region in the last"
            f" 24 hours, the limit is {limits.user_uploads_per_day}",
            retry_after=retry_after,
        )
