"""`manage.py herald_loadtest`: option checks, the measurement helpers, and small real runs against a
Herald process started by the test (tests/integration/conftest.py), which must lose nothing."""

from __future__ import annotations

import io
import json
import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.services import api_key_create, tenant_create
from notifications.loadtest.churn import ChurnPicker, ChurnSchedule
from notifications.loadtest.options import OptionsError, options_from
from notifications.loadtest.runner import Client, LoadTest
from notifications.loadtest.server_memory import MetricsReader, Sample, memory_summary, prometheus_value
from notifications.loadtest.stats import LatencyRecorder, Report, SeenSet
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
        ({"url": "https://x", "api_key": KEY, "max": True, "churn": -1.0}, "--churn"),
        ({"url": "https://x", "api_key": KEY, "max": True, "churn": 5000.0}, "--churn"),
        ({"url": "https://x", "api_key": KEY, "max": True, "churn_gap": 120.0}, "--churn-gap"),
        ({"url": "https://x", "api_key": KEY, "max": True, "metrics_url": "ftp://x/metrics"}, "--metrics-url"),
        ({"url": "https://x", "api_key": KEY, "max": True, "metrics_url": "https://u:pw@x/metrics"}, "credentials"),
    ],
)
def test_options_refuse_what_cannot_be_run(values, message):
    with pytest.raises(OptionsError, match=message.replace("-", r"\-")):
        options_from(values, environ={})


def test_options_churn_and_metrics_defaults_and_the_metrics_token_from_the_environment():
    options = options_from({"url": "https://herald.example.com/", "api_key": KEY, "rate": 5.0}, environ={})
    assert (options.churn, options.churn_gap) == (0.0, 0.5)
    assert options.metrics_url == "https://herald.example.com/metrics" and options.metrics_token == ""
    values = {"url": "http://10.0.0.5:8000", "api_key": KEY, "rate": 5.0, "churn": 10.0, "churn_gap": 2.0}
    churning = options_from(
        {**values, "metrics_url": "http://10.0.0.7:8000/metrics"},
        environ={"HERALD_LOADTEST_METRICS_TOKEN": "m-secret", "HERALD_METRICS_TOKEN": "other"},
    )
    assert (churning.churn, churning.churn_gap) == (10.0, 2.0)
    assert churning.metrics_url == "http://10.0.0.7:8000/metrics" and churning.metrics_token == "m-secret"
    assert churning.metrics_token_in_clear  # plain http off this machine: the command warns
    assert "m-secret" not in repr(churning) and KEY not in repr(churning)
    # On the server's own host its HERALD_METRICS_TOKEN is used; --no-metrics reads nothing.
    assert options_from(values, environ={"HERALD_METRICS_TOKEN": "server"}).metrics_token == "server"
    assert options_from({**values, "no_metrics": True}, environ={}).metrics_url is None


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


def test_seen_set_answers_membership():
    seen = SeenSet()
    seen.add(9)
    assert 9 in seen and 8 not in seen and 10_000 not in seen


def test_prometheus_value_reads_one_metric_from_the_text_format():
    text = (
        "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
        "# TYPE process_resident_memory_bytes gauge\n"
        "process_resident_memory_bytes_max 9.0\n"
        "process_resident_memory_bytes 1.2345e+08\n"
        'herald_connections{tenant="acme"} 20.0 1700000000000\n'
    )
    assert prometheus_value(text, "process_resident_memory_bytes") == 123_450_000.0
    assert prometheus_value(text, "herald_connections") == 20.0  # labels and a timestamp
    assert prometheus_value(text, "process_open_fds") is None
    assert prometheus_value("process_open_fds NaN\n", "process_open_fds") is None
    assert prometheus_value("process_open_fds many\n", "process_open_fds") is None


def test_memory_summary_reports_start_end_max_and_the_change():
    samples = [Sample(1.0, 100e6), Sample(11.0, 130e6), Sample(21.0, 110e6)]
    summary = memory_summary(samples)
    assert summary is not None
    assert (summary["start_mb"], summary["end_mb"], summary["max_mb"]) == (100.0, 110.0, 130.0)
    assert (summary["change_mb"], summary["change_pct"]) == (10.0, 10.0)
    assert summary["samples"] == [[1.0, 100.0], [11.0, 130.0], [21.0, 110.0]]
    assert memory_summary([]) is None


