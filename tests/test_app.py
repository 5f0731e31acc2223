"""Health, readiness, metrics, request ids and structured logs of the app itself."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from payguard.app import create_app
from payguard.settings import Settings
from tests.conftest import make_settings
from tests.factories import register, top_up


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] is True


def test_readiness_fails_when_the_database_is_gone(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "sub" / "x.db"
    settings = make_settings(f"sqlite:///{missing}", tmp_path)
    with TestClient(create_app(settings)) as client:
        # The engine created the folder (and the risk engine's warm-up an empty file in
        # it); take them away again.
        shutil.rmtree(tmp_path / "no-such-dir")
        reply = client.get("/readyz")
    assert reply.status_code == 503
    assert reply.json()["status"] == "unavailable"


def test_metrics_count_requests_by_route_template_and_payments_by_status(
    client: TestClient,
) -> None:
    mia = register(client, "mia")
    token = mia.token
    top_up(client, mia, 500)
    client.get("/v1/payments/pay_does_not_exist", headers={"Authorization": f"Bearer {token}"})
    text = client.get("/metrics").text
    assert 'payguard_payments{status="confirmed"} 1.0' in text
    assert 'route="/v1/payments/{payment_id}"' in text
    assert "pay_does_not_exist" not in text
    assert "payguard_http_request_duration_seconds_bucket" in text


def test_request_id_is_echoed_only_when_it_looks_like_one(client: TestClient) -> None:
    assert (
        client.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
        == "abc-123"
    )
    generated = client.get("/healthz", headers={"X-Request-ID": "<script>"}).headers["X-Request-ID"]
    assert generated != "<script>" and len(generated) == 32


def test_production_logs_are_json_without_bodies_or_secrets(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings: Settings = make_settings(
        database_url, tmp_path, env="production", id_digest_key="test-production-id-key"
    )
    password = "Very-Secret-Password-77"
    with TestClient(create_app(settings)) as client:
        client.post(
            "/v1/customers",
            json={"username": "leo", "password": password, "display_name": "Leo Secret-Name"},
        )
        reply = client.post("/v1/sessions", json={"username": "leo", "password": password})
        token = reply.json()["token"]
        client.get("/v1/accounts", headers={"Authorization": f"Bearer {token}"})
    err = capsys.readouterr().err
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("event") == "request"]
    assert {line["route"] for line in access} >= {"/v1/customers", "/v1/sessions", "/v1/accounts"}
    assert all("request_id" in line for line in access)
    for secret in (password, token, "Leo Secret-Name"):
        assert secret not in err


def test_unknown_route_and_method_are_problems(client: TestClient) -> None:
    reply = client.get("/v1/nothing-here")
    assert reply.status_code == 404
    assert reply.headers["content-type"].startswith("application/problem+json")
    assert client.delete("/healthz").status_code == 405


def test_openapi_documents_every_v1_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert "/v1/payments" in schema["paths"]
    assert "/v1/accounts/{account_id}/statement" in schema["paths"]
