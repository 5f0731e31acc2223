"""The platform controls a drill can switch off in its sandbox (``--disable-control``).

A drill run with a control switched off shows what that control is worth: the scenario
that exercises it must then fail. Each control is switched off either through the
server's settings (``PAYGUARD_*`` environment of the sandbox process) or by a change to
the fresh sandbox database before the server starts (``prepare``). Controls are never
switched off on a ``--target`` instance: a drill must not weaken a running platform.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from payguard.errors import ValidationProblem
from payguard.risk import rules

# A limit no drill reaches: the control is still there but never bites.
NEVER = str(10**15)


@dataclass(frozen=True)
class Control:
    name: str
    description_en: str
    description_zh: str
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[Session], None] | None = None


def _publish_empty_ruleset(session: Session) -> None:
    """Put an empty rule set in force, as a careless publication would."""
    rules.force_publish(session, [], note="drill: risk rules switched off", by="drill")


CONTROLS: dict[str, Control] = {
    control.name: control
    for control in (
        Control(
            "signed_instructions",
            "Payment instructions must be signed by a registered device key "
            "(signature, nonce, timestamp).",
            "支付指令须由已绑定设备的密钥签名（签名、一次性随机数、时间戳）。",
            env={"PAYGUARD_REQUIRE_SIGNED_INSTRUCTIONS": "false"},
        ),
        Control(
            "step_up_new_payee",
            "A second factor is demanded for a large payment to a new payee.",
            "向新收款方大额付款须进行二次验证。",
            env={"PAYGUARD_STEP_UP_NEW_PAYEE_AMOUNT": NEVER},
        ),
        Control(
            "login_throttle",
            "Failed logins are delayed and locked out per account and per source address.",
            "登录失败按账户和来源地址延时并锁定。",
            env={
                "PAYGUARD_LOGIN_MAX_FAILURES": NEVER,
                "PAYGUARD_LOGIN_IP_MAX_FAILURES": NEVER,
                "PAYGUARD_LOGIN_DELAY_BASE_MS": "0",
            },
        ),
        Control(
            "payout_four_eyes",
            "A payout at or above the threshold is held until two staff members release it.",
            "达到阈值的提现（付款）须经两名工作人员复核放行（四眼原则）。",
            env={"PAYGUARD_PAYOUT_APPROVAL_THRESHOLD": NEVER},
        ),
        Control(
            "risk_rules",
            "The risk engine's rules score every payment (challenge, review, block).",
            "风控规则对每笔支付评分（验证、人工审核、拦截）。",
            prepare=_publish_empty_ruleset,
        ),
        Control(
            "risk_freeze_on_block",
            "A block for a severe reason freezes the payer's wallet.",
            "因严重原因拦截时冻结付款钱包。",
            env={"PAYGUARD_RISK_FREEZE_ON_BLOCK": "false"},
        ),
    )
}


def register(control: Control) -> Control:
    """Add a control (scenario modules of D2/D3 may bring their own)."""
    if control.name in CONTROLS and CONTROLS[control.name] != control:
        raise ValueError(f"control '{control.name}' is already defined differently")
    CONTROLS[control.name] = control
    return control


def resolve(names: list[str] | tuple[str, ...]) -> list[Control]:
    unknown = [name for name in names if name not in CONTROLS]
    if unknown:
        raise ValidationProblem(
            f"unknown control '{unknown[0]}'; one of: {', '.join(sorted(CONTROLS))}"
        )
    return [CONTROLS[name] for name in names]
