"""Refuse request bodies over the limit with 413, before any of it reaches a service.

A declared ``Content-Length`` over the limit is refused at once; a body without one (chunked)
is counted as it is read, and reading past the limit raises ``PayloadTooLarge``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from foundation.gateway.problems import send_problem
from foundation.shared.errors import BadRequest, PayloadTooLarge


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> PayloadTooLarge:
        return PayloadTooLarge(
            f"The request body is over the limit of {self.max_bytes} bytes.", headers={"Connection": "close"}
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await send_problem(
                        scope, receive, send, BadRequest("Bad Content-Length.", code="bad_content_length")
                    )
                    return
                if declared > self.max_bytes:
                    await send_problem(scope, receive, send, self._too_large())
                    return
                break
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        await self.app(scope, counting_receive, send)
