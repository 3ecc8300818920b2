"""Strict DRF fields: a JSON number is not a string, and "true" is not a boolean; and a serializer
base for the hot path whose fields are built once per thread."""

from __future__ import annotations

import threading
from typing import Any

from rest_framework import serializers

from config.parsers import check_json_value


class StrictCharField(serializers.CharField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictRegexField(serializers.RegexField):
    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class JsonObjectField(serializers.JSONField):
    """A JSON object (not a list or scalar), checked for depth and NUL characters."""

    default_error_messages = {"not_object": "Must be a JSON object.", "bad_json": "Not storable: {reason}."}

    def to_internal_value(self, data: Any) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.fail("not_object")
        reason = check_json_value(data)
        if reason:
            self.fail("bad_json", reason=reason)
        return data


_built_fields = threading.local()


# A serializer whose fields are built once per thread instead of once per instance (a comment, not
# a docstring: drf-spectacular would publish a docstring as the description of every subclass).
#
# DRF gives every serializer instance fields of its own: a deep copy of the declared ones, which
# runs every field's __init__ again (its validators, a RegexField's regex). For the publish request
# that was ~10 % of the server's CPU under load (docs/performance.md). A field keeps nothing of a
# validation: what it holds is its declaration and its binding (name, parent), and validation reads
# the parent chain only for the serializer's `context` and `partial`. So the fields bound to the
# first instance a thread makes serve every later instance of that thread (threads never share
# them), as long as neither is given: an instance with a context or partial=True builds its own, as
# DRF does.
class FieldsBuiltOnce(serializers.Serializer):  # type: ignore[type-arg]
    @property
    def fields(self) -> Any:
        if self._context or self.partial:
            return super().fields
        by_class: dict[type, Any] | None = getattr(_built_fields, "by_class", None)
        if by_class is None:
            by_class = _built_fields.by_class = {}
        fields = by_class.get(type(self))
        if fields is None:
            fields = by_class[type(self)] = super().fields
        return fields
