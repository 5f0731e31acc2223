"""No personal data in logs: seed known personal data, drive the flows that touch it
(including failures and refusals), and scan every line the platform wrote."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from payguard.app import create_app
from payguard.client.signing import DeviceKey
from tests.conftest import make_settings
from tests.factories import PASSWORD, Customer, Outbox, last_code, pay

PHONE = "+8613512345678"
EMAIL = "wen.li@example.com"
LEGAL_NAME = "Li Wenjing"
PASSPORT = "G12345678"
BANK_ACCOUNT = "6222029876543210"


def test_personal_data_never_reaches_the_logs(
    database_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = make_settings(
        database_url,
        tmp_path,
        env="production",
        id_digest_key="test-production-id-key",
        log_level="DEBUG",
    )
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        body = {
            "username": "wen",
            "password": PASSWORD,
            "display_name": "W.",
            "phone": PHONE,
            "email": EMAIL,
            "legal_name": LEGAL_NAME,
            "id_document_type": "passport",
            "id_number": PASSPORT,
        }
        created = client.post("/v1/customers", json=body).json()
        client.post("/v1/customers", json=body)  # duplicate: a refusal
        client.post("/v1/customers", json={**body, "username": "wen2", "id_number": "??"})
        client.post("/v1/sessions", json={"username": "wen", "password": "wrong-password-1"})
        token = client.post("/v1/sessions", json={"username": "wen", "password": PASSWORD})
        wallet = created["wallet_account_ids"][0]
        wen = Customer(created["id"], "wen", token.json()["token"], wallet, PHONE)
        for channel in ("email", "sms"):  # the SMS code, sent last, binds the device
            client.post(
                "/v1/factors/otp", headers=wen.auth, json={"channel": channel, "purpose": "device"}
            )
        key = DeviceKey.generate()
        outbox = Outbox(client.app.state.services.db, settings)  # type: ignore[attr-defined]
        device = client.post(
            "/v1/devices",
            headers=wen.auth,
            json={"name": "phone", "algorithm": key.algorithm, "public_key": key.public_pem,
                  "factor": "otp", "code": last_code(outbox, PHONE)},
        )  # fmt: skip
        assert device.status_code == 201, device.text
        wen.device_key, wen.device_id = key, device.json()["id"]
        pay(client, wen, kind="top_up", amount=10_000, bank_account=BANK_ACCOUNT, db=outbox)
        pay(client, wen, kind="withdrawal", amount=10**9, bank_account=BANK_ACCOUNT, db=outbox)
        client.get(f"/v1/customers/{wen.id}", headers=wen.auth)
        client.get("/v1/customers/me", headers=wen.auth)
    captured = capsys.readouterr()
    everything = captured.out + captured.err + caplog.text
    assert "request" in everything  # the logs were captured at all
    for secret in (PHONE, PHONE.lstrip("+"), EMAIL, LEGAL_NAME, PASSPORT, BANK_ACCOUNT, PASSWORD):
        assert secret not in everything, f"{secret!r} was logged"
