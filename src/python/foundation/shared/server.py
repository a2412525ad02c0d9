"""The command line every service PEX shares.

``<service>.pex [serve] [--host H] [--port P] [--workers N] [--reload]`` serves the app with
Granian; ``<service>.pex migrate`` applies its migrations; services add their own commands.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Command = Callable[[argparse.Namespace], int]


@dataclass
class Cli:
    name: str
    app_factory: str  # "package.module:function" returning the ASGI app from the environment
    default_port: int
    commands: dict[str, tuple[str, Command, Callable[[argparse.ArgumentParser], None] | None]] = field(
        default_factory=dict
    )
    reload_paths: Sequence[str] = ()
    port_env: str = "PORT"  # the environment variable that may set the port
    # Run in the server process before Granian starts (and forks) its workers.
    before_serve: Callable[[], None] | None = None

    def command(
        self, name: str, help: str, arguments: Callable[[argparse.ArgumentParser], None] | None = None
    ) -> Callable[[Command], Command]:
        def register(func: Command) -> Command:
            self.commands[name] = (help, func, arguments)
            return func

        return register

    def parser(self) -> argparse.ArgumentParser:
        parser = argparse.ArgumentParser(prog=self.name)
        sub = parser.add_subparsers(dest="command")
        serve = sub.add_parser("serve", help="serve the HTTP API (default)")
        add_serve_arguments(serve, self.default_port, self.port_env)
        for name, (help_text, _, arguments) in self.commands.items():
            command_parser = sub.add_parser(name, help=help_text)
            if arguments:
                arguments(command_parser)
        return parser

    def main(self, argv: Sequence[str] | None = None) -> int:
        args_list = list(sys.argv[1:] if argv is None else argv)
        if not args_list or args_list[0].startswith("-") and args_list[0] not in {"-h", "--help"}:
            args_list.insert(0, "serve")
        args = self.parser().parse_args(args_list)
        if args.command == "serve":
            if self.before_serve is not None:
                self.before_serve()
            serve(self.app_factory, args, reload_paths=self.reload_paths)
            return 0
        return self.commands[args.command][1](args)


def add_serve_arguments(parser: argparse.ArgumentParser, default_port: int, port_env: str = "PORT") -> None:
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get(port_env) or os.environ.get("PORT") or default_port)
    )
    parser.add_argument("--workers", type=int, default=int(os.environ.get("WEB_CONCURRENCY", 1)))
    parser.add_argument("--reload", action="store_true", help="restart when source files change")
    parser.add_argument("--ssl-certfile", default=os.environ.get("TLS_CERT_FILE"))
    parser.add_argument("--ssl-keyfile", default=os.environ.get("TLS_KEY_FILE"))


def serve(app_factory: str, args: argparse.Namespace, reload_paths: Sequence[str] = ()) -> None:
    from granian import Granian
    from granian.constants import HTTPModes, Interfaces, Loops

    kwargs: dict[str, object] = {}
    if args.reload:
        kwargs.update(reload=True, reload_paths=[os.path.abspath(p) for p in reload_paths] or None)
    if args.ssl_certfile and args.ssl_keyfile:
        kwargs.update(ssl_cert=args.ssl_certfile, ssl_key=args.ssl_keyfile)
    Granian(
        app_factory,
        address=args.host,
        port=args.port,
        interface=Interfaces.ASGI,
        workers=args.workers,
        factory=True,
        loop=Loops.auto,  # uvloop when installed (it is, in every PEX)
        http=HTTPModes.auto,
        log_access=False,
        **kwargs,  # type: ignore[arg-type]
    ).serve()
