"""The OpenAPI schema covers every REST route with the right methods, the committed copy in
docs/openapi.yaml is what the code generates today, the endpoint table in docs/api.md matches it,
and the live schema and Swagger UI are served without any third-party CDN."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client
from django.urls import URLResolver, get_resolver
from drf_spectacular.drainage import reset_generator_stats
from drf_spectacular.generators import SchemaGenerator
from rest_framework.views import APIView

DOCS = Path(__file__).resolve().parents[2] / "docs"
REGENERATE = (
    "DATABASE_URL=sqlite://:memory: DJANGO_SETTINGS_MODULE=config.settings_test "
    "python manage.py spectacular --file docs/openapi.yaml --validate --fail-on-warn"
)
API_PREFIX = "/api/v1/"
HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def _openapi_path(route: str) -> str:
    """Django route "events/<int:event_id>" -> OpenAPI path "/api/v1/events/{event_id}"."""
    return API_PREFIX + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)


def _methods(view_class: type[APIView]) -> set[str]:
    return {method for method in HTTP_METHODS if hasattr(view_class, method)}


def _routes_in_code() -> set[tuple[str, str]]:
    """(path, method) for every route under /api/v1/ in the project's URLconf."""
    routes: set[tuple[str, str]] = set()

    def walk(patterns: list[Any], prefix: str) -> None:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
                continue
            route = prefix + str(pattern.pattern)
            if route.startswith(API_PREFIX.lstrip("/")):
                view_class = pattern.callback.view_class
                routes.update((_openapi_path(route.removeprefix("api/v1/")), m) for m in _methods(view_class))

    walk(get_resolver().url_patterns, "")
    return routes


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return SchemaGenerator().get_schema(request=None, public=True)


def _routes_in_schema(schema: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in schema["paths"].items() for method in item if method in HTTP_METHODS}


def test_route_list_covers_the_whole_rest_api() -> None:
    routes = _routes_in_code()
    assert ("/api/v1/tokens", "post") in routes
    assert ("/api/v1/events", "post") in routes
    assert ("/api/v1/inbox/read-all", "post") in routes
    assert ("/api/v1/topics/{key}", "delete") in routes


def test_schema_has_every_route_with_its_methods_and_nothing_else(schema: dict[str, Any]) -> None:
    in_code, in_schema = _routes_in_code(), _routes_in_schema(schema)
    assert in_schema == in_code, (
        f"missing from the schema: {sorted(in_code - in_schema)}; not in the code: {sorted(in_schema - in_code)}"
    )


def test_every_operation_requires_the_bearer_credential_and_documents_its_errors(schema: dict[str, Any]) -> None:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert operation["security"] == [{"bearer": []}], (path, method)
            assert {"400", "401", "403", "429", "503"} <= set(operation["responses"]), (path, method)
            assert operation.get("operationId"), (path, method)


def test_committed_openapi_yaml_is_what_the_code_generates(tmp_path: Path) -> None:
    fresh = tmp_path / "openapi.yaml"
    reset_generator_stats()
    # --fail-on-warn and --validate: a warning or an invalid schema fails here, as in the command.
    call_command("spectacular", "--file", str(fresh), "--validate", "--fail-on-warn")
    committed = DOCS / "openapi.yaml"
    assert committed.exists(), f"docs/openapi.yaml is missing; generate it with: {REGENERATE}"
    assert committed.read_bytes() == fresh.read_bytes(), f"docs/openapi.yaml is stale; regenerate it with: {REGENERATE}"


def test_api_md_endpoint_table_lists_exactly_the_routes(schema: dict[str, Any]) -> None:
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(GET|POST|PUT|PATCH|DELETE)` \| `(/api/v1/[^`]*)` \|", text, re.MULTILINE)
    documented = [(path, method.lower()) for method, path in rows]
    assert len(documented) == len(set(documented)), "docs/api.md lists an endpoint twice"
    in_schema = _routes_in_schema(schema)
    assert set(documented) == in_schema, (
        f"undocumented in docs/api.md: {sorted(in_schema - set(documented))}; "
        f"documented but not served: {sorted(set(documented) - in_schema)}"
    )


def test_live_schema_is_served_without_credentials() -> None:
    response = Client().get("/api/schema/")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/vnd.oai.openapi")
    assert b"/api/v1/events" in response.content


class _AssetCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def test_swagger_ui_is_served_with_local_assets_only() -> None:
    response = Client().get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    collector = _AssetCollector()
    collector.feed(html)
    assert collector.urls, "the Swagger UI page loads no assets?"
    for url in collector.urls:
        assert url.startswith("/static/drf_spectacular_sidecar/"), f"asset not served by Herald: {url}"
        assert finders.find(url.removeprefix("/static/")), f"static asset missing: {url}"
    # No CDN anywhere in the page, including URLs built in its inline script.
    for cdn in ("cdn.", "jsdelivr", "unpkg", "cdnjs", "googleapis"):
        assert cdn not in html, f"the Swagger UI page refers to a CDN ({cdn})"
    assert not re.search(r"https?://", html), "the Swagger UI page refers to an absolute URL"
