"""Passwords: the policy a new one must meet, and argon2id hashing.

Hashing runs in worker threads (argon2-cffi releases the GIL), so a sign-in's hash never
blocks the event loop. At most one hash per core runs at once, across all of the server's
worker processes: argon2id is memory-hard, so more hashes at once than cores only evict
each other's memory from the caches, costing more CPU each, and delay every sign-in.

Each process has as many hashing threads as there are cores, not its share of them:
keep-alive connections can land on the server's workers unevenly, even all on one, and a
worker that could only use its share would leave the other cores idle while its sign-ins
queue. What keeps the total at one hash per core is a semaphore the workers inherit from
the server process (``share_hashing_slots``, called by ``serve`` before the workers are
forked). The measurements behind both choices: docs/performance.md.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import unicodedata
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import zxcvbn
from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from foundation.shared.cpu import usable_cores
from foundation.shared.errors import ValidationFailed

ZXCVBN_MAX_LENGTH = 72  # the library refuses longer input; the first 72 characters decide


def hashing_threads() -> int:
    """The CPU cores this process may use (its affinity mask, capped by a container's CPU
    limit)."""
    return usable_cores()


# A semaphore with one slot per core, made in the server process before it forks its
# workers, so that they all share it. None in a process that was not forked from one (tests,
# scripts, a server started with the "spawn" method): there each process only limits itself.
_shared_slots: Any = None

# How long a hash waits for a slot before it runs without one. Waits are normally a hash or
# two (tens of milliseconds); a worker killed mid-hash never gives its slot back, and this
# bounds what that costs (a little oversubscription) instead of stalling every sign-in.
SLOT_WAIT_SECONDS = 2.0


@contextmanager
def _hashing_slot() -> Iterator[None]:
    slots = _shared_slots
    acquired = slots is not None and slots.acquire(timeout=SLOT_WAIT_SECONDS)
    try:
        yield
    finally:
        if acquired:
            slots.release()


def share_hashing_slots() -> None:
    """Let the worker processes forked after this call hash at most one password per core at
    once between them. Call it in the server process, before the workers start."""
    global _shared_slots
    if "fork" in multiprocessing.get_all_start_methods():
        _shared_slots = multiprocessing.get_context("fork").BoundedSemaphore(hashing_threads())


def normalise(password: str) -> str:
    """NFKC, so the same password typed on different keyboards is the same password."""
    return unicodedata.normalize("NFKC", password)


@dataclass(frozen=True)
class PasswordPolicy:
    min_length: int = 8
    max_length: int = 128
    min_score: int = 2  # zxcvbn: 0 too guessable .. 4 very unguessable

    def check(self, password: str, user_inputs: Sequence[str] = ()) -> None:
        """Raise ``ValidationFailed`` (code ``weak_password``) saying what is wrong."""
        password = normalise(password)
        length = len(password)
        if length < self.min_length or length > self.max_length:
            raise self._refuse(
                f"Use {self.min_length} to {self.max_length} characters (this one has {length})."
            )
        result = zxcvbn.zxcvbn(password[:ZXCVBN_MAX_LENGTH], user_inputs=list(user_inputs))
        if int(result["score"]) < self.min_score:
            feedback = result.get("feedback") or {}
            reasons = [feedback.get("warning") or "This password is too easy to guess."]
            reasons += list(feedback.get("suggestions") or [])
            raise self._refuse(" ".join(reason for reason in reasons if reason))

    @staticmethod
    def _refuse(message: str) -> ValidationFailed:
        return ValidationFailed(
            message,
            [{"field": "password", "location": "body", "message": message, "type": "weak_password"}],
            code="weak_password",
        )


class PasswordHasher:
    """argon2id with the configured cost; knows when a stored hash needs upgrading."""

    def __init__(self, memory_kib: int = 19_456, time_cost: int = 2, parallelism: int = 1) -> None:
        self._hasher = Argon2Hasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        # Verified against when the email is unknown, so both failures take the same time.
        self.dummy_hash = self._hasher.hash("dummy password for timing equality")
        self._pool = ThreadPoolExecutor(hashing_threads(), thread_name_prefix="argon2")

    def hash(self, password: str) -> str:
        with _hashing_slot():
            return self._hasher.hash(normalise(password))

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Constant work whether or not there is a hash: a missing one checks the dummy."""
        with _hashing_slot():
            return self._verify(stored_hash, password)

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self.dummy_hash, normalise(password)) and bool(
                stored_hash
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)

    async def hash_async(self, password: str) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.hash, password)

    async def verify_async(self, stored_hash: str | None, password: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self.verify, stored_hash, password)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
