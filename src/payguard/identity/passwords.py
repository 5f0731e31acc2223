"""Argon2id password hashing (argon2-cffi); parameters come from Settings."""

from __future__ import annotations

import contextlib
from functools import lru_cache

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from payguard.settings import Settings

# Checked when the account does not exist, so an unknown user costs as much as a known one.
_DUMMY_PASSWORD = "payguard-timing-equaliser"  # noqa: S105 - not a credential


@lru_cache(maxsize=4)
def _hasher(time_cost: int, memory_kib: int, parallelism: int) -> PasswordHasher:
    return PasswordHasher(
        time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism, type=Type.ID
    )


def hasher_for(settings: Settings) -> PasswordHasher:
    return _hasher(
        settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism
    )


def hash_password(settings: Settings, password: str) -> str:
    return hasher_for(settings).hash(password)


def verify_password(settings: Settings, stored_hash: str | None, password: str) -> bool:
    hasher = hasher_for(settings)
    if stored_hash is None:
        # Spend the same work as a real check, so response time does not reveal the account.
        with contextlib.suppress(VerificationError, InvalidHashError):
            hasher.verify(_dummy_hash(settings), password)
        return False
    try:
        return hasher.verify(stored_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@lru_cache(maxsize=4)
def _dummy_hash_for(time_cost: int, memory_kib: int, parallelism: int) -> str:
    return _hasher(time_cost, memory_kib, parallelism).hash(_DUMMY_PASSWORD)


def _dummy_hash(settings: Settings) -> str:
    return _dummy_hash_for(
        settings.argon2_time_cost, settings.argon2_memory_kib, settings.argon2_parallelism
    )


def needs_rehash(settings: Settings, stored_hash: str) -> bool:
    return hasher_for(settings).check_needs_rehash(stored_hash)
