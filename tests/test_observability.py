"""Metrics, request logs and what never appears in logs."""

from __future__ import annotations

import json
import logging

import pytest

from config.logging import JsonFormatter

pytestmark = pytest.mark.django_db


def test_metrics_need_the_token_when_one_is_set(client, settings):
    settings.HERALD = {**settings.HERALD, "METRICS_TOKEN": "s3cret-scrape"}
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 403
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-scrape")
    assert response.status_code == 200
    body = response.content.decode()
    for name in (
        "herald_connections",
        "herald_frames_out_total",
        "herald_events_published_total",
        "herald_publish_to_deliver_seconds_bucket",
        "herald_fanout_queue_depth",
        "process_resident_memory_bytes",
    ):
        assert name in body


def test_metrics_without_a_token_only_from_loopback_or_a_superuser(client, django_user_model):
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200
    admin = django_user_model.objects.create_superuser("root", password="pw-123456")
    client.force_login(admin)
    assert client.get("/metrics", REMOTE_ADDR="10.1.2.3").status_code == 200


def test_publishes_and_errors_are_counted(api, tenant, client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        api.post("/api/v1/events", {"kind": "k", "recipients": ["a"]}, format="json")
    api.post("/api/v1/events", {"kind": "bad kind"}, format="json")
    body = client.get("/metrics", REMOTE_ADDR="127.0.0.1").content.decode()
    assert 'herald_events_published_total{tenant="acme"}' in body
    assert 'herald_errors_total{code="invalid",transport="rest"}' in body


def test_each_request_logs_one_json_line_with_id_tenant_and_no_credentials(api, caplog, make_key, tenant):
    caplog.set_level(logging.INFO, logger="herald.request")
    response = api.post(
        "/api/v1/events?secret=hunter2", {"kind": "k", "recipients": ["a"]}, format="json", HTTP_X_REQUEST_ID="req-42"
    )
    assert response.headers["X-Request-ID"] == "req-42"
    records = [r for r in caplog.records if r.name == "herald.request"]
    assert len(records) == 1
    line = json.loads(JsonFormatter().format(records[0]))
    assert line["status"] == 202 and line["tenant"] == "acme" and line["path"] == "/api/v1/events"
    assert "hunter2" not in json.dumps(line)


def test_failed_authentication_never_logs_the_credential(client_for, caplog, tenant, make_key):
    caplog.set_level(logging.DEBUG)
    secret = make_key(tenant)
    forged = secret[:-6] + "AAAAAA"
    client_for(forged).get("/api/v1/topics")
    client_for("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl").get("/api/v1/inbox")
    text = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert forged not in text and secret.split("_", 2)[2] not in text
    assert "c2lnbmF0dXJl" not in text
