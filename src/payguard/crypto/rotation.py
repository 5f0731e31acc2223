"""Key rotation: new data-key versions, re-encryption, KEK re-wrapping, retirement.

- ``rotate_data_keys``: every owner of a purpose gets a new DEK version; new writes use it
  at once, old values still open with the old version.
- ``reencrypt``: moves sealed values to their owner's newest key, a batch per transaction,
  so it can stop and resume anywhere and reads keep working throughout.
- ``retire_data_keys``: destroys old versions no sealed value uses any more.
- ``rotate_kek``: a new KEK becomes active and every DEK is re-wrapped under it;
  ``retire_keks`` drops KEKs no DEK is wrapped under.

The columns that hold sealed values are registered by the modules that own them
(``crypto/sealed.py``), so this module reads them by name without knowing their domain.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import Column, Table, func, select, update
from sqlalchemy.orm import Session

from payguard import clock
from payguard.crypto.envelope import KEY_CACHE_TTL, Envelope
from payguard.crypto.keyring import add_kek, drop_kek
from payguard.crypto.models import DataKey
from payguard.crypto.sealed import SEALED, SealedColumn
from payguard.db.engine import Database
from payguard.db.registry import metadata
from payguard.errors import ValidationProblem

PURPOSES = {
    "customers": "customer data (names, phones, e-mail, TOTP secrets)",
    "staff": "staff TOTP secrets",
    "evidence": "signed instruction evidence",
    "outbox": "outbox messages",
}


def _owner_filter(purpose: str) -> object:
    if purpose == "customers":
        return ~DataKey.owner.contains(":")
    if purpose == "staff":
        return DataKey.owner.startswith("staff:")
    if purpose in ("evidence", "outbox"):
        return DataKey.owner == f"platform:{purpose}"
    raise ValidationProblem(f"purpose: one of kek, {', '.join(PURPOSES)}")


def _active_versions(session: Session, purpose: str) -> dict[str, int]:
    rows = session.execute(
        select(DataKey.owner, func.max(DataKey.version))
        .where(_owner_filter(purpose), DataKey.wrapped.is_not(None))  # type: ignore[arg-type]
        .group_by(DataKey.owner)
    )
    return {owner: int(version) for owner, version in rows}


def rotate_data_keys(session: Session, envelope: Envelope, purpose: str) -> int:
    """A new key version for every owner of ``purpose``; returns how many owners."""
    owners = _active_versions(session, purpose)
    for owner, version in owners.items():
        envelope._new_key(session, owner, version=version + 1)
    envelope.forget_cached_keys()
    return len(owners)


def _active_key_ids(session: Session) -> dict[str, str]:
    """owner → id of their newest live key."""
    newest: dict[str, tuple[int, str]] = {}
    for key_id, owner, version in session.execute(
        select(DataKey.id, DataKey.owner, DataKey.version).where(DataKey.wrapped.is_not(None))
    ):
        if owner not in newest or version > newest[owner][0]:
            newest[owner] = (version, key_id)
    return {owner: key_id for owner, (_, key_id) in newest.items()}


def pending_reencryption(session: Session) -> int:
    """How many sealed values are not under their owner's newest key."""
    active = set(_active_key_ids(session).values())
    owners = {key_id: owner for key_id, owner in session.execute(select(DataKey.id, DataKey.owner))}
    count = 0
    for spec in SEALED:
        if spec.immutable:
            continue
        for (value,) in session.execute(select(_column(spec))):
            key_id = _key_id_of(value, spec)
            if key_id is not None and key_id not in active and key_id in owners:
                count += 1
    return count


def _key_id_of(value: object, spec: SealedColumn) -> str | None:
    if value is None:
        return None
    raw = value.decode() if isinstance(value, bytes) else str(value)
    parts = raw.split(".", 2)
    return parts[1] if len(parts) == 3 and parts[0] == "pg1" else None


def reencrypt(
    db: Database,
    envelope: Envelope,
    *,
    batch: int = 500,
    on_progress: Callable[[int], None] | None = None,
) -> int:
    """Move every sealed value to its owner's newest key; returns how many moved."""
    moved = 0
    for spec in SEALED:
        if spec.immutable:
            continue  # ledger rows keep their key version until their retention ends
        while True:
            done = db.transact(_batch_of(envelope, spec, batch))
            moved += done
            if on_progress is not None and done:
                on_progress(moved)
            if done < batch:
                break
    return moved


def _batch_of(envelope: Envelope, spec: SealedColumn, batch: int) -> Callable[[Session], int]:
    def work(session: Session) -> int:
        return _reencrypt_batch(session, envelope, spec, batch)

    return work


def _table(spec: SealedColumn) -> Table:
    return metadata.tables[spec.table]


def _column(spec: SealedColumn) -> Column[Any]:
    return _table(spec).c[spec.column]


