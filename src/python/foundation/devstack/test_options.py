from __future__ import annotations

from pathlib import Path

import pytest

from foundation.devstack.options import parse_options
from foundation.devstack.services import AUTH, GATEWAY, HISTORY, SERVICES, STATS, find_service


def test_defaults_run_every_service_on_the_documented_ports(tmp_path: Path) -> None:
    (tmp_path / "pants.toml").write_text("")
    options = parse_options([], {}, cwd=tmp_path, tty=False)
    assert options.services == SERVICES
    assert dict(options.ports) == {
        "gateway": 8000,
        "auth-service": 8001,
        "history-service": 8002,
        "stats-service": 8003,
    }
    assert options.data_dir == (tmp_path / ".devstack").resolve()
    assert options.replicas == 1
    assert options.reload
    assert not options.reset
    assert options.log_format == "json"
    assert not options.color


def test_environment_sets_ports_replicas_and_only(tmp_path: Path) -> None:
    environ = {
        "GATEWAY_PORT": "9000",
        "AUTH_PORT": "9001",
        "DEVSTACK_REPLICAS": "3",
        "DEVSTACK_ONLY": "gateway, auth",
        "DEVSTACK_RELOAD": "false",
        "DEVSTACK_DATA_DIR": str(tmp_path / "d"),
        "DATABASE_URL": "postgresql://u@h/db",
        "REDIS_URL": "redis://h:1/0",
    }
    options = parse_options([], environ, cwd=tmp_path, tty=True)
    assert options.ports["gateway"] == 9000
    assert options.ports["auth-service"] == 9001
    assert options.replicas == 3
    assert options.services == (GATEWAY, AUTH)
    assert not options.reload
    assert options.data_dir == (tmp_path / "d").resolve()
    assert options.database_url == "postgresql://u@h/db"
    assert options.redis_url == "redis://h:1/0"
    assert options.log_format == "console"
    assert options.color


def test_flags_override_the_environment(tmp_path: Path) -> None:
    options = parse_options(
        [
            "--only",
            "stats",
            "--only",
            "history_service",
            "--free-ports",
            "--reset",
            "--log-format",
            "json",
            "--gateway-port",
            "7000",
        ],
        {"DEVSTACK_ONLY": "gateway", "LOG_FORMAT": "console", "NO_COLOR": "1"},
        cwd=tmp_path,
        tty=True,
    )
    assert options.services == (HISTORY, STATS)
    assert set(options.ports.values()) == {0}  # free ports win over --gateway-port
    assert options.reset
    assert options.log_format == "json"
    assert not options.color


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--only", "billing"], "unknown service 'billing'"),
        (["--replicas", "0"], "1 to 16"),
        (["--stats-port", "70000"], "not a TCP port"),
    ],
)
def test_bad_options_are_refused_with_a_reason(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_options(argv, {}, cwd=tmp_path, tty=False)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_services_are_found_by_any_of_their_names() -> None:
    assert find_service("auth") is AUTH
    assert find_service("auth-service") is AUTH
    assert find_service("AUTH_SERVICE") is AUTH
    assert find_service("gateway") is GATEWAY
