"""No personal data in clear in any table; the right of access; erasure by
crypto-shredding that leaves the ledger whole."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from typer.testing import CliRunner

from payguard import cli
from payguard.db.engine import Database
from payguard.db.registry import metadata
from payguard.identity import service as identity
from payguard.identity.models import Customer
from payguard.settings import Settings, get_settings
from tests.factories import (
    PASSWORD,
    Outbox,
    invariants,
    last_code,
    pay,
    register,
    staff_auth,
)

PHONE = "+8613912345678"
EMAIL = "mei.lin@example.com"
LEGAL_NAME = "Lin Meixiu"
PASSPORT = "E98765432"
BANK_ACCOUNT = "6222020200998877"
MEMO = "rent to Lin Meixiu, room 1204"
DISPLAY_NAME = "Meimei from Hangzhou"
DEVICE_NAME = "Mei's red phone"


def registered(client: TestClient) -> dict[str, str]:
    reply = client.post(
        "/v1/customers",
        json={
            "username": "mei",
            "password": PASSWORD,
            "display_name": DISPLAY_NAME,
            "phone": PHONE,
            "email": EMAIL,
            "legal_name": LEGAL_NAME,
            "id_document_type": "passport",
            "id_number": PASSPORT,
        },
    )
    assert reply.status_code == 201, reply.text
    body: dict[str, str] = reply.json()
    return body


def dump(db: Database) -> str:
    """Every value of every row of every table, as text."""
    parts: list[str] = []
    with db.engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(text(f"SELECT * FROM {table.name}")):
                parts.extend(
                    value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                    for value in row
                )
    return "\n".join(parts)


def test_no_personal_data_is_stored_in_clear(
    client: TestClient, settings: Settings, db: Database
) -> None:
    from payguard.client.signing import DeviceKey
    from tests.factories import Customer as TestCustomer

    body = registered(client)
    token = client.post("/v1/sessions", json={"username": "mei", "password": PASSWORD}).json()
    mei = TestCustomer(body["id"], "mei", token["token"], body["wallet_account_ids"][0], PHONE)
    auth = mei.auth
    totp = client.post("/v1/factors/totp", headers=auth).json()
    # A device bound with an SMS code (through the outbox), then signed payments.
    client.post("/v1/factors/otp", headers=auth, json={"channel": "sms", "purpose": "device"})
    key = DeviceKey.generate()
    device = client.post(
        "/v1/devices",
        headers=auth,
        json={
            "name": DEVICE_NAME,
            "algorithm": key.algorithm,
            "public_key": key.public_pem,
            "factor": "otp",
            "code": last_code(Outbox(db, settings), PHONE),
        },
    )
    assert device.status_code == 201, device.text
    mei.device_key, mei.device_id = key, device.json()["id"]
    topped = pay(
        client,
        mei,
        kind="top_up",
        amount=50_000,
        bank_account=BANK_ACCOUNT,
        db=Outbox(db, settings),
    )
    assert topped.status_code == 201, topped.text
    register(client, "kai", device=False)
    paid = pay(
        client, mei, kind="p2p", amount=1_000, payee_username="kai", memo=MEMO,
        db=Outbox(db, settings),
    )  # fmt: skip
    assert paid.status_code == 201, paid.text
    assert paid.json()["memo"] == MEMO  # the payer sees it

    everything = dump(db)
    for secret in (
        PHONE,
        PHONE.lstrip("+"),
        EMAIL,
        LEGAL_NAME,
        PASSPORT,
        BANK_ACCOUNT,
        totp["secret"],
        MEMO,
        DISPLAY_NAME,
        DEVICE_NAME,
    ):
        assert secret not in everything, f"{secret!r} is stored in clear"
    # ...yet the platform can still use them.
    profile = client.get(f"/v1/customers/{mei.id}", headers=staff_auth(settings, "viewer")).json()
    assert profile["legal_name"] == LEGAL_NAME
    assert profile["phone_masked"].endswith("5678") and PHONE not in json.dumps(profile)
    with db.read() as session:
        assert [c.id for c in identity.find_by_phone(session, settings, PHONE)] == [mei.id]
    assert profile["display_name"] == DISPLAY_NAME
    listed = client.get("/v1/devices", headers=auth).json()
    assert [device["name"] for device in listed] == [DEVICE_NAME]
    statement = client.get(f"/v1/accounts/{mei.wallet_id}/statement", headers=auth).json()
    assert MEMO in [line["memo"] for line in statement["lines"]]


@pytest.fixture
def cli_settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("PAYGUARD_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("PAYGUARD_VAR_DIR", str(settings.var_dir))
    get_settings.cache_clear()
    yield settings
    get_settings.cache_clear()


def test_export_then_erase(
    client: TestClient, settings: Settings, db: Database, cli_settings: Settings, tmp_path: Path
) -> None:
    customer_id = registered(client)["id"]
    runner = CliRunner()
    out = tmp_path / "mei.json"
    exported = runner.invoke(cli.app, ["privacy", "export", customer_id, "--out", str(out)])
    assert exported.exit_code == 0, exported.output
    document = json.loads(out.read_text())
    assert document["customer"]["phone"] == PHONE
    assert document["customer"]["legal_name"] == LEGAL_NAME
    assert document["accounts"][0]["balance"] == 0
    assert out.stat().st_mode & 0o777 == 0o600

    unconfirmed = runner.invoke(cli.app, ["privacy", "erase", customer_id])
    assert unconfirmed.exit_code == 2
    erased = runner.invoke(cli.app, ["privacy", "erase", customer_id, "--yes"])
    assert erased.exit_code == 0, erased.output
    assert "1 key(s) destroyed" in erased.output

    with db.read() as session:
        customer = session.scalars(select(Customer).where(Customer.id == customer_id)).one()
        data = identity.personal_data(session, settings, customer)
    assert data.phone == data.email == data.legal_name == "[erased]"
    assert customer.status == "erased"
    after = json.loads(runner.invoke(cli.app, ["privacy", "export", customer_id]).output)
    assert after["customer"]["phone"] == "[erased]"
    # The customer can no longer sign in; the ledger is whole.
    refused = client.post("/v1/sessions", json={"username": "mei", "password": PASSWORD})
    assert refused.status_code == 401
    assert invariants(client, settings)["ok"]
    again = runner.invoke(cli.app, ["privacy", "erase", customer_id, "--yes"])
    assert again.exit_code != 0


def test_bank_numbers_are_tokens_shown_first_6_last_4(
    client: TestClient, settings: Settings, db: Database
) -> None:
    from payguard.payments import instruments

    first = registered(client)["id"]
    with db.read() as session:
        assert instruments.customers_sharing(session, settings, BANK_ACCOUNT) == []

    def tokens(session: object) -> tuple[str, str, str]:
        one = instruments.tokenize(session, settings, first, BANK_ACCOUNT)  # type: ignore[arg-type]
        again = instruments.tokenize(session, settings, first, "6222 0202 0099 8877")  # type: ignore[arg-type]
        other = instruments.tokenize(session, settings, "cus_other", BANK_ACCOUNT)  # type: ignore[arg-type]
        return one.token, again.token, other.token

    one, again, other = db.transact(tokens)
    assert one == again != other  # one token per customer and number
    with db.read() as session:
        assert instruments.customers_sharing(session, settings, BANK_ACCOUNT) == sorted(
            [first, "cus_other"]
        )
        assert instruments.reveal(session, settings, one) == BANK_ACCOUNT
    assert instruments.mask(BANK_ACCOUNT) == "622202******8877"
    with pytest.raises(Exception, match="8 to 30 digits"):
        instruments.normalise("12-34")
