"""An idle keep-alive HTTP connection to a node stays open longer than the proxy's (nginx closes
its idle upstream connections after 60 s): a node closing first would make a request sent at that
moment fail, and nginx does not retry a POST."""

from __future__ import annotations

import http.client
import json
import time

import pytest

from accounts.services import api_key_create, tenant_create

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def test_an_idle_keep_alive_connection_outlives_uvicorns_default_timeout(herald_processes, transactional_db):
    key = api_key_create(tenant=tenant_create(slug="acme", name="Acme"), name="k", scopes=["publish"])[1]
    node = herald_processes("node", access_log=False)
    connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    body = json.dumps({"kind": "k", "recipients": ["alice"]})
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    sockets = []
    try:
        for attempt in range(2):
            if attempt:
                time.sleep(6.5)  # idle for longer than uvicorn's default keep-alive (5 s)
            connection.request("POST", "/api/v1/events", body, headers)
            response = connection.getresponse()
            response.read()
            assert response.status == 202
            sockets.append(connection.sock)
        # Still open: http.client does not reconnect by itself, a closed one would have failed.
        assert sockets[0] is sockets[1] and connection.sock is sockets[0]
    finally:
        connection.close()
