"""Second factors: TOTP (with the RFC 6238 vectors), recovery codes, one-time codes by
the outbox and by real SMTP to a local sink."""

from __future__ import annotations

import base64
import re
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pyotp
import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient

from payguard import clock
from payguard.app import create_app
from payguard.client.signing import DeviceKey
from payguard.identity import totp
from payguard.settings import Settings
from tests.conftest import make_settings
from tests.factories import Customer, database_of, last_code, register

# RFC 6238 Appendix B: 8 digits, 30 s steps, a seed per hash function.
RFC_SEEDS = {
    "sha1": b"12345678901234567890",
    "sha256": b"12345678901234567890123456789012",
    "sha512": b"1234567890123456789012345678901234567890123456789012345678901234",
}
RFC_VECTORS = [
    (59, {"sha1": "94287082", "sha256": "46119246", "sha512": "90693936"}),
    (1111111109, {"sha1": "07081804", "sha256": "68084774", "sha512": "25091201"}),
    (1111111111, {"sha1": "14050471", "sha256": "67062674", "sha512": "99943326"}),
    (1234567890, {"sha1": "89005924", "sha256": "91819424", "sha512": "93441116"}),
    (2000000000, {"sha1": "69279037", "sha256": "90698825", "sha512": "38618901"}),
    (20000000000, {"sha1": "65353130", "sha256": "77737706", "sha512": "47863826"}),
]


@pytest.mark.parametrize(
    ("unix_time", "expected"), RFC_VECTORS, ids=[str(t) for t, _ in RFC_VECTORS]
)
@pytest.mark.parametrize("digest", ["sha1", "sha256", "sha512"])
def test_rfc_6238_appendix_b_vectors(unix_time: int, expected: dict[str, str], digest: str) -> None:
    secret = base64.b32encode(RFC_SEEDS[digest]).decode()
    moment = datetime.fromtimestamp(unix_time, UTC)
    code = expected[digest]
    assert totp.code_at(secret, moment, digits=8, digest=digest) == code
    # The verification path finds the code's step at that moment, and not two steps on.
    step = totp.matching_step(secret, code, moment, digits=8, digest=digest)
    assert step == unix_time // 30
    later = moment + timedelta(seconds=90)
    assert totp.matching_step(secret, code, later, digits=8, digest=digest) is None
    assert (
        totp.matching_step(secret, code, moment, digits=8, digest=digest, after_step=step) is None
    )


def _device_body(factor: str, code: str) -> dict[str, Any]:
    key = DeviceKey.generate()
    return {
        "name": "phone",
        "algorithm": key.algorithm,
        "public_key": key.public_pem,
        "factor": factor,
        "code": code,
    }


def _enrol_totp(client: TestClient, customer: Customer) -> tuple[str, list[str]]:
    started = client.post("/v1/factors/totp", headers=customer.auth)
    assert started.status_code == 201, started.text
    secret = started.json()["secret"]
    assert started.json()["otpauth_uri"].startswith("otpauth://totp/")
    assert f"secret={secret}" in started.json()["otpauth_uri"]
    png = client.get("/v1/factors/totp/qr.png", headers=customer.auth)
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG\r\n\x1a\n")
    assert png.headers["cache-control"] == "no-store"
    wrong = client.post("/v1/factors/totp/confirm", headers=customer.auth, json={"code": "000000"})
    assert wrong.status_code == 422
    confirmed = client.post(
        "/v1/factors/totp/confirm",
        headers=customer.auth,
        json={"code": pyotp.TOTP(secret).at(clock.now())},
    )
    assert confirmed.status_code == 200, confirmed.text
    return secret, confirmed.json()["recovery_codes"]


def test_totp_enrolment_and_each_code_only_once(client: TestClient) -> None:
    ann = register(client, "ann", device=False)
    secret, codes = _enrol_totp(client, ann)
    assert len(codes) == 10 and len(set(codes)) == 10
    factors = client.get("/v1/factors", headers=ann.auth).json()
    assert factors["totp"] is True and factors["recovery_codes_left"] == 10
    # The confirming code's step is spent: the next code must come from a later step.
    frozen = clock.FrozenClock(clock.now() + timedelta(seconds=30))
    previous = clock.set_clock(frozen)
    try:
        code = pyotp.TOTP(secret).at(frozen.now())
        first = client.post("/v1/devices", headers=ann.auth, json=_device_body("totp", code))
        assert first.status_code == 201, first.text
        again = client.post("/v1/devices", headers=ann.auth, json=_device_body("totp", code))
        assert again.status_code == 403 and again.json()["code"] == "second-factor-required"
    finally:
        clock.set_clock(previous)


