"""Phishing account takeover (seed 001, case 1): the thief has the victim's password.

A phishing text message took the victim's password. The thief logs in from their own
phone, tries to bind that phone as the victim's device (the SMS code goes to the
victim's phone, not to the thief), then tries to drain the wallet to a new payee at
once, and when that is refused, in smaller payments below the step-up amount. Expected:
a password alone moves no money: the instruction must be signed by a registered device
and a new payee needs the second factor.
"""

from __future__ import annotations

from payguard.drills.context import DrillContext
from payguard.drills.scenario import Scenario, alert, refused

VICTIM_BALANCE = 400_000  # 4,000.00 CNY
DRAIN = 390_000
SPLIT = 95_000  # just below the new-payee step-up amount (1,000.00)
SPLITS = 4


def setup(ctx: DrillContext) -> None:
    ctx.customer("victim", balance=VICTIM_BALANCE, tier=1)
    ctx.customer("mule", device=False)  # the thief's own account, the payee
    ctx.customer("shopper_a", balance=50_000, background=True)
    ctx.customer("shopper_b", balance=50_000, background=True)
    ctx.merchant("corner_shop")


def attack(ctx: DrillContext) -> None:
    victim, mule = ctx.actor("victim"), ctx.actor("mule")
    thief = ctx.attacker()

    with ctx.step(
        "login",
        "Log in with the phished password from the thief's phone",
        "使用钓鱼获取的密码在攻击者手机上登录",
    ) as step:
        thief.login(victim.username, victim.password)
        step.note("The password was valid: the thief has a session.", "密码有效：攻击者获得会话。")

    with ctx.step(
        "bind-device",
        "Bind the thief's phone as the victim's device with a guessed SMS code",
        "以猜测的短信验证码把攻击者手机绑定为受害者设备",
        detect=[refused()],
        detect_within_s=3,
        contain_within_s=3,
        actors=["victim"],
    ) as step:
        step.call(thief.request_code, "sms", "device")  # the code goes to the victim's phone
        for guess in ("000000", "123456", "111111"):
            step.call(thief.register_device, "thief phone", factor="otp", code=guess)

    with ctx.step(
        "drain",
        "Drain the wallet to a new payee in one payment",
        "一次性把钱包余额转给新收款方",
        money_at_risk=DRAIN,
        detect=[refused("signature-required", "challenge-required", "unknown-device"), alert()],
        detect_within_s=3,
        contain_within_s=3,
        actors=["victim"],
    ) as step:
        step.call(thief.pay_p2p, DRAIN, payee_username=mule.username)

    with ctx.step(
        "split-drain",
        "Drain in payments just below the step-up amount",
        "拆分为略低于二次验证金额的多笔转账",
        money_at_risk=SPLIT * SPLITS,
        detect=[refused("signature-required", "challenge-required", "unknown-device"), alert()],
        detect_within_s=3,
        contain_within_s=3,
        actors=["victim"],
    ) as step:
        for _ in range(SPLITS):
            step.call(thief.pay_p2p, SPLIT, payee_username=mule.username)


SCENARIO = Scenario(
    name="phishing_takeover",
    title_en="Phishing account takeover: new device, drain to a new payee",
    title_zh="钓鱼短信盗号：新设备登录并向新收款方转走余额",
    threat_en="A phished password used from the thief's phone to empty the wallet.",
    threat_zh="攻击者利用钓鱼获取的密码，在自己的手机上登录并试图转走钱包余额。",
    seed="001 case 1",
    controls=("signed_instructions", "step_up_new_payee"),
    setup=setup,
    attack=attack,
    root_cause_en="The customer's password was disclosed to a phishing site.",
    root_cause_zh="客户在钓鱼网站泄露了登录密码。",
    fixes_en=(
        "Keep device-signed instructions mandatory for every payment.",
        "Keep the second factor for new payees; tell the customer about the new login.",
        "Remind customers that staff never ask for passwords or codes.",
    ),
    fixes_zh=(
        "所有支付保持强制设备签名指令。",
        "向新收款方付款保持二次验证；新登录时通知客户。",
        "提醒客户工作人员绝不会索要密码或验证码。",
    ),
    playbook="account-takeover",
    settle_seconds=4.0,
)
