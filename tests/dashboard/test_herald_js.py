"""herald.js's behaviour against a scripted server: runs tests/dashboard/herald_js.test.mjs with
Node's own test runner (no npm packages), and fails with its report if any case fails."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (herald.js behaviour tests need it)")
def test_herald_js_behaviour_cases_pass_under_node():
    result = subprocess.run(
        ["node", "--test", "--test-reporter=spec", str(HERE / "herald_js.test.mjs")],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=HERE.parents[1],
    )
    assert result.returncode == 0, result.stdout[-15000:] + result.stderr[-5000:]
