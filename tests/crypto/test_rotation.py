"""Key rotation: new data-key versions, re-encryption while reads go on, retirement,
KEK rotation with re-wrapping, and four-eyes approval of every rotation."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient
from sqlalchemy import select

from payguard.crypto import rotation
from payguard.crypto.envelope import envelope_for
from payguard.crypto.models import DataKey
from payguard.db.engine import Database
from payguard.identity import service as identity
from payguard.identity.models import Customer
from payguard.settings import Settings
from tests.factories import PASSWORD, register, staff_auth


def customers(client: TestClient, count: int) -> list[str]:
    made = []
    for number in range(count):
        reply = client.post(
            "/v1/customers",
            json={
                "username": f"rot{number}",
                "password": PASSWORD,
                "display_name": f"R{number}",
                "phone": f"+86137{number:08d}",
                "email": f"rot{number}@example.com",
            },
        )
        assert reply.status_code == 201, reply.text
        made.append(reply.json()["id"])
    return made


def phones(db: Database, settings: Settings, ids: list[str]) -> list[str | None]:
    with db.read() as session:
        return [
            identity.personal_data(session, settings, session.get(Customer, cid)).phone  # type: ignore[arg-type]
            for cid in ids
        ]


def rotate(client: TestClient, settings: Settings, target: str) -> dict[str, object]:
    asked = client.post(
        "/v1/approvals",
        headers=staff_auth(settings, "admin"),
        json={"action": "keys.rotate", "target": target, "params": {}, "reason": "yearly"},
    )
    assert asked.status_code == 202, asked.text
    maker_again = client.post(
        f"/v1/approvals/{asked.json()['id']}/approve",
        headers={"Authorization": asked.request.headers["Authorization"]},
        json={},
    )
    assert maker_again.status_code == 403  # four-eyes
    done = client.post(
        f"/v1/approvals/{asked.json()['id']}/approve",
        headers=staff_auth(settings, "compliance"),
        json={},
    )
    assert done.status_code == 200 and done.json()["status"] == "executed", done.text
    result: dict[str, object] = done.json()["result"]
    return result


def test_rotating_customer_keys_reencrypts_while_reads_go_on(
    client: TestClient, settings: Settings, db: Database
) -> None:
    ids = customers(client, 12)
    expected = [f"+86137{number:08d}" for number in range(12)]
    assert rotate(client, settings, "customers")["owners_with_new_keys"] == 12
    envelope = envelope_for(settings)
    with db.read() as session:
        # display name, phone and e-mail of 12
        assert rotation.pending_reencryption(session) == 36
    # New writes use the new version at once.
    with db.read() as session:
        newest = session.scalar(
            select(DataKey.id).where(DataKey.owner == ids[0]).order_by(DataKey.version.desc())
        )

    failures: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            if phones(db, settings, ids) != expected:
                failures.append("a read failed during re-encryption")

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        moved = rotation.reencrypt(db, envelope, batch=5)
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert moved == 36
    with db.read() as session:
        assert rotation.pending_reencryption(session) == 0
        sealed = session.scalar(select(Customer.phone).where(Customer.id == ids[0]))
    assert sealed is not None and f".{newest}." in sealed
    # Old versions now hold nothing: retired (destroyed), and reads still work.
    # Right after a rotation other processes may still seal with the old version: kept.
    assert db.transact(rotation.retire_data_keys) == 0
    assert db.transact(lambda session: rotation.retire_data_keys(session, grace_seconds=0)) == 12
    assert phones(db, settings, ids) == expected
    assert rotation.reencrypt(db, envelope) == 0  # resumable: nothing left to do


def test_kek_rotation_rewraps_every_data_key_and_retires_the_old_kek(
    client: TestClient, settings: Settings, db: Database
) -> None:
    ids = customers(client, 3)
    register(client, "kekuser")  # a device, TOTP-less; its outbox message is sealed too
    before = phones(db, settings, ids)
    result = rotate(client, settings, "kek")
    assert result["active_kek"] == "kek-2"
    envelope = envelope_for(settings)
    with db.read() as session:
        report = rotation.status(session, envelope)
    assert report["active_kek"] == "kek-2"
    assert report["keks"] == {"kek-1": 0, "kek-2": report["live_data_keys"]}
    dropped = db.transact(lambda session: rotation.retire_keks(session, envelope))
    assert dropped == ["kek-1"]
    assert "kek-1" not in envelope.keyring.keks
    # A fresh process (empty caches) still reads everything with the new KEK alone.
    envelope._plain_keys.clear()
    assert phones(db, settings, ids) == before


def test_rotation_requests_are_checked(client: TestClient, settings: Settings) -> None:
    bad = client.post(
        "/v1/approvals",
        headers=staff_auth(settings, "admin"),
        json={"action": "keys.rotate", "target": "everything", "params": {}, "reason": "x" * 5},
    )
    assert bad.status_code == 422
    viewer = client.post(
        "/v1/approvals",
        headers=staff_auth(settings, "operations"),
        json={"action": "keys.rotate", "target": "kek", "params": {}, "reason": "yearly"},
    )
    assert viewer.status_code == 403
