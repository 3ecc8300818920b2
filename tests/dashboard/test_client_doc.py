"""docs/client.md documents herald.js: every event it emits, every public method and option."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERALD_JS = (ROOT / "dashboard" / "static" / "herald" / "herald.js").read_text()
CLIENT_MD = (ROOT / "docs" / "client.md").read_text()


def test_every_event_herald_js_emits_is_documented():
    emitted = set(re.findall(r'_emit\("([a-z]+)"', HERALD_JS))
    assert emitted >= {"open", "notification", "unread", "status", "error", "close", "reload", "inboxchange"}
    documented = set(re.findall(r"^\| `([a-z]+)` \| `\{", CLIENT_MD, re.MULTILINE))
    assert emitted == documented


def test_every_public_method_is_documented():
    body = HERALD_JS.split("export class Herald extends EventTarget {", 1)[1]
    methods = set(re.findall(r"^  (?:async )?([a-z][A-Za-z]*)\(", body, re.MULTILINE)) - {"constructor"}
    assert {"connect", "close", "subscribe", "markRead", "inbox", "on"} <= methods
    for method in methods:
        assert f"`{method}(" in CLIENT_MD, method


def test_every_option_is_documented():
    defaults = HERALD_JS.split("const DEFAULTS = {", 1)[1].split("};", 1)[0]
    for option in re.findall(r"^  ([a-zA-Z]+):", defaults, re.MULTILINE):
        assert f"`{option}`" in CLIENT_MD, option
    for option in ("url", "getToken", "token", "apiUrl", "since", "topics", "autoConnect"):
        assert f"| `{option}` |" in CLIENT_MD, option
