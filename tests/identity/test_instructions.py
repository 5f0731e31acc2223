"""Signed payment instructions: tampering, replay, wrong keys, revoked devices, stale times.

Every refusal must be a specific 4xx problem, post nothing and leave a security event.
"""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import rfc8785
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from payguard import cli
from payguard.client.signing import DeviceKey, sign_instruction
from payguard.crypto.envelope import envelope_for
from payguard.db.engine import Database
from payguard.events import service as events
from payguard.identity import instructions
from payguard.settings import Settings, get_settings
from tests.factories import (
    Customer,
    balance,
    pay,
    payment_count,
    register,
    signed,
    staff_auth,
    top_up,
)


@pytest.fixture
def pair(client: TestClient) -> tuple[Customer, Customer]:
    ann, bob = register(client, "ann"), register(client, "bob")
    top_up(client, ann, 500_000)
    pay(client, ann, kind="p2p", amount=100, payee_username="bob")  # bob is a known payee now
    return ann, bob


def _post(client: TestClient, customer: Customer, key: str, body: dict[str, Any]) -> Any:
    headers = {**customer.auth, "Idempotency-Key": key}
    return client.post("/v1/payments", headers=headers, json=body)


def _security_events(db: Database) -> list[dict[str, Any]]:
    with db.read() as session:
        return [
            dict(event.payload)
            for event in events.recent(session, "security.instruction_rejected", limit=100)
        ]


def _nothing_moved(client: TestClient, settings: Settings, ann: Customer, before: int) -> None:
    assert balance(client, ann) == before
    assert payment_count(client, settings) == 2  # the top-up and the first p2p: nothing new


P2P = {"kind": "p2p", "amount": 1_000, "currency": "CNY", "payee_username": "bob", "memo": "tea"}


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount", 99_000),
        ("currency", "USD"),
        ("payee_username", "mallory"),
        ("kind", "merchant"),
        ("memo", "changed"),
        ("nonce", "a-different-nonce-value"),
        ("client_timestamp", "2020-01-01T00:00:00+00:00"),
        ("payer_account_id", "acc_someone_else"),
    ],
)
def test_changing_any_signed_field_is_refused_and_posts_nothing(
    client: TestClient,
    settings: Settings,
    db: Database,
    pair: tuple[Customer, Customer],
    field: str,
    value: Any,
) -> None:
    ann, _bob = pair
    before = balance(client, ann)
    key = str(uuid.uuid4())
    body = signed(ann, P2P, key)
    body[field] = value
    reply = _post(client, ann, key, body)
    assert reply.status_code == 401, reply.text
    assert reply.json()["code"] == "bad-signature"
    _nothing_moved(client, settings, ann, before)
    assert {"customer_id": ann.id, "device_id": ann.device_id, "problem": "bad-signature"} in (
        _security_events(db)
    )


def test_a_different_idempotency_key_breaks_the_signature(
    client: TestClient, settings: Settings, pair: tuple[Customer, Customer]
) -> None:
    ann, _bob = pair
    before = balance(client, ann)
    body = signed(ann, P2P, "key-the-device-signed")
    reply = _post(client, ann, str(uuid.uuid4()), body)
    assert reply.json()["code"] == "bad-signature"
    _nothing_moved(client, settings, ann, before)


def test_the_untouched_instruction_is_accepted_and_its_replay_refused(
    client: TestClient, settings: Settings, db: Database, pair: tuple[Customer, Customer]
) -> None:
    ann, _bob = pair
    key = str(uuid.uuid4())
    body = signed(ann, P2P, key)
    first = _post(client, ann, key, body)
    assert first.status_code == 201, first.text
    after = balance(client, ann)
    replay = _post(client, ann, key, body)
    assert replay.status_code == 409
    assert replay.json()["code"] == "instruction-replayed"
    assert balance(client, ann) == after
    assert any(event["problem"] == "instruction-replayed" for event in _security_events(db))


def test_a_retry_signed_afresh_gets_the_stored_reply_not_a_second_payment(
    client: TestClient, settings: Settings, pair: tuple[Customer, Customer]
) -> None:
    ann, _bob = pair
    key = str(uuid.uuid4())
    first = _post(client, ann, key, signed(ann, P2P, key))
    again = _post(client, ann, key, signed(ann, P2P, key))  # new nonce, same key and content
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]


