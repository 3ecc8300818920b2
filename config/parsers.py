"""The REST API's only request parser: strict JSON with size and depth limits."""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser

from accounts.exceptions import PayloadTooLarge, ValidationFailed

# Deeper than any real notification payload, shallow enough that walking it is cheap and no
# recursive code downstream can be pushed to its limit.
MAX_JSON_DEPTH = 32


def check_json_value(value: Any, *, max_depth: int = MAX_JSON_DEPTH, allow_nul: bool = False) -> str | None:
    """Return a reason if the decoded JSON is too deep or (unless allowed) holds a NUL character,
    which PostgreSQL cannot store in JSON; else None. Iterative, so depth cannot overflow the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            if depth > max_depth:
                return f"nested deeper than {max_depth} levels"
            for key, child in item.items():
                if not allow_nul and "\x00" in key:
                    return "contains a NUL character"
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > max_depth:
                return f"nested deeper than {max_depth} levels"
            stack.extend((child, depth + 1) for child in item)
        elif not allow_nul and isinstance(item, str) and "\x00" in item:
            return "contains a NUL character"
    return None


class StrictJSONParser(BaseParser):
    media_type = "application/json"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"The request body is larger than {limit} bytes.")
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as error:
            raise ParseError(f"The body is not valid JSON ({str(error).split(':')[0]}).") from None
        # Only depth here; NUL characters are refused per field, where the error can name it.
        problem = check_json_value(data, allow_nul=True)
        if problem:
            raise ValidationFailed(f"The JSON body is {problem}.")
        return data
