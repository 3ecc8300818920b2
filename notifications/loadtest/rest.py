"""The load test's REST calls, with the standard library only: one keep-alive `http.client` connection
per thread (a TLS handshake per publish would measure the handshake, not Herald)."""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from notifications.loadtest.options import Options

# Statuses worth a retry of the same request once: the connection was reused after the server had
# closed it (keep-alive race), which http.client reports as an exception, not a status.
_RETRYABLE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.CannotSendRequest)


@dataclass(frozen=True)
class Answer:
    status: int  # 0 = no HTTP answer (network error or timeout); see `error`
    body: Any
    seconds: float
    error: str = ""


class RestClient:
    """Thread-safe: each thread has its own connection to the target."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self._context = options.ssl_context()
        self._local = threading.local()
        self._all: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            timeout = self.options.request_timeout
            if self.options.is_https:
                connection = http.client.HTTPSConnection(
                    self.options.host, self.options.port, timeout=timeout, context=self._context
                )
            else:
                connection = http.client.HTTPConnection(self.options.host, self.options.port, timeout=timeout)
            self._local.connection = connection
            with self._lock:
                self._all.append(connection)
        return connection

    def request(self, method: str, path: str, body: bytes | None = None) -> Answer:
        headers = {"Authorization": f"Bearer {self.options.api_key}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        url = self.options.path_prefix + path
        started = time.monotonic()
        for attempt in range(2):
            connection = self._connection()
            try:
                connection.request(method, url, body=body, headers=headers)
                response = connection.getresponse()
                raw = response.read()
            except _RETRYABLE as error:
                connection.close()
                if attempt == 0:
                    continue
                return Answer(0, None, time.monotonic() - started, f"{type(error).__name__}: {error}")
            except (OSError, http.client.HTTPException) as error:
                connection.close()
                return Answer(0, None, time.monotonic() - started, f"{type(error).__name__}: {error}")
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = raw[:200].decode(errors="replace")
            return Answer(response.status, parsed, time.monotonic() - started)
        raise AssertionError("unreachable")  # pragma: no cover

    # --- the calls the load test makes ---------------------------------------------------------------

    def topic_status(self, key: str) -> Answer:
        return self.request("GET", f"/api/v1/topics/{key}")

    def topic_create(self, key: str) -> Answer:
        body = {"key": key, "name": "Load test", "allow_client_subscribe": False}
        return self.request("POST", "/api/v1/topics", json.dumps(body).encode())

    def token_mint(self, user_id: str, topic: str) -> Answer:
        # The token names the topic, so the client may listen to it even if it is closed to clients.
        body = {"user_id": user_id, "topics": [topic]}
        return self.request("POST", "/api/v1/tokens", json.dumps(body).encode())

    def publish(self, *, topic: str, run: str, seq: int, filler: str) -> Answer:
        # `sent` is taken here, in the thread, just before the request: latency is publish -> deliver.
        data = {"run": run, "seq": seq, "sent": time.monotonic(), "body": filler}
        body = json.dumps({"kind": "loadtest", "topics": [topic], "data": data}).encode()
        return self.request("POST", "/api/v1/events", body)

    def close(self) -> None:
        with self._lock:
            connections, self._all = self._all, []
        for connection in connections:
            connection.close()