def test_a_key_that_is_not_the_device_key_is_refused(
    client: TestClient, settings: Settings, pair: tuple[Customer, Customer]
) -> None:
    ann, _bob = pair
    before = balance(client, ann)
    key = str(uuid.uuid4())
    assert ann.device_id is not None
    forged = sign_instruction(
        P2P, key=DeviceKey.generate(), device_id=ann.device_id, idempotency_key=key
    )
    reply = _post(client, ann, key, forged)
    assert reply.json()["code"] == "bad-signature"
    _nothing_moved(client, settings, ann, before)


def test_another_customers_device_is_refused(
    client: TestClient, settings: Settings, pair: tuple[Customer, Customer]
) -> None:
    ann, bob = pair
    before = balance(client, ann)
    key = str(uuid.uuid4())
    assert bob.device_key is not None and bob.device_id is not None
    body = sign_instruction(P2P, key=bob.device_key, device_id=bob.device_id, idempotency_key=key)
    reply = _post(client, ann, key, body)
    assert reply.status_code == 401
    assert reply.json()["code"] == "unknown-device"
    _nothing_moved(client, settings, ann, before)


def test_a_revoked_device_is_refused_and_its_sessions_end(
    client: TestClient, settings: Settings, pair: tuple[Customer, Customer]
) -> None:
    ann, _bob = pair
    revoked = client.delete(f"/v1/devices/{ann.device_id}", headers=ann.auth)
    assert revoked.status_code == 204
    key = str(uuid.uuid4())
    reply = _post(client, ann, key, signed(ann, P2P, key))
    assert reply.status_code == 401  # the session was bound to the device: it ended too
    fresh = client.post(
        "/v1/sessions", json={"username": "ann", "password": "long-enough-password"}
    ).json()["token"]
    ann.token = fresh
    reply = _post(client, ann, key, signed(ann, P2P, key))
    assert reply.status_code == 401
    assert reply.json()["code"] == "unknown-device"


def test_a_stale_timestamp_is_refused(
    client: TestClient, settings: Settings, pair: tuple[Customer, Customer]
) -> None:
    ann, _bob = pair
    before = balance(client, ann)
    key = str(uuid.uuid4())
    assert ann.device_key is not None and ann.device_id is not None
    late = datetime.now(UTC) - timedelta(seconds=settings.instruction_max_skew_seconds + 60)
    body = sign_instruction(
        P2P, key=ann.device_key, device_id=ann.device_id, idempotency_key=key, now=late
    )
    reply = _post(client, ann, key, body)
    assert reply.status_code == 401
    assert reply.json()["code"] == "stale-instruction"
    _nothing_moved(client, settings, ann, before)


def test_an_unsigned_instruction_is_refused(
    client: TestClient, settings: Settings, pair: tuple[Customer, Customer]
) -> None:
    ann, _bob = pair
    reply = _post(client, ann, str(uuid.uuid4()), dict(P2P))
    assert reply.status_code == 401
    assert reply.json()["code"] == "signature-required"


def test_malformed_envelopes_are_4xx(
    client: TestClient, settings: Settings, pair: tuple[Customer, Customer]
) -> None:
    ann, _bob = pair
    key = str(uuid.uuid4())
    body = signed(ann, P2P, key)
    for change in (
        {"signature": "%%%not-base64%%%"},
        {"client_timestamp": "yesterday"},
        {"client_timestamp": "2026-01-01T00:00:00"},
        {"nonce": "short"},
    ):
        reply = _post(client, ann, key, {**body, **change})
        assert 400 <= reply.status_code < 500, reply.text


