"""`manage.py serve` turns Nagle's algorithm off on its listening socket, so that every connection
it accepts sends small writes at once: with Nagle on, uvicorn's response body (written after its
headers) waited for the client's delayed ACK, ~40 ms per keep-alive request."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.management import call_command

from notifications.management.commands import serve


def _nagle_off(sock: socket.socket) -> bool:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def _accepted_from(listener: socket.socket) -> socket.socket:
    client = socket.create_connection(listener.getsockname(), timeout=5)
    accepted, _ = listener.accept()
    client.close()
    return accepted


def test_connections_accepted_from_a_no_delay_listener_have_nagle_off() -> None:
    with socket.create_server(("127.0.0.1", 0)) as plain, socket.create_server(("127.0.0.1", 0)) as fixed:
        serve.no_delay(fixed)
        with _accepted_from(plain) as before, _accepted_from(fixed) as after:
            assert not _nagle_off(before)  # the kernel's default: what the fix is for
            assert _nagle_off(after)


def test_no_delay_leaves_a_unix_socket_alone() -> None:
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        serve.no_delay(left)  # TCP_NODELAY means nothing there: no error


class _CapturingServer:
    ran_on: list[socket.socket] = []

    def __init__(self, config: Any) -> None:
        self.config = config

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        assert sockets is not None
        _CapturingServer.ran_on = sockets


@pytest.fixture
def capture_uvicorn(monkeypatch: pytest.MonkeyPatch) -> type[_CapturingServer]:
    _CapturingServer.ran_on = []
    monkeypatch.setattr(serve, "graceful_uvicorn_class", lambda: _CapturingServer)
    return _CapturingServer


def test_uvicorn_serves_on_a_listening_socket_with_nagle_off(capture_uvicorn: type[_CapturingServer]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    call_command("serve", port=port, server="uvicorn")
    (listening,) = capture_uvicorn.ran_on
    with listening:
        assert listening.getsockname() == ("127.0.0.1", port)
        assert _nagle_off(listening)


def test_an_inherited_listening_socket_gets_nagle_off_too(capture_uvicorn: type[_CapturingServer]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as inherited:
        call_command("serve", fd=inherited.fileno(), server="uvicorn")
        (listening,) = capture_uvicorn.ran_on
        with listening:
            assert _nagle_off(inherited)  # the same socket, seen through the inherited descriptor


def test_daphne_turns_nagle_off_on_each_port_it_listens_on() -> None:
    server = serve.GracefulServer(application=None, endpoints=["tcp:port=0:interface=127.0.0.1"])
    with socket.create_server(("127.0.0.1", 0)) as listening:
        port = SimpleNamespace(socket=listening, getHost=lambda: SimpleNamespace(host="127.0.0.1", port=1))
        server.listen_success(port)
        assert _nagle_off(listening)
        assert server.ports == [port]
