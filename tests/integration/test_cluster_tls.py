"""The production layout with real processes (issue 3, fault test 5 and the nginx front): nginx
terminating TLS in front of two Herald nodes and a fan-out worker, on PostgreSQL and Redis.
A real `websockets` client verifies the generated certificate; plain ws:// on the TLS port is
refused; plain HTTP redirects; clients on both nodes receive a publish; nginx's access log holds
no credential; nginx's limits answer 429 in Herald's JSON error shape."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

from accounts.services import api_key_create, tenant_create
from notifications.services import topic_create
from tests.integration.client import LiveClient
from tests.integration.cluster import Cluster
from tests.integration.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def acme_key(transactional_db) -> str:
    tenant = tenant_create(slug="acme", name="Acme")
    topic_create(tenant=tenant, key="news", allow_client_subscribe=True)
    return api_key_create(tenant=tenant, name="it", scopes=["publish", "read", "admin"])[1]


def plain_request(port: int, method: str, path: str, headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("localhost", port, timeout=10)
    connection.request(method, path, headers=headers or {})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def tls_request(
    cluster: Cluster, method: str, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPSConnection("localhost", cluster.https_port, timeout=10, context=cluster.ssl_context())
    connection.request(method, path, headers=headers or {})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


async def test_wss_client_that_verifies_the_certificate_gets_a_notification_published_over_https(cluster, acme_key):
    # The token is minted over https:// through nginx (Herald runs with SECURE_SSL_REDIRECT on:
    # the 201 shows it trusts nginx's X-Forwarded-Proto).
    token = cluster.mint(acme_key, "alice")
    client = await cluster.live_client(token)
    assert client.welcome["user"] == "alice" and client.resumed["recovered"] is True
    tls_version = client.ws.transport.get_extra_info("ssl_object").version()
    assert tls_version in ("TLSv1.2", "TLSv1.3")

    status, body = cluster.rest(
        "POST", "/api/v1/events", {"kind": "order.shipped", "title": "Shipped", "recipients": ["alice"]}, acme_key
    )
    assert status == 202, body
    (frame,) = await client.collect(1)
    assert frame["id"] == body["id"] and frame["title"] == "Shipped"
    await client.close()

    # The verification is real: without the CA the same client refuses the certificate.
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(cluster.ws_url, open_timeout=10, ssl=ssl.create_default_context())


async def test_plain_ws_on_the_tls_port_is_refused_and_plain_http_redirects_to_https(cluster):
    with pytest.raises(InvalidHandshake) as refused:
        await connect(f"ws://localhost:{cluster.https_port}/ws/v1/", open_timeout=10)
    # nginx answers a plain-text request on its TLS port with 400 and never proxies it.
    assert isinstance(refused.value, InvalidStatus) and refused.value.response.status_code == 400

    response = plain_request(cluster.http_port, "GET", "/api/v1/inbox?limit=5")
    assert response.status == 301
    assert response.getheader("Location") == f"https://localhost:{cluster.https_port}/api/v1/inbox?limit=5"
    # A node itself, reached without nginx, redirects plain HTTP too (production settings).
    node = cluster.nodes[0]
    assert plain_request(node.port, "GET", "/api/v1/inbox").status == 301


async def test_clients_spread_over_both_nodes_all_receive_a_publish(cluster, acme_key):
    users = [f"user-{index}" for index in range(6)]
    clients = [await cluster.live_client(cluster.mint(acme_key, user)) for user in users]
    listener = await cluster.live_client(cluster.mint(acme_key, "listener"), topics=["news"])
    everyone = [*clients, listener]

    def placement() -> list[int | None]:
        return [cluster.node_for_connection(client.welcome["connection_id"]) for client in everyone]

    wait_until(lambda: None not in placement(), 10, "every connection logged by its node")
    # least_conn: new sockets go to the node with fewer open ones, so both nodes hold clients.
    assert set(placement()) == {0, 1}, placement()

    status, direct = cluster.rest("POST", "/api/v1/events", {"kind": "k", "recipients": users}, acme_key)
    assert status == 202
    status, topic = cluster.rest("POST", "/api/v1/events", {"kind": "k", "topics": ["news"]}, acme_key)
    assert status == 202
    for client in clients:
        assert [frame["id"] for frame in await client.collect(1)] == [direct["id"]]
    assert [frame["id"] for frame in await listener.collect(1)] == [topic["id"]]
    for client in everyone:
        await client.close()


async def test_the_access_log_holds_no_token_or_key_and_forwarded_for_is_not_spoofable(cluster, acme_key):
    token = cluster.mint(acme_key, "alice")
    client = await cluster.live_client(token, since="0")
    status, _ = cluster.rest("POST", "/api/v1/events", {"kind": "k", "recipients": ["alice"]}, acme_key)
    assert status == 202
    await client.collect(1)
    status, _ = cluster.rest("GET", "/api/v1/inbox", credential=token)
    assert status == 200
    await client.close()
    # A client cannot pass a forged address through nginx to Herald.
    status, _, _ = tls_request(cluster, "GET", "/healthz", {"X-Forwarded-For": "203.0.113.9"})
    assert status == 200

    # nginx writes a WebSocket's line when the socket closes.
    wait_until(lambda: '"path":"/ws/v1/"' in cluster.access_log(), 10, "the WebSocket in nginx's access log")
    access_log = cluster.access_log()
    lines = [json.loads(line) for line in access_log.splitlines()]
    paths = {line["path"] for line in lines}
    assert {"/api/v1/tokens", "/api/v1/events", "/api/v1/inbox", "/ws/v1/"} <= paths
    ws_line = next(line for line in lines if line["path"] == "/ws/v1/")
    assert ws_line["status"] == 101 and ws_line["upstream"].startswith("127.0.0.1:")
    for secret in (acme_key, token, *token.split(".")):
        assert secret not in access_log
        assert secret not in cluster.error_log()
    assert "Bearer" not in access_log and "authorization" not in access_log.lower()

    node_logs = "".join(node.log() for node in cluster.nodes)
    assert "203.0.113.9" not in node_logs
    assert "127.0.0.1" in node_logs  # Daphne's access log: the client address nginx forwarded


async def test_static_files_come_from_nginx_and_oversized_bodies_get_a_json_413(cluster, acme_key):
    status, headers, body = tls_request(cluster, "GET", "/static/admin/css/base.css")
    assert status == 200 and headers["Content-Type"] == "text/css" and len(body) > 1000
    static_lines = [json.loads(line) for line in cluster.access_log().splitlines() if "/static/" in line]
    assert static_lines and static_lines[-1]["upstream"] == ""  # not proxied

    big = b'{"kind": "k", "data": {"x": "' + b"x" * (4 * 1024 * 1024) + b'"}}'
    connection = http.client.HTTPSConnection("localhost", cluster.https_port, timeout=30, context=cluster.ssl_context())
    try:
        connection.request(
            "POST",
            "/api/v1/events",
            body=big,
            headers={"Authorization": f"Bearer {acme_key}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        assert response.status == 413
        assert json.loads(response.read())["error"]["code"] == "too_large"
    except (BrokenPipeError, ConnectionResetError):
        pytest.fail("nginx closed the connection without its 413 answer")
    finally:
        connection.close()


async def test_a_handshake_flood_from_one_address_gets_json_429s_from_nginx(cluster):
    # The handshake zone lets 100 through at once, then 10 per second. 300 requests from 10 threads,
    # each on its own keep-alive connection (no TLS handshake per request), must meet the limit.
    def attempts(count: int) -> list[tuple[int, dict[str, str], bytes]]:
        connection = http.client.HTTPSConnection(
            "localhost", cluster.https_port, timeout=10, context=cluster.ssl_context()
        )
        results = []
        try:
            for _ in range(count):
                connection.request("GET", "/ws/v1/")
                response = connection.getresponse()
                results.append((response.status, dict(response.getheaders()), response.read()))
        finally:
            connection.close()
        return results

    started = time.monotonic()
    loop = asyncio.get_running_loop()
    with ThreadPoolExecutor(10) as pool:
        batches = await asyncio.gather(*(loop.run_in_executor(pool, attempts, 30) for _ in range(10)))
    elapsed = time.monotonic() - started
    results = [result for batch in batches for result in batch]
    limited = [result for result in results if result[0] == 429]
    # At most 100 + 10 per started second get through; everything else must have been refused.
    assert len(limited) >= 300 - (100 + 10 * int(elapsed + 1)), (len(limited), elapsed)
    assert limited, f"no 429 in {elapsed:.1f}s"
    _, headers, body = limited[0]
    assert headers["Retry-After"] == "1"
    assert json.loads(body)["error"]["code"] == "rate_limited"


async def test_harness_kills_restarts_and_adds_nodes_behind_nginx(cluster_factory, acme_key):
    # The harness itself, as fault tests use it: kill -9 a node, nginx routes around it; restart it.
    cluster = cluster_factory(rate_limits=False)
    cluster.kill_node(0)
    assert not cluster.nodes[0].alive()
    for _ in range(5):  # the refused connection is retried on the other node
        status, _ = cluster.rest("GET", "/api/v1/inbox/unread-count", credential="nope")
        assert status == 401
    client = await cluster.live_client(cluster.mint(acme_key, "alice"))
    assert cluster.node_for_connection(client.welcome["connection_id"]) == 1
    cluster.restart_node(0)
    assert cluster.nodes[0].alive()

    # A node added while running joins nginx's upstream (reload): least_conn sends new sockets to
    # the nodes with the fewest connections, the new one among them.
    cluster.add_node()
    newcomers: list[LiveClient] = []
    for index in range(4):
        newcomers.append(await cluster.live_client(cluster.mint(acme_key, f"bob-{index}")))
    ids = [live.welcome["connection_id"] for live in newcomers]
    wait_until(lambda: None not in [cluster.node_for_connection(i) for i in ids], 10, "connections logged")
    assert 2 in [cluster.node_for_connection(i) for i in ids]
    for live in (client, *newcomers):
        await live.close()


async def test_a_client_on_an_idle_node_still_receives_the_next_publish(cluster, acme_key):
    # RedisChannelLayer.receive() blocks in BZPOPMIN for 5 s. With redis-py's default 5 s socket
    # timeout each receive on a quiet node timed out, the hub took that for an outage and closed
    # every local socket (4013) on the next message. Redis connections now wait 15 s, and the hub
    # never counts a read timeout as an outage.
    client = await cluster.live_client(cluster.mint(acme_key, "alice"))
    await asyncio.sleep(7)  # longer than the 5 s BZPOPMIN: one receive() has timed out
    status, body = cluster.rest("POST", "/api/v1/events", {"kind": "k", "recipients": ["alice"]}, acme_key)
    assert status == 202
    (frame,) = await client.collect(1)
    assert frame["id"] == body["id"]
    await client.close()
