"""SIM-swap OTP interception (seed 001: identity theft; SMS OTP as a second factor).

The thief has the victim's password (phished or leaked) and has had the victim's phone
number moved to a SIM card of their own, so every SMS code the platform sends now reaches
the thief (in the drill: ``ctx.phone_code`` on the victim's phone, which the attacker
"holds"). They log in, bind their own phone as a device with the intercepted code, pass
the step-up of the new device and the new payee with the next intercepted code, and move
the balance to a mule. When that payment is held, they refresh the app and try to cash
out to their own bank card.

Expected: the second factor is beaten by design here, so the risk engine must not let a
challenge be the last line: a large first payment from a new device to a new payee is
held for review (rule new-device-new-payee-large) with an alert; the alert opens an
account-takeover incident whose playbook freezes the wallet, ends the thief's sessions and
forces a password reset, so the cash-out that follows is refused. The platform records
the new device and tells the customer about it (identity.device_registered and the
security notice); the notice went by SMS, to the swapped SIM, which the record shows as
an improvement.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy.orm import Session

from payguard.client.sdk import PayguardError, Payment
from payguard.drills import controls
from payguard.drills.context import DrillContext
from payguard.drills.scenario import (
    Scenario,
    alert,
    event,
    frozen,
    held,
    incident,
    playbook,
    refused,
)
from payguard.risk import rules

VICTIM_BALANCE = 3_000_000  # 30,000.00 CNY
DRAIN = 2_900_000
CASH_OUT = 2_500_000
THIEF_CARD = "6222020277770000"
RULE = "new-device-new-payee-large"
# How long the thief refreshes the app, looking at the held payment, before trying again.
REFRESH_SECONDS = 12.0


def _publish_without_rule(session: Session) -> None:
    """Put the built-in pack in force without the new-device/new-payee rule."""
    kept = [item for item in rules.builtin_ruleset().definitions if item.id != RULE]
    rules.force_publish(session, kept, note=f"drill: {RULE} switched off", by="drill")


controls.register(
    controls.Control(
        "new_device_payee_review",
        "A large first payment from a new device to a new payee is held for review "
        "(risk rule new-device-new-payee-large), not only challenged.",
        "新设备上的首笔大额支付且收款方为新收款方时，转人工审核（风控规则 "
        "new-device-new-payee-large），而不只是二次验证。",
        prepare=_publish_without_rule,
    )
)


def setup(ctx: DrillContext) -> None:
    ctx.customer("victim", balance=VICTIM_BALANCE, tier=2)
    ctx.customer("mule", device=False)  # the thief's collection account, a new payee
    ctx.customer("shopper_a", balance=50_000, background=True)
    ctx.customer("shopper_b", balance=50_000, background=True)
    ctx.merchant("corner_shop")


def attack(ctx: DrillContext) -> None:
    victim, mule = ctx.actor("victim"), ctx.actor("mule")
    thief = ctx.attacker()

    def intercepted_code(problem: dict[str, Any]) -> tuple[str, str]:
        # The platform texts the code to the victim's number: the thief's SIM now.
        thief.send_challenge_code(str(problem["challenge_id"]), "sms")
        return "sms", ctx.phone_code(victim.phone)

    thief.step_up_handler = intercepted_code
    drained: Payment | None = None

    with ctx.step(
        "login",
        "Log in with the stolen password from the thief's phone",
        "在攻击者手机上使用窃取的密码登录",
    ) as step:
        thief.login(victim.username, victim.password)
        step.note("The password was valid: the thief has a session.", "密码有效：攻击者获得会话。")

    with ctx.step(
        "take-over",
        "Bind the thief's phone with the intercepted SMS code and move the balance to a "
        "new payee, passing step-up with the next intercepted code",
        "用截获的短信验证码绑定攻击者手机，再用截获的验证码通过二次验证，把余额转给新收款方",
        money_at_risk=DRAIN,
        detect=[
            event("identity.device_registered", label="new device recorded, customer told"),
            alert(RULE.upper().replace("-", "_")),
            held(),
            incident(),
        ],
        detect_within_s=3,
        contain_within_s=3,
        actors=["victim"],
    ) as step:
        # SMS OTP cannot stop a SIM swap: the binding succeeds, what follows must hold.
        thief.request_code("sms", "device")
        thief.register_device("thief phone", factor="otp", code=ctx.phone_code(victim.phone))
        step.note(
            "The thief's phone is bound; the new-device notice went by SMS, to the swapped SIM.",
            "攻击者手机绑定成功；新设备通知通过短信发送，而短信已落入被换卡的攻击者手中。",
        )
        drained = step.call(thief.pay_p2p, DRAIN, payee_username=mule.username)

    with ctx.step(
        "cash-out",
        "Refresh the app, then cash out to the thief's own bank card",
        "刷新应用查看结果，随后提现到攻击者自己的银行卡",
        money_at_risk=CASH_OUT,
        detect=[refused(), frozen(), playbook(), held()],
        detect_within_s=REFRESH_SECONDS + 4,
        contain_within_s=REFRESH_SECONDS + 4,
        actors=["victim"],
    ) as step:
        deadline = time.monotonic() + REFRESH_SECONDS
        while drained is not None and time.monotonic() < deadline:
            try:
                if thief.payment(drained.id).status != "held_for_review":
                    break
            except PayguardError as error:  # the session ended under the thief
                step.refusal(error)
                step.call(thief.login, victim.username, victim.password)
                break
            time.sleep(0.5)
        step.call(thief.withdraw, CASH_OUT, THIEF_CARD)


SCENARIO = Scenario(
    name="sim_swap_otp",
    title_en="SIM swap: SMS codes intercepted, a new device drains the wallet",
    title_zh="SIM 卡劫持：短信验证码被截获，新设备转走钱包余额",
    threat_en=(
        "A thief with the victim's password and the victim's phone number on their own SIM "
        "binds a new device and moves the money out, passing every SMS step-up."
    ),
    threat_zh=(
        "攻击者掌握受害者密码，并把受害者手机号转到自己的 SIM 卡上，"
        "绑定新设备并转出资金，所有短信二次验证均可通过。"
    ),
    seed="001 (identity theft, SMS OTP)",
    controls=("new_device_payee_review", "risk_rules"),
    setup=setup,
    attack=attack,
    root_cause_en=(
        "The password leaked and the carrier moved the number to the thief's SIM: SMS "
        "codes, the only second factor of the account, went to the thief."
    ),
    root_cause_zh=(
        "客户密码泄露，且运营商将号码转移到攻击者的 SIM 卡："
        "账户唯一的第二因素短信验证码落入攻击者手中。"
    ),
    fixes_en=(
        "Keep holding a large first payment from a new device to a new payee for review.",
        "Send new-device notices through a channel the SIM does not control (e-mail, a "
        "push to the devices already bound) and ask carriers for SIM-change signals.",
        "Offer passkeys or an authenticator app instead of SMS for binding a device.",
    ),
    fixes_zh=(
        "新设备首笔向新收款方的大额支付继续转人工审核。",
        "新设备通知改由不受 SIM 卡控制的渠道发送（电子邮件、推送到已绑定设备），"
        "并接入运营商换卡信号。",
        "绑定设备时提供通行密钥或身份验证器应用，替代短信验证码。",
    ),
    playbook="account-takeover",
    settle_seconds=5.0,
)
