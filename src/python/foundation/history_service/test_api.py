# mypy: disable-error-code="index, arg-type, union-attr, misc, str-unpack, attr-defined"
# (redis-py's stream replies are typed too loosely to index without casts.)
from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import redis.asyncio as aioredis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from foundation.devstack.embedded import free_port
from foundation.events.relay import OutboxRelay
from foundation.events.schema import HISTORY_RECORDED, STREAM, USER_DELETED, Event
from foundation.history_service.app import create_app
from foundation.history_service.models import Outbox
from foundation.history_service.services.ingest import HistoryIngest
from foundation.history_service.settings import HistoryServiceSettings
from foundation.shared.redis import Keys
from tests.helpers.apps import closed_port_redis_url, serve_app
from tests.helpers.auth import TestSigner, bearer, test_verifier


def user_headers(signer: TestSigner, user_id: uuid.UUID | None = None) -> tuple[uuid.UUID, dict[str, str]]:
    user_id = user_id or uuid.uuid4()
    return user_id, bearer(signer.issue(user_id=user_id))


async def post(client: httpx.AsyncClient, headers: dict[str, str], **body: object) -> httpx.Response:
    return await client.post("/history", json=body, headers=headers)


async def test_recorded_event_is_returned_with_201_and_listed(
    client: httpx.AsyncClient, signer: TestSigner
) -> None:
    _, headers = user_headers(signer)
    when = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)

    created = await post(
        client, headers, type="app.opened", data={"screen": "home"}, occurred_at=when.isoformat()
    )

    assert created.status_code == 201, created.text
    body = created.json()
    assert body["type"] == "app.opened"
    assert body["data"] == {"screen": "home"}
    assert body["source"] == "client"
    assert datetime.fromisoformat(body["occurred_at"]) == when
    listed = await client.get("/history", headers=headers)
    assert listed.status_code == 200
    assert listed.json() == {"items": [body], "next_cursor": None}


async def test_occurred_at_defaults_to_now(client: httpx.AsyncClient, signer: TestSigner) -> None:
    _, headers = user_headers(signer)
    before = datetime.now(UTC)
    created = await post(client, headers, type="app.closed")
    assert created.status_code == 201
    assert before <= datetime.fromisoformat(created.json()["occurred_at"]) <= datetime.now(UTC)


async def test_a_user_never_sees_another_users_history(client: httpx.AsyncClient, signer: TestSigner) -> None:
    _, alice = user_headers(signer)
    _, bob = user_headers(signer)
    assert (await post(client, alice, type="app.secret", data={"x": 1})).status_code == 201

    assert (await client.get("/history", headers=bob)).json() == {"items": [], "next_cursor": None}
    assert len((await client.get("/history", headers=alice)).json()["items"]) == 1


async def test_history_needs_a_valid_access_token(client: httpx.AsyncClient, signer: TestSigner) -> None:
    missing = await client.get("/history")
    assert missing.status_code == 401
    assert missing.json()["code"] == "missing_token"
    assert missing.headers["www-authenticate"].startswith("Bearer")
    forged = await client.get("/history", headers=bearer(TestSigner().issue()))
    assert forged.status_code == 401
    assert forged.json()["code"] == "invalid_token"
    expired = await client.post("/history", json={"type": "a.b"}, headers=bearer(signer.issue(ttl=-10)))
    assert expired.status_code == 401
    assert expired.json()["code"] == "token_expired"


async def test_invalid_client_events_are_refused_with_their_reason(
    client: httpx.AsyncClient, signer: TestSigner
) -> None:
    _, headers = user_headers(signer)
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    cases = [
        ({"type": "App Opened"}, 422, "invalid_event_type"),
        ({"type": "app..opened"}, 422, "invalid_event_type"),
        ({"type": "x" * 101}, 422, "validation_error"),
        ({"type": "user.logged_in"}, 422, "reserved_event_type"),
        ({"type": "history.recorded"}, 422, "reserved_event_type"),
        ({"type": "app.opened", "occurred_at": future}, 422, "occurred_at_in_future"),
        ({"type": "app.opened", "occurred_at": "2025-01-31T12:00:00"}, 422, "naive_datetime"),
        ({"type": "app.opened", "data": [1, 2]}, 422, "validation_error"),
        ({"type": "app.opened", "user_id": str(uuid.uuid4())}, 422, "validation_error"),
        ({"data": {}}, 422, "validation_error"),
        ({"type": "app.opened", "data": {"blob": "x" * 17_000}}, 413, "event_data_too_large"),
    ]
    for body, status, code in cases:
        answer = await client.post("/history", json=body, headers=headers)
        assert (answer.status_code, answer.json()["code"]) == (status, code), body
        assert answer.headers["content-type"] == "application/problem+json"
    huge = await client.post(
        "/history",
        content=b'{"type":"a.b","data":{"x":"' + b"y" * 70_000 + b'"}}',
        headers={**headers, "content-type": "application/json"},
    )
    assert huge.status_code == 413
    assert huge.json()["code"] == "payload_too_large"
    assert (await client.get("/history", headers=headers)).json()["items"] == []


