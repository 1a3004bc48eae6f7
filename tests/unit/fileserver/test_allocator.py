"""Tests of the file server's malloc settings (freed body buffers kept for reuse)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from geodrop.fileserver import allocator

# A body's reads as an upload meets them: socket reads of up to 512 KiB, each copied
# (aiohttp's parser) and freed, the copy freed a few reads later (the hash thread).
# Prints the minor page faults the process took while 256 MiB went through.
_BODY_READS = """
import collections, os, resource, socket, sys, threading
from geodrop.fileserver.allocator import keep_freed_buffers
if sys.argv[1] == "kept":
    assert keep_freed_buffers({})
sender, receiver = socket.socketpair()
def send():
    block = os.urandom(1024 * 1024)
    for _ in range(256):
        sender.sendall(block)
    sender.close()
threading.Thread(target=send).start()
waiting = collections.deque()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
while read := receiver.recv(512 * 1024):
    copy = bytes(memoryview(read)[1:])
    del read
    waiting.append(copy)
    if len(waiting) > 4:
        waiting.popleft()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _page_faults(mode: str) -> int:
    answer = subprocess.run(
        [sys.executable, "-c", _BODY_READS, mode], capture_output=True, text=True, check=True
    )
    return int(answer.stdout)


def test_kept_buffers_spare_the_page_faults_of_a_heap_that_shrinks_and_grows() -> None:
    default = _page_faults("default")
    kept = _page_faults("kept")
    # With the defaults the heap's top is given back and faulted in again every few
    # reads (~39,000 faults here); kept, ~1,100.
    assert default > 10_000
    assert kept * 10 < default


@pytest.mark.parametrize(
    "environ",
    [
        {"MALLOC_TRIM_THRESHOLD_": "1000000"},
        {"MALLOC_MMAP_THRESHOLD_": "65536"},
        {"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1000000"},
    ],
)
def test_settings_the_operator_chose_are_kept(environ: dict[str, str]) -> None:
    assert allocator.operator_chose(environ)
    assert not allocator.keep_freed_buffers(environ)


def test_other_tunables_are_not_malloc_settings() -> None:
    assert not allocator.operator_chose({"GLIBC_TUNABLES": "glibc.pthread.rseq=0"})


def test_another_c_library_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda: ("musl", "1.2"))
    assert not allocator.keep_freed_buffers({})
