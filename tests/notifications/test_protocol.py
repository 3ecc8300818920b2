"""parse_client_frame: what each client frame type accepts, and the ProtocolError (code, field,
request id) each kind of bad frame raises."""

from __future__ import annotations

import json
from typing import Any

import pytest

from notifications.exceptions import ProtocolError
from notifications.protocol import (
    MAX_IDS_PER_FRAME,
    MAX_REQUEST_ID_LENGTH,
    MAX_TOKEN_LENGTH,
    ClientFrame,
    ClientFrameType,
    ErrorCode,
    parse_client_frame,
)

INBOX_ACTIONS = ["mark_read", "mark_unread", "archive", "unarchive"]
SAFE_INTEGER = 2**53 - 1  # the largest integer a JavaScript number holds exactly


def parse(frame: Any) -> ClientFrame:
    return parse_client_frame(json.dumps(frame))


def refused(frame: Any) -> ProtocolError:
    text = frame if isinstance(frame, str) else json.dumps(frame)
    with pytest.raises(ProtocolError) as caught:
        parse_client_frame(text)
    return caught.value


# --- Valid frames ----------------------------------------------------------------------------------


def test_auth_needs_nothing_but_its_type_for_session_authentication() -> None:
    assert parse({"type": "auth"}) == ClientFrame(type=ClientFrameType.AUTH)


def test_auth_with_token_cursor_topics_and_request_id() -> None:
    frame = parse({"type": "auth", "token": "a.b.c", "since": "42", "topics": ["orders", "room:1"], "id": "a-1"})
    assert frame == ClientFrame(
        type=ClientFrameType.AUTH, request_id="a-1", token="a.b.c", since=42, topics=("orders", "room:1")
    )


def test_auth_accepts_an_empty_or_null_topic_list_and_null_optionals() -> None:
    assert parse({"type": "auth", "token": "t", "topics": []}).topics == ()
    assert parse({"type": "auth", "token": None, "since": None, "topics": None}) == ClientFrame(
        type=ClientFrameType.AUTH
    )


def test_auth_accepts_a_token_of_the_maximum_length() -> None:
    assert parse({"type": "auth", "token": "x" * MAX_TOKEN_LENGTH}).token == "x" * MAX_TOKEN_LENGTH


def test_subscribe_with_and_without_since() -> None:
    assert parse({"type": "subscribe", "topics": ["orders"]}) == ClientFrame(
        type=ClientFrameType.SUBSCRIBE, topics=("orders",)
    )
    assert parse({"type": "subscribe", "topics": ["orders"], "since": "0", "id": 3}) == ClientFrame(
        type=ClientFrameType.SUBSCRIBE, request_id=3, topics=("orders",), since=0
    )


def test_topics_are_deduplicated_in_order() -> None:
    assert parse({"type": "subscribe", "topics": ["b", "a", "b"]}).topics == ("b", "a")


def test_topic_keys_may_use_letters_digits_dot_underscore_colon_and_dash_up_to_128_characters() -> None:
    keys = ["orders.shipped", "project_42", "room:lobby", "a-b", "9", "k" * 128]
    assert parse({"type": "subscribe", "topics": keys}).topics == tuple(keys)


def test_subscribe_accepts_the_per_connection_limit_of_topics_in_one_frame() -> None:
    topics = [f"t{index}" for index in range(100)]
    assert len(parse({"type": "subscribe", "topics": topics}).topics) == 100


def test_unsubscribe_takes_topics() -> None:
    assert parse({"type": "unsubscribe", "topics": ["orders"], "id": "u"}) == ClientFrame(
        type=ClientFrameType.UNSUBSCRIBE, request_id="u", topics=("orders",)
    )


@pytest.mark.parametrize("kind", INBOX_ACTIONS)
def test_inbox_actions_take_ids_deduplicated_in_order(kind: str) -> None:
    assert parse({"type": kind, "ids": [3, 1, 3], "id": 9}) == ClientFrame(
        type=ClientFrameType(kind), request_id=9, ids=(3, 1)
    )


@pytest.mark.parametrize("kind", INBOX_ACTIONS)
def test_inbox_actions_accept_the_maximum_number_of_ids_and_the_largest_id(kind: str) -> None:
    ids = [*range(1, MAX_IDS_PER_FRAME), 2**63 - 1]
    assert parse({"type": kind, "ids": ids}).ids == tuple(ids)