def test_churn_schedule_spreads_closes_evenly_and_caps_a_late_burst():
    schedule = ChurnSchedule(5.0)  # one close every 0.2 s
    assert [schedule.due(elapsed) for elapsed in (0.1, 0.2, 0.5, 1.0)] == [0, 1, 1, 3]
    assert schedule.wait(1.0) == pytest.approx(0.2)
    # The loop woke 9 s late: one second's worth now, the other 40 are dropped, not made up for.
    assert schedule.due(10.0) == 5 and schedule.dropped == 40
    slow = ChurnSchedule(0.5)  # one close every 2 s
    assert (slow.due(1.9), slow.due(2.0), slow.due(3.9)) == (0, 1, 0)
    assert slow.wait(3.99) == 0.05  # never a busy loop
    with pytest.raises(ValueError):
        ChurnSchedule(0)


def test_churn_picker_takes_every_client_once_a_round_and_skips_those_away():
    picker = ChurnPicker(5, random.Random(3))
    assert {picker.pick(lambda index: True) for _ in range(5)} == {0, 1, 2, 3, 4}  # 5 picks, 5 clients
    assert picker.pick(lambda index: index == 3) == 3
    assert picker.pick(lambda index: False) is None


def test_churn_accounting_tells_duplicates_from_re_sends_by_a_later_connection():
    options = options_from({"url": "http://127.0.0.1:9", "api_key": KEY, "rate": 10.0, "churn": 1.0}, environ={})
    test = LoadTest(options, progress=lambda line: None)
    client = Client(index=0, ws=None, cursor=5)  # type: ignore[arg-type]  # no socket needed to account

    def receive(seq: int, cursor: int, *, replay: bool = False, run: str = test.run_id) -> None:
        data = {"run": run, "seq": seq, "sent": time.monotonic()}
        test._account(
            client, {"type": "notification", "cursor": str(cursor), "data": data}, time.monotonic(), replay=replay
        )

    receive(0, 10)
    receive(0, 10)  # the same connection again: a duplicate
    assert (client.seen.unique, client.seen.duplicates, test.delivered) == (1, 1, 1)
    client.connection_seen = SeenSet()  # churned: a new connection, resumed from cursor 10
    receive(0, 10, replay=True)  # what the earlier connection had: replayed again, not a duplicate
    receive(1, 12, replay=True)  # missed while away: a replayed first delivery
    receive(1, 12)  # the same connection again: a duplicate
    receive(7, 15, run="another-run")  # not this run's: foreign, but its cursor counts
    assert (test.replayed_again, test.replayed, test.delivered, client.seen.duplicates) == (1, 1, 2, 2)
    assert test.foreign == 1 and client.cursor == 15
    # Live and replayed latencies are kept apart.
    assert (test.latency.count, test.replay_latency.count) == (1, 1)


