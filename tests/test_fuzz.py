"""Property-based fuzzing with schemathesis, every check (as `schemathesis run --checks all`):
no 5xx, each status, content type, header and body as documented, invalid data refused,
valid data accepted or refused only for a documented reason, unsupported methods 405 with
`Allow`. Once through the gateway against its merged document (what a client of the public
API sees, the gateway's own answers included), and against each service's own document. One
stack for both, on loopback, real PostgreSQL and Redis, signed in with real tokens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers.fuzz_stack import FuzzStack, run_schemathesis, running_stack

MAX_EXAMPLES = 25  # per operation and phase; the data is deterministic (a fixed seed)


@pytest.fixture(scope="module")
def stack(postgres_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzStack]:
    with running_stack(postgres_url, redis_url, tmp_path_factory.mktemp("keys")) as running:
        yield running


@pytest.mark.timeout(300)
def test_the_public_api_keeps_its_merged_documented_contract(stack: FuzzStack) -> None:
    report = run_schemathesis(stack, f"{stack.gateway}/openapi.json", stack.gateway, MAX_EXAMPLES)
    assert not report.failures, "\n".join(report.failures)
    assert report.requests > 1000  # it did fuzz: every operation, many requests each


@pytest.mark.timeout(300)
@pytest.mark.parametrize("service", ["auth", "history", "stats"])
def test_each_service_keeps_its_own_documented_contract(stack: FuzzStack, service: str) -> None:
    url = stack.services[service]
    report = run_schemathesis(stack, f"{url}/openapi.json", url, MAX_EXAMPLES)
    assert not report.failures, "\n".join(report.failures)
    assert report.requests > 100  # it did fuzz: every operation, many requests each
