"""Which WebSocket handshakes may use the Django session (cross-site WebSocket hijacking)."""

import pytest

from accounts.middleware import origin_allows_session


def headers(origin: str | None) -> list[tuple[bytes, bytes]]:
    return [] if origin is None else [(b"origin", origin.encode())]


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        ("http://localhost:8000", True),
        ("https://127.0.0.1", True),
        ("https://evil.example", False),
        ("https://localhost.evil.example", False),
        ("null", False),
        ("file://", False),
        ("javascript:alert(1)", False),
        (None, True),
    ],
)
def test_session_only_from_herald_own_origins(settings, origin, allowed):
    settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    assert origin_allows_session(headers(origin)) is allowed


def test_wildcard_allowed_hosts_does_not_allow_any_origin(settings):
    settings.ALLOWED_HOSTS = ["*"]
    assert origin_allows_session(headers("https://evil.example")) is False


def test_explicitly_allowed_origins(settings):
    settings.ALLOWED_HOSTS = ["herald.example.com"]
    settings.HERALD = {**settings.HERALD, "ALLOWED_ORIGINS": ["https://app.tenant.example"]}
    assert origin_allows_session(headers("https://app.tenant.example")) is True
    assert origin_allows_session(headers("https://herald.example.com")) is True
    assert origin_allows_session(headers("https://other.tenant.example")) is False


def test_non_ascii_origin_is_refused():
    assert origin_allows_session([(b"origin", "https://\u00e9vil.example".encode())]) is False


@pytest.mark.parametrize(
    ("extra_headers", "gets_session"),
    [
        ([], False),  # a token client: no cookie, no session objects
        ([(b"cookie", b"theme=dark")], False),
        ([(b"cookie", b"theme=dark; sessionid=abc")], True),
        ([(b"cookie", b"sessionid=abc"), (b"origin", b"https://evil.example")], False),  # hijacking attempt
        ([(b"cookie", b"sessionid=abc"), (b"origin", b"http://localhost")], True),
    ],
)
def test_the_session_middleware_runs_only_for_a_usable_session_cookie(settings, extra_headers, gets_session):
    import asyncio

    from accounts.middleware import SessionOriginMiddleware

    settings.ALLOWED_HOSTS = ["localhost"]
    seen: list[dict] = []

    async def inner(scope, receive, send):
        seen.append(scope)

    async def send(message):
        pass

    scope = {"type": "websocket", "path": "/ws/v1/", "headers": [(b"host", b"localhost"), *extra_headers]}
    asyncio.run(SessionOriginMiddleware(inner)(scope, None, send))
    assert ("session" in seen[0]) is gets_session
    if gets_session:
        assert seen[0]["herald_server_send"] is send and seen[0]["herald_session_allowed"] is True
    else:  # the server's scope itself: no copy held by every token-authenticated socket
        assert seen[0] is scope and "herald_session_allowed" not in scope