@pytest.fixture
def metrics_server() -> Iterator[str]:
    """A stand-in /metrics on a free loopback port: 200 with the bearer token, 403 without, a redirect at
    /moved."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/moved":
                self.send_response(302)
                self.send_header("Location", "http://127.0.0.1:9/metrics")
                self.end_headers()
                return
            ok = self.headers.get("Authorization") == "Bearer m-secret"
            body = b"process_resident_memory_bytes 4.2e+07\n" if ok else b'{"error": {"code": "forbidden"}}'
            self.send_response(200 if ok else 403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_metrics_reader_sends_the_token_and_reports_what_it_could_not_read(metrics_server):
    assert MetricsReader(f"{metrics_server}/metrics", token="m-secret").read_rss() == (42e6, "")
    rss, problem = MetricsReader(f"{metrics_server}/metrics").read_rss()
    assert rss is None and problem.startswith("HTTP 403") and "HERALD_LOADTEST_METRICS_TOKEN" in problem
    rss, problem = MetricsReader(f"{metrics_server}/metrics", token="wrong-one").read_rss()
    assert rss is None and "refused" in problem and "wrong-one" not in problem
    # A redirect is not followed (it would carry the token elsewhere).
    assert MetricsReader(f"{metrics_server}/moved", token="m-secret").read_rss() == (None, "HTTP 302")
    rss, problem = MetricsReader("http://127.0.0.1:9/metrics").read_rss()  # nothing listens there
    assert rss is None and problem


def test_report_lines_show_churn_replays_and_server_memory():
    report = Report(url="http://h", topic="bench", run="r", mode="rate 10/s", clients_requested=2, churn=5.0)
    report.churn_gap, report.reconnects, report.replayed, report.replayed_again = 0.5, 7, 30, 1
    report.reconnect_errors = {"timeout": 1}
    report.metrics_url = "http://h/metrics"
    report.server_memory = memory_summary([Sample(1.0, 100e6), Sample(11.0, 101e6)])
    text = "\n".join(report.lines())
    assert "7 reconnects (failed attempts: timeout: 1" in text
    assert "replayed 30 deliveries, again 1" in text
    assert "server RSS   start 100.0 MB, end 101.0 MB, max 101.0 MB: +1.0 MB (+1.0 %)" in text
    report.server_memory, report.server_memory_error = None, "HTTP 403"
    assert "server RSS   not read from http://h/metrics: HTTP 403" in "\n".join(report.lines())


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
    # /metrics answers loopback when the server has no metrics token: the RSS is reported.
    assert report["server_memory"]["start_mb"] > 0 and report["server_memory_error"] == ""
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
        "--metrics-url", "http://127.0.0.1:9/metrics", stdout=out, stderr=io.StringIO(),
    )  # fmt: skip
    text = out.getvalue()
    assert "result       OK" in text and "lost 0, duplicates 0" in text
    assert "fresh.topic" in text
    # A /metrics that cannot be read is said, and the run goes on.
    assert "server RSS   not read from http://127.0.0.1:9/metrics" in text


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_churn_run_resumes_every_churned_client_with_nothing_lost(
    herald_processes, loadtest_tenant, monkeypatch, capsys
):
    # The server protects /metrics with a token; the load test presents it from the environment.
    server = herald_processes("loadtest", HERALD_METRICS_TOKEN="metrics-token-for-the-test")
    monkeypatch.setenv("HERALD_LOADTEST_METRICS_TOKEN", "metrics-token-for-the-test")
    report, _ = run_loadtest(
        "--url", server.url, "--api-key", loadtest_tenant, "--clients", "20", "--rate", "10", "--duration", "4",
        "--churn", "5", "--churn-gap", "0.5", "--drain", "15", "--progress-interval", "0.5",
    )  # fmt: skip
    assert report["ok"] is True, report
    assert report["accepted"] == 40 and report["clients_connected"] == 20
    # Every client, churned or not, saw every accepted publish, exactly once per connection.
    assert report["expected"] == 20 * 40 == report["delivered"]
    assert report["lost"] == 0 and report["clients_incomplete"] == 0
    assert report["duplicates"] == 0 and report["unexpected"] == 0
    assert report["drain_end"] == "complete"
    # Clients really left and came back, and what was published while they were away was replayed.
    assert report["reconnects"] > 0 and report["reconnect_errors"] == {} and report["clients_gone"] == 0
    assert report["disconnects"] == {} and report["replay_incomplete"] == {}
    assert report["replayed"] > 0 and report["replay_latency_ms"]["count"] == report["replayed"]
    # Replayed deliveries are kept out of the live latency figures.
    assert report["latency_ms"]["count"] + report["replayed"] == report["delivered"]
    # The server's RSS: start (after connecting), end, max.
    memory = report["server_memory"]
    assert report["server_memory_error"] == "" and len(memory["samples"]) >= 2
    assert memory["start_mb"] > 0 and memory["end_mb"] > 0 and memory["max_mb"] >= memory["start_mb"]
    progress = capsys.readouterr().err  # progress lines go to stderr while it runs
    assert "reconnects" in progress and "server RSS" in progress
    assert "metrics-token-for-the-test" not in progress + json.dumps(report)


@pytest.mark.integration
@pytest.mark.timeout(60)
def test_a_refused_api_key_is_reported_not_hung_on(herald_processes, loadtest_tenant):
    server = herald_processes("loadtest")
    with pytest.raises(CommandError, match="refused the API key"):
        call_command(
            "herald_loadtest", "--url", server.url, "--api-key", KEY, "--clients", "3", "--rate", "5",
            "--duration", "1", stdout=io.StringIO(), stderr=io.StringIO(),
        )  # fmt: skip
