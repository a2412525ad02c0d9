from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.events.schema import (
    HISTORY_RECORDED,
    USER_LOGGED_IN,
    USER_LOGIN_FAILED,
    USER_REGISTERED,
    Event,
)
from foundation.stats_service import main
from foundation.stats_service.services.counting import StatsCounter
from foundation.stats_service.settings import StatsServiceSettings
from tests.helpers.auth import TestSigner, bearer


async def test_my_stats_show_only_my_own_counts(
    client: httpx.AsyncClient, signer: TestSigner, sessions: async_sessionmaker[AsyncSession]
) -> None:
    me, other = uuid.uuid4(), uuid.uuid4()
    now = datetime.now(UTC).replace(microsecond=0)
    await StatsCounter(sessions)(
        [
            Event(type=USER_REGISTERED, user_id=me, occurred_at=now - timedelta(days=2)),
            Event(type=USER_LOGGED_IN, user_id=me, occurred_at=now - timedelta(days=2)),
            Event(type=USER_LOGGED_IN, user_id=me, occurred_at=now),
            Event(type=USER_LOGIN_FAILED, user_id=me, occurred_at=now),
            Event(type=HISTORY_RECORDED, user_id=me, data={"type": "app.opened"}, occurred_at=now),
            Event(type=USER_LOGGED_IN, user_id=other, occurred_at=now),
        ]
    )

    answer = await client.get("/stats/me", headers=bearer(signer.issue(user_id=me)))

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["user_id"] == str(me)
    assert (body["logins"], body["failed_logins"]) == (2, 1)
    assert body["sessions"] == {"started": 2, "ended": 0}
    assert datetime.fromisoformat(body["last_login_at"]) == now
    assert body["events_by_type"] == {
        "app.opened": 1,
        "user.logged_in": 2,
        "user.login_failed": 1,
        "user.registered": 1,
    }
    assert len(body["daily_activity"]) == 30
    assert body["daily_activity"][-1] == {"day": now.date().isoformat(), "events": 2}
    assert body["daily_activity"][-3] == {"day": (now - timedelta(days=2)).date().isoformat(), "events": 2}
    assert sum(d["events"] for d in body["daily_activity"]) == 4


async def test_a_user_without_events_gets_zeros(client: httpx.AsyncClient, signer: TestSigner) -> None:
    body = (await client.get("/stats/me", headers=bearer(signer.issue()))).json()
    assert (body["logins"], body["last_login_at"], body["events_by_type"]) == (0, None, {})
    assert {d["events"] for d in body["daily_activity"]} == {0}


async def test_stats_need_a_valid_token(client: httpx.AsyncClient) -> None:
    for path in ("/stats/me", "/stats/summary"):
        missing = await client.get(path)
        assert missing.status_code == 401
        assert missing.json()["code"] == "missing_token"
        forged = await client.get(path, headers=bearer(TestSigner().issue(roles=["admin"])))
        assert forged.status_code == 401
        assert forged.json()["code"] == "invalid_token"


async def test_summary_is_for_admins_only(client: httpx.AsyncClient, signer: TestSigner) -> None:
    answer = await client.get("/stats/summary", headers=bearer(signer.issue(roles=["user"])))
    assert answer.status_code == 403
    assert answer.json()["code"] == "forbidden"


async def test_summary_counts_per_day_over_a_range(
    client: httpx.AsyncClient, signer: TestSigner, sessions: async_sessionmaker[AsyncSession]
) -> None:
    day = datetime(2024, 2, 10, 12, tzinfo=UTC)
    a, b = uuid.uuid4(), uuid.uuid4()
    await StatsCounter(sessions)(
        [
            Event(type=USER_REGISTERED, user_id=a, occurred_at=day),
            Event(type=USER_REGISTERED, user_id=b, occurred_at=day),
            Event(type=USER_LOGGED_IN, user_id=a, occurred_at=day),
            Event(type=USER_LOGGED_IN, user_id=a, occurred_at=day + timedelta(days=1)),
            Event(type=USER_LOGIN_FAILED, user_id=None, occurred_at=day + timedelta(days=1)),
        ]
    )
    admin = bearer(signer.issue(roles=["admin"]))

    body = (
        await client.get(
            "/stats/summary", params={"since": "2024-02-09", "until": "2024-02-11"}, headers=admin
        )
    ).json()

    assert body["since"] == "2024-02-09"
    assert body["until"] == "2024-02-11"
    assert body["totals"] == {"sign_ups": 2, "logins": 2, "failed_logins": 1}
    assert body["days"] == [
        {"day": "2024-02-09", "sign_ups": 0, "logins": 0, "failed_logins": 0, "active_users": 0},
        {"day": "2024-02-10", "sign_ups": 2, "logins": 1, "failed_logins": 0, "active_users": 2},
        {"day": "2024-02-11", "sign_ups": 0, "logins": 1, "failed_logins": 1, "active_users": 1},
    ]
    default = (await client.get("/stats/summary", headers=admin)).json()
    assert len(default["days"]) == 30
    assert default["until"] == datetime.now(UTC).date().isoformat()


async def test_summary_refuses_bad_ranges(client: httpx.AsyncClient, signer: TestSigner) -> None:
    admin = bearer(signer.issue(roles=["admin"]))
    for params, code in [
        ({"since": "2024-02-11", "until": "2024-02-10"}, "invalid_range"),
        ({"since": "2020-01-01", "until": "2024-01-01"}, "invalid_range"),
        ({"since": "last week"}, "validation_error"),
    ]:
        answer = await client.get("/stats/summary", params=params, headers=admin)
        assert (answer.status_code, answer.json()["code"]) == (422, code), params


def test_rebuild_command_recounts_from_the_ledger(
    settings: StatsServiceSettings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", str(settings.database_url))
    assert main.cli.main(["rebuild"]) == 0
    assert "rebuilt the stats from" in capsys.readouterr().out
    monkeypatch.delenv("DATABASE_URL")
    with pytest.raises(SystemExit, match="DATABASE_URL is not set"):
        main.cli.main(["rebuild"])
