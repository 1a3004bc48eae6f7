"""How a server process logs: text lines for people, or JSON lines for log collectors.

Every line names the process's role and the request it was written for (the
``request_id`` context variable; ``-`` outside a request). Access-log lines
(:mod:`geodrop.web.accesslog`) carry their fields as top-level JSON keys.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Final

from geodrop.config import LoggingConfig
from geodrop.web.middleware import request_id

TEXT_FORMAT: Final = "%(asctime)s {role} %(levelname)s [%(request_id)s] %(name)s: %(message)s"


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True


class JsonLineFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, role, logger, request id,
    message, and an access-log line's fields."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self._role = role

    def format(self, record: logging.LogRecord) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        line: dict[str, Any] = {
            "ts": f"{seconds}.{int(record.msecs):03d}Z",
            "level": record.levelname,
            "role": self._role,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if isinstance(access, dict):
            line.update(access)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(role: str, config: LoggingConfig | None = None) -> None:
    """Log INFO and above to stderr, as ``config.format`` says (text without a config)."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if config is not None and config.format == "json":
        handler.setFormatter(JsonLineFormatter(role))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT.format(role=role)))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    # aiohttp's own access log is off (serve() passes access_log=None); ours replaces it.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