def test_recovery_codes_are_single_use(client: TestClient) -> None:
    ann = register(client, "ann", device=False)
    _secret, codes = _enrol_totp(client, ann)
    used = client.post(
        "/v1/devices", headers=ann.auth, json=_device_body("recovery_code", codes[0])
    )
    assert used.status_code == 201, used.text
    reused = client.post(
        "/v1/devices", headers=ann.auth, json=_device_body("recovery_code", codes[0])
    )
    assert reused.status_code == 403
    assert client.get("/v1/factors", headers=ann.auth).json()["recovery_codes_left"] == 9


def _send(client: TestClient, customer: Customer, channel: str = "sms") -> Any:
    return client.post(
        "/v1/factors/otp", headers=customer.auth, json={"channel": channel, "purpose": "device"}
    )


def test_one_time_codes_are_single_use(client: TestClient) -> None:
    ann = register(client, "ann", device=False)
    assert _send(client, ann).json()["sent_to"].endswith(ann.phone[-4:])
    code = last_code(database_of(client), ann.phone)
    assert client.post("/v1/devices", headers=ann.auth, json=_device_body("otp", code)).is_success
    again = client.post("/v1/devices", headers=ann.auth, json=_device_body("otp", code))
    assert again.status_code == 403


def test_one_time_codes_expire(client: TestClient, settings: Settings) -> None:
    ann = register(client, "ann", device=False)
    _send(client, ann)
    code = last_code(database_of(client), ann.phone)
    frozen = clock.FrozenClock(clock.now() + timedelta(seconds=settings.otp_ttl_seconds + 1))
    previous = clock.set_clock(frozen)
    try:
        ann.token = client.post(
            "/v1/sessions", json={"username": "ann", "password": "long-enough-password"}
        ).json()["token"]
        late = client.post("/v1/devices", headers=ann.auth, json=_device_body("otp", code))
        assert late.status_code == 403
    finally:
        clock.set_clock(previous)


def test_guessing_kills_the_code(client: TestClient, settings: Settings) -> None:
    ann = register(client, "ann", device=False)
    _send(client, ann)
    code = last_code(database_of(client), ann.phone)
    wrong = "000000" if code != "000000" else "111111"
    for _ in range(settings.otp_max_attempts):
        assert (
            client.post(
                "/v1/devices", headers=ann.auth, json=_device_body("otp", wrong)
            ).status_code
            == 403
        )
    late = client.post("/v1/devices", headers=ann.auth, json=_device_body("otp", code))
    assert late.status_code == 403


def test_sending_is_rate_limited(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, otp_sends_per_hour=3)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        ann = register(client, "ann", device=False)
        assert all(_send(client, ann).status_code == 200 for _ in range(3))
        refused = _send(client, ann)
        assert refused.status_code == 429 and refused.json()["code"] == "too-many-codes"


class _Sink:
    """An aiosmtpd handler that keeps what it receives."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content)
        return "250 OK"


@pytest.fixture
def smtp_sink() -> Iterator[tuple[int, _Sink]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, sink
    finally:
        controller.stop()


def test_email_codes_go_through_a_real_smtp_server(
    database_url: str, tmp_path: Path, smtp_sink: tuple[int, _Sink]
) -> None:
    port, sink = smtp_sink
    settings = make_settings(database_url, tmp_path, otp_sender="smtp", smtp_port=port)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        created = client.post(
            "/v1/customers",
            json={
                "username": "eve",
                "password": "long-enough-password",
                "display_name": "Eve",
                "email": "eve@example.test",
            },
        )
        assert created.status_code == 201, created.text
        token = client.post(
            "/v1/sessions", json={"username": "eve", "password": "long-enough-password"}
        ).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        sent = client.post(
            "/v1/factors/otp", headers=auth, json={"channel": "email", "purpose": "device"}
        )
        assert sent.status_code == 200, sent.text
        assert sent.json()["sent_to"] == "e***@example.test"
        deadline = time.monotonic() + 5
        while not sink.messages and time.monotonic() < deadline:
            time.sleep(0.05)
        message = message_from_bytes(sink.messages[-1])
        assert message["To"] == "eve@example.test"
        body = message.get_payload(decode=True)
        assert isinstance(body, bytes)
        found = re.search(r"\b(\d{6})\b", body.decode())
        assert found, body
        code = found.group(1)
        registered = client.post("/v1/devices", headers=auth, json=_device_body("otp", code))
        assert registered.status_code == 201, registered.text
