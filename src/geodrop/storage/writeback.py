"""Starting the disk writes of a file's dirty pages early, without waiting for them.

An upload's bytes wait in the page cache until the fsync at its completion, which then
writes the whole file while the client waits (≈ 0.45 s per GiB on this disk). Asking
the kernel to start writing each few MiB as they arrive (Linux ``sync_file_range`` with
``SYNC_FILE_RANGE_WRITE``: start, do not wait) overlaps that with receiving, and leaves
the final fsync little to do. It is not a durability promise: the fsync still makes it.
Where the call does not exist (not Linux), this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable
from typing import Final

logger = logging.getLogger(__name__)

_SYNC_FILE_RANGE_WRITE: Final = 2


def _load() -> Callable[[int, int, int, int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int
    return call


_sync_file_range = _load()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Queue the disk writes of ``length`` bytes at ``offset`` of ``fd``; returns at once."""
    if _sync_file_range is None or length <= 0:
        return
    if _sync_file_range(fd, offset, length, _SYNC_FILE_RANGE_WRITE) != 0:
        # Only a hint: a file system that refuses it is written at fsync, as before.
        logger.debug("sync_file_range: errno %d", ctypes.get_errno())
