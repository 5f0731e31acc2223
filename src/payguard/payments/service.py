"""The payment pipeline: instruction → verification → assessment → posting → confirmation.

``PaymentService.submit`` runs a payment end to end. Internal payments (p2p,
merchant) complete in one database transaction, together with their idempotency
record, limit usage, ledger transfer and outbox event. Payments that wait for a
bank rail (top-up, withdrawal) commit before calling the rail and finish in a
second transaction, so no database lock is held while a bank answers.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, and_, case, func, insert, select
from sqlalchemy.orm import Session

from payguard import clock, ids
from payguard.crypto.envelope import is_sealed, open_memo, seal_memo
from payguard.db.engine import Database
from payguard.errors import (
    AccountNotFound,
    CurrencyMismatch,
    Forbidden,
    IdempotencyInProgress,
    InvalidAmount,
    NotFound,
    PaymentNotRefundable,
    PaymentNotReleasable,
    ProblemError,
    SignatureRequired,
    UnknownCurrency,
    ValidationProblem,
)
from payguard.events import service as events
from payguard.identity import instructions, notifications, permissions, stepup, stepup_segments
from payguard.identity import service as identity
from payguard.identity.permissions import Permission
from payguard.identity.service import Principal
from payguard.ledger import service as ledger
from payguard.ledger.models import AccountKind, AccountStatus, SystemAccount
from payguard.money import MAX_AMOUNT, is_known_currency
from payguard.payments import channels, fees, idempotency, instruments, limits
from payguard.payments.models import (
    FINAL_STATUSES,
    Merchant,
    Payment,
    PaymentEvent,
    PaymentKind,
    PaymentStatus,
    RailOperation,
)
from payguard.payments.rails import Rail, RailResult
from payguard.payments.schemas import (
    DecisionOut,
    MerchantOut,
    PaymentHistoryItem,
    PaymentOut,
    PaymentRequest,
    RefundRequest,
    SettlementLine,
    SettlementReport,
)
from payguard.risk import service as risk
from payguard.risk.engine import Assessor, Decision, RiskContext
from payguard.settings import Settings

PAYMENTS = cast(Table, Payment.__table__)
PAYMENT_EVENTS = cast(Table, PaymentEvent.__table__)
OUTGOING_KINDS = {PaymentKind.P2P, PaymentKind.MERCHANT, PaymentKind.WITHDRAWAL}
# Failures of the signature check that are security events, not just bad input.
INSTRUCTION_PROBLEMS = (
    "unknown-device",
    "bad-signature",
    "stale-instruction",
    "instruction-replayed",
)


class _StepUpNeeded(Exception):
    """Raised inside the payment transaction; the challenge is created after the rollback."""

    def __init__(
        self, reasons: list[str], assessed: tuple[RiskContext, Decision] | None = None
    ) -> None:
        self.assessed = assessed
        super().__init__(", ".join(reasons))
        self.reasons = reasons


@dataclass
class _Instruction:
    """The caller's instruction as the checks see it (signed or not)."""

    hash: str
    challenge_id: str | None
    signed: instructions.SignedInstruction | None = None
    device: instructions.VerifiedDevice | None = None
    nonce_spent: bool = False


@dataclass(frozen=True)
class Reply:
    """A finished request: HTTP status and the JSON body (also what idempotency replays)."""

    status_code: int
    body: str
    replayed: bool = False
    # What the idempotency record keeps: the same reply with the memo still sealed, so the
    # stored replies hold no personal data in clear (opened again on replay).
    stored_body: str | None = None


@dataclass
class _Draft:
    """A payment being built in memory; written once, with its whole history."""

    payment: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    def move(self, status: PaymentStatus, detail: str | None = None) -> None:
        now = clock.now()
        self.payment["status"] = status.value
        self.payment["updated_at"] = now
        self.history.append({"status": status.value, "detail": detail, "at": now})


@dataclass(frozen=True)
class IdempotencyScope:
    scope: str
    key: str
    fingerprint: str


