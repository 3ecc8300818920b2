"""Errors under /api/ are JSON whatever raised them."""

import pytest

pytestmark = pytest.mark.django_db


def test_unknown_api_path_is_json_404(api):
    response = api.get("/api/v1/no-such-thing")
    assert response.status_code == 404
    assert response.json() == {"error": {"code": "not_found", "message": "No such endpoint."}}


def test_unsupported_method_is_json_405_not_a_scope_error(api):
    response = api.put("/api/v1/events", {}, format="json")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_unsupported_media_type_is_json_415(api):
    response = api.generic("POST", "/api/v1/events", "kind=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_body_over_the_request_limit_is_413(api, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"kind":"k","recipients":["a"],"data":{"x":"' + "y" * 2000 + '"}}'
    response = api.generic("POST", "/api/v1/events", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_large"


def test_health_endpoints(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "channel_layer": "ok"}


def test_health_probes_answer_whatever_the_host_header(client):
    assert client.get("/healthz", HTTP_HOST="10.0.0.7:8000").json() == {"status": "ok"}
    assert client.get("/readyz", HTTP_HOST="10.0.0.7:8000").status_code == 200
    assert client.get("/api/v1/topics", HTTP_HOST="10.0.0.7:8000").status_code == 400
