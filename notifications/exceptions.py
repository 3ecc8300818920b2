"""Errors specific to notifications; all are HeraldErrors (accounts/exceptions.py)."""

from __future__ import annotations

from accounts.exceptions import HeraldError


class ProtocolError(HeraldError):
    """A client WebSocket frame that cannot be understood. `code` is one of protocol.ErrorCode."""

    status_code = 400
    code = "bad_frame"
    default_message = "The frame is not valid."

    def __init__(
        self,
        message: str,
        *,
        code: str = "bad_frame",
        request_id: str | int | None = None,
        fields: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message, fields=fields)
        self.code = code
        self.request_id = request_id
