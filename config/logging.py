"""JSON log lines: one object per record, with the context fields Herald attaches."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

# Fields added to every log line of the current request or connection (e.g. its request id).
log_context: ContextVar[dict[str, Any]] = ContextVar("herald_log_context", default={})  # noqa: B039

# Attributes every LogRecord has; anything else passed through `extra=` is context to print.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **log_context.get(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key != "color_message":
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class ClientMistakeFilter(logging.Filter):
    """uvicorn logs some client mistakes (an invalid UTF-8 text frame) as errors with a traceback.
    They are the client's fault and answered with close 1007: log them as plain warnings."""

    CLIENT_MISTAKES = ("Invalid UTF-8 sequence received from client",)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith(self.CLIENT_MISTAKES):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


class HandshakeLinesFilter(logging.Filter):
    """Drops the two INFO lines uvicorn writes for every WebSocket handshake ("<ip> - "WebSocket
    /ws/v1/" [accepted]" and websockets' "connection open"): Herald's own `connected` line says
    more (connection id, tenant, how it authenticated), and at thousands of connects a second
    the two lines cost ~3 % of the node's CPU. `manage.py serve --access-log` keeps them."""

    TEMPLATES = frozenset({'%s - "WebSocket %s" [accepted]', "connection open"})

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.INFO and record.msg in self.TEMPLATES)
