from __future__ import annotations

import multiprocessing
import time
from typing import Any

import pytest

from foundation.auth_service.services import passwords
from foundation.auth_service.services.passwords import PasswordHasher, PasswordPolicy, normalise
from foundation.shared.errors import ValidationFailed

hasher = PasswordHasher()  # OWASP minimum: m=19 MiB, t=2, p=1


def test_hashes_are_argon2id_at_the_configured_cost_and_salted() -> None:
    first, second = hasher.hash("violet-Harbor-93"), hasher.hash("violet-Harbor-93")
    assert first.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert first != second  # a fresh salt each time


def test_verify_accepts_the_password_and_refuses_others() -> None:
    stored = hasher.hash("violet-Harbor-93")
    assert hasher.verify(stored, "violet-Harbor-93")
    assert not hasher.verify(stored, "violet-harbor-93")
    assert not hasher.verify("not a hash", "violet-Harbor-93")


def test_verify_without_a_hash_checks_the_dummy_and_fails() -> None:
    assert hasher.dummy_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert not hasher.verify(None, "dummy password for timing equality")


def test_verification_is_the_same_for_equivalent_unicode_forms() -> None:
    stored = hasher.hash("\uff23afé-ﬁ-harbor-93")  # fullwidth C, ligature fi
    assert hasher.verify(stored, "Cafe\u0301-fi-harbor-93")
    assert normalise("ﬁ") == "fi"


def test_a_hash_at_other_parameters_needs_rehashing() -> None:
    stronger = PasswordHasher(memory_kib=19_456, time_cost=3)
    old = hasher.hash("violet-Harbor-93")
    assert stronger.needs_rehash(old)
    assert not hasher.needs_rehash(old)
    assert stronger.verify(old, "violet-Harbor-93")  # old hashes still verify


async def test_async_hashing_runs_off_the_event_loop_with_the_same_result() -> None:
    stored = await hasher.hash_async("violet-Harbor-93")
    assert await hasher.verify_async(stored, "violet-Harbor-93")
    assert not await hasher.verify_async(stored, "wrong")


@pytest.mark.parametrize(
    "password",
    [
        "violet-Harbor-93",
        "correct horse battery staple",
        "x7#Lq" * 25 + "abc",
        "日本語のパスワード-正しい-馬-93",
    ],
)
def test_policy_accepts_long_unguessable_passwords(password: str) -> None:
    PasswordPolicy().check(password)


@pytest.mark.parametrize(
    ("password", "inputs", "message"),
    [
        ("short1!", (), "Use 8 to 128 characters (this one has 7)"),
        ("a" * 129, (), "this one has 129"),
        ("password1", (), "common"),
        ("12345678", (), "common"),
        ("alexandra1984", ("alexandra1984@example.com", "alexandra1984"), ""),
    ],
)
def test_policy_refuses_short_long_common_and_personal_passwords(
    password: str, inputs: tuple[str, ...], message: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        PasswordPolicy().check(password, inputs)
    assert caught.value.code == "weak_password"
    assert message in caught.value.detail
    assert caught.value.extra["errors"][0]["field"] == "password"


def test_policy_counts_characters_after_normalisation() -> None:
    # Seven ligatures become fourteen letters: long enough.
    PasswordPolicy(min_score=0).check("ﬁﬂﬁﬂﬁﬂﬁ")
    with pytest.raises(ValidationFailed):
        PasswordPolicy(min_score=0).check("ﬁﬂﬁ")


@pytest.fixture()
def one_shared_slot(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``share_hashing_slots`` as the server calls it, on a one-core machine; the semaphore."""
    monkeypatch.setattr(passwords, "hashing_threads", lambda: 1)
    monkeypatch.setattr(passwords, "_shared_slots", None)
    passwords.share_hashing_slots()
    return passwords._shared_slots


def test_shared_slots_limit_hashing_across_forked_workers(one_shared_slot: Any) -> None:
    """Worker processes forked after ``share_hashing_slots`` hash at most one password per
    core between them: with every slot taken elsewhere, a forked worker's hash waits."""
    slots = one_shared_slot
    assert slots is not None
    stored = hasher.hash("violet-Harbor-93")
    context = multiprocessing.get_context("fork")
    done = context.Event()

    def worker() -> None:
        if hasher.verify(stored, "violet-Harbor-93"):
            done.set()

    slots.acquire()  # this process holds the only slot
    child = context.Process(target=worker)
    child.start()
    try:
        assert not done.wait(0.5), "the forked worker hashed while no slot was free"
    finally:
        slots.release()
    assert done.wait(10), "the forked worker never hashed once the slot was free"
    child.join(10)
    assert child.exitcode == 0


def test_a_slot_never_given_back_delays_hashing_but_does_not_stop_it(
    one_shared_slot: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker killed mid-hash keeps its slot for good; the others wait a bounded time."""
    monkeypatch.setattr(passwords, "SLOT_WAIT_SECONDS", 0.2)
    stored = hasher.hash("violet-Harbor-93")
    one_shared_slot.acquire()  # leaked: never released
    started = time.monotonic()
    assert hasher.verify(stored, "violet-Harbor-93")
    assert 0.2 <= time.monotonic() - started < 5
