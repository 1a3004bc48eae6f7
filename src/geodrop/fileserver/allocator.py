"""glibc's malloc settings for a file server: freed body buffers are kept for reuse.

An upload's body arrives in socket reads of up to 512 KiB (web/bodyreads.py); each read
is a new bytes object, and aiohttp's parser copies it into another, which the hash
thread (streamhash.py) frees a little later. With glibc's defaults such blocks come from
the top of the heap, and the heap's top is given back to the kernel as soon as about
twice the biggest block freed so far is free there (the dynamic trim threshold, ~1 MiB
here): the heap shrinks and grows again every few reads, and every page it grows by is
a fresh zeroed page, faulted in. Receiving 1 GiB cost ~320 ``brk`` calls and the
faults of tens of thousands of pages.

:func:`keep_freed_buffers` sets blocks up to :data:`MMAP_THRESHOLD` to come from the
heap and lets up to :data:`TRIM_THRESHOLD` of free heap top stay with the process, so a
freed read buffer is reused by the next read. Measured on 1 GiB uploads (1 PATCH,
alternating runs): server CPU per GiB 8-10 % lower, throughput ~8 % higher. The cost is
memory an idle process may keep: at most :data:`TRIM_THRESHOLD` above what it uses.

Nothing is changed where the C library is not glibc, or where the operator has already
chosen malloc settings through glibc's own environment variables (DEPLOYMENT.md).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
from collections.abc import Mapping
from typing import Final

logger = logging.getLogger(__name__)

MMAP_THRESHOLD: Final = 4 * 1024 * 1024
TRIM_THRESHOLD: Final = 32 * 1024 * 1024

# mallopt's parameter numbers (glibc's malloc.h).
_M_TRIM_THRESHOLD: Final = -1
_M_MMAP_THRESHOLD: Final = -3

_OPERATOR_SETTINGS: Final = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")


def operator_chose(environ: Mapping[str, str]) -> bool:
    """Whether glibc's malloc was given settings through the environment."""
    if any(name in environ for name in _OPERATOR_SETTINGS):
        return True
    return "glibc.malloc." in environ.get("GLIBC_TUNABLES", "")


def keep_freed_buffers(environ: Mapping[str, str] = os.environ) -> bool:
    """Apply the settings of the module docstring; whether they were applied."""
    if platform.libc_ver()[0] != "glibc":
        logger.debug("not glibc: malloc settings left alone")
        return False
    if operator_chose(environ):
        logger.info("malloc settings from the environment kept")
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    applied = bool(libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if not applied:
        logger.warning("glibc refused the malloc settings: the defaults stay")
    return applied
