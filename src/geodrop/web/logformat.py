"""How a server process logs: text lines for people, or JSON lines for log collectors.

Every line names the process's role and the request it was written for (the
``request_id`` context variable; ``-`` outside a request). Access-log lines
(:mod:`geodrop.web.accesslog`) carry their fields as top-level JSON keys.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import sys
import time
from typing import Any, Final, TextIO

from geodrop.config import LoggingConfig
from geodrop.web import accesslog
from geodrop.web.error_responses import request_id

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
        access = getattr(record, "access", None)
        return json_line(
            _utc_stamp(record.created),
            record.levelname,
            self._role,
            record.name,
            getattr(record, "request_id", "-"),
            record.getMessage(),
            access if isinstance(access, dict) else None,
            self.formatException(record.exc_info) if record.exc_info else None,
        )


def json_line(
    ts: str,
    level: str,
    role: str,
    logger: str,
    rid: str,
    message: str,
    fields: dict[str, Any] | None = None,
    exception: str | None = None,
) -> str:
    """One JSON log line (no newline): the common keys, then an access line's fields."""
    line: dict[str, Any] = {
        "ts": ts,
        "level": level,
        "role": role,
        "logger": logger,
        "request_id": rid,
        "message": message,
    }
    if fields is not None:
        line.update(fields)
    if exception is not None:
        line["exception"] = exception
    return json.dumps(line, ensure_ascii=False, default=str)


def _utc_stamp(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


class AccessLines:
    """Writes access-log lines straight to a stream, as the process's handler would.

    The same text or JSON lines as :func:`configure_logging`'s handler writes for the
    ``geodrop.access`` logger, without a log record per request: the lines a turn of the
    event loop produces are written together, once that turn is over (a server under
    load finishes many requests per turn). Outside an event loop a line is written at
    once. Whatever is pending when the process exits is written then.
    """

    def __init__(self, role: str, json_format: bool, stream: TextIO | None = None) -> None:
        self._role = role
        self._json = json_format
        self._stream = stream
        self._pending: list[str] = []
        self._second = -1
        self._second_text = ""
        atexit.register(self.flush)

    def __call__(self, rid: str, message: str, fields: dict[str, Any]) -> None:
        now = time.time()
        if self._json:
            line = json_line(
                _utc_stamp(now), "INFO", self._role, accesslog.LOGGER_NAME, rid, message, fields
            )
        else:
            line = (
                f"{self._local_stamp(now)} {self._role} INFO [{rid}] "
                f"{accesslog.LOGGER_NAME}: {message}"
            )
        self._pending.append(line)
        if len(self._pending) > 1:
            return
        try:
            asyncio.get_running_loop().call_soon(self.flush)
        except RuntimeError:  # no event loop: write it now
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        text = "\n".join(self._pending) + "\n"
        self._pending.clear()
        stream = self._stream or sys.stderr
        try:
            stream.write(text)
            stream.flush()
        except (OSError, ValueError):  # stderr closed or gone: nowhere to log to
            pass

    def _local_stamp(self, now: float) -> str:
        """``logging.Formatter``'s default ``asctime``: local time, then ``,msecs``."""
        second = int(now)
        if second != self._second:
            self._second = second
            self._second_text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._second_text},{int((now - second) * 1000):03d}"


def configure_logging(role: str, config: LoggingConfig | None = None) -> None:
    """Log INFO and above to stderr, as ``config.format`` says (text without a config)."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    if config is not None and config.format == "json":
        handler.setFormatter(JsonLineFormatter(role))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT.format(role=role)))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    # The access log's lines skip the logging machinery (a record per request costs
    # a third of a small request's time) but look the same.
    json_format = config is not None and config.format == "json"
    accesslog.set_access_sink(AccessLines(role, json_format))
    # aiohttp's own access log is off (serve() passes access_log=None); ours replaces it.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
