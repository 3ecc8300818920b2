"""docs/protocol.md documents exactly the protocol defined in notifications/protocol.py: every
frame type, error code and close code (no more, no fewer), every field of the server frames, and
an example session whose frames the parser accepts."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from config.herald import DEFAULTS
from notifications import protocol
from notifications.exceptions import ProtocolError
from notifications.hub import HEARTBEAT_TIMEOUT_INTERVALS
from notifications.protocol import ClientFrameType, CloseCode, ErrorCode, ServerFrameType

PROTOCOL_DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

# The reference sections a test reads, by their "## " heading.
CLIENT_FRAMES = "Client frames"
SERVER_FRAMES = "Server frames"
ERROR_CODES = "Error codes"
CLOSE_CODES = "Close codes"
EXAMPLE_SESSION = "Example session"
LIMITS = "Limits"

_FRAME_HEADING = re.compile(r"^### `([a-z_]+)`$", re.MULTILINE)
_NAMED_ROW = re.compile(r"^\| `([a-z_]+)` \|", re.MULTILINE)
_NUMBER_ROW = re.compile(r"^\| (\d{4}) \|", re.MULTILINE)


def _sections(text: str) -> dict[str, str]:
    """Body of each "## " section by heading (fenced code blocks cannot hold a "## " line here)."""
    sections: dict[str, str] = {}
    for chunk in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        title, _, body = chunk.partition("\n")
        assert title.strip() not in sections, f"docs/protocol.md has two sections named {title!r}"
        sections[title.strip()] = body
    return sections


def _subsections(body: str) -> dict[str, str]:
    """Body of each "### `name`" subsection by name."""
    parts = _FRAME_HEADING.split(body)
    return {name: content for name, content in zip(parts[1::2], parts[2::2], strict=True)}


@pytest.fixture(scope="module")
def sections() -> dict[str, str]:
    return _sections(PROTOCOL_DOC.read_text(encoding="utf-8"))


def _unique(found: list[str], what: str) -> set[str]:
    duplicates = sorted({item for item in found if found.count(item) > 1})
    assert not duplicates, f"docs/protocol.md documents these {what} twice: {duplicates}"
    return set(found)


def _assert_same(documented: set[str], defined: set[str], what: str) -> None:
    missing, extra = sorted(defined - documented), sorted(documented - defined)
    assert not missing and not extra, (
        f"docs/protocol.md and notifications/protocol.py disagree about {what}: "
        f"undocumented {missing}, documented but not defined {extra}"
    )


def _values(enum: type[Enum]) -> set[str]:
    return {str(member.value) for member in enum}


def test_every_client_frame_type_is_documented_and_nothing_else(sections: dict[str, str]) -> None:
    documented = _unique(_FRAME_HEADING.findall(sections[CLIENT_FRAMES]), "client frame types")
    _assert_same(documented, _values(ClientFrameType), "client frame types")


def test_every_server_frame_type_is_documented_and_nothing_else(sections: dict[str, str]) -> None:
    documented = _unique(_FRAME_HEADING.findall(sections[SERVER_FRAMES]), "server frame types")
    _assert_same(documented, _values(ServerFrameType), "server frame types")


def test_every_error_code_is_documented_and_nothing_else(sections: dict[str, str]) -> None:
    documented = _unique(_NAMED_ROW.findall(sections[ERROR_CODES]), "error codes")
    _assert_same(documented, _values(ErrorCode), "error codes")


def test_every_close_code_is_documented_and_nothing_else(sections: dict[str, str]) -> None:
    documented = _unique(_NUMBER_ROW.findall(sections[CLOSE_CODES]), "close codes")
    _assert_same(documented, _values(CloseCode), "close codes")


def _documented_fields(sections: dict[str, str], frame_type: str) -> set[str]:
    body = _subsections(sections[SERVER_FRAMES])[frame_type]
    return _unique(_NAMED_ROW.findall(body), f"fields of `{frame_type}`")


_NOW = datetime(2026, 1, 1, tzinfo=UTC)

# Every server frame a builder in protocol.py makes, with every optional field present.
_BUILT_FRAMES: dict[str, dict[str, Any]] = {
    ServerFrameType.WELCOME: protocol.welcome_frame(
        connection_id="c", user_id="u", tenant="t", heartbeat=25.0, unread=0, cursor=1
    ),
    ServerFrameType.NOTIFICATION: protocol.notification_frame(
        event_id=1, seq=1, kind="k", topics=[], data={}, title="", body="", url="", created_at=_NOW, inbox=True
    ),
    ServerFrameType.RESUMED: protocol.resumed_frame(recovered=False, replayed=0, cursor=1, reason="too_many"),
    ServerFrameType.UNREAD: protocol.unread_frame(count=0),
    ServerFrameType.ERROR: protocol.error_frame(
        code=ErrorCode.INVALID, message="m", request_id=1, fields={"ids": ["bad"]}, retry_after=1
    ),
    ServerFrameType.PING: json.loads(protocol.PING_TEXT),
}


@pytest.mark.parametrize("frame_type", sorted(_BUILT_FRAMES))
def test_server_frame_fields_are_exactly_those_the_server_builds(sections: dict[str, str], frame_type: str) -> None:
    _assert_same(_documented_fields(sections, frame_type), set(_BUILT_FRAMES[frame_type]), f"`{frame_type}` fields")


def _example_lines(sections: dict[str, str]) -> list[tuple[str, str]]:
    block = re.search(r"```text\n(.*?)```", sections[EXAMPLE_SESSION], re.DOTALL)
    assert block, "the example session must be a ```text block"
    lines = [line for line in block.group(1).splitlines() if line.strip()]
    for line in lines:
        assert line[:2] in ("→ ", "← "), f"example line neither → nor ←: {line!r}"
    return [(line[0], line[2:]) for line in lines]


def _parser_error(text: str) -> ProtocolError | None:
    try:
        protocol.parse_client_frame(text)
    except ProtocolError as error:
        return error
    return None


def test_example_client_frames_parse_or_get_the_error_the_example_shows(sections: dict[str, str]) -> None:
    lines = _example_lines(sections)
    assert any(direction == "→" for direction, _ in lines)
    for index, (direction, text) in enumerate(lines):
        error = _parser_error(text) if direction == "→" else None
        if error is None:
            continue
        answers = [json.loads(answer) for way, answer in lines[index + 1 :] if way == "←"]
        shown = [frame for frame in answers if frame["type"] == "error" and frame["id"] == error.request_id]
        assert shown and shown[0]["code"] == error.code, (
            f"the parser refuses {text} with `{error.code}`, which the example does not show"
        )


def test_example_server_frames_use_only_documented_fields_and_show_every_type(sections: dict[str, str]) -> None:
    received = [json.loads(text) for direction, text in _example_lines(sections) if direction == "←"]
    for frame in received:
        fields = _documented_fields(sections, ServerFrameType(frame["type"]))
        assert set(frame) <= fields, f"example frame has undocumented fields: {frame}"
    _assert_same({frame["type"] for frame in received}, _values(ServerFrameType), "frame types in the example")


def test_python_example_is_valid_python(sections: dict[str, str]) -> None:
    snippets = re.findall(r"```python\n(.*?)```", sections["Client examples"], re.DOTALL)
    assert len(snippets) == 1
    compile(snippets[0], "docs/protocol.md", "exec")


@pytest.mark.parametrize(
    "value",
    [
        DEFAULTS["MAX_CLIENT_FRAME_BYTES"],
        DEFAULTS["MAX_SUBSCRIPTIONS_PER_CONNECTION"],
        DEFAULTS["REPLAY_MAX"],
        protocol.MAX_IDS_PER_FRAME,
        protocol.MAX_REQUEST_ID_LENGTH,
        protocol.MAX_TOKEN_LENGTH,
    ],
)
def test_limits_table_states_the_current_values(sections: dict[str, str], value: int) -> None:
    assert f"| {value:,}" in sections[LIMITS] or f" {value:,} " in sections[LIMITS], (
        f"the Limits section of docs/protocol.md does not mention {value:,}"
    )


def test_timeouts_match_the_defaults(sections: dict[str, str]) -> None:
    heartbeat, auth_timeout = DEFAULTS["HEARTBEAT_SECONDS"], DEFAULTS["AUTH_TIMEOUT_SECONDS"]
    assert f"default **{heartbeat:g} s**" in sections["Heartbeats"]
    assert f"default **{auth_timeout:g} s**" in sections["Connecting"]
    silence = HEARTBEAT_TIMEOUT_INTERVALS * heartbeat  # the silence that closes with 4008
    assert f"{silence:g} s" in sections["Heartbeats"]
