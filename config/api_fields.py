"""Strict DRF fields: a JSON number is not a string, and "true" is not a boolean."""

from __future__ import annotations

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
