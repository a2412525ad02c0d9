"""Passwords: the policy a new one must meet, and argon2id hashing.

Hashing runs in worker threads (argon2-cffi releases the GIL), so a login's ~25 ms of
hashing never blocks the event loop. The threads are the hasher's own and there are only as
many as this process's share of the cores (``hashing_threads``): argon2id is memory-hard, so
more hashes at once than cores only evict each other's memory from the caches (measured: 8
at once on 2 cores cost 13 % more CPU each than 2 at once) and delay every login.
"""

from __future__ import annotations

import asyncio
import os
import unicodedata
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import zxcvbn
from argon2 import PasswordHasher as Argon2Hasher
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from foundation.shared.errors import ValidationFailed

ZXCVBN_MAX_LENGTH = 72  # the library refuses longer input; the first 72 characters decide


def hashing_threads() -> int:
    """This process's share of the CPU cores it may run on: the cores divided among the
    server's worker processes (``WEB_CONCURRENCY``, which ``serve --workers`` sets)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    processes = int(os.environ.get("WEB_CONCURRENCY") or 1)
    return max(1, cores // max(1, processes))


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
        return self._hasher.hash(normalise(password))

    def verify(self, stored_hash: str | None, password: str) -> bool:
        """Constant work whether or not there is a hash: a missing one checks the dummy."""
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
