"""Guards on the browser scripts (herald.js, the notification center's center.js and the operations
page's ops.js): text from the server is never parsed as HTML, the link rule is the server's, and
all are valid ES modules."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

STATIC = Path(__file__).resolve().parents[2] / "dashboard" / "static"
HERALD_JS = STATIC / "herald" / "herald.js"
CENTER_JS = STATIC / "dashboard" / "center.js"
OPS_JS = STATIC / "dashboard" / "ops.js"
SCRIPTS = [HERALD_JS, CENTER_JS, OPS_JS]


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
@pytest.mark.parametrize(
    "api", ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function(", "srcdoc"]
)
def test_scripts_use_no_html_parsing_api(script, api):
    assert api not in script.read_text()


def test_herald_js_link_rule_matches_the_servers():
    from dashboard import selectors

    js_rule = re.search(r"const SAFE_LINK = /(.+)/i;", HERALD_JS.read_text())
    assert js_rule, "SAFE_LINK's regular expression was not found"
    assert js_rule.group(1).replace("\\/", "/") == selectors._SAFE_LINK.pattern


def test_center_links_only_through_safe_link():
    text = CENTER_JS.read_text()
    assert 'link.setAttribute("href", href)' in text and "const href = safeLink(notification.url);" in text
    assert text.count('setAttribute("href"') == 1 and ".href = " not in text.replace("link.href = `/login/", "")


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_script_is_a_valid_module(script):
    result = subprocess.run(
        ["node", "--input-type=module", "--check"],
        input=script.read_text(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
