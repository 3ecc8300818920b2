"""docs/operations.md keeps up with the code: every metric notifications/metrics.py defines, and
every field of the `stats` frame, is documented."""

from __future__ import annotations

import re
from pathlib import Path

from notifications import metrics

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "operations.md").read_text()
SOURCE = (ROOT / "notifications" / "metrics.py").read_text()
# Counter("herald_frames_in_total", ...), Gauge(\n    "herald_connections", ...), Histogram(...)
DEFINITION = re.compile(r"\b(Counter|Gauge|Histogram|Summary|Info|Enum)\(\s*\"([a-z_:][a-z0-9_:]*)\"")
TYPES = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram", "Summary": "summary"}


def defined_metrics() -> dict[str, str]:
    return {name: kind for kind, name in DEFINITION.findall(SOURCE)}


def registered_names() -> set[str]:
    """What /metrics actually exposes (metric families, as Prometheus names them)."""
    names = set()
    for family in metrics.REGISTRY.collect():
        names.add(family.name + ("_total" if family.type == "counter" else ""))
    return names


def documented_rows() -> dict[str, str]:
    """metric name -> type, from the table rows of docs/operations.md."""
    return dict(re.findall(r"^\| `([a-z_]+)` \| (counter|gauge|histogram|summary) \|", DOC, re.MULTILINE))


def test_the_parser_finds_every_herald_metric_the_registry_exposes():
    # So a metric defined in a shape the regular expression misses cannot slip past the next test.
    defined = defined_metrics()
    assert len(defined) >= 9
    assert {name for name in registered_names() if name.startswith("herald_")} == set(defined)


def test_every_metric_is_documented_with_its_type():
    documented = documented_rows()
    missing = sorted(set(defined_metrics()) - set(documented))
    assert not missing, f"not in docs/operations.md: {missing}"
    for name, kind in defined_metrics().items():
        assert documented[name] == TYPES[kind], name


def test_process_metrics_are_documented_too():
    documented = documented_rows()
    process = {name for name in registered_names() if name.startswith("process_")}
    assert process, "the ProcessCollector exposes nothing on this platform"
    assert not sorted(process - set(documented)), "process metrics missing from docs/operations.md"


def test_no_documented_metric_is_gone_from_the_code():
    assert set(documented_rows()) <= registered_names()


def test_every_field_of_the_stats_frame_is_documented():
    frame = metrics.stats_frame(node="n:1", tenant_id=1, seconds=1.0, second=metrics.TenantSecond(), connections=0)
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", DOC, re.MULTILINE))
    missing = sorted(set(frame) - {"type"} - documented)
    assert not missing, f"stats fields not in docs/operations.md: {missing}"
    assert set(frame["latency_ms"]) == {"p50", "p99"}
