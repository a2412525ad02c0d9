from __future__ import annotations

import itertools
import os
from dataclasses import replace
from pathlib import Path

from foundation.devstack.options import parse_options
from foundation.devstack.plan import base_env, child_pythonpath, instance_env, instances_of, plan_instances
from foundation.devstack.services import AUTH, GATEWAY, HISTORY, STATS


def options(tmp_path: Path, *argv: str):  # type: ignore[no-untyped-def]
    return parse_options(list(argv), {}, cwd=tmp_path, tty=False)


def test_replicas_of_gateway_and_auth_get_their_own_ports(tmp_path: Path) -> None:
    instances = plan_instances(options(tmp_path, "--replicas", "3"))
    ports = {i.name: i.port for i in instances}
    assert ports == {
        "gateway-1": 8000,
        "gateway-2": 8010,
        "gateway-3": 8020,
        "auth-service-1": 8001,
        "auth-service-2": 8011,
        "auth-service-3": 8021,
        "history-service": 8002,
        "stats-service": 8003,
    }
    assert [i.tag for i in instances_of(instances, AUTH)] == ["auth-1", "auth-2", "auth-3"]


def test_free_ports_are_picked_for_every_instance(tmp_path: Path) -> None:
    counter = itertools.count(40000)
    instances = plan_instances(options(tmp_path, "--free-ports", "--replicas", "2"), lambda: next(counter))
    assert sorted(i.port for i in instances) == list(range(40000, 40006))


def test_gateway_is_told_every_auth_replica_and_the_other_services(tmp_path: Path) -> None:
    opts = options(tmp_path, "--replicas", "2")
    instances = plan_instances(opts)
    common = base_env(opts, {"DATABASE_URL": "postgresql://server/x", "PORT": "1", "KEEP": "me"}, "/src")
    gateway = instances_of(instances, GATEWAY)[0]
    env = instance_env(
        gateway, instances, common=common, database_url=None, redis_url="redis://r/0", data_dir=tmp_path
    )
    assert env["AUTH_URL"] == "http://127.0.0.1:8001,http://127.0.0.1:8011"
    assert env["HISTORY_URL"] == "http://127.0.0.1:8002"
    assert env["STATS_URL"] == "http://127.0.0.1:8003"
    assert env["GATEWAY_PORT"] == "8000"
    assert env["JWKS_URL"] == "http://127.0.0.1:8001/auth/.well-known/jwks.json"
    assert env["JWT_ISSUER"] == "http://127.0.0.1:8000/auth"
    assert env["JWT_KEYS_DIR"] == str(tmp_path / "keys")
    assert env["OAUTH_DATA_DIR"] == str(tmp_path)
    assert env["REDIS_URL"] == "redis://r/0"
    assert env["KEEP"] == "me"
    assert env["PYTHONPATH"] == "/src"
    assert env["LOG_FORMAT"] == "json"
    assert "DATABASE_URL" not in env
    assert "PORT" not in env


def test_services_with_a_database_get_their_own(tmp_path: Path) -> None:
    opts = options(tmp_path)
    instances = plan_instances(opts)
    common = base_env(replace(opts, log_format="console"), {"JWT_ISSUER": "https://issuer.example"}, "/src")
    for service in (AUTH, HISTORY, STATS):
        env = instance_env(
            instances_of(instances, service)[0],
            instances,
            common=common,
            database_url=f"postgresql+psycopg://h/{service.short}",
            redis_url="redis://r/0",
            data_dir=tmp_path,
        )
        assert env["DATABASE_URL"] == f"postgresql+psycopg://h/{service.short}"
        assert env["JWT_ISSUER"] == "https://issuer.example"
        assert env["LOG_FORMAT"] == "console"
        assert "AUTH_URL" not in env


def test_children_import_the_source_tree_first(tmp_path: Path) -> None:
    path = child_pythonpath(tmp_path, ["", "/does/not/exist", str(tmp_path), "/"])
    assert path.split(os.pathsep) == [str(tmp_path), "/"]


def test_auth_service_alone_is_told_the_mail_server(tmp_path: Path) -> None:
    opts = options(tmp_path)
    instances = plan_instances(opts)
    common = base_env(opts, {}, "/src")
    for instance in instances:
        env = instance_env(
            instance,
            instances,
            common=common,
            database_url=None,
            redis_url="redis://r/0",
            data_dir=tmp_path,
            smtp_url="smtp://127.0.0.1:2525",
        )
        assert env.get("SMTP_URL") == ("smtp://127.0.0.1:2525" if instance.service == AUTH else None)
