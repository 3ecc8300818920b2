"""`manage.py herald_loadtest`: option checks, the measurement helpers, and small real runs against a
Herald process started by the test (tests/integration/conftest.py), which must lose nothing."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.services import api_key_create, tenant_create
from notifications.loadtest.options import OptionsError, options_from
from notifications.loadtest.stats import LatencyRecorder, SeenSet
from notifications.models import Event
from notifications.services import topic_create
from tests.integration import conftest as integration

herald_processes = integration.herald_processes

KEY = "hk_0123456789_abcdefghijklmnopqrstuvwxyz"


def test_options_accept_a_rate_run_and_derive_the_websocket_url():
    options = options_from({"url": "https://herald.example.com/", "api_key": KEY, "clients": 5, "rate": 20.0})
    assert options.ws_url == "wss://herald.example.com/ws/v1/"
    assert options.port == 443 and options.path_prefix == ""
    assert options.planned_messages == 200  # 20/s for the default 10 s
    prefixed = options_from({"url": "http://127.0.0.1:8000/herald", "api_key": KEY, "max": True})
    assert prefixed.ws_url == "ws://127.0.0.1:8000/herald/ws/v1/"
    assert prefixed.rate is None and prefixed.planned_messages == 100_000
    assert not prefixed.plain_http_off_loopback
    assert options_from({"url": "http://herald.example.com", "api_key": KEY, "max": True}).plain_http_off_loopback


def test_options_take_the_api_key_from_the_environment():
    options = options_from({"url": "http://127.0.0.1:1", "max": True}, environ={"HERALD_LOADTEST_API_KEY": KEY})
    assert options.api_key == KEY


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"url": "ftp://x", "api_key": KEY, "max": True}, "--url"),
        ({"url": "https://user:pw@x", "api_key": KEY, "max": True}, "credentials"),
        ({"url": "https://x", "api_key": "secret", "max": True}, "--api-key"),
        ({"url": "https://x", "api_key": KEY}, "--rate R or --max"),
        ({"url": "https://x", "api_key": KEY, "rate": 0.0}, "--rate"),
        ({"url": "https://x", "api_key": KEY, "max": True, "clients": 0}, "--clients"),
        ({"url": "https://x", "api_key": KEY, "max": True, "duration": 7200.0}, "--duration"),
        ({"url": "https://x", "api_key": KEY, "max": True, "user_prefix": "a b"}, "--user-prefix"),
        ({"url": "https://x", "api_key": KEY, "max": True, "ca_file": "/nonexistent.pem"}, "--ca"),
    ],
)
def test_options_refuse_what_cannot_be_run(values, message):
    with pytest.raises(OptionsError, match=message.replace("-", r"\-")):
        options_from(values, environ={})


def test_command_refuses_bad_options_without_touching_the_network():
    with pytest.raises(CommandError, match="--rate"):
        call_command("herald_loadtest", "--url", "http://127.0.0.1:9", "--api-key", KEY, "--rate", "-1")


def test_seen_set_counts_first_deliveries_duplicates_and_accepted_ones():
    seen, accepted = SeenSet(), SeenSet()
    assert [seen.add(seq) for seq in (0, 5, 5, 1000, 3)] == [True, True, False, True, True]
    assert (seen.unique, seen.duplicates, seen.highest) == (4, 1, 1000)
    for seq in (0, 3, 7, 1000):
        accepted.add(seq)
    assert seen.count_in(accepted) == 3  # 0, 3 and 1000; 7 never arrived, 5 was not accepted


def test_latency_recorder_percentiles_and_reservoir():
    recorder = LatencyRecorder(capacity=100)
    for value in range(1, 1001):  # 1..1000 ms
        recorder.add(value / 1000)
    result = recorder.percentiles_ms()
    assert result is not None
    assert result["count"] == 1000 and result["sampled"] is True and result["max"] == 1000.0
    assert 300 < result["p50"] < 700  # a uniform sample of 100 out of 1000
    assert LatencyRecorder().percentiles_ms() is None


@pytest.fixture
def loadtest_tenant(transactional_db) -> str:
    tenant = tenant_create(slug="loadtest", name="Load test")
    topic_create(tenant=tenant, key="bench", allow_client_subscribe=True)
    return api_key_create(tenant=tenant, name="loadtest", scopes=["publish", "read", "admin"])[1]


def run_loadtest(*args: str) -> tuple[dict, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("herald_loadtest", *args, "--json", stdout=out, stderr=err)
    except CommandError as error:
        raise AssertionError(f"{error}\n{out.getvalue()}") from error
    return json.loads(out.getvalue()), err.getvalue()


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_rate_run_against_a_real_server_loses_nothing(herald_processes, loadtest_tenant, capsys):
    server = herald_processes("loadtest")
    report, _ = run_loadtest(
        "--url", server.url, "--api-key", loadtest_tenant, "--clients", "20", "--rate", "25", "--duration", "2",
        "--drain", "15", "--progress-interval", "0.5",
    )  # fmt: skip
    assert report["ok"] is True, report
    assert report["clients_connected"] == 20 and report["connect_errors"] == {}
    assert report["tokens_minted"] == 20 and report["connects_per_s"] > 0
    assert report["published"] == 50 and report["accepted"] == 50 and report["publish_errors"] == {}
    assert report["expected"] == 20 * 50 == report["delivered"]
    assert report["lost"] == 0 and report["duplicates"] == 0 and report["unexpected"] == 0
    assert report["drain_end"] == "complete"
    latency = report["latency_ms"]
    assert latency["count"] == 1000 and 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert latency["max"] < 15_000
    assert report["deliveries_per_s"] > 0 and report["publish_max_lag_ms"] is not None
    # Progress lines went to stderr while it ran.
    assert "publishing: published" in capsys.readouterr().err
    # What the server stored: 50 events on the topic, each delivered.
    assert Event.objects.filter(kind="loadtest").count() == 50


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_max_run_with_topic_creation_and_human_readable_summary(herald_processes, loadtest_tenant):
    server = herald_processes("loadtest")
    out = io.StringIO()
    call_command(
        "herald_loadtest", "--url", server.url, "--api-key", loadtest_tenant, "--clients", "10", "--max",
        "--duration", "1.5", "--max-messages", "30", "--topic", "fresh.topic", "--create-topic",
        stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    text = out.getvalue()
    assert "result       OK" in text and "lost 0, duplicates 0" in text
    assert "fresh.topic" in text


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_refused_api_key_is_reported_not_hung_on(herald_processes, loadtest_tenant):
    server = herald_processes("loadtest")
    with pytest.raises(CommandError, match="refused the API key"):
        call_command(
            "herald_loadtest", "--url", server.url, "--api-key", KEY, "--clients", "3", "--rate", "5",
            "--duration", "1", stdout=io.StringIO(), stderr=io.StringIO(),
        )  # fmt: skip
