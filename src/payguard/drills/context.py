"""What a scenario works with: drill actors, attacker clients and recorded steps.

Everything an attacker does goes through HTTP (the client SDK or a plain ``httpx``
client) to the platform under drill. The context also reaches the platform's database
for what a real phone would receive (the one-time codes the outbox sender "sent" to a
drill actor's phone) and for the staff actors the drill needs; it never touches a
customer that is not a drill actor.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import httpx
import pyotp

from payguard import clock
from payguard.client.sdk import PayguardClient, PayguardError, Payment
from payguard.db.engine import Database
from payguard.drills.scenario import DEFAULT_CONTAIN, Signal
from payguard.identity import notifications
from payguard.identity import service as identity
from payguard.settings import Settings

T = TypeVar("T")

# Every drill actor's username starts with this: drill actors are recognisable in any
# report, and a drill never creates or uses anyone else.
ACTOR_PREFIX = "drill_"
BANK_ACCOUNT = "6222020200000000"  # the drill's simulated bank card, never a real one


@dataclass
class Refusal:
    """A problem reply the platform gave to a request of the step."""

    at: datetime
    code: str
    status: int
    detail: str


@dataclass
class StepPayment:
    """A payment an attacker step submitted, with the status the platform replied."""

    payment_id: str
    kind: str
    amount: int
    status: str
    at: datetime


@dataclass
class StepRecord:
    key: str
    title_en: str
    title_zh: str
    money_at_risk: int
    detect: tuple[Signal, ...]
    contain: tuple[Signal, ...]
    detect_within_s: float
    contain_within_s: float
    required: bool
    actors: tuple[str, ...]
    started_at: datetime
    finished_at: datetime | None = None
    refusals: list[Refusal] = field(default_factory=list)
    payments: list[StepPayment] = field(default_factory=list)
    breaches: list[tuple[datetime, str, int]] = field(default_factory=list)
    notes: list[tuple[datetime, str, str]] = field(default_factory=list)
    error: str | None = None

    @property
    def is_attack(self) -> bool:
        """A step with detection signals is scored; one without is preparation."""
        return bool(self.detect)


class DrillClient(PayguardClient):
    """The SDK client of a drill actor or attacker: every payment the platform
    acknowledged as confirmed is remembered, to check later that none was lost."""

    def __init__(self, base_url: str, on_payment: Callable[[Payment], None], **kw: Any) -> None:
        super().__init__(base_url, max_retries=6, backoff_seconds=0.1, **kw)
        self._on_payment = on_payment

    def submit(
        self,
        instruction: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        challenge_id: str | None = None,
    ) -> Payment:
        payment = super().submit(
            instruction, idempotency_key=idempotency_key, challenge_id=challenge_id
        )
        self._on_payment(payment)
        return payment


@dataclass
class Actor:
    """A drill customer: username starts with ``drill_``; the phone is simulated."""

    name: str
    username: str
    password: str
    customer_id: str
    wallet_id: str
    phone: str
    client: DrillClient
    background: bool = False
    totp_secret: str | None = None


@dataclass
class StaffActor:
    name: str
    username: str
    staff_id: str
    role: str
    password: str
    totp_secret: str
    client: DrillClient


class StepHandle:
    """What ``with ctx.step(...) as step`` gives the attacker code."""

    def __init__(self, context: DrillContext, record: StepRecord) -> None:
        self.context = context
        self.record = record

    def call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Run one attacker request; a problem reply is recorded as a refusal (None)."""
        try:
            result = function(*args, **kwargs)
        except PayguardError as error:
            self.refusal(error)
            return None
        if isinstance(result, Payment):
            self.payment(result)
        return result

    def refusal(self, error: PayguardError) -> None:
        self.record.refusals.append(
            Refusal(clock.now(), error.code, error.status, error.detail[:200])
        )
        self.context.progress("refused", self.record, error.code)

    def response(self, reply: httpx.Response) -> httpx.Response:
        """Record a plain-HTTP reply: a problem is a refusal, a payment body a payment."""
        body: Any = None
        if reply.content:
            try:
                body = reply.json()
            except ValueError:
                body = None
        if reply.status_code >= 400 and not (reply.status_code == 422 and _is_payment(body)):
            code = str(body.get("code")) if isinstance(body, dict) else f"http-{reply.status_code}"
            detail = str(body.get("detail", "")) if isinstance(body, dict) else ""
            self.record.refusals.append(Refusal(clock.now(), code, reply.status_code, detail[:200]))
            self.context.progress("refused", self.record, code)
        elif _is_payment(body):
            payment = Payment.from_json(body)
            self.payment(payment)
            self.context.acknowledge(payment)
        return reply

    def payment(self, payment: Payment) -> None:
        self.record.payments.append(
            StepPayment(payment.id, payment.kind, payment.amount, payment.status, clock.now())
        )
        self.context.progress("payment", self.record, payment.status)

    def breach(self, what_en: str, amount: int = 0, what_zh: str = "") -> None:
        """The attacker got something (a session, data, money outside the ledger):
        the step is not contained; ``amount`` counts as money lost."""
        self.record.breaches.append((clock.now(), what_en, amount))
        self.record.notes.append(
            (clock.now(), f"attacker gained: {what_en}", f"攻击者得手：{what_zh or what_en}")
        )
        self.context.progress("breach", self.record, what_en)

    def note(self, text_en: str, text_zh: str = "") -> None:
        self.record.notes.append((clock.now(), text_en, text_zh or text_en))


