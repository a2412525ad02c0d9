"""Refuse a request body over the limit with 413 before FastAPI reads or parses any of it.

FastAPI reads and parses the body before it runs a route's dependencies, so a size check
there came after the work it was meant to spare (and saw no ``Content-Length`` at all on a
chunked body). Here a declared ``Content-Length`` over the limit is refused at once; a body
without one is read up to the limit (it would be read whole by FastAPI anyway) and refused as
soon as it goes past it. Only methods that carry a body in this API are looked at: a body
sent with GET is never read.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from foundation.shared.errors import PayloadTooLarge, app_error_response

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class BodyLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge(
            f"The request body is larger than {self.max_bytes} bytes.", headers={"Connection": "close"}
        )
        await app_error_response(error, scope["path"])(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_bytes:
                    await self._refuse(scope, receive, send)
                    return
                # The server holds the client to the length it declared.
                await self.app(scope, receive, send)
                return
        # No Content-Length: read up to the limit first.
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)
