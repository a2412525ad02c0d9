"""Security headers on every answer, whoever produced it.

``nosniff``, a strict ``Referrer-Policy``, no framing, HSTS when the client came over HTTPS,
and ``Cache-Control: no-store`` on ``/auth`` answers (tokens must not sit in caches; the
public JWKS keeps the caching its service chose).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

JWKS_PATH = "/auth/.well-known/jwks.json"
API_CSP = b"default-src 'none'; frame-ancestors 'none'"


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, hsts_max_age: int = 31_536_000) -> None:
        self.app = app
        self.hsts = f"max-age={hsts_max_age}; includeSubDomains".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        no_store = (path == "/auth" or path.startswith("/auth/")) and path != JWKS_PATH
        docs = path == "/docs" or path.startswith("/docs/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (k, v) for k, v in message.get("headers", []) if not (no_store and k == b"cache-control")
                ]
                present = {name for name, _ in headers}
                wanted = [
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                if not docs:
                    wanted.append((b"content-security-policy", API_CSP))
                if scope.get("scheme") == "https":
                    wanted.append((b"strict-transport-security", self.hsts))
                if no_store:
                    wanted.append((b"cache-control", b"no-store"))
                    wanted.append((b"pragma", b"no-cache"))
                headers.extend(item for item in wanted if item[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
