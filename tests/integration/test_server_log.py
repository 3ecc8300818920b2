"""The node's log at a connect: Herald's own `connected` line, and without `--access-log` none of
the server's per-handshake lines (they repeat it with less context and cost CPU at every connect)."""

from __future__ import annotations

import json
import logging

import pytest

from accounts.services import api_key_create, tenant_create
from config.logging import HandshakeLinesFilter
from tests.integration.client import LiveClient, rest
from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def _messages(log: str) -> list[str]:
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    return [line["msg"] for line in lines]


@pytest.fixture
def key(transactional_db) -> str:
    return api_key_create(tenant=tenant_create(slug="acme", name="Acme"), name="k", scopes=["publish"])[1]


@pytest.mark.parametrize("access_log", [False, True])
async def test_a_connect_logs_one_line_of_its_own_and_handshake_lines_only_with_the_access_log(
    herald_processes, key, access_log
):
    node = herald_processes("node", access_log=access_log)
    token = rest(node.url, "POST", "/api/v1/tokens", {"user_id": "alice"}, key)[1]["token"]
    client = await LiveClient.open(node.ws_url, token)
    wait_until(lambda: "connected" in _messages(node.log()), 5, "the connected line")
    await client.close()
    messages = _messages(node.log())
    assert messages.count("connected") == 1
    handshake = [m for m in messages if m == "connection open" or m.endswith('"WebSocket /ws/v1/" [accepted]')]
    assert len(handshake) == (2 if access_log else 0)


def test_the_filter_drops_only_the_two_handshake_lines() -> None:
    def record(msg: str, level: int = logging.INFO, *args: object) -> logging.LogRecord:
        return logging.LogRecord("uvicorn.error", level, __file__, 1, msg, args, None)

    keep = HandshakeLinesFilter().filter
    assert not keep(record('%s - "WebSocket %s" [accepted]', logging.INFO, "127.0.0.1:5", "/ws/v1/"))
    assert not keep(record("connection open"))
    assert keep(record('%s - "WebSocket %s" 403', logging.INFO, "127.0.0.1:5", "/ws/v1/"))  # a refusal stays
    assert keep(record("connection open", logging.WARNING))
    assert keep(record("Uvicorn running on %s", logging.INFO, "http://127.0.0.1:8000"))