class PaymentService:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        assessor: Assessor,
        rail: Rail,
        nonce_cache: instructions.NonceCache | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.assessor = assessor
        self.rail = rail
        self.nonce_cache = nonce_cache or instructions.nonce_cache_for(settings)

    # ------------------------------------------------------------ idempotent entry

    def run_idempotent(
        self,
        scope: IdempotencyScope | None,
        work: Callable[[Session], Reply | _Pending],
        before_claim: Callable[[Session], None] | None = None,
    ) -> Reply:
        """Run ``work`` under an idempotency key; replay the stored reply for a retry.

        ``before_claim`` runs first in the same transaction (the instruction checks)."""
        if scope is None:

            def unkeyed(session: Session) -> Reply | _Pending:
                if before_claim is not None:
                    before_claim(session)
                return work(session)

            result = self.db.transact(unkeyed)
            return result if isinstance(result, Reply) else self._finish_pending(result, None)
        deadline = time.monotonic() + self.settings.idempotency_wait_seconds
        while True:
            try:
                outcome = self.db.transact(
                    lambda session: self._claimed(session, scope, work, before_claim)
                )
            except idempotency.StillInProgress:
                if time.monotonic() >= deadline:
                    raise IdempotencyInProgress(
                        "a request with this Idempotency-Key is still being processed; "
                        "retry in a moment to get its result"
                    ) from None
                time.sleep(0.05)
                continue
            if isinstance(outcome, Reply):
                return outcome
            return self._finish_pending(outcome[1], outcome[0])

    def _claimed(
        self,
        session: Session,
        scope: IdempotencyScope,
        work: Callable[[Session], Reply | _Pending],
        before_claim: Callable[[Session], None] | None = None,
    ) -> Reply | tuple[int, _Pending]:
        if before_claim is not None:
            before_claim(session)
        record_id, stored = idempotency.claim(
            session,
            scope=scope.scope,
            key=scope.key,
            fingerprint=scope.fingerprint,
            ttl_hours=self.settings.idempotency_ttl_hours,
        )
        if stored is not None:
            return Reply(stored.status_code, self._reveal(session, stored.body), replayed=True)
        result = work(session)
        if isinstance(result, Reply):
            idempotency.complete(
                session, record_id, result.status_code, result.stored_body or result.body
            )
            return result
        return record_id, result

    # ------------------------------------------------------------ submit

    def submit(
        self,
        principal: Principal,
        request: PaymentRequest,
        scope: IdempotencyScope | None,
        *,
        ip: str | None = None,
    ) -> Reply:
        if principal.kind != "customer":
            raise Forbidden("payments are made by customers; staff use the operations endpoints")
        self._check_values(request.amount, request.currency)
        sent = request.model_dump(exclude_unset=True)
        key = scope.key if scope else None
        if request.signature is not None:
            signed = instructions.parse(sent, key)
            instruction = _Instruction(signed.instruction_hash, signed.challenge_id, signed)
        elif self.settings.require_signed_instructions:
            raise SignatureRequired(
                "payment instructions must be signed by a registered device "
                "(device_id, nonce, client_timestamp, signature); see docs/authentication.md"
            )
        else:
            document = instructions.signed_document(sent, key)
            instruction = _Instruction(
                instructions.instruction_hash(document), request.challenge_id
            )
        customer_id = principal.subject_id
        # Read before the payment's write transaction: under SQLite that transaction holds
        # the one write lock, and these facts only need to be a moment old.
        with self.db.read() as session:
            facts = identity.risk_facts(
                session,
                identity.get_customer(session, customer_id),
                session_id=principal.session_id,
                device_id=instruction.signed.device_id if instruction.signed else None,
                now=clock.now(),
            )
        try:
            return self.run_idempotent(
                scope,
                lambda session: self._submit_in(
                    session, customer_id, request, ip, instruction, facts
                ),
                before_claim=lambda session: self._verify_instruction(
                    session, principal, instruction
                ),
            )
        except _StepUpNeeded as needed:
            reasons, assessed = needed.reasons, needed.assessed

            def challenge_in(session: Session) -> Any:
                if assessed is not None:
                    # The attempt rolled back; its decision is kept all the same.
                    risk.record_receipt(session, *assessed, went_ahead=False)
                return self._challenge(session, customer_id, instruction, reasons)

            challenge = self.db.transact(challenge_in)
            problem = stepup.required_problem(challenge, reasons)
            if assessed is not None and assessed[1].action != "allow":
                # The payer sees why, and the plain-language warning, before confirming.
                decided = assessed[1]
                problem.extra["risk_reasons"] = [reason.code for reason in decided.reasons]
                problem.extra["customer_tip"] = decided.customer_tip
                problem.extra["customer_tip_zh"] = decided.customer_tip_zh
            raise problem from None
        except ProblemError as problem:
            refusal = problem
            if instruction.signed is not None:
                self.db.transact(
                    lambda session: self._after_refusal(session, customer_id, instruction, refusal)
                )
            raise

    def _verify_instruction(
        self, session: Session, principal: Principal, instruction: _Instruction
    ) -> None:
        """Signature, device, timestamp and nonce: before the idempotency lookup, so a
        replayed request is refused rather than answered from the idempotency store."""
        if instruction.signed is None:
            return
        instruction.device = instructions.verify(
            session,
            customer_id=principal.subject_id,
            bound_device_id=principal.device_id,
            instruction=instruction.signed,
            max_skew_seconds=self.settings.instruction_max_skew_seconds,
        )
        instructions.consume_nonce(
            session, self.nonce_cache, instruction.signed, self.settings.nonce_ttl_seconds
        )
        instruction.nonce_spent = True

    def _challenge(
        self, session: Session, customer_id: str, instruction: _Instruction, reasons: list[str]
    ) -> Any:
        if instruction.signed is not None:
            # The challenged request's nonce stays used: the retry is signed afresh.
            self._spend_nonce(session, instruction.signed)
        return stepup.create(
            session,
            self.settings,
            customer_id=customer_id,
            instruction_hash=instruction.hash,
            reasons=reasons,
        )

    def _spend_nonce(self, session: Session, signed: instructions.SignedInstruction) -> None:
        self.nonce_cache.consume(
            session, f"{signed.device_id}:{signed.nonce}", self.settings.nonce_ttl_seconds
        )

    def _after_refusal(
        self, session: Session, customer_id: str, instruction: _Instruction, problem: ProblemError
    ) -> None:
        """After a rolled-back refusal: keep a verified nonce spent, record security events."""
        assert instruction.signed is not None
        if instruction.nonce_spent:
            self._spend_nonce(session, instruction.signed)
        if problem.code in INSTRUCTION_PROBLEMS:
            events.emit(
                session,
                "security.instruction_rejected",
                {
                    "customer_id": customer_id,
                    "device_id": instruction.signed.device_id,
                    "problem": problem.code,
                },
            )
        if problem.code == "bad-signature" and self.settings.step_up_after_tamper_hours:
            self._step_up_after_tamper(session, customer_id)

    def _step_up_after_tamper(self, session: Session, customer_id: str) -> None:
        """What altered one signed instruction (malware on the phone, a proxy) may drive the
        app to sign its own: the customer steps up on every payment for a while."""
        if any(
            item.segment == "customer" and item.value == customer_id
            for item in stepup_segments.active(session)
        ):
            return
        stepup_segments.raise_step_up(
            session,
            segment="customer",
            value=customer_id,
            hours=self.settings.step_up_after_tamper_hours,
            reason="a tampered payment instruction was refused (bad signature)",
            by="system:payments",
        )

    def _step_up_reasons(
        self,
        session: Session,
        kind: PaymentKind,
        customer_id: str,
        payee: str | None,
        amount: int,
        instruction: _Instruction,
        *,
        kyc_tier: int | None = None,
        device_registered_at: datetime | None = None,
    ) -> list[str]:
        """The step-up policy: withdrawals, a new payee above an amount, a new device, and
        the payer segments an incident raised step-up for (identity/stepup_segments.py)."""
        reasons: list[str] = []
        if kind == PaymentKind.WITHDRAWAL:
            reasons.append("withdrawal")
        if (
            kind in (PaymentKind.P2P, PaymentKind.MERCHANT)
            and payee is not None
            and amount >= self.settings.step_up_new_payee_amount
            and not self._paid_before(session, customer_id, payee)
        ):
            reasons.append("new_payee")
        if instruction.device is not None and instruction.device.is_new:
            reasons.append("new_device")
        reasons += stepup_segments.matching_reasons(
            session,
            customer_id=customer_id,
            kyc_tier=kyc_tier,
            device_registered_at=device_registered_at,
            now=clock.now(),
        )
        return reasons

    @staticmethod
    def _paid_before(session: Session, customer_id: str, payee: str) -> bool:
        found = session.execute(
            select(PAYMENTS.c.id)
            .where(
                PAYMENTS.c.customer_id == customer_id,
                PAYMENTS.c.payee_account_id == payee,
                PAYMENTS.c.status == PaymentStatus.CONFIRMED.value,
            )
            .limit(1)
        ).first()
        return found is not None

    @classmethod
    def _check_values(cls, amount: int, currency: str) -> None:
        cls._check_amount(amount)
        if not is_known_currency(currency.upper()):
            raise UnknownCurrency(f"'{currency}' is not an ISO 4217 currency code")

    @staticmethod
    def _check_amount(amount: int) -> None:
        if amount <= 0:
            raise InvalidAmount("amount must be greater than zero (integer minor units)")
        if amount > MAX_AMOUNT:
            raise InvalidAmount(f"amount must not exceed {MAX_AMOUNT}")

    def _submit_in(
        self,
        session: Session,
        customer_id: str,
        request: PaymentRequest,
        ip: str | None,
        signed: _Instruction | None = None,
        facts: identity.RiskFacts | None = None,
    ) -> Reply | _Pending:
        customer = identity.get_customer(session, customer_id)
        currency = request.currency.upper()
        kind = PaymentKind(request.kind)
        now = clock.now()
        payment_id = ids.new_id("payment")
        wallet_id = self._payer_wallet(session, customer_id, request.payer_account_id, currency)
        # The memo is free text: kept sealed (below) and in the sealed evidence, not here.
        instruction = request.model_dump(
            exclude_none=True, exclude={"signature", "challenge_id", "memo"}
        )
        memo = seal_memo(session, self.settings, customer_id, payment_id, request.memo)
        card_index: str | None = None
        if request.bank_account:
            bank = instruments.tokenize(session, self.settings, customer_id, request.bank_account)
            # The risk engine keys a card by its blind index: the same for every customer
            # who uses it (the token is per customer), so one card behind many accounts shows.
            card_index = bank.number_index
            instruction["bank_account"], instruction["bank_token"] = bank.masked, bank.token
        draft = _Draft(
            payment={
                "id": payment_id,
                "kind": kind.value,
                "customer_id": customer_id,
                "amount": request.amount,
                "fee": 0,
                "currency": currency,
                "memo": memo,
                "instruction": instruction,
                "decision": None,
                "transfer_id": None,
                "hold_id": None,
                "rail_reference": None,
                "original_payment_id": None,
                "refunded_amount": 0,
                "failure_code": None,
                "created_at": now,
            }
        )
        draft.move(PaymentStatus.RECEIVED)

        if kind == PaymentKind.TOP_UP:
            payer, payee = None, wallet_id
        elif kind == PaymentKind.WITHDRAWAL:
            payer, payee = wallet_id, None
        else:
            payer, payee = wallet_id, self._payee(session, request, currency, wallet_id)
        if kind in (PaymentKind.TOP_UP, PaymentKind.WITHDRAWAL) and not request.bank_account:
            raise ValidationProblem("a top-up or withdrawal needs the bank_account field")
        draft.payment["payer_account_id"] = payer
        draft.payment["payee_account_id"] = payee
        # Incident containment: a suspended channel refuses here, before anything posts.
        channels.check(session, kind=kind.value, payer_account_id=payer)
        fee = fees.fee_for(self.settings, kind.value, request.amount)
        draft.payment["fee"] = fee
        draft.move(PaymentStatus.VERIFIED)

        device = signed.device if signed is not None else None
        if facts is None:
            facts = identity.risk_facts(
                session,
                customer,
                session_id=None,
                device_id=device.id if device is not None else None,
                now=now,
            )
        context = RiskContext(
            payment_id=payment_id,
            kind=kind.value,
            customer_id=customer_id,
            payer_account_id=payer,
            payee_account_id=payee,
            amount=request.amount,
            currency=currency,
            at=now,
            channel="app" if device is not None else "api",
            ip=ip,
            device_id=device.id if device is not None else None,
            device_new=device is not None and device.is_new,
            device_registered_at=facts.device_registered_at,
            bank_token=card_index,
            phone_index=facts.phone_index,
            kyc_tier=facts.kyc_tier,
            session_started_at=facts.session_started_at,
            second_factor_at=facts.second_factor_at,
            failed_logins_1h=facts.failed_logins_1h,
            password_changed_at=facts.password_changed_at,
            payee_kind="merchant" if kind == PaymentKind.MERCHANT else None,
        )
        decision = self.assessor.assess(context, observe=False)
        draft.payment["decision"] = decision.as_record()
        draft.move(PaymentStatus.ASSESSED, f"risk: {decision.action}, score {decision.score}")

        if decision.action == "block":
            risk.record_receipt(session, context, decision)
            draft.payment["failure_code"] = "risk_blocked"
            draft.move(PaymentStatus.REJECTED, "blocked by risk assessment")
            if decision.severe and payer is not None and self.settings.risk_freeze_on_block:
                self._freeze_for_risk(session, customer_id, payer, decision)
            return self._write_reply(session, draft, 422)
        if signed is not None:
            reasons = self._step_up_reasons(
                session,
                kind,
                customer_id,
                payee,
                request.amount,
                signed,
                kyc_tier=customer.kyc_tier,
                device_registered_at=facts.device_registered_at,
            )
            if decision.action == "challenge":
                reasons.append("risk")
            if reasons:
                if signed.challenge_id is None or not stepup.consume(
                    session, customer_id, signed.challenge_id, signed.hash
                ):
                    raise _StepUpNeeded(reasons, (context, decision))
                draft.move(PaymentStatus.VERIFIED, f"step-up passed ({', '.join(reasons)})")
            if signed.signed is not None and signed.device is not None:
                instructions.record_evidence(
                    session,
                    self.settings,
                    payment_id=payment_id,
                    customer_id=customer_id,
                    device=signed.device,
                    instruction=signed.signed,
                )
                instructions.mark_device_used(session, signed.device)

        risk.record_receipt(session, context, decision)
        if kind in OUTGOING_KINDS:
            limits.consume(
                session,
                self.settings,
                customer_id=customer_id,
                tier=customer.kyc_tier,
                amount=request.amount + fee,
                currency=currency,
                at=now,
            )
        # The payment goes ahead (posted, held or sent to the rail): it counts from now.
        self.assessor.observe(context)
        if decision.action == "review":
            return self._hold_for_review(session, draft, wallet_id, payee, currency)
        if (
            kind == PaymentKind.WITHDRAWAL
            and request.amount >= self.settings.payout_approval_threshold
        ):
            return self._hold_for_review(
                session,
                draft,
                wallet_id,
                payee,
                currency,
                detail="payout above the threshold: funds held until two staff release it",
            )
        if kind == PaymentKind.TOP_UP:
            self._insert(session, draft)
            return _Pending(payment_id, "collect")
        if kind == PaymentKind.WITHDRAWAL:
            return self._start_withdrawal(session, draft, wallet_id, currency)

        assert payer is not None and payee is not None
        posted = ledger.post_transfer(
            session,
            debit_account_id=payer,
            credit_account_id=payee,
            amount=request.amount,
            currency=currency,
            kind=kind.value,
            reference=payment_id,
            memo=memo,
            extra_legs=self._fee_legs(session, payer, fee, currency),
        )
        draft.payment["transfer_id"] = posted.id
        draft.move(PaymentStatus.POSTED, "ledger transfer posted")
        draft.move(PaymentStatus.CONFIRMED)
        return self._write_reply(session, draft, 201)

    def _freeze_for_risk(
        self, session: Session, customer_id: str, wallet_id: str, decision: Decision
    ) -> None:
        """A block for a severe reason stops the wallet too, and the customer is told."""
        codes = ", ".join(reason.code for reason in decision.reasons)
        ledger.set_status(
            session, wallet_id, AccountStatus.FROZEN, reason=f"risk engine: {codes}"[:200]
        )
        notifications.notify_customer(
            session,
            self.settings,
            customer_id,
            "We blocked a payment from your wallet and froze the wallet to protect your money. "
            "If it was not you, change your password. Call us to unfreeze it. / "
            "我们拦截了一笔可疑支付并冻结了您的钱包以保护资金安全。如非本人操作请立即修改密码，"
            "并联系客服解冻。",
        )

    def _fee_legs(self, session: Session, payer: str, fee: int, currency: str) -> list[ledger.Leg]:
        if fee == 0:
            return []
        revenue = ledger.system_account_id(session, SystemAccount.FEES_REVENUE, currency)
        return [ledger.Leg(payer, -fee), ledger.Leg(revenue, fee)]

    def _payer_wallet(
        self, session: Session, customer_id: str, requested: str | None, currency: str
    ) -> str:
        if requested is not None:
            try:
                account = ledger.get_account(session, requested)
            except AccountNotFound:
                account = None
            # The same answer for "not yours" and "does not exist": no account probing.
            if account is None or account.owner_id != customer_id:
                raise AccountNotFound(f"you have no account '{requested}'")
            if account.currency != currency:
                raise CurrencyMismatch(f"account '{requested}' holds {account.currency}")
            return account.id
        for account in ledger.list_accounts(
            session, owner_id=customer_id, kind=AccountKind.CUSTOMER_WALLET
        ):
            if account.currency == currency:
                return account.id
        raise CurrencyMismatch(f"you have no wallet in {currency}")

    def _payee(self, session: Session, request: PaymentRequest, currency: str, payer: str) -> str:
        if request.kind == "merchant":
            if not request.merchant_id:
                raise ValidationProblem("a merchant payment needs merchant_id")
            merchant = session.get(Merchant, request.merchant_id)
            if merchant is None or merchant.status != "active":
                raise AccountNotFound(f"no active merchant '{request.merchant_id}'")
            account_id = merchant.account_id
        elif request.payee_account_id:
            account_id = request.payee_account_id
        elif request.payee_username:
            payee_customer = identity.find_customer(session, request.payee_username)
            if payee_customer is None:
                raise AccountNotFound("no customer with that username")
            wallets = [
                account
                for account in ledger.list_accounts(
                    session, owner_id=payee_customer.id, kind=AccountKind.CUSTOMER_WALLET
                )
                if account.currency == currency
            ]
            if not wallets:
                raise CurrencyMismatch(f"the payee has no wallet in {currency}")
            account_id = wallets[0].id
        else:
            raise ValidationProblem("a p2p payment needs payee_account_id or payee_username")
        account = ledger.get_account(session, account_id)
        if account.kind == AccountKind.SYSTEM:
            raise AccountNotFound(f"no account '{account_id}'")
        if account.currency != currency:
            raise CurrencyMismatch(f"the payee account holds {account.currency}, not {currency}")
        if account.id == payer:
            raise ValidationProblem("payer and payee are the same account")
        return account.id

    # ------------------------------------------------------------ two-phase kinds

    def _hold_for_review(
        self,
        session: Session,
        draft: _Draft,
        wallet_id: str,
        payee: str | None,
        currency: str,
        detail: str = "funds held pending analyst review",
    ) -> Reply:
        # A held withdrawal reserves toward the bank settlement account, as a sent one does,
        # so that its release goes through the same rail settlement.
        credit = payee or ledger.system_account_id(
            session,
            SystemAccount.BANK_SETTLEMENT
            if draft.payment["kind"] == PaymentKind.WITHDRAWAL.value
            else SystemAccount.CLEARING,
            currency,
        )
        hold = ledger.create_hold(
            session,
            account_id=wallet_id,
            credit_account_id=credit,
            amount=draft.payment["amount"] + draft.payment["fee"],
            currency=currency,
            expires_at=clock.now() + timedelta(seconds=self.settings.hold_ttl_seconds),
            reference=draft.payment["id"],
        )
        draft.payment["hold_id"] = hold.id
        draft.move(PaymentStatus.HELD_FOR_REVIEW, detail)
        return self._write_reply(session, draft, 202)

    def _start_withdrawal(
        self, session: Session, draft: _Draft, wallet_id: str, currency: str
    ) -> _Pending:
        settlement = ledger.system_account_id(session, SystemAccount.BANK_SETTLEMENT, currency)
        hold = ledger.create_hold(
            session,
            account_id=wallet_id,
            credit_account_id=settlement,
            amount=draft.payment["amount"] + draft.payment["fee"],
            currency=currency,
            expires_at=clock.now() + timedelta(seconds=self.settings.hold_ttl_seconds),
            reference=draft.payment["id"],
        )
        draft.payment["hold_id"] = hold.id
        draft.move(PaymentStatus.POSTED, "funds held; sent to the bank rail")
        self._insert(session, draft)
        return _Pending(draft.payment["id"], "pay_out")

    def _finish_pending(self, pending: _Pending, record_id: int | None) -> Reply:
        payment = self.db.transact(lambda session: self._load(session, pending.payment_id))
        if pending.action == "collect":
            result = self.rail.collect(
                amount=payment.amount, currency=payment.currency, payment_id=payment.id
            )
        else:
            result = self.rail.pay_out(
                amount=payment.amount, currency=payment.currency, payment_id=payment.id
            )

        def settle(session: Session) -> Reply:
            reply = self._settle_rail(session, pending, result)
            if record_id is not None:
                idempotency.complete(
                    session, record_id, reply.status_code, reply.stored_body or reply.body
                )
            return reply

        return self.db.transact(settle)

    def _settle_rail(self, session: Session, pending: _Pending, result: RailResult) -> Reply:
        payment = self._lock(session, pending.payment_id)
        history: list[tuple[PaymentStatus, str | None]] = []
        self._record_rail(session, payment, pending, result)
        payment.rail_reference = result.rail_reference
        if pending.action == "collect":
            if result.succeeded:
                settlement = ledger.system_account_id(
                    session, SystemAccount.BANK_SETTLEMENT, payment.currency
                )
                assert payment.payee_account_id is not None
                posted = ledger.post_transfer(
                    session,
                    debit_account_id=settlement,
                    credit_account_id=payment.payee_account_id,
                    amount=payment.amount,
                    currency=payment.currency,
                    kind=PaymentKind.TOP_UP.value,
                    reference=payment.id,
                )
                payment.transfer_id = posted.id
                history += [(PaymentStatus.POSTED, "bank rail collected the funds")]
                history += [(PaymentStatus.CONFIRMED, None)]
            else:
                payment.failure_code = "rail_rejected"
                history.append((PaymentStatus.FAILED, result.failure_reason))
        else:
            assert payment.hold_id is not None and payment.payer_account_id is not None
            if result.succeeded:
                posted = ledger.post_hold(
                    session,
                    payment.hold_id,
                    amount=payment.amount,
                    extra_legs=self._fee_legs(
                        session, payment.payer_account_id, payment.fee, payment.currency
                    ),
                    kind=PaymentKind.WITHDRAWAL.value,
                )
                payment.transfer_id = posted.id
                history.append((PaymentStatus.CONFIRMED, "bank rail paid out"))
            else:
                ledger.void_hold(session, payment.hold_id)
                payment.failure_code = "rail_rejected"
                history.append((PaymentStatus.FAILED, result.failure_reason))
        for status, detail in history:
            self._move(session, payment, status, detail)
        status_code = 201 if payment.status == PaymentStatus.CONFIRMED else 422
        return Reply(
            status_code, self._out(session, payment), stored_body=self._sealed_out(session, payment)
        )

    def _record_rail(
        self, session: Session, payment: Payment, pending: _Pending, result: RailResult
    ) -> None:
        session.add(
            RailOperation(
                id=ids.new_id("rail_operation"),
                rail=self.rail.name,
                direction="in" if pending.action == "collect" else "out",
                payment_id=payment.id,
                amount=payment.amount,
                currency=payment.currency,
                status="succeeded" if result.succeeded else "failed",
                rail_reference=result.rail_reference,
                failure_reason=result.failure_reason,
                created_at=clock.now(),
            )
        )

    # ------------------------------------------------------------ refunds

    def refund(
        self,
        principal: Principal,
        payment_id: str,
        request: RefundRequest,
        scope: IdempotencyScope | None,
    ) -> Reply:
        if request.amount is not None:
            self._check_amount(request.amount)
        return self.run_idempotent(
            scope, lambda session: self._refund_in(session, principal, payment_id, request)
        )

    def _refund_in(
        self, session: Session, principal: Principal, payment_id: str, request: RefundRequest
    ) -> Reply:
        original = self._lock(session, payment_id)
        merchant = session.scalar(
            select(Merchant).where(Merchant.account_id == original.payee_account_id)
        )
        allowed = permissions.holds(principal, Permission.PAYMENTS_REFUND)
        if merchant is not None and merchant.owner_customer_id == principal.subject_id:
            allowed = True
        if not allowed:
            raise NotFound(f"no payment '{payment_id}'")
        if original.kind != PaymentKind.MERCHANT or original.status != PaymentStatus.CONFIRMED:
            raise PaymentNotRefundable("only a confirmed merchant payment can be refunded")
        assert original.transfer_id is not None
        remaining = original.amount - original.refunded_amount
        amount = remaining if request.amount is None else request.amount
        if remaining == 0:
            raise PaymentNotRefundable("this payment has been refunded in full")
        channels.check(session, kind=PaymentKind.REFUND.value, payer_account_id=None)
        refund_id = ids.new_id("payment")
        owner = original.customer_id or original.id  # refunds of merchant payments: the payer
        memo = seal_memo(session, self.settings, owner, refund_id, request.memo)
        posted = ledger.reverse_transfer(
            session, original.transfer_id, amount=amount, reference=refund_id, memo=memo
        )
        original.refunded_amount += amount
        original.updated_at = clock.now()
        draft = _Draft(
            payment={
                "id": refund_id,
                "kind": PaymentKind.REFUND.value,
                "customer_id": original.customer_id,
                "payer_account_id": original.payee_account_id,
                "payee_account_id": original.payer_account_id,
                "amount": amount,
                "fee": 0,
                "currency": original.currency,
                "memo": memo,
                "instruction": {"refund_of": original.id, "amount": amount},
                "decision": None,
                "transfer_id": posted.id,
                "hold_id": None,
                "rail_reference": None,
                "original_payment_id": original.id,
                "refunded_amount": 0,
                "failure_code": None,
                "created_at": clock.now(),
            }
        )
        draft.move(PaymentStatus.RECEIVED)
        draft.move(PaymentStatus.VERIFIED, "refund of a confirmed merchant payment")
        draft.move(PaymentStatus.POSTED, "compensating ledger transfer posted")
        draft.move(PaymentStatus.CONFIRMED)
        return self._write_reply(session, draft, 201)

    # ------------------------------------------------------------ review outcome

    def resolve_review(self, payment_id: str, *, approve: bool, reason: str) -> PaymentOut:
        """Approve (post the held funds) or reject (release them) a held payment."""
        return self.db.transact(
            lambda session: self.resolve_review_in(
                session, payment_id, approve=approve, reason=reason
            )
        )

    def resolve_review_in(
        self, session: Session, payment_id: str, *, approve: bool, reason: str
    ) -> PaymentOut:
        """:meth:`resolve_review` inside the caller's transaction (a four-eyes approval)."""
        payment = self._lock(session, payment_id)
        if payment.status != PaymentStatus.HELD_FOR_REVIEW or payment.hold_id is None:
            raise PaymentNotRefundable("the payment is not held for review")
        if approve and payment.kind == PaymentKind.WITHDRAWAL.value:
            raise PaymentNotReleasable("a held withdrawal is released by payout approval")
        if approve:
            channels.check(session, kind=payment.kind, payer_account_id=payment.payer_account_id)
            posted = ledger.post_hold(session, payment.hold_id, amount=payment.amount)
            payment.transfer_id = posted.id
            self._move(session, payment, PaymentStatus.POSTED, f"approved: {reason}")
            self._move(session, payment, PaymentStatus.CONFIRMED, None)
        else:
            ledger.void_hold(session, payment.hold_id)
            payment.failure_code = "review_rejected"
            self._move(session, payment, PaymentStatus.FAILED, f"rejected: {reason}")
        return PaymentOut.model_validate_json(self._out(session, payment))

    def held_payment(self, session: Session, payment_id: str) -> PaymentOut:
        """A payment as staff see it (the review queue shows the held ones)."""
        return PaymentOut.model_validate_json(self._out(session, self._load(session, payment_id)))

    # ------------------------------------------------------------ payout release

    def check_payout_releasable(self, session: Session, payment_id: str) -> Payment:
        payment = self._load(session, payment_id)
        if payment.kind != PaymentKind.WITHDRAWAL.value:
            raise PaymentNotReleasable("only a withdrawal is released to the bank rail")
        if payment.status != PaymentStatus.HELD_FOR_REVIEW or payment.hold_id is None:
            raise PaymentNotReleasable(f"the payment is {payment.status}, not held")
        return payment

    def begin_payout_release(self, session: Session, payment_id: str, note: str) -> None:
        """The approved release, in the approving transaction: the payout leaves the hold
        state; the rail is called after the commit (:meth:`send_payout`)."""
        self.check_payout_releasable(session, payment_id)
        payment = self._lock(session, payment_id)
        if payment.status != PaymentStatus.HELD_FOR_REVIEW:
            raise PaymentNotReleasable("the payment was resolved a moment ago")
        channels.check(session, kind=payment.kind, payer_account_id=payment.payer_account_id)
        self._move(session, payment, PaymentStatus.POSTED, f"released: {note}; sent to the rail")

    def decline_payout(self, payment_id: str, reason: str) -> PaymentOut:
        with self.db.read() as session:
            self.check_payout_releasable(session, payment_id)
        return self.resolve_review(payment_id, approve=False, reason=reason)

    def send_payout(self, payment_id: str) -> PaymentOut:
        reply = self._finish_pending(_Pending(payment_id, "pay_out"), None)
        return PaymentOut.model_validate_json(reply.body)

    def fail_expired_hold(self, session: Session, payment_id: str) -> None:
        """A withdrawal or review hold expired unresolved: the payment fails."""
        payment = self._lock(session, payment_id)
        if payment.status in FINAL_STATUSES:
            return
        payment.failure_code = "hold_expired"
        self._move(session, payment, PaymentStatus.FAILED, "hold expired before resolution")

    # ------------------------------------------------------------ reading

    def get(self, principal: Principal, payment_id: str) -> PaymentOut:
        with self.db.read() as session:
            payment = session.get(Payment, payment_id)
            if payment is None or not self._visible(session, principal, payment):
                raise NotFound(f"no payment '{payment_id}'")
            return PaymentOut.model_validate_json(self._out(session, payment))

    def list(
        self, principal: Principal, *, cursor: str | None, limit: int, status: str | None = None
    ) -> tuple[list[PaymentOut], str | None]:
        with self.db.read() as session:
            query = select(Payment).order_by(Payment.id.desc()).limit(limit + 1)
            if not principal.is_staff:
                query = query.where(Payment.customer_id == principal.subject_id)
            if cursor:
                query = query.where(Payment.id < cursor)
            if status:
                query = query.where(Payment.status == status)
            rows = list(session.scalars(query))
            page = rows[:limit]
            items = [PaymentOut.model_validate_json(self._out(session, p)) for p in page]
            return items, (page[-1].id if len(rows) > limit else None)

    def settlement_report(self, day: date) -> SettlementReport:
        start = datetime(day.year, day.month, day.day, tzinfo=clock.now().tzinfo)
        end = start + timedelta(days=1)
        ops = RailOperation.__table__
        succeeded = ops.c.status == "succeeded"
        query = (
            select(
                ops.c.rail,
                ops.c.direction,
                ops.c.currency,
                func.sum(case((succeeded, 1), else_=0)),
                func.sum(case((succeeded, ops.c.amount), else_=0)),
                func.sum(case((succeeded, 0), else_=1)),
            )
            .where(and_(ops.c.created_at >= start, ops.c.created_at < end))
            .group_by(ops.c.rail, ops.c.direction, ops.c.currency)
            .order_by(ops.c.rail, ops.c.direction, ops.c.currency)
        )
        with self.db.read() as session:
            lines = [
                SettlementLine(
                    rail=rail,
                    direction=direction,
                    currency=currency,
                    succeeded_count=int(ok_count or 0),
                    succeeded_amount=int(ok_amount or 0),
                    failed_count=int(failed or 0),
                )
                for rail, direction, currency, ok_count, ok_amount, failed in session.execute(query)
            ]
        return SettlementReport(day=day, lines=lines)

    @staticmethod
    def _visible(session: Session, principal: Principal, payment: Payment) -> bool:
        if principal.is_staff or payment.customer_id == principal.subject_id:
            return True
        owned = identity.wallet_ids(session, principal.subject_id)
        return payment.payee_account_id in owned or payment.payer_account_id in owned

    # ------------------------------------------------------------ persistence helpers

    def _insert(self, session: Session, draft: _Draft) -> None:
        # Parameters passed separately keep the compiled statement cached across calls.
        session.execute(insert(PAYMENTS), [draft.payment])
        session.execute(
            insert(PAYMENT_EVENTS),
            [{"payment_id": draft.payment["id"], **item} for item in draft.history],
        )

    def _write_reply(self, session: Session, draft: _Draft, status_code: int) -> Reply:
        self._insert(session, draft)
        payment = draft.payment
        events.emit(
            session,
            "payments.status_changed",
            {
                "payment_id": payment["id"],
                "kind": payment["kind"],
                "status": payment["status"],
                "amount": payment["amount"],
                "currency": payment["currency"],
            },
        )
        clear = {
            **payment,
            "memo": open_memo(session, self.settings, payment["id"], payment["memo"]),
        }
        return Reply(
            status_code,
            _render(clear, draft.history),
            stored_body=_render(payment, draft.history),
        )

    def _lock(self, session: Session, payment_id: str) -> Payment:
        query = select(Payment).where(Payment.id == payment_id).with_for_update()
        payment = session.scalar(query.execution_options(populate_existing=True))
        if payment is None:
            raise NotFound(f"no payment '{payment_id}'")
        return payment

    def _load(self, session: Session, payment_id: str) -> Payment:
        payment = session.get(Payment, payment_id)
        if payment is None:
            raise NotFound(f"no payment '{payment_id}'")
        return payment

    def _move(
        self, session: Session, payment: Payment, status: PaymentStatus, detail: str | None
    ) -> None:
        now = clock.now()
        payment.status = status.value
        payment.updated_at = now
        session.add(PaymentEvent(payment_id=payment.id, status=status.value, detail=detail, at=now))
        session.flush()
        events.emit(
            session,
            "payments.status_changed",
            {
                "payment_id": payment.id,
                "kind": payment.kind,
                "status": status.value,
                "amount": payment.amount,
                "currency": payment.currency,
            },
        )

    def _reveal(self, session: Session, body: str) -> str:
        """A stored reply with its sealed memo opened (replays of idempotent requests)."""
        try:
            document = json.loads(body)
        except ValueError:
            return body
        memo = document.get("memo") if isinstance(document, dict) else None
        if not memo or not is_sealed(memo):
            return body
        document["memo"] = open_memo(session, self.settings, document.get("id"), memo)
        return json.dumps(document, separators=(",", ":"))

    def _sealed_out(self, session: Session, payment: Payment) -> str:
        """The reply as the idempotency record keeps it: the memo still sealed."""
        return self._out(session, payment, open_memo_too=False)

    def _out(self, session: Session, payment: Payment, *, open_memo_too: bool = True) -> str:
        history = session.execute(
            select(PAYMENT_EVENTS.c.status, PAYMENT_EVENTS.c.detail, PAYMENT_EVENTS.c.at)
            .where(PAYMENT_EVENTS.c.payment_id == payment.id)
            .order_by(PAYMENT_EVENTS.c.id)
        )
        values = {column.name: getattr(payment, column.name) for column in PAYMENTS.columns}
        if open_memo_too:
            values["memo"] = open_memo(session, self.settings, payment.id, payment.memo)
        return _render(values, [row._asdict() for row in history])


