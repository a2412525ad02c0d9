"""`gateway` command line: serve (default), make-dev-cert, serve-redirect."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from foundation.shared.server import Cli

cli = Cli(
    name="gateway",
    app_factory="foundation.gateway.app:create_app",
    default_port=8000,
    port_env="GATEWAY_PORT",
)


def _cert_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out-dir", default=".dev-certs", help="folder for cert.pem and key.pem")
    parser.add_argument("--name", action="append", default=[], help="extra DNS name or IP (repeatable)")
    parser.add_argument("--days", type=int, default=365)


@cli.command("make-dev-cert", "write a self-signed certificate and key for local HTTPS", _cert_arguments)
def make_dev_cert_command(args: argparse.Namespace) -> int:
    from foundation.gateway.dev_cert import make_dev_cert

    cert, key = make_dev_cert(Path(args.out_dir), args.name, args.days)
    print(f"certificate: {cert}\nkey:         {key}")
    print(f"serve HTTPS: TLS_CERT_FILE={cert} TLS_KEY_FILE={key} gateway serve")
    return 0


def _redirect_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("HTTP_REDIRECT_PORT", 8080)))
    parser.add_argument("--https-port", type=int, default=int(os.environ.get("HTTPS_PORT", 443)))


@cli.command("serve-redirect", "answer plain HTTP with 308 redirects to HTTPS", _redirect_arguments)
def serve_redirect_command(args: argparse.Namespace) -> int:  # pragma: no cover - blocks while serving
    from granian import Granian
    from granian.constants import Interfaces

    os.environ["HTTPS_PORT"] = str(args.https_port)
    Granian(
        "foundation.gateway.https_redirect:create_redirect_app",
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        factory=True,
        log_access=False,
    ).serve()
    return 0


def main() -> None:
    raise SystemExit(cli.main())


if __name__ == "__main__":
    main()
