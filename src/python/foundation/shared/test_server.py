from __future__ import annotations

import argparse

import pytest

from foundation.shared import server
from foundation.shared.server import Cli


def make_cli(calls: list[argparse.Namespace]) -> Cli:
    cli = Cli(name="svc", app_factory="pkg.app:create_app", default_port=8123, port_env="SVC_PORT")

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("email")

    @cli.command("grant-admin", "grant the admin role", add_arguments)
    def grant(args: argparse.Namespace) -> int:
        calls.append(args)
        return 3

    return cli


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, argparse.Namespace]]:
    seen: list[tuple[str, argparse.Namespace]] = []
    monkeypatch.setattr(server, "serve", lambda factory, args, reload_paths=(): seen.append((factory, args)))
    return seen


def test_no_command_means_serve_on_the_default_port(served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SVC_PORT", raising=False)
    monkeypatch.delenv("PORT", raising=False)
    assert make_cli([]).main([]) == 0
    factory, args = served[0]
    assert factory == "pkg.app:create_app"
    assert (args.host, args.port, args.workers, args.reload) == ("127.0.0.1", 8123, 1, False)


def test_flags_without_a_command_also_serve(served) -> None:
    make_cli([]).main(["--host", "0.0.0.0", "--port", "9000", "--workers", "2"])
    args = served[0][1]
    assert (args.host, args.port, args.workers) == ("0.0.0.0", 9000, 2)


def test_the_service_port_variable_wins_over_port(served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "7000")
    monkeypatch.setenv("SVC_PORT", "7100")
    make_cli([]).main(["serve"])
    assert served[0][1].port == 7100


def test_service_commands_get_their_arguments_and_exit_code(served) -> None:
    calls: list[argparse.Namespace] = []
    assert make_cli(calls).main(["grant-admin", "ada@example.com"]) == 3
    assert calls[0].email == "ada@example.com"
    assert not served


def test_unknown_command_is_a_usage_error(served, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        make_cli([]).main(["explode"])
    assert exit_info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_before_serve_runs_in_the_server_process_before_serving(served) -> None:
    order: list[str] = []
    cli = Cli(
        name="svc",
        app_factory="pkg.app:create_app",
        default_port=8123,
        before_serve=lambda: order.append("hook"),
    )
    assert cli.main(["serve"]) == 0
    assert order == ["hook"] and len(served) == 1


def test_other_commands_do_not_run_before_serve(monkeypatch: pytest.MonkeyPatch) -> None:
    order: list[str] = []
    cli = make_cli([])
    cli.before_serve = lambda: order.append("hook")
    assert cli.main(["grant-admin", "a@example.com"]) == 3
    assert order == []
