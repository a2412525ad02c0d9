from __future__ import annotations

from pathlib import Path

import pytest

from foundation.devstack.envfile import load_env_file, parse_env_file


def test_comments_quotes_and_export_are_understood() -> None:
    text = (
        "# the stack\n\nGATEWAY_PORT=9000\nexport LOG_FORMAT = 'json'\nJWT_ISSUER=\"http://x/auth\"\nEMPTY=\n"
    )
    assert parse_env_file(text) == {
        "GATEWAY_PORT": "9000",
        "LOG_FORMAT": "json",
        "JWT_ISSUER": "http://x/auth",
        "EMPTY": "",
    }


def test_a_line_without_equals_is_named() -> None:
    with pytest.raises(ValueError, match="line 2: expected KEY=VALUE"):
        parse_env_file("A=1\nnonsense\n")


def test_variables_already_set_win(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("GATEWAY_PORT=9000\nAUTH_PORT=9001\n")
    environ = {"GATEWAY_PORT": "7000"}
    assert load_env_file(env_file, environ) == ["AUTH_PORT"]
    assert environ == {"GATEWAY_PORT": "7000", "AUTH_PORT": "9001"}
    assert load_env_file(tmp_path / "missing", environ) == []