def _is_payment(body: Any) -> bool:
    return isinstance(body, dict) and "id" in body and "kind" in body and "status" in body


ProgressCallback = Callable[[str, StepRecord | None, str], None]


class DrillContext:
    """Passed to a scenario's ``setup``, ``attack`` and ``background`` functions."""

    def __init__(
        self,
        *,
        run_id: str,
        base_url: str,
        settings: Settings,
        db: Database,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        self.run_id = run_id
        self.base_url = base_url.rstrip("/")
        self.settings = settings  # the platform's settings: its database and keyring
        self.db = db
        self.tag = f"{ACTOR_PREFIX}{secrets.token_hex(3)}_"
        self.actors: dict[str, Actor] = {}
        self.staff_actors: dict[str, StaffActor] = {}
        self.merchants: dict[str, dict[str, Any]] = {}
        self.steps: list[StepRecord] = []
        self.notes: list[tuple[datetime, str, str]] = []
        self.acknowledged: dict[str, Payment] = {}
        self.background_stats = {"payments": 0, "confirmed": 0, "step_ups": 0, "refused": 0}
        self.started_at = clock.now()
        self.attack_started_at: datetime | None = None
        self.attack_finished_at: datetime | None = None
        self._lock = threading.Lock()
        self._clients: list[PayguardClient | httpx.Client] = []
        self._on_progress = on_progress
        self.stop_background = threading.Event()

    # ------------------------------------------------------------ plumbing

    def progress(self, what: str, step: StepRecord | None = None, detail: str = "") -> None:
        if self._on_progress is not None:
            self._on_progress(what, step, detail)

    def acknowledge(self, payment: Payment) -> None:
        """Remember a payment the platform told a drill client is confirmed."""
        if payment.status == "confirmed":
            with self._lock:
                self.acknowledged[payment.id] = payment

    def client(self) -> DrillClient:
        """A fresh SDK client on the platform (no session, no device)."""
        made = DrillClient(self.base_url, self.acknowledge)
        self._clients.append(made)
        return made

    def attacker(self) -> DrillClient:
        """The attacker's own SDK client: a new phone, nothing of the victim's."""
        return self.client()

    def http(self) -> httpx.Client:
        """A plain HTTP client on the platform, for requests the SDK would never send."""
        made = httpx.Client(base_url=self.base_url, timeout=30.0)
        self._clients.append(made)
        return made

    def close(self) -> None:
        for made in self._clients:
            made.close()

    def note(self, text_en: str, text_zh: str = "") -> None:
        """A line in the drill's timeline (the record), outside any step."""
        self.notes.append((clock.now(), text_en, text_zh or text_en))

    def phone_code(self, phone: str) -> str:
        """The newest one-time code the platform sent to a drill phone (simulated SMS)."""
        deadline = time.monotonic() + 5
        while True:
            with self.db.read() as session:
                code = notifications.latest_sent_code(session, self.settings, phone)
            if code is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if code is None:
            raise RuntimeError("no code reached the drill phone")
        return code

    # ------------------------------------------------------------ actors

    def _username(self, name: str) -> str:
        return f"{self.tag}{name}"[:64]

    def staff(self, name: str, role: str) -> StaffActor:
        """A drill staff member with a password and TOTP (MFA is mandatory for staff)."""
        if name in self.staff_actors:
            return self.staff_actors[name]
        username = self._username(name)
        password = "Drill-" + secrets.token_urlsafe(18)
        secret = pyotp.random_base32()
        staff, issued = self.db.transact(
            lambda session: identity.create_staff(
                session,
                self.settings,
                username=username,
                role=role,
                password=password,
                totp_secret=secret,
            )
        )
        made = self.client()
        made.token = issued.token
        actor = StaffActor(name, username, staff.id, role, password, secret, made)
        self.staff_actors[name] = actor
        return actor

    def customer(
        self,
        name: str,
        *,
        balance: int = 0,
        tier: int = 0,
        device: bool = True,
        totp: bool = False,
        background: bool = False,
    ) -> Actor:
        """Register a drill customer through the API, with a simulated phone, a device
        key registered by SMS code, KYC tier set through four-eyes approval by two drill
        staff, and ``balance`` topped up from the drill's simulated bank card."""
        username = self._username(name)
        password = "Drill-" + secrets.token_urlsafe(18)
        phone = "+86199" + "".join(str(secrets.randbelow(10)) for _ in range(8))
        client = self.client()
        created = client.register(username, password, f"Drill {name}", phone=phone)
        client.login(username, password)
        actor = Actor(
            name=name,
            username=username,
            password=password,
            customer_id=str(created["id"]),
            wallet_id=str(created["wallet_account_ids"][0]),
            phone=phone,
            client=client,
            background=background,
        )
        if totp:
            client.enrol_totp()
            assert client.authenticator is not None
            actor.totp_secret = client.authenticator.totp.secret
        if device:
            client.request_code("sms", "device")
            client.register_device("drill phone", factor="otp", code=self.phone_code(phone))
            # Logged in again bound to the device, as the app does after binding it.
            client.login(username, password)
        client.step_up_handler = self.sms_step_up(actor)
        if tier:
            self.set_tier(actor, tier)
        if balance:
            topped = client.top_up(balance, BANK_ACCOUNT)
            if topped.status != "confirmed":
                raise RuntimeError(f"drill top-up ended {topped.status}")
        self.actors[name] = actor
        self.progress("actor", None, username)
        return actor

    def sms_step_up(self, actor: Actor) -> Callable[[dict[str, Any]], tuple[str, str]]:
        """The legitimate owner passing a step-up with the SMS code on their phone."""

        def handler(problem: dict[str, Any]) -> tuple[str, str]:
            actor.client.send_challenge_code(str(problem["challenge_id"]), "sms")
            if actor.background and self.attack_started_at is not None:
                with self._lock:
                    self.background_stats["step_ups"] += 1
            return "sms", self.phone_code(actor.phone)

        return handler

    def set_tier(self, actor: Actor, tier: int) -> None:
        """One drill staff member asks, another approves: the only way a tier changes."""
        maker = self.staff("operations", "operations")
        checker = self.staff("compliance", "compliance")
        requested = maker.client.request_kyc_tier(actor.customer_id, tier, "drill actor")
        checker.client.approve(str(requested["id"]), "drill actor")

    def merchant(self, name: str, owner: Actor | None = None) -> dict[str, Any]:
        maker = self.staff("operations", "operations")
        made = maker.client.create_merchant(
            f"{self.tag}{name}", owner.customer_id if owner else None
        )
        self.merchants[name] = made
        return made

    def actor(self, name: str) -> Actor:
        return self.actors[name]

    # ------------------------------------------------------------ steps

    @contextmanager
    def step(
        self,
        key: str,
        title_en: str,
        title_zh: str,
        *,
        money_at_risk: int = 0,
        detect: tuple[Signal, ...] | list[Signal] = (),
        contain: tuple[Signal, ...] | list[Signal] = DEFAULT_CONTAIN,
        detect_within_s: float = 10.0,
        contain_within_s: float = 15.0,
        required: bool = True,
        actors: tuple[str, ...] | list[str] = (),
    ) -> Iterator[StepHandle]:
        """One attacker step. A problem reply escaping the block ends the step as
        refused; ``step.call(...)`` records a refusal and goes on."""
        if self.attack_started_at is None:
            self.attack_started_at = clock.now()
        record = StepRecord(
            key=key,
            title_en=title_en,
            title_zh=title_zh,
            money_at_risk=money_at_risk,
            detect=tuple(detect),
            contain=tuple(contain),
            detect_within_s=detect_within_s,
            contain_within_s=contain_within_s,
            required=required,
            actors=tuple(actors),
            started_at=clock.now(),
        )
        self.steps.append(record)
        self.progress("step", record, "started")
        handle = StepHandle(self, record)
        try:
            yield handle
        except PayguardError as error:
            handle.refusal(error)
        except httpx.HTTPError as error:
            record.error = f"{type(error).__name__}"
        finally:
            record.finished_at = clock.now()
            self.attack_finished_at = record.finished_at
            self.progress("step", record, "finished")

    # ------------------------------------------------------------ background

    def normal_traffic(self, payments: int = 6, pause: float = 0.3) -> None:
        """Legitimate customers paying each other and the drill's merchants, small
        amounts: the default background. Each payment acknowledged as confirmed is
        checked after the drill."""
        payers = [actor for actor in self.actors.values() if actor.background]
        if not payers:
            return
        merchants = list(self.merchants.values())
        for number in range(payments):
            if self.stop_background.is_set():
                break
            payer = payers[number % len(payers)]
            others = [actor for actor in payers if actor is not payer]
            amount = 1_000 + 500 * (number % 5)
            try:
                if merchants and (number % 2 == 0 or not others):
                    merchant = merchants[number % len(merchants)]
                    paid = payer.client.pay_merchant(amount, str(merchant["id"]))
                elif others:
                    payee = others[number % len(others)]
                    paid = payer.client.pay_p2p(amount, payee_username=payee.username)
                else:
                    break
            except PayguardError:
                with self._lock:
                    self.background_stats["payments"] += 1
                    self.background_stats["refused"] += 1
                continue
            with self._lock:
                self.background_stats["payments"] += 1
                if paid.status == "confirmed":
                    self.background_stats["confirmed"] += 1
                else:
                    self.background_stats["refused"] += 1
            time.sleep(pause)