def test_mark_all_read_takes_no_ids_and_ignores_any() -> None:
    assert parse({"type": "mark_all_read"}) == ClientFrame(type=ClientFrameType.MARK_ALL_READ)
    assert parse({"type": "mark_all_read", "ids": "anything"}).ids == ()


@pytest.mark.parametrize("kind", ["ping", "pong"])
def test_ping_and_pong_with_and_without_request_id(kind: str) -> None:
    assert parse({"type": kind}) == ClientFrame(type=ClientFrameType(kind))
    assert parse({"type": kind, "id": "p-1"}).request_id == "p-1"


def test_every_client_frame_type_has_a_valid_example_here() -> None:
    examples = {
        "auth": {"type": "auth"},
        "subscribe": {"type": "subscribe", "topics": ["a"]},
        "unsubscribe": {"type": "unsubscribe", "topics": ["a"]},
        "mark_read": {"type": "mark_read", "ids": [1]},
        "mark_unread": {"type": "mark_unread", "ids": [1]},
        "mark_all_read": {"type": "mark_all_read"},
        "archive": {"type": "archive", "ids": [1]},
        "unarchive": {"type": "unarchive", "ids": [1]},
        "ping": {"type": "ping"},
        "pong": {"type": "pong"},
    }
    assert set(examples) == {kind.value for kind in ClientFrameType}
    for kind, frame in examples.items():
        assert parse(frame).type is ClientFrameType(kind)


def test_unknown_fields_are_ignored() -> None:
    assert parse({"type": "ping", "extra": {"nested": [1]}}) == ClientFrame(type=ClientFrameType.PING)


@pytest.mark.parametrize("request_id", ["", "x", "x" * MAX_REQUEST_ID_LENGTH, 0, -1, SAFE_INTEGER, -SAFE_INTEGER])
def test_request_ids_are_short_strings_or_safe_integers(request_id: str | int) -> None:
    assert parse({"type": "ping", "id": request_id}).request_id == request_id


def test_a_null_request_id_is_no_request_id() -> None:
    assert parse({"type": "ping", "id": None}).request_id is None


def test_cursors_are_decimal_strings_of_up_to_18_digits() -> None:
    assert parse({"type": "subscribe", "topics": ["a"], "since": "9" * 18}).since == 10**18 - 1
    assert parse({"type": "subscribe", "topics": ["a"], "since": "007"}).since == 7


# --- Frames that are not frames: bad_frame ---------------------------------------------------------


def test_a_binary_frame_is_a_bad_frame() -> None:
    with pytest.raises(ProtocolError) as caught:
        parse_client_frame(None, b'{"type": "ping"}')
    assert caught.value.code == ErrorCode.BAD_FRAME and caught.value.request_id is None


@pytest.mark.parametrize("text", ["", "{", "not json", '{"type": "ping"', "{'type': 'ping'}", "NaN"])
def test_text_that_is_not_json_is_a_bad_frame(text: str) -> None:
    error = refused(text)
    assert error.code == ErrorCode.BAD_FRAME and error.request_id is None


@pytest.mark.parametrize("value", [[], [{"type": "ping"}], "ping", 1, None, True])
def test_json_that_is_not_an_object_is_a_bad_frame(value: Any) -> None:
    error = refused(value)
    assert error.code == ErrorCode.BAD_FRAME and error.request_id is None


@pytest.mark.parametrize("frame", [{}, {"id": 4}, {"type": None, "id": 4}, {"type": 5, "id": 4}, {"type": ["ping"]}])
def test_a_frame_without_a_string_type_is_a_bad_frame(frame: dict[str, Any]) -> None:
    error = refused(frame)
    assert error.code == ErrorCode.BAD_FRAME
    assert error.request_id == frame.get("id")  # the request id is kept when it is valid


@pytest.mark.parametrize("request_id", [True, False])
def test_a_boolean_request_id_is_a_bad_frame(request_id: bool) -> None:
    error = refused({"type": "ping", "id": request_id})
    assert error.code == ErrorCode.BAD_FRAME and error.request_id is None


@pytest.mark.parametrize(
    "request_id",
    ["x" * (MAX_REQUEST_ID_LENGTH + 1), SAFE_INTEGER + 1, -(SAFE_INTEGER + 1), 10**18, 1.5, 1.0, [1], {"a": 1}],
)
def test_a_huge_or_non_scalar_request_id_is_a_bad_frame(request_id: Any) -> None:
    error = refused({"type": "ping", "id": request_id})
    assert error.code == ErrorCode.BAD_FRAME and error.request_id is None


