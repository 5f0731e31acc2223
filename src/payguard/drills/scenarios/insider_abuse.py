"""Insider privilege abuse (seed 003: least privilege, four-eyes, audit and monitoring).

An operations clerk wants money for an account they control (an accomplice's wallet,
frozen by the risk team). Their role may *ask* for every sensitive operation, so they
ask — a manual ledger adjustment from a customer's wallet to the accomplice, higher
limits for the accomplice, the unfreeze of the accomplice's wallet — and then approve
their own requests, as if they were the second person. When that fails, they try to read
the audit log to see what was recorded about them.

Expected: four-eyes refuses every self-approval and least privilege refuses the audit log
(403); every attempt is on the tamper-evident audit trail (``approval.requested``,
``security.staff_operation_refused``); the staff watch (identity/staff_watch.py) turns
the repeated refusals into a risk alert and ``security.staff_refusals_repeated``, incident
intake opens an incident and the insider-abuse playbook ends the clerk's sessions.
No money moves.
"""

from __future__ import annotations

import time
from typing import Any

from payguard.drills import controls
from payguard.drills.context import DrillContext, StaffActor, StepHandle
from payguard.drills.scenario import Scenario, event, incident, playbook, refused

ADJUSTMENT = 250_000  # 2,500.00 CNY from a customer's wallet to the accomplice
PERSIST_SECONDS = 15.0  # how long the insider keeps trying before giving up

controls.register(
    controls.Control(
        "staff_refusal_watch",
        "Refused staff operations are audited and counted; repeated refusals raise an "
        "alert (incident, the staff member's sessions ended).",
        "工作人员被拒绝的操作均记入审计并计数；多次被拒触发告警（事件、终止其会话）。",
        env={"PAYGUARD_STAFF_REFUSAL_ALERT_COUNT": controls.NEVER},
    )
)


def setup(ctx: DrillContext) -> None:
    ctx.customer("customer", balance=300_000, tier=1)
    accomplice = ctx.customer("accomplice", balance=1_000)
    ctx.customer("shopper_a", balance=50_000, background=True)
    ctx.customer("shopper_b", balance=50_000, background=True)
    ctx.merchant("bakery")
    ctx.staff("insider", "operations")
    analyst = ctx.staff("analyst", "risk_analyst")
    # The risk team froze the accomplice's wallet earlier (the insider wants it open).
    with ctx.http() as http:
        frozen = http.post(
            f"/v1/accounts/{accomplice.wallet_id}/freeze",
            json={"reason": "drill: mule suspicion"},
            headers={"Authorization": f"Bearer {analyst.client.token}"},
        )
    if frozen.status_code != 200:
        raise RuntimeError(f"the drill could not freeze the accomplice's wallet: {frozen.text}")


def _ask_and_self_approve(
    step: StepHandle, insider: StaffActor, action: str, target: str, **params: Any
) -> None:
    asked = step.call(
        insider.client.request_approval, action, target, "drill: insider request", **params
    )
    if asked is None:
        return
    step.note(
        f"Request {asked['id']} ({action}) recorded; the insider approves it themself.",
        f"申请 {asked['id']}（{action}）已记录；内部人员试图自行审批。",
    )
    if step.call(insider.client.approve, str(asked["id"]), "approved") is not None:
        step.breach(f"the insider approved their own {action}")


def attack(ctx: DrillContext) -> None:
    insider = ctx.staff_actors["insider"]
    customer, accomplice = ctx.actor("customer"), ctx.actor("accomplice")
    four_eyes = [refused("forbidden"), event("security.staff_operation_refused")]

    with ctx.step(
        "adjustment",
        "Move a customer's money to the accomplice by a manual adjustment, self-approved",
        "通过人工调账把客户资金转给同伙账户，并自行审批",
        money_at_risk=ADJUSTMENT,
        detect=four_eyes,
        contain=[refused("forbidden")],
        detect_within_s=3,
        contain_within_s=3,
    ) as step:
        _ask_and_self_approve(
            step,
            insider,
            "ledger.adjustment",
            customer.wallet_id,
            credit_account_id=accomplice.wallet_id,
            amount=ADJUSTMENT,
            currency="CNY",
        )

    with ctx.step(
        "limits",
        "Raise the accomplice's payment limits, self-approved",
        "提高同伙账户的支付限额，并自行审批",
        detect=four_eyes,
        contain=[refused("forbidden")],
        detect_within_s=3,
        contain_within_s=3,
    ) as step:
        _ask_and_self_approve(
            step,
            insider,
            "limits.override",
            accomplice.customer_id,
            per_payment_max=5_000_000,
            daily_amount_max=10_000_000,
            daily_count_max=200,
            hours=24,
        )

    with ctx.step(
        "unfreeze-and-persist",
        "Unfreeze the accomplice's wallet alone, then keep trying and read the audit log",
        "独自解冻同伙钱包，随后反复尝试并试图查看审计日志",
        detect=[event("security.staff_refusals_repeated"), incident()],
        contain=[
            playbook("revoke_sessions"),
            event("controls.sessions_revoked"),
            refused("not-authenticated"),
        ],
        detect_within_s=5,
        contain_within_s=15,
    ) as step:
        _ask_and_self_approve(step, insider, "account.unfreeze", accomplice.wallet_id)
        deadline = time.monotonic() + PERSIST_SECONDS
        while time.monotonic() < deadline:
            try:
                insider.client.http.get(
                    "/v1/audit/records",
                    headers={"Authorization": f"Bearer {insider.client.token}"},
                ).raise_for_status()
            except Exception as error:  # a refusal: recorded below, the insider goes on
                reply = getattr(error, "response", None)
                if reply is not None:
                    step.response(reply)
                    if reply.status_code == 401:
                        step.note("The insider's session has ended.", "内部人员的会话已被终止。")
                        return
            else:
                step.breach("the insider read the audit log")
                return
            time.sleep(0.5)
        step.note(
            "The insider kept their session for the whole attempt.",
            "内部人员在整个尝试过程中一直保有会话。",
        )


SCENARIO = Scenario(
    name="insider_abuse",
    title_en="Insider privilege abuse: self-approved adjustment, limits and unfreeze",
    title_zh="内部人员滥用权限：自行审批调账、提额和解冻",
    threat_en=(
        "An operations clerk tries to move money to an account they control by approving "
        "their own four-eyes requests, then to read the audit log."
    ),
    threat_zh="运营人员试图通过自行审批四眼复核申请把资金转入其控制的账户，并试图查看审计日志。",
    seed="003",
    controls=("staff_refusal_watch",),
    setup=setup,
    attack=attack,
    root_cause_en=(
        "A role that may ask for sensitive operations was held by someone willing to "
        "abuse it; only the second person and the watch on refusals stood in the way."
    ),
    root_cause_zh="具有发起敏感操作权限的角色由愿意滥用该权限的人员持有，仅靠第二审批人和对被拒操作的监测拦截。",
    fixes_en=(
        "Keep four-eyes on adjustments, limit overrides, unfreezes and payouts.",
        "Keep the watch on refused staff operations; end the sessions on repeated refusals.",
        "Review the audit trail of the staff member; withdraw their open requests.",
        "Separate the roles that ask for and approve money operations across teams.",
    ),
    fixes_zh=(
        "调账、提额、解冻和提现保持四眼复核。",
        "保持对工作人员被拒操作的监测；多次被拒时终止其会话。",
        "审查该工作人员的审计记录，撤销其未决申请。",
        "发起与审批资金操作的角色分属不同团队。",
    ),
    playbook="insider-abuse",
    settle_seconds=8.0,
)
