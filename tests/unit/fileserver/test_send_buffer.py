"""A fast client's connection gets a wider send buffer, on real loopback TCP connections."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from geodrop.fileserver import sendfile
from geodrop.fileserver.sendfile import SliceSender, widen_send_buffer


@pytest.fixture
def server_end() -> Iterator[socket.socket]:
    """The server's end of a connected loopback TCP connection."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        accepted, _ = listener.accept()
        with client, accepted:
            yield accepted


@pytest.fixture
def sysctls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A folder standing in for /proc/sys/net: write wmem_max and tcp_wmem there."""
    monkeypatch.setattr(sendfile, "_WMEM_MAX", tmp_path / "wmem_max")
    monkeypatch.setattr(sendfile, "_TCP_WMEM", tmp_path / "tcp_wmem")
    sendfile._send_buffer_request.cache_clear()
    yield tmp_path
    sendfile._send_buffer_request.cache_clear()


def _send_buffer(sock: socket.socket) -> int:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)


def test_this_machine_widens_a_connection_once_if_it_can(server_end: socket.socket) -> None:
    wanted = sendfile._send_buffer_request()
    before = _send_buffer(server_end)
    assert widen_send_buffer(server_end) is (wanted > 0)
    assert _send_buffer(server_end) == (wanted * 2 if wanted else before)
    assert widen_send_buffer(server_end) is False  # already as wide as it gets


def test_where_wmem_max_allows_more_than_tcp_grows_to_it_asks_for_more(sysctls: Path) -> None:
    (sysctls / "wmem_max").write_text("33554432\n")
    (sysctls / "tcp_wmem").write_text("4096\t16384\t4194304\n")
    assert sendfile._send_buffer_request() == sendfile.SEND_BUFFER_BYTES


def test_on_a_stock_kernel_it_leaves_the_kernel_sizing_alone(
    sysctls: Path, server_end: socket.socket
) -> None:
    # wmem_max 208 KiB: asked for, the buffer would stop at 416 KiB instead of growing
    # to tcp_wmem's 4 MiB.
    (sysctls / "wmem_max").write_text("212992\n")
    (sysctls / "tcp_wmem").write_text("4096\t16384\t4194304\n")
    before = _send_buffer(server_end)
    assert widen_send_buffer(server_end) is False
    assert _send_buffer(server_end) == before


def test_without_the_sysctls_it_leaves_the_kernel_sizing_alone(
    sysctls: Path, server_end: socket.socket
) -> None:
    before = _send_buffer(server_end)
    assert widen_send_buffer(server_end) is False
    assert _send_buffer(server_end) == before


def test_a_closed_connection_is_not_widened(sysctls: Path) -> None:
    (sysctls / "wmem_max").write_text("33554432\n")
    (sysctls / "tcp_wmem").write_text("4096\t16384\t4194304\n")
    sock = socket.socket()
    sock.close()
    assert widen_send_buffer(sock) is False


def test_a_slice_sender_widens_its_connection_only_once(
    server_end: socket.socket, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    calls: list[socket.socket] = []
    real = sendfile.widen_send_buffer

    def counting(sock: socket.socket) -> bool:
        calls.append(sock)
        return real(sock)

    monkeypatch.setattr(sendfile, "widen_send_buffer", counting)
    (tmp_path / "file").write_bytes(b"x")
    with (tmp_path / "file").open("rb") as file:
        sender = SliceSender(server_end, file)
        try:
            sender.client_is_fast()
            sender.client_is_fast()
        finally:
            sender.close()
    assert calls == [server_end]