def _reencrypt_batch(session: Session, envelope: Envelope, spec: SealedColumn, batch: int) -> int:
    active = _active_key_ids(session)
    owner_of = {
        key_id: owner for key_id, owner in session.execute(select(DataKey.id, DataKey.owner))
    }
    stale = []
    row_key = _table(spec).c[spec.key_column]
    for row_id, value in session.execute(select(row_key, _column(spec))):
        key_id = _key_id_of(value, spec)
        if key_id is None or key_id not in owner_of:
            continue
        owner = owner_of[key_id]
        if active.get(owner, key_id) != key_id:
            stale.append((row_id, value, owner))
            if len(stale) == batch:
                break
    for row_id, value, owner in stale:
        where = spec.aad(row_id)
        raw = value.decode() if isinstance(value, bytes) else value
        resealed = envelope.seal(session, owner, where, envelope.open(session, where, raw))
        session.execute(
            update(_table(spec))
            .where(row_key == row_id)
            .values({spec.column: resealed.encode() if spec.binary else resealed})
        )
    return len(stale)


def retire_data_keys(session: Session, *, grace_seconds: float = 2 * KEY_CACHE_TTL) -> int:
    """Destroy old key versions that no sealed value uses; returns how many.

    A version is kept while its successor is younger than ``grace_seconds``: another
    process may still be sealing with it from its key cache."""
    active = set(_active_key_ids(session).values())
    cutoff = clock.now() - timedelta(seconds=grace_seconds)
    recent_owners = set(
        session.scalars(
            select(DataKey.owner).where(
                DataKey.wrapped.is_not(None), DataKey.version > 1, DataKey.created_at > cutoff
            )
        )
    )
    used: set[str] = set()
    for spec in SEALED:
        for (value,) in session.execute(select(_column(spec))):
            key_id = _key_id_of(value, spec)
            if key_id is not None:
                used.add(key_id)
    retired = [
        key_id
        for key_id, owner in session.execute(
            select(DataKey.id, DataKey.owner).where(DataKey.wrapped.is_not(None))
        )
        if key_id not in active and key_id not in used and owner not in recent_owners
    ]
    if retired:
        session.execute(
            update(DataKey)
            .where(DataKey.id.in_(retired))
            .values(wrapped=None, destroyed_at=clock.now())
        )
    return len(retired)


def rotate_kek(session: Session, envelope: Envelope) -> tuple[str, int]:
    """A new active KEK, and every live DEK re-wrapped under it; returns (id, re-wrapped)."""
    new_id = envelope.hsm.rotate() if envelope.hsm is not None else add_kek(envelope.keyring)
    rewrapped = 0
    for row in session.scalars(
        select(DataKey).where(DataKey.wrapped.is_not(None), DataKey.kek_id != new_id)
    ):
        key = envelope._unwrap(row)
        row.wrapped, row.kek_id = envelope._wrap(key, row.id, row.suite)
        row.provider = envelope.provider  # a rotation also moves local keys into the HSM
        rewrapped += 1
    session.flush()
    return new_id, rewrapped


def retire_keks(session: Session, envelope: Envelope) -> list[str]:
    """Drop KEKs that wrap no live data key (never the active one)."""
    keyring = envelope.keyring
    keyring.reload()
    if envelope.hsm is not None:
        hsm = envelope.hsm
        used = set(
            session.scalars(select(DataKey.kek_id).where(DataKey.wrapped.is_not(None)).distinct())
        )
        unused = [k for k in hsm.kek_ids() if k != hsm.active_kek_id and k not in used]
        for kek_id in unused:
            hsm.drop(kek_id)
        return unused
    in_use = set(
        session.scalars(select(DataKey.kek_id).where(DataKey.wrapped.is_not(None)).distinct())
    )
    dropped = [
        kek_id
        for kek_id in list(keyring.keks)
        if kek_id != keyring.active_kek_id and kek_id not in in_use
    ]
    for kek_id in dropped:
        drop_kek(keyring, kek_id)
    return dropped


def status(session: Session, envelope: Envelope) -> dict[str, object]:
    keyring = envelope.keyring
    keyring.reload()
    by_kek = {
        kek_id: int(count)
        for kek_id, count in session.execute(
            select(DataKey.kek_id, func.count())
            .where(DataKey.wrapped.is_not(None))
            .group_by(DataKey.kek_id)
        )
    }
    known = envelope.hsm.kek_ids() if envelope.hsm is not None else sorted(keyring.keks)
    return {
        "provider": envelope.provider,
        "active_kek": envelope.active_kek_id,
        "keks": {kek_id: by_kek.get(kek_id, 0) for kek_id in known},
        "live_data_keys": sum(by_kek.values()),
        "destroyed_data_keys": session.scalar(
            select(func.count()).where(DataKey.wrapped.is_(None))
        ),
        "values_awaiting_reencryption": pending_reencryption(session),
    }