def test_evidence_is_stored_and_re_verifies(
    client: TestClient,
    settings: Settings,
    pair: tuple[Customer, Customer],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ann, _bob = pair
    key = str(uuid.uuid4())
    reply = _post(client, ann, key, signed(ann, P2P, key))
    payment_id = reply.json()["id"]
    evidence = client.get(
        f"/v1/payments/{payment_id}/evidence", headers=staff_auth(settings, "auditor")
    )
    assert evidence.status_code == 200, evidence.text
    found = evidence.json()
    assert found["signature_valid"] and found["hash_matches"]
    assert found["instruction"]["amount"] == 1_000
    assert found["instruction"]["idempotency_key"] == key
    assert found["device_id"] == ann.device_id

    monkeypatch.setenv("PAYGUARD_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PAYGUARD_VAR_DIR", str(settings.var_dir))  # the keyring that sealed it
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli.app, ["payments", "verify-evidence", payment_id])
        assert result.exit_code == 0, result.output
        assert "signature valid" in result.output
        missing = CliRunner().invoke(cli.app, ["payments", "verify-evidence", "pay_nothing"])
        assert missing.exit_code != 0
    finally:
        get_settings.cache_clear()


def test_tampered_evidence_no_longer_verifies(
    client: TestClient, settings: Settings, db: Database, pair: tuple[Customer, Customer]
) -> None:
    from payguard.identity import instructions
    from payguard.identity.models import InstructionEvidence

    ann, _bob = pair
    key = str(uuid.uuid4())
    payment_id = _post(client, ann, key, signed(ann, P2P, key)).json()["id"]

    envelope = envelope_for(settings)
    where = f"instruction_evidence.canonical.{payment_id}"

    def alter(session: Any) -> None:
        # An insider who holds even the encryption keys: open, change, seal again.
        evidence = session.get(InstructionEvidence, payment_id)
        clear = envelope.open(session, where, evidence.canonical.decode())
        assert '"amount":1000' in clear
        changed = clear.replace('"amount":1000', '"amount":9000')
        evidence.canonical = envelope.seal(
            session, instructions.EVIDENCE_OWNER, where, changed
        ).encode()

    db.transact(alter)
    with db.read() as session:
        check = instructions.check_evidence(session, settings, payment_id)
    assert check is not None
    assert check.instruction["amount"] == 9000
    assert not check.signature_valid
    assert not check.hash_matches

    def scramble(session: Any) -> None:
        # Someone without the keys can only break the sealed bytes.
        evidence = session.get(InstructionEvidence, payment_id)
        evidence.canonical = evidence.canonical[:-8] + b"AAAAAAAA"

    db.transact(scramble)
    with db.read() as session:
        broken = instructions.check_evidence(session, settings, payment_id)
    assert broken is not None and not broken.signature_valid and broken.instruction == {}


def test_p256_device_keys_work_too(client: TestClient, settings: Settings) -> None:
    from tests.factories import register_device

    carl = register(client, "carl", device=False)
    register_device(client, carl)
    carl.device_key = DeviceKey.generate("p256")
    # A second device with a P-256 key, registered through the same flow.
    from tests.factories import database_of, last_code

    client.post("/v1/factors/otp", headers=carl.auth, json={"channel": "sms", "purpose": "device"})
    device = client.post(
        "/v1/devices",
        headers=carl.auth,
        json={
            "name": "p256 phone",
            "algorithm": "p256",
            "public_key": carl.device_key.public_pem,
            "factor": "otp",
            "code": last_code(database_of(client), carl.phone),
        },
    )
    assert device.status_code == 201, device.text
    carl.device_id = device.json()["id"]
    assert top_up(client, carl, 10_000)["status"] == "confirmed"
    signature = signed(carl, P2P, "k")["signature"]
    assert len(base64.urlsafe_b64decode(signature + "==")) > 64  # DER ECDSA, not Ed25519


_INSTRUCTION_VALUES = st.one_of(
    st.text(),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.booleans(),
    st.none(),
)


@given(
    st.dictionaries(
        st.text(alphabet=st.characters(max_codepoint=127), max_size=12),
        _INSTRUCTION_VALUES,
        max_size=12,
    )
)
@hypothesis_settings(max_examples=500, deadline=None)
def test_the_fast_canonical_form_is_byte_for_byte_rfc8785(document: dict[str, object]) -> None:
    try:
        expected = rfc8785.dumps(document)
    except rfc8785.CanonicalizationError:
        return  # e.g. a lone surrogate: refused either way
    assert instructions.canonical_bytes(document) == expected
