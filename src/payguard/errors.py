"""Domain errors and their RFC 9457 problem+json form.

Services raise ``ProblemError`` subclasses; the app turns them into
``application/problem+json`` replies with a stable ``type`` code. Nothing else
leaves the API as an error, so a traceback never reaches a client.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "https://payguard.dev/problems/"


class ProblemError(Exception):
    """An error a client can act on. ``code`` is stable and documented."""

    code: ClassVar[str] = "bad-request"
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def to_problem(self, instance: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.code,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            body["instance"] = instance
        body.update(self.extra)
        return body


class ValidationProblem(ProblemError):
    code, status, title = "validation-error", 422, "The request is not valid"


class MalformedBody(ProblemError):
    code, status, title = "malformed-body", 400, "The request body is not valid JSON"


class BodyTooLarge(ProblemError):
    code, status, title = "body-too-large", 413, "The request body is too large"


class NotAuthenticated(ProblemError):
    code, status, title = "not-authenticated", 401, "Authentication required"


class Forbidden(ProblemError):
    code, status, title = "forbidden", 403, "Not allowed"


class NotFound(ProblemError):
    code, status, title = "not-found", 404, "Not found"


class Conflict(ProblemError):
    code, status, title = "conflict", 409, "Conflict with the current state"


class UnknownCurrency(ProblemError):
    code, status, title = "unknown-currency", 422, "Unknown currency"


class CurrencyMismatch(ProblemError):
    code, status, title = "currency-mismatch", 422, "Currency does not match the account"


class InvalidAmount(ProblemError):
    code, status, title = "invalid-amount", 422, "Invalid amount"


class AccountNotFound(ProblemError):
    code, status, title = "account-not-found", 404, "Account not found"


class AccountFrozen(ProblemError):
    code, status, title = "account-frozen", 409, "Account is frozen"


class AccountClosed(ProblemError):
    code, status, title = "account-closed", 409, "Account is closed"


class InsufficientFunds(ProblemError):
    code, status, title = "insufficient-funds", 409, "Insufficient funds"


class HoldNotPending(ProblemError):
    code, status, title = "hold-not-pending", 409, "The hold is already resolved"


class ReversalExceedsRemainder(ProblemError):
    code, status, title = "reversal-exceeds-remainder", 409, "Reversal exceeds what remains"


class LimitExceeded(ProblemError):
    code, status, title = "limit-exceeded", 422, "Payment limit exceeded"


class IdempotencyKeyReused(ProblemError):
    code, status, title = "idempotency-key-reused", 409, "Idempotency key used with another body"


class IdempotencyInProgress(ProblemError):
    code, status, title = "idempotency-in-progress", 409, "The original request is still running"


class IdempotencyKeyMissing(ProblemError):
    code, status, title = "idempotency-key-missing", 400, "Idempotency-Key header required"


class WriteConflict(ProblemError):
    code, status, title = "write-conflict", 409, "Concurrent update; retry the request"


class PaymentNotRefundable(ProblemError):
    code, status, title = "payment-not-refundable", 409, "Payment cannot be refunded"


class RailUnavailable(ProblemError):
    code, status, title = "rail-unavailable", 503, "Bank rail unavailable"


class ServiceUnavailable(ProblemError):
    code, status, title = "service-unavailable", 503, "Service unavailable"


# ------------------------------------------------------------ signed instructions, step-up


class SignatureRequired(ProblemError):
    code, status, title = "signature-required", 401, "The instruction must be signed"


class UnknownDevice(ProblemError):
    code, status, title = "unknown-device", 401, "The device is not known or not active"


class BadSignature(ProblemError):
    code, status, title = "bad-signature", 401, "The instruction signature is not valid"


class StaleInstruction(ProblemError):
    code, status, title = "stale-instruction", 401, "The instruction timestamp is out of range"


class InstructionReplayed(ProblemError):
    code, status, title = "instruction-replayed", 409, "The instruction was already used"


class ChallengeRequired(ProblemError):
    code, status, title = "challenge-required", 403, "Step-up authentication required"


class ChallengeFailed(ProblemError):
    code, status, title = "challenge-failed", 403, "The step-up proof was not accepted"


class PaymentNotReleasable(ProblemError):
    code, status, title = "payment-not-releasable", 409, "Payment cannot be released"


class SecondFactorRequired(ProblemError):
    code, status, title = "second-factor-required", 403, "A second factor is required"


class TooManyAttempts(ProblemError):
    """Login throttling: the same reply whether or not the account exists."""

    code, status, title = "too-many-attempts", 429, "Too many attempts"


# ------------------------------------------------------------ platform controls (incidents)


class ChannelSuspended(ProblemError):
    """A payment channel is suspended during an incident (payments/channels.py)."""

    code, status, title = "channel-suspended", 409, "This payment channel is suspended"


class PasswordResetRequired(ProblemError):
    """The security team forced a password reset (identity/password_reset.py)."""

    code, status, title = "password-reset-required", 403, "The password must be reset"