@dataclass(frozen=True)
class _Pending:
    """Committed so far; the rail must answer before the payment can finish."""

    payment_id: str
    action: str  # collect | pay_out


def _render(payment: dict[str, Any], history: Sequence[dict[str, Any]]) -> str:
    decision = payment.get("decision")
    out = PaymentOut(
        id=payment["id"],
        kind=payment["kind"],
        status=payment["status"],
        amount=payment["amount"],
        fee=payment["fee"],
        currency=payment["currency"],
        payer_account_id=payment.get("payer_account_id"),
        payee_account_id=payment.get("payee_account_id"),
        memo=payment.get("memo"),
        decision=DecisionOut.model_validate(decision) if decision else None,
        transfer_id=payment.get("transfer_id"),
        hold_id=payment.get("hold_id"),
        original_payment_id=payment.get("original_payment_id"),
        refunded_amount=payment.get("refunded_amount", 0),
        failure_code=payment.get("failure_code"),
        created_at=payment["created_at"],
        updated_at=payment["updated_at"],
        history=[PaymentHistoryItem(**item) for item in history],
    )
    return out.model_dump_json()


# ------------------------------------------------------------ merchants


def create_merchant(
    session: Session,
    settings: Settings,
    *,
    name: str,
    owner_customer_id: str | None,
    currency: str | None,
) -> MerchantOut:
    if owner_customer_id is not None:
        identity.get_customer(session, owner_customer_id)
    merchant_id = ids.new_id("merchant")
    account = ledger.open_account(
        session,
        kind=AccountKind.MERCHANT,
        currency=currency or settings.default_currency,
        name=name,
        owner_id=owner_customer_id or merchant_id,
    )
    merchant = Merchant(
        id=merchant_id,
        name=name,
        account_id=account.id,
        owner_customer_id=owner_customer_id,
        status="active",
        created_at=clock.now(),
    )
    session.add(merchant)
    session.flush()
    return _merchant_out(merchant)


