"""Leaked merchant credentials used for abnormal payouts at an odd hour (seed 002).

Seed 002's drill: a server password leaked, and someone who was not in finance made
payouts on the merchant platform. Here the merchant's back-office server held what
it needs to pay out unattended: the owner's password, the device key it signs with and
the TOTP secret of its authenticator. The attacker copies all three, logs in as the
merchant owner and pays the merchant's day of takings out to their own bank card.

Expected (seed 002's fixes, built in): the payout is held, not paid: a payout at or
above the threshold needs two staff members to release it (four-eyes), and money that
came in over the day leaving at once is held for risk review with an alert; the incident
team is alerted and the playbook secures the merchant's funds. The ledger stays right.

The "odd hour" is the hour the drill runs: schedule it at night (``payguard drill
schedule add merchant_payout_leak "0 3 * * *"``) to play seed 002's timing; the hold
does not depend on the hour.
"""

from __future__ import annotations

from payguard.drills.context import DrillContext
from payguard.drills.scenario import Scenario, alert, held, incident, playbook

SALE = 2_800_000  # 28,000.00 CNY per buyer
PAYOUT = 5_400_000  # over the payout approval threshold (50,000.00 CNY by default)
ATTACKER_CARD = "6222020299990000"


def setup(ctx: DrillContext) -> None:
    owner = ctx.customer("merchant_owner", tier=3, totp=True)
    shop = ctx.merchant("trading_co", owner=owner)
    for name in ("buyer_a", "buyer_b"):
        buyer = ctx.customer(name, balance=SALE + 100_000, tier=2)
        paid = buyer.client.pay_merchant(SALE, str(shop["id"]))
        if paid.status != "confirmed":
            raise RuntimeError(f"a drill sale ended {paid.status}")
    ctx.customer("shopper_a", balance=50_000, background=True)
    ctx.customer("shopper_b", balance=50_000, background=True)


def attack(ctx: DrillContext) -> None:
    owner = ctx.actor("merchant_owner")
    shop = ctx.merchants["trading_co"]
    thief = ctx.attacker()
    with ctx.step(
        "login",
        "Log in to the merchant platform with the leaked password and device key",
        "使用泄露的口令和设备密钥登录商户平台",
    ) as step:
        # What the compromised server held: the device key and the authenticator.
        thief.device_key, thief.device_id = owner.client.device_key, owner.client.device_id
        thief.authenticator = owner.client.authenticator
        thief.login(owner.username, owner.password)
        step.note("Logged in as the merchant owner.", "以商户管理员身份登录成功。")

    with ctx.step(
        "payout",
        "Pay the merchant's takings out to the attacker's bank card",
        "将商户当日收款提现至攻击者银行卡",
        money_at_risk=PAYOUT,
        detect=[held(), alert(), incident()],
        detect_within_s=5,
        contain_within_s=10,
        actors=["merchant_owner"],
    ) as step:
        step.call(
            thief.submit,
            {
                "kind": "withdrawal",
                "amount": PAYOUT,
                "currency": "CNY",
                "bank_account": ATTACKER_CARD,
                "payer_account_id": shop["account_id"],
            },
        )

    # No attacker action: what the platform's incident response does about the payout.
    with ctx.step(
        "response",
        "The incident team is alerted and the playbook secures the funds",
        "应急小组收到告警，处置预案保全资金",
        detect=[incident()],
        contain=[playbook()],
        detect_within_s=10,
        contain_within_s=15,
        actors=["merchant_owner"],
    ):
        pass


SCENARIO = Scenario(
    name="merchant_payout_leak",
    title_en="Leaked merchant credentials: abnormal payouts from the merchant platform",
    title_zh="商户平台口令泄露：非财务人员异常提现",
    threat_en="A leaked server password gives an outsider the merchant's payout credentials.",
    threat_zh="服务器口令泄露，外部人员获得商户平台的提现凭据并发起异常提现。",
    seed="002",
    controls=("payout_four_eyes", "risk_rules"),
    setup=setup,
    attack=attack,
    root_cause_en="The server's password leaked; the payout credentials were stored on it.",
    root_cause_zh="服务器口令泄露，且提现凭据存放在该服务器上。",
    fixes_en=(
        "Change the server's remote login port and passwords, and the database password.",
        "Keep the second verification of payouts on a separate server (four-eyes release).",
        "One custodian for server passwords, changed regularly; access on request only.",
    ),
    fixes_zh=(
        "更换服务器远程登录端口号，修改口令和数据库口令。",
        "付款模块的二次验证放在另一台服务器上（四眼复核放行）。",
        "服务器口令由专人统一管理、定期修改，开发人员需申请方可获得。",
    ),
    playbook="leaked-merchant-credentials",
    settle_seconds=15.0,
)
