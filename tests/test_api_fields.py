"""config.api_fields.FieldsBuiltOnce: the publish serializers build their fields once per thread,
and still validate every request on its own: values and errors of one instance never show up in
another, in the same thread or across threads, single events and batches alike."""

from __future__ import annotations

import threading
from typing import Any

from rest_framework import serializers

from notifications.api.serializers import BatchInSerializer, EventInSerializer


def _validate(serializer_class: type[serializers.Serializer], data: Any) -> tuple[bool, Any]:  # type: ignore[type-arg]
    serializer = serializer_class(data=data)
    valid = serializer.is_valid()
    return valid, serializer.validated_data if valid else serializer.errors


def test_instances_of_one_thread_share_fields_and_keep_their_own_results():
    first, second = EventInSerializer(data={}), EventInSerializer(data={})
    assert first.fields is second.fields  # built once...
    assert first.fields["kind"] is second.fields["kind"]

    good = {"kind": "order.shipped", "topics": ["news"], "data": {"n": 1}}
    bad = {"kind": 5, "url": "javascript:alert(1)"}
    valid, value = _validate(EventInSerializer, good)
    assert valid and value["kind"] == "order.shipped" and value["topics"] == ["news"]
    valid, errors = _validate(EventInSerializer, bad)
    assert not valid and set(errors) == {"kind", "url"}
    # ...and the invalid request left nothing behind for the next one.
    valid, value = _validate(EventInSerializer, {"kind": "b", "recipients": ["u1"]})
    assert valid and value == {
        "kind": "b",
        "recipients": ["u1"],
        "data": {},
        "title": "",
        "body": "",
        "url": "",
        "topics": [],
        "broadcast": False,
    }


def test_a_batch_validates_each_item_with_the_shared_fields():
    valid, value = _validate(
        BatchInSerializer, {"events": [{"kind": "a", "broadcast": True}, {"kind": "b", "topics": ["t"]}]}
    )
    assert valid and [item["kind"] for item in value["events"]] == ["a", "b"]
    valid, errors = _validate(BatchInSerializer, {"events": [{"kind": "a", "broadcast": True}, {"kind": "!"}]})
    assert not valid and set(errors["events"]) == {1} and set(errors["events"][1]) == {"kind"}
    valid, value = _validate(EventInSerializer, {"kind": "c", "broadcast": True})  # a single event after it
    assert valid and value["kind"] == "c"


def test_threads_build_fields_of_their_own_and_validate_at_the_same_time():
    here = EventInSerializer(data={}).fields
    results: dict[int, list[tuple[bool, Any]]] = {}
    barrier = threading.Barrier(4, timeout=10)

    def work(index: int) -> None:
        barrier.wait()
        results[index] = [
            _validate(EventInSerializer, {"kind": f"k{index}.{n}", "recipients": [f"u{n}"]} if n % 2 else {"kind": 0})
            for n in range(200)
        ]
        results[index].append((EventInSerializer(data={}).fields is here, None))

    threads = [threading.Thread(target=work, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for index in range(4):
        *validations, (shared_with_main, _) = results[index]
        assert shared_with_main is False
        for n, (valid, value) in enumerate(validations):
            if n % 2:
                assert valid and value["kind"] == f"k{index}.{n}" and value["recipients"] == [f"u{n}"]
            else:
                assert not valid and set(value) == {"kind"}


def test_an_instance_with_a_context_builds_its_own_fields():
    shared = EventInSerializer(data={}).fields
    own = EventInSerializer(data={}, context={"request": None})
    assert own.fields is not shared
    assert own.fields["kind"].context == {"request": None}


def test_a_partial_instance_builds_its_own_fields():
    shared = EventInSerializer(data={}).fields
    partial = EventInSerializer(data={"title": "only this"}, partial=True)
    assert partial.fields is not shared
    assert partial.fields["kind"].root is partial  # fields read `partial` from their root
    valid, errors = _validate(EventInSerializer, {"title": "only this"})
    assert not valid and "kind" in errors  # every other instance still requires "kind"