def payments_of_customer(
    session: Session, settings: Settings, customer_id: str
) -> list[dict[str, Any]]:
    """Every payment a customer made, as plain records (the right of access export)."""
    rows = session.scalars(
        select(Payment).where(Payment.customer_id == customer_id).order_by(Payment.id)
    )
    return [
        {
            "id": row.id,
            "kind": row.kind,
            "amount": row.amount,
            "fee": row.fee,
            "currency": row.currency,
            "status": row.status,
            "memo": open_memo(session, settings, row.id, row.memo),
            "created_at": row.created_at.isoformat(),
        }
        for row in rows
    ]


def list_merchants(session: Session, limit: int = 100) -> list[MerchantOut]:
    query = select(Merchant).order_by(Merchant.id).limit(limit)
    return [_merchant_out(merchant) for merchant in session.scalars(query)]


def find_merchant(session: Session, merchant_id: str) -> Merchant | None:
    """The merchant with this id, or ``None``."""
    return session.get(Merchant, merchant_id)


def merchant_of_account(session: Session, account_id: str) -> Merchant | None:
    """The merchant whose ledger account this is, or ``None`` (a customer's wallet)."""
    return session.scalar(select(Merchant).where(Merchant.account_id == account_id).limit(1))


def _merchant_out(merchant: Merchant) -> MerchantOut:
    return MerchantOut(
        id=merchant.id,
        name=merchant.name,
        account_id=merchant.account_id,
        status=merchant.status,
        owner_customer_id=merchant.owner_customer_id,
    )


