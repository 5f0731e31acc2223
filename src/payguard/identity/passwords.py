"""Password policy and Argon2id hashing (argon2-cffi); parameters come from Settings.

Policy (NIST SP 800-63B §5.1.1.2): at least 10 characters, at most 256, not one of the
20,000 most common passwords, not the username. No composition rules: they make
passwords harder to remember without making them harder to guess.
"""

from __future__ import annotations

import contextlib
import gzip
from functools import lru_cache
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from payguard.errors import ValidationProblem
from payguard.settings import Settings

MIN_LENGTH = 10
MAX_LENGTH = 256

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


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords (see identity/data/NOTICE), lower-cased."""
    data = resources.files("payguard.identity").joinpath("data/common-passwords.txt.gz")
    text = gzip.decompress(data.read_bytes()).decode()
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


def check_password_policy(password: str, *, username: str | None = None) -> None:
    """Refuse a password a guesser would try early; the message says why, never echoes it."""
    if len(password) < MIN_LENGTH:
        raise ValidationProblem(f"password: at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise ValidationProblem(f"password: at most {MAX_LENGTH} characters")
    folded = password.strip().lower()
    if folded in common_passwords():
        raise ValidationProblem("password: this is a commonly used password; choose another")
    if username and username.lower() in folded:
        raise ValidationProblem("password: must not contain the username")
    if len(set(folded)) < 4:
        raise ValidationProblem("password: too few different characters")
