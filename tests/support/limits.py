"""Small limits for tests of the request-rate and quota rules (no sockets)."""

from __future__ import annotations

from dataclasses import replace

from geodrop.config import LimitsConfig

_SMALL = LimitsConfig(
    max_file_size=1024,
    upload_expiry_seconds=60,
    retention_seconds=60,
    signed_url_ttl_seconds=60,
    max_receivers=5,
    min_free_bytes=0,
    user_quota_bytes=1024,
    user_uploads_per_day=10,
    requests_per_minute_per_user=8,
    requests_per_minute_per_ip=40,
    received_grace_seconds=0,
    max_downloads=0,
)


def small_limits(**changes: int) -> LimitsConfig:
    """Limits of a few requests and bytes, with ``changes``."""
    return replace(_SMALL, **changes)