async def test_a_slightly_future_timestamp_is_accepted_for_clock_skew(
    client: httpx.AsyncClient, signer: TestSigner
) -> None:
    _, headers = user_headers(signer)
    soon = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    assert (await post(client, headers, type="app.opened", occurred_at=soon)).status_code == 201


async def test_pages_go_newest_first_and_filter_by_type_and_time(
    client: httpx.AsyncClient, signer: TestSigner
) -> None:
    _, headers = user_headers(signer)
    start = (datetime.now(UTC) - timedelta(days=3)).replace(minute=0, second=0, microsecond=0)
    for n in range(9):
        kind = "app.opened" if n % 3 else "app.purchased"
        answer = await post(
            client, headers, type=kind, data={"n": n}, occurred_at=(start + timedelta(hours=n)).isoformat()
        )
        assert answer.status_code == 201

    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 4}
        if cursor:
            params["cursor"] = cursor
        body = (await client.get("/history", params=params, headers=headers)).json()
        seen += [item["data"]["n"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == list(range(8, -1, -1))
    assert pages == 3

    purchases = (await client.get("/history", params={"type": "app.purchased"}, headers=headers)).json()
    assert [i["data"]["n"] for i in purchases["items"]] == [6, 3, 0]
    window = {
        "since": (start + timedelta(hours=2)).isoformat(),
        "until": (start + timedelta(hours=5)).isoformat(),
    }
    ranged = (await client.get("/history", params=window, headers=headers)).json()
    assert [i["data"]["n"] for i in ranged["items"]] == [4, 3, 2]
    naive = {key: value.removesuffix("+00:00") for key, value in window.items()}
    assert (await client.get("/history", params=naive, headers=headers)).json() == ranged


async def test_bad_list_parameters_are_refused(client: httpx.AsyncClient, signer: TestSigner) -> None:
    _, headers = user_headers(signer)
    for params, status, code in [
        ({"limit": 0}, 422, "validation_error"),
        ({"limit": 201}, 422, "validation_error"),
        ({"cursor": "not-a-cursor"}, 400, "invalid_cursor"),
        ({"cursor": "eyJ0IjoibmFoIn0"}, 400, "invalid_cursor"),  # {"t":"nah"}
        ({"cursor": "WzFd"}, 400, "invalid_cursor"),  # [1]
        ({"since": "2025-01-02T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, 422, "invalid_range"),
        ({"since": "yesterday"}, 422, "validation_error"),
    ]:
        answer = await client.get("/history", params=params, headers=headers)
        assert (answer.status_code, answer.json()["code"]) == (status, code), params


async def test_pagination_is_stable_under_concurrent_inserts(
    client: httpx.AsyncClient, signer: TestSigner
) -> None:
    _, headers = user_headers(signer)
    base = datetime.now(UTC) - timedelta(days=1)
    original = []
    for n in range(30):
        answer = await post(
            client,
            headers,
            type="app.tick",
            data={"n": n},
            occurred_at=(base + timedelta(seconds=n)).isoformat(),
        )
        original.append(answer.json()["id"])

    async def insert_more() -> None:
        for n in range(30):
            # Newer events, and older ones arriving late: neither may shift a page.
            when = datetime.now(UTC) if n % 2 else base - timedelta(seconds=n)
            await post(client, headers, type="app.tick", data={"late": n}, occurred_at=when.isoformat())
            await asyncio.sleep(0)

    async def read_all() -> list[dict[str, object]]:
        items: list[dict[str, object]] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 7}
            if cursor:
                params["cursor"] = cursor
            body = (await client.get("/history", params=params, headers=headers)).json()
            items += body["items"]
            cursor = body["next_cursor"]
            if not cursor:
                return items
            await asyncio.sleep(0)

    _, items = await asyncio.gather(insert_more(), read_all())

    ids = [item["id"] for item in items]
    assert len(ids) == len(set(ids))  # nothing twice
    assert set(original) <= set(ids)  # nothing that existed was skipped
    keys = [(item["occurred_at"], item["id"]) for item in items]
    assert [datetime.fromisoformat(str(k[0])) for k in keys] == sorted(
        (datetime.fromisoformat(str(k[0])) for k in keys), reverse=True
    )


async def test_a_client_event_is_published_as_history_recorded(
    client: httpx.AsyncClient,
    signer: TestSigner,
    sessions: async_sessionmaker[AsyncSession],
    settings: HistoryServiceSettings,
) -> None:
    user_id, headers = user_headers(signer)
    created = (await post(client, headers, type="app.shared", data={"secret": "stays here"})).json()
    redis = aioredis.Redis.from_url(str(settings.redis_url))
    try:
        relay = OutboxRelay(sessions, redis, Outbox, prefix=settings.redis_key_prefix)
        while await relay.run_once():
            pass
        entries = await redis.xrange(Keys(settings.redis_key_prefix)(STREAM))
    finally:
        await redis.aclose()
    published = [Event.from_fields(fields) for _, fields in entries]
    mine = [e for e in published if e.user_id == user_id]
    assert len(mine) == 1
    assert (str(mine[0].id), mine[0].type, mine[0].data) == (
        created["id"],
        HISTORY_RECORDED,
        {"type": "app.shared"},
    )


async def test_a_deleted_user_can_no_longer_record(
    client: httpx.AsyncClient, signer: TestSigner, sessions: async_sessionmaker[AsyncSession]
) -> None:
    user_id, headers = user_headers(signer)
    assert (await post(client, headers, type="app.opened")).status_code == 201
    await HistoryIngest(sessions)([Event(type=USER_DELETED, user_id=user_id)])

    assert (await client.get("/history", headers=headers)).json()["items"] == []
    refused = await post(client, headers, type="app.opened")
    assert refused.status_code == 403
    assert refused.json()["code"] == "account_deleted"


async def test_a_burst_of_authenticated_requests_is_served_not_refused(
    settings: HistoryServiceSettings, signer: TestSigner
) -> None:
    """Each authenticated request checks the deny-list in Redis. With redis-py's default pool
    (100 connections, then ``MaxConnectionsError``), 150 at once got 500s."""
    small = settings.model_copy(update={"redis_max_connections": 3})
    _, headers = user_headers(signer)
    async with serve_app(create_app(small, token_verifier=test_verifier(signer))) as client:
        answers = await asyncio.gather(*(client.get("/history", headers=headers) for _ in range(150)))
    assert [answer.status_code for answer in answers] == [200] * 150


async def test_when_the_deny_list_cannot_be_read_requests_get_503_to_retry(
    settings: HistoryServiceSettings, signer: TestSigner
) -> None:
    """Fail closed with a clear answer: a revoked session's token must not pass because Redis
    is away."""
    _, headers = user_headers(signer)
    away = settings.model_copy(update={"redis_url": closed_port_redis_url()})
    async with serve_app(create_app(away, token_verifier=test_verifier(signer))) as client:
        answer = await client.get("/history", headers=headers)
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["code"] == "redis_unavailable"


async def test_database_away_or_its_pool_exhausted_is_a_503_to_retry(
    settings: HistoryServiceSettings, signer: TestSigner
) -> None:
    _, headers = user_headers(signer)
    away = settings.model_copy(
        update={"database_url": f"postgresql://postgres@127.0.0.1:{free_port()}/history"}
    )
    async with serve_app(create_app(away, token_verifier=test_verifier(signer))) as client:
        answer = await client.get("/history", headers=headers)
        assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "database_unavailable"
        assert str(away.database_url) not in answer.text

    one = settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout": 0.2})
    async with serve_app(create_app(one, token_verifier=test_verifier(signer))) as client:
        async with client.state["engine"].connect():  # the pool's only connection, held
            answer = await client.get("/history", headers=headers)
            assert answer.status_code == 503 and answer.json()["code"] == "database_unavailable"
        assert (await client.get("/history", headers=headers)).status_code == 200
