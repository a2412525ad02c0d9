"""Send plain-HTTP clients to HTTPS with 308 (method and body kept).

``HttpsRedirectMiddleware`` runs inside the gateway: behind a TLS-terminating proxy it reads
the scheme resolved from a trusted ``X-Forwarded-Proto``. ``redirect_app`` is a whole app for
a second, plain-HTTP listener when the gateway terminates TLS itself (``gateway
serve-redirect``). Health probes are answered, not redirected.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

EXEMPT = frozenset({"/health", "/ready"})


def https_location(scope: Scope, https_port: int) -> bytes:
    host: bytes = b"localhost"
    for name, value in scope["headers"]:
        if name == b"host":
            host = value
            break
    # "[v6]:port" keeps its brackets; "name:port" loses the port.
    hostname = host.split(b"]", 1)[0] + b"]" if host.startswith(b"[") else host.split(b":", 1)[0]
    port = b"" if https_port == 443 else f":{https_port}".encode()
    path: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return b"https://" + hostname + port + path + (b"?" + query if query else b"")


async def _redirect(scope: Scope, send: Send, https_port: int) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 308,
            "headers": [(b"location", https_location(scope, https_port)), (b"content-length", b"0")],
        }
    )
    await send({"type": "http.response.body", "body": b""})


class HttpsRedirectMiddleware:
    def __init__(self, app: ASGIApp, *, https_port: int = 443) -> None:
        self.app = app
        self.https_port = https_port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("scheme") == "http" and scope["path"] not in EXEMPT:
            await _redirect(scope, send, self.https_port)
            return
        await self.app(scope, receive, send)


def redirect_app(https_port: int) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] in EXEMPT:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": b'{"status":"ok"}'})
            return
        await _redirect(scope, send, https_port)

    return app


def create_redirect_app() -> ASGIApp:
    """Granian factory for ``gateway serve-redirect``: the HTTPS port from HTTPS_PORT."""
    from foundation.gateway.settings import GatewaySettings

    return redirect_app(GatewaySettings().https_port)