def expire_holds(service: PaymentService) -> int:
    """Release every due hold and fail the payment that placed it. Returns how many."""
    released = 0
    with service.db.read() as session:
        due = ledger.expired_hold_ids(session)
    for hold_id in due:

        def work(session: Session, hold_id: str = hold_id) -> bool:
            if not ledger.expire_hold(session, hold_id):
                return False
            reference = ledger.get_hold(session, hold_id).reference
            if reference and ids.has_prefix(reference, "payment"):
                service.fail_expired_hold(session, reference)
            return True

        try:
            released += service.db.transact(work)
        except ProblemError:
            continue
    return released


def payments_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Payment.status, func.count()).group_by(Payment.status))
    return {status: int(count) for status, count in rows}


def payment_statuses(session: Session, payment_ids: Sequence[str]) -> dict[str, str]:
    """The current status of each of these payments (unknown ids are left out)."""
    found: dict[str, str] = {}
    ids_list = list(payment_ids)
    for start in range(0, len(ids_list), 500):
        chunk = ids_list[start : start + 500]
        rows = session.execute(select(Payment.id, Payment.status).where(Payment.id.in_(chunk)))
        found.update({payment_id: status for payment_id, status in rows})
    return found


__all__ = [
    "IdempotencyScope",
    "PaymentService",
    "Reply",
    "create_merchant",
    "expire_holds",
    "list_merchants",
    "payment_statuses",
    "payments_by_status",
]