def test_an_invalid_request_id_is_refused_before_the_type_is_looked_at() -> None:
    assert refused({"type": "no_such_type", "id": True}).code == ErrorCode.BAD_FRAME


# --- Unknown types ---------------------------------------------------------------------------------


@pytest.mark.parametrize("frame_type", ["subscribe_all", "AUTH", "Ping", "", "welcome", "ack", "x" * 1000])
def test_a_type_that_is_not_a_client_frame_type_is_unknown_type(frame_type: str) -> None:
    error = refused({"type": frame_type, "id": "r-1"})
    assert error.code == ErrorCode.UNKNOWN_TYPE and error.request_id == "r-1"
    assert len(error.message) < 100  # a huge type is not echoed back in full


# --- Field errors: invalid, naming the field -------------------------------------------------------


def assert_invalid(frame: dict[str, Any], field: str) -> None:
    error = refused({**frame, "id": 77})
    assert error.code == ErrorCode.INVALID
    assert error.request_id == 77
    assert error.fields is not None and list(error.fields) == [field]
    assert error.fields[field] and all(isinstance(message, str) for message in error.fields[field])
    assert f"`{field}`" in error.message


@pytest.mark.parametrize("token", [5, "", "x" * (MAX_TOKEN_LENGTH + 1), ["a.b.c"], {"token": "t"}, True])
def test_a_token_that_is_not_a_non_empty_string_is_invalid(token: Any) -> None:
    assert_invalid({"type": "auth", "token": token}, "token")


@pytest.mark.parametrize("since", [42, 0, "", "abc", "-1", "+1", " 1", "1 ", "1.5", "1e3", "0x10", "1" * 19, True, []])
@pytest.mark.parametrize("frame_type", ["auth", "subscribe"])
def test_a_cursor_that_is_not_a_string_of_digits_is_invalid(frame_type: str, since: Any) -> None:
    assert_invalid({"type": frame_type, "topics": ["a"], "since": since}, "since")


def test_a_cursor_of_unicode_digits_that_int_rejects_is_invalid() -> None:
    assert_invalid({"type": "subscribe", "topics": ["a"], "since": "²"}, "since")


@pytest.mark.parametrize(
    "topics",
    [
        "orders",
        {"orders": True},
        [5],
        [None],
        [["orders"]],
        ["bad key!"],
        ["with space"],
        [".starts-with-dot"],
        ["-starts-with-dash"],
        [""],
        ["k" * 129],
        ["orders", "ok", "bad/slash"],
        [f"t{index}" for index in range(101)],
    ],
)
@pytest.mark.parametrize("frame_type", ["auth", "subscribe", "unsubscribe"])
def test_bad_topic_lists_and_bad_topic_keys_are_invalid(frame_type: str, topics: Any) -> None:
    assert_invalid({"type": frame_type, "topics": topics}, "topics")


@pytest.mark.parametrize("frame_type", ["subscribe", "unsubscribe"])
def test_subscribe_and_unsubscribe_need_at_least_one_topic(frame_type: str) -> None:
    assert_invalid({"type": frame_type}, "topics")
    assert_invalid({"type": frame_type, "topics": None}, "topics")
    assert_invalid({"type": frame_type, "topics": []}, "topics")


@pytest.mark.parametrize(
    "ids",
    [
        None,
        [],
        7,
        "7",
        ["7"],
        [0],
        [-1],
        [2**63],
        [1.5],
        [1.0],
        [True],
        [None],
        [[1]],
        list(range(1, MAX_IDS_PER_FRAME + 2)),
    ],
)
@pytest.mark.parametrize("frame_type", INBOX_ACTIONS)
def test_ids_must_be_a_list_of_1_to_100_positive_integers(frame_type: str, ids: Any) -> None:
    frame: dict[str, Any] = {"type": frame_type}
    if ids is not None:
        frame["ids"] = ids
    assert_invalid(frame, "ids")


def test_the_first_bad_field_is_reported_alone() -> None:
    error = refused({"type": "auth", "token": 5, "since": "x", "topics": "y"})
    assert error.code == ErrorCode.INVALID and error.fields is not None and list(error.fields) == ["token"]
