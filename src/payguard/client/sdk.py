"""A small synchronous client for the payguard API, on httpx.

It does what a careful mobile app does: one Idempotency-Key per logical payment,
reused on every retry, so a lost reply or a dropped connection can never pay twice;
bounded exponential back-off on transport errors, 5xx and
``409 idempotency-in-progress``; and problem+json replies turned into
``PayguardError`` with the stable ``code``.

A payment that the platform *decided* (rejected by risk, or failed at the bank rail)
comes back as a ``Payment`` whose ``status`` says so, not as an exception: the
request itself was valid and the decision is part of the record.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyotp

from payguard.client.signing import DeviceKey, sign_instruction

RETRYABLE_CODES = {"idempotency-in-progress", "write-conflict"}


class TotpAuthenticator:
    """The authenticator app: RFC 6238 codes from the shared secret.

    The server accepts each time step once and one step of clock drift either way, so
    this hands out the current step, then the next; a third code in the same 30 s waits.
    """

    def __init__(self, secret: str) -> None:
        self.totp = pyotp.TOTP(secret)
        self.last_step = -1

    def code(self) -> str:
        while True:
            step = int(time.time()) // self.totp.interval
            usable = step if step > self.last_step else self.last_step + 1
            if usable <= step + 1:
                self.last_step = usable
                return self.totp.at(usable * self.totp.interval)
            time.sleep(1.0)


class PayguardError(Exception):
    """A problem reply (RFC 9457) from the platform."""

    def __init__(self, status: int, code: str, detail: str, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body


@dataclass(frozen=True)
class Payment:
    id: str
    kind: str
    status: str
    amount: int
    fee: int
    currency: str
    payer_account_id: str | None
    payee_account_id: str | None
    failure_code: str | None
    history: tuple[str, ...]
    decision: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Payment:
        return cls(
            id=body["id"],
            kind=body["kind"],
            status=body["status"],
            amount=body["amount"],
            fee=body["fee"],
            currency=body["currency"],
            payer_account_id=body.get("payer_account_id"),
            payee_account_id=body.get("payee_account_id"),
            failure_code=body.get("failure_code"),
            history=tuple(item["status"] for item in body.get("history", [])),
            decision=body.get("decision"),
            raw=body,
        )

    @property
    def succeeded(self) -> bool:
        return self.status == "confirmed"


@dataclass(frozen=True)
class Account:
    id: str
    kind: str
    currency: str
    status: str
    ledger_balance: int
    available_balance: int

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Account:
        return cls(
            id=body["id"],
            kind=body["kind"],
            currency=body["currency"],
            status=body["status"],
            ledger_balance=body["ledger_balance"],
            available_balance=body["available_balance"],
        )


@dataclass(frozen=True)
class Statement:
    account_id: str
    currency: str
    opening_balance: int
    closing_balance: int
    lines: tuple[dict[str, Any], ...]


class PayguardClient:
    """One customer's (or staff member's) view of the platform.

    ``base_url`` opens an own HTTP connection pool; ``http`` reuses an existing
    ``httpx.Client`` (a FastAPI ``TestClient`` works too, for in-process use).
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        http: httpx.Client | None = None,
        token: str | None = None,
        max_retries: int = 4,
        backoff_seconds: float = 0.05,
        timeout: float = 30.0,
    ) -> None:
        if http is None and base_url is None:
            raise ValueError("give base_url or an httpx client")
        self._owns_http = http is None
        self.http = http or httpx.Client(base_url=base_url or "", timeout=timeout)
        self.token = token
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.last_status: int | None = None  # HTTP status of the last reply, for logs
        self.refresh_token: str | None = None
        # What the phone holds: the device key, and the authenticator app's TOTP secret.
        self.device_key: DeviceKey | None = None
        self.device_id: str | None = None
        self.authenticator: TotpAuthenticator | None = None
        # Called with a challenge-required problem; returns (factor, code).
        self.step_up_handler: Callable[[dict[str, Any]], tuple[str, str]] | None = None

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> PayguardClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ plumbing

    def _headers(self, idempotency_key: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        return headers

    def _request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        accept_decided_payment: bool = False,
    ) -> Any:
        """Send, retrying only what is safe to retry: GETs, and POSTs that carry a key."""
        retry_safe = method == "GET" or idempotency_key is not None
        attempt = 0
        while True:
            attempt += 1
            try:
                payload = json() if callable(json) else json  # signed bodies: fresh per attempt
                reply = self.http.request(
                    method,
                    path,
                    json=payload,
                    params=params,
                    headers=self._headers(idempotency_key),
                )
            except httpx.TransportError:
                if not retry_safe or attempt > self.max_retries:
                    raise
                self._sleep(attempt)
                continue
            self.last_status = reply.status_code
            if reply.status_code == 204:
                return None
            body = reply.json() if reply.content else {}
            if reply.status_code < 400:
                return body
            if accept_decided_payment and reply.status_code == 422 and "id" in body:
                return body  # a payment record: rejected or failed at the rail
            code = str(body.get("code", f"http-{reply.status_code}"))
            retryable = reply.status_code >= 500 or code in RETRYABLE_CODES
            if retry_safe and retryable and attempt <= self.max_retries:
                self._sleep(attempt)
                continue
            raise PayguardError(reply.status_code, code, str(body.get("detail", "")), body)

    def _sleep(self, attempt: int) -> None:
        time.sleep(min(self.backoff_seconds * 2 ** (attempt - 1), 2.0))

    # ------------------------------------------------------------ identity

    def register(
        self, username: str, password: str, display_name: str, **real_name: Any
    ) -> dict[str, Any]:
        """Register; ``real_name`` takes legal_name, id_document_type, id_number, phone, email."""
        body = {"username": username, "password": password, "display_name": display_name}
        body.update(_without_none(**real_name))
        result: dict[str, Any] = self._request("POST", "/v1/customers", json=body)
        return result

    def login(
        self, username: str, password: str, *, staff: bool = False, otp: str | None = None
    ) -> str:
        """Log in; a customer's session is bound to this client's device when it has one."""
        path = "/v1/staff/sessions" if staff else "/v1/sessions"
        body = _without_none(
            username=username,
            password=password,
            otp=otp,
            device_id=None if staff else self.device_id,
        )
        reply = self._request("POST", path, json=body)
        self.token = str(reply["token"])
        self.refresh_token = reply.get("refresh_token")
        return self.token

    # ------------------------------------------------------------ factors and devices

    def enrol_totp(self) -> list[str]:
        """Enrol TOTP with this client as the authenticator app; returns the recovery codes."""
        started = self._request("POST", "/v1/factors/totp")
        self.authenticator = TotpAuthenticator(str(started["secret"]))
        confirmed = self._request(
            "POST", "/v1/factors/totp/confirm", json={"code": self.authenticator.code()}
        )
        return list(confirmed.get("recovery_codes", []))

    def request_code(self, channel: str = "sms", purpose: str = "device") -> dict[str, Any]:
        """Have a one-time code sent to the phone or e-mail on file."""
        result: dict[str, Any] = self._request(
            "POST", "/v1/factors/otp", json={"channel": channel, "purpose": purpose}
        )
        return result

    def send_challenge_code(self, challenge_id: str, channel: str = "sms") -> str:
        """Have a one-time code for this step-up challenge sent; returns where (masked)."""
        reply = self._request(
            "POST", f"/v1/challenges/{challenge_id}/code", json={"channel": channel}
        )
        return str(reply["sent_to"])

    def register_device(
        self,
        name: str,
        *,
        key: DeviceKey | None = None,
        factor: str = "totp",
        code: str | None = None,
        platform: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Register a device key (generated if not given), proven by a second factor."""
        key = key or DeviceKey.generate()
        if code is None:
            if factor != "totp" or self.authenticator is None:
                raise ValueError("give the code of the second factor, or enrol TOTP first")
            code = self.authenticator.code()
        body = _without_none(
            name=name,
            algorithm=key.algorithm,
            public_key=key.public_pem,
            platform=platform,
            factor=factor,
            code=code,
        )
        device: dict[str, Any] = self._request("POST", "/v1/devices", json=body)
        self.device_key, self.device_id = key, str(device["id"])
        return device

    def devices(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/v1/devices")
        return result

    def revoke_device(self, device_id: str) -> None:
        self._request("DELETE", f"/v1/devices/{device_id}")

    def complete_challenge(
        self, challenge_id: str, factor: str, code: str | None = None, **proof: Any
    ) -> dict[str, Any]:
        body = _without_none(factor=factor, code=code, **proof)
        result: dict[str, Any] = self._request(
            "POST", f"/v1/challenges/{challenge_id}/verify", json=body
        )
        return result

    def _step_up(self, problem: dict[str, Any]) -> str:
        """Complete a challenge with the step-up handler, or TOTP; returns its id."""
        challenge_id = str(problem["challenge_id"])
        if self.step_up_handler is not None:
            factor, code = self.step_up_handler(problem)
        elif self.authenticator is not None and "totp" in problem.get("allowed_factors", []):
            factor, code = "totp", self.authenticator.code()
        else:
            raise PayguardError(403, "challenge-required", str(problem.get("detail")), problem)
        self.complete_challenge(challenge_id, factor, code)
        return challenge_id

    def logout(self) -> None:
        self._request("DELETE", "/v1/sessions/current")
        self.token = None

    def me(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/v1/me")
        return result

    # ------------------------------------------------------------ accounts

    def accounts(self) -> list[Account]:
        page = self._request("GET", "/v1/accounts", params={"limit": 200})
        return [Account.from_json(item) for item in page["items"]]

    def account(self, account_id: str) -> Account:
        return Account.from_json(self._request("GET", f"/v1/accounts/{account_id}"))

    def wallet(self, currency: str = "CNY") -> Account:
        for account in self.accounts():
            if account.kind == "customer_wallet" and account.currency == currency:
                return account
        raise PayguardError(404, "account-not-found", f"no wallet in {currency}", {})

    def statement(
        self, account_id: str, *, period_from: str | None = None, period_to: str | None = None
    ) -> Statement:
        params = {key: value for key, value in (("from", period_from), ("to", period_to)) if value}
        body = self._request("GET", f"/v1/accounts/{account_id}/statement", params=params)
        return Statement(
            account_id=body["account_id"],
            currency=body["currency"],
            opening_balance=body["opening_balance"],
            closing_balance=body["closing_balance"],
            lines=tuple(body["lines"]),
        )

    # ------------------------------------------------------------ payments

    def submit(
        self,
        instruction: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        challenge_id: str | None = None,
    ) -> Payment:
        """Submit a payment instruction: signed by the device key when there is one, one
        Idempotency-Key for all retries, step-up completed and the instruction resubmitted."""
        key = idempotency_key or str(uuid.uuid4())
        for _round in range(3):
            try:
                body = self._request(
                    "POST",
                    "/v1/payments",
                    json=lambda proof=challenge_id: self._signed(instruction, key, proof),
                    idempotency_key=key,
                    accept_decided_payment=True,
                )
            except PayguardError as error:
                if error.code != "challenge-required" or challenge_id is not None:
                    raise
                challenge_id = self._step_up(error.body)
                continue
            return Payment.from_json(body)
        raise PayguardError(403, "challenge-required", "step-up did not complete", {})

    def _signed(
        self, instruction: dict[str, Any], key: str, challenge_id: str | None
    ) -> dict[str, Any]:
        if self.device_key is None or self.device_id is None:
            return {**instruction, **_without_none(challenge_id=challenge_id)}
        return sign_instruction(
            instruction,
            key=self.device_key,
            device_id=self.device_id,
            idempotency_key=key,
            challenge_id=challenge_id,
        )

    def pay_p2p(
        self,
        amount: int,
        *,
        payee_username: str | None = None,
        payee_account_id: str | None = None,
        currency: str = "CNY",
        memo: str | None = None,
        idempotency_key: str | None = None,
    ) -> Payment:
        instruction = _without_none(
            kind="p2p",
            amount=amount,
            currency=currency,
            payee_username=payee_username,
            payee_account_id=payee_account_id,
            memo=memo,
        )
        return self.submit(instruction, idempotency_key=idempotency_key)

    def pay_merchant(
        self,
        amount: int,
        merchant_id: str,
        *,
        currency: str = "CNY",
        memo: str | None = None,
        idempotency_key: str | None = None,
    ) -> Payment:
        instruction = _without_none(
            kind="merchant", amount=amount, currency=currency, merchant_id=merchant_id, memo=memo
        )
        return self.submit(instruction, idempotency_key=idempotency_key)

    def top_up(
        self,
        amount: int,
        bank_account: str,
        *,
        currency: str = "CNY",
        idempotency_key: str | None = None,
    ) -> Payment:
        instruction = {
            "kind": "top_up",
            "amount": amount,
            "currency": currency,
            "bank_account": bank_account,
        }
        return self.submit(instruction, idempotency_key=idempotency_key)

    def withdraw(
        self,
        amount: int,
        bank_account: str,
        *,
        currency: str = "CNY",
        idempotency_key: str | None = None,
    ) -> Payment:
        instruction = {
            "kind": "withdrawal",
            "amount": amount,
            "currency": currency,
            "bank_account": bank_account,
        }
        return self.submit(instruction, idempotency_key=idempotency_key)

    def refund(
        self,
        payment_id: str,
        amount: int | None = None,
        *,
        memo: str | None = None,
        idempotency_key: str | None = None,
    ) -> Payment:
        body = self._request(
            "POST",
            f"/v1/payments/{payment_id}/refunds",
            json=_without_none(amount=amount, memo=memo),
            idempotency_key=idempotency_key or str(uuid.uuid4()),
        )
        return Payment.from_json(body)

    def payment(self, payment_id: str) -> Payment:
        return Payment.from_json(self._request("GET", f"/v1/payments/{payment_id}"))

    def payments(
        self, *, cursor: str | None = None, limit: int = 50
    ) -> tuple[list[Payment], str | None]:
        params = _without_none(cursor=cursor, limit=limit)
        page = self._request("GET", "/v1/payments", params=params)
        return [Payment.from_json(item) for item in page["items"]], page["next_cursor"]

    def merchants(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._request("GET", "/v1/merchants")
        return result

    # ------------------------------------------------------------ staff

    def create_merchant(self, name: str, owner_customer_id: str | None = None) -> dict[str, Any]:
        body = _without_none(name=name, owner_customer_id=owner_customer_id)
        result: dict[str, Any] = self._request("POST", "/v1/merchants", json=body)
        return result

    def request_kyc_tier(self, customer_id: str, tier: int, reason: str) -> dict[str, Any]:
        """Ask for a KYC tier change; it happens when another staff member approves it."""
        result: dict[str, Any] = self._request(
            "POST",
            f"/v1/customers/{customer_id}/kyc-tier",
            json={"tier": tier, "reason": reason},
        )
        return result

    def request_approval(
        self, action: str, target: str, reason: str, **params: Any
    ) -> dict[str, Any]:
        """Ask for any four-eyes operation (see docs/authentication.md for the actions)."""
        body = {"action": action, "target": target, "params": params, "reason": reason}
        result: dict[str, Any] = self._request("POST", "/v1/approvals", json=body)
        return result

    def approvals(self, status: str | None = None) -> list[dict[str, Any]]:
        params = _without_none(status=status)
        result: list[dict[str, Any]] = self._request("GET", "/v1/approvals", params=params)
        return result

    def approve(self, approval_id: str, note: str | None = None) -> dict[str, Any]:
        """Approve another staff member's request: the operation runs now."""
        result: dict[str, Any] = self._request(
            "POST", f"/v1/approvals/{approval_id}/approve", json=_without_none(note=note)
        )
        return result

    def reject(self, approval_id: str, note: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", f"/v1/approvals/{approval_id}/reject", json=_without_none(note=note)
        )
        return result


def _without_none(**values: Any) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
