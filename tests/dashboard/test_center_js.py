"""Guards on the live page's script: notification text must never be parsed as HTML."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

LIVE_JS = Path(__file__).resolve().parents[2] / "dashboard" / "static" / "dashboard" / "live.js"


@pytest.mark.parametrize(
    "api", ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("]
)
def test_live_js_uses_no_html_parsing_api(api):
    assert api not in LIVE_JS.read_text()


def test_live_js_link_rule_matches_the_servers():
    from dashboard import selectors

    text = LIVE_JS.read_text()
    js_rule = re.search(r"return /(.+)/i\.test\(url\);", text)
    assert js_rule, "isSafeLink's regular expression was not found"
    assert js_rule.group(1).replace("\\/", "/") == selectors._SAFE_LINK.pattern


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_live_js_is_a_valid_module():
    result = subprocess.run(
        ["node", "--input-type=module", "--check"],
        input=LIVE_JS.read_text(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
