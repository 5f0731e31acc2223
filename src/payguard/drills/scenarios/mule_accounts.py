"""Linked mule accounts: one phone, many accounts, fan-in then cash-out (seed 001, case 4).

A mule herder has rented three wallets (and holds their SIM cards) and runs them, with a
collection account of their own, from one phone. Scam victims have paid the rented
wallets. The herder first tries to bind the phone's one device key to a second account,
then gives each account a key of its own; two rented wallets forward what came in to the
collection account (fan-in); the third cashes out directly, and the collection account
cashes out to the herder's bank card; when that is held, the herder waits and tries
again with what is left.

Expected: a device key is bound to one account only (the reuse is refused); a withdrawal
that takes nearly all the money that came in within the hour is held for review (rule
pass-through), with an alert each; two such alerts open a linked-mule-accounts incident
whose playbook freezes the linked accounts, so the retry is refused. The money stays in
the platform (held or frozen), the ledger balances. The compliance officer's AML report
is pulled at the end; its fan-in and pass-through typologies look at completed payments
only (and at ten payers, CNY 10,000), so with the cash-outs held it has nothing to add
here beyond what the risk engine held.
"""

from __future__ import annotations

import time

from payguard.client.sdk import PayguardError
from payguard.drills.context import DrillContext
from payguard.drills.scenario import (
    Scenario,
    alert,
    frozen,
    held,
    incident,
    playbook,
    refused,
)
from payguard.drills.scenarios._aml import note_aml_report

PROCEEDS = 100_000  # 1,000.00 CNY from each scam victim, one payment each
MULES = ("mule_a", "mule_b", "mule_c")
VICTIMS = ("victim_a", "victim_b", "victim_c")
HERDER_CARD = "6222020266660000"
CASH_OUT = 195_000  # 1,950.00 of the 2,100.00 that came into the collection account
DIRECT = 95_000  # mule_c: 950.00 of its 1,000.00
RETRY = 10_000  # what is left available beside the held 1,950.00
WAIT_SECONDS = 12.0  # at most: the herder tries again as soon as the account shows frozen


def setup(ctx: DrillContext) -> None:
    # The herder's own account, on the herder's phone, in use for a while (a small top-up).
    ctx.customer("collector", balance=10_000, tier=1)
    for name in MULES:
        ctx.customer(name, tier=1)  # rented wallets: the herder holds their SIM cards
    for victim, mule in zip(VICTIMS, MULES, strict=True):
        payer = ctx.customer(victim, balance=200_000, tier=1)
        paid = payer.client.pay_p2p(PROCEEDS, payee_username=ctx.actor(mule).username)
        if paid.status != "confirmed":
            raise RuntimeError(f"a drill victim's payment ended {paid.status}")
    ctx.customer("shopper_a", balance=50_000, background=True)
    ctx.customer("shopper_b", balance=50_000, background=True)
    ctx.merchant("corner_shop")


def attack(ctx: DrillContext) -> None:
    collector = ctx.actor("collector")
    herder_phone = collector.client

    with ctx.step(
        "one-phone",
        "Bind the herder's one device key to a second account",
        "把攻击者手机上同一个设备密钥绑定到第二个账户",
        detect=[refused("conflict")],
        detect_within_s=2,
        contain_within_s=2,
        actors=["mule_b"],
    ) as step:
        mule_b = ctx.actor("mule_b")
        second = ctx.attacker()
        second.login(mule_b.username, mule_b.password)
        step.call(second.request_code, "sms", "device")
        code = ctx.phone_code(mule_b.phone)  # the herder holds the rented SIM
        step.call(
            second.register_device,
            "herder phone",
            key=herder_phone.device_key,
            factor="otp",
            code=code,
        )
        step.note(
            "The herder gives every account a key of its own instead (already bound).",
            "攻击者改为给每个账户单独生成密钥（已绑定）。",
        )

    with ctx.step(
        "fan-in",
        "Forward what the rented wallets received to the collection account",
        "把租用账户收到的款项归集到收款账户",
    ) as step:
        for name in MULES[:2]:
            # Not the attacker's step.call: these are the herder moving money between
            # their own accounts, which stays in the platform (checked, not scored).
            forwarded = ctx.actor(name).client.pay_p2p(PROCEEDS, payee_username=collector.username)
            step.note(f"{name} forwarded {PROCEEDS}: {forwarded.status}.")

    with ctx.step(
        "cash-out-direct",
        "Cash a rented wallet out directly",
        "租用账户直接提现",
        money_at_risk=DIRECT,
        detect=[alert("PASS_THROUGH"), held()],
        detect_within_s=3,
        contain_within_s=3,
        actors=["mule_c"],
    ) as step:
        step.call(ctx.actor("mule_c").client.withdraw, DIRECT, HERDER_CARD)

    with ctx.step(
        "cash-out",
        "Cash the collection account out to the herder's bank card",
        "将收款账户资金提现到攻击者银行卡",
        money_at_risk=CASH_OUT,
        detect=[alert("PASS_THROUGH"), held(), incident()],
        detect_within_s=3,
        contain_within_s=3,
        actors=["collector"],
    ) as step:
        held_payment = step.call(herder_phone.withdraw, CASH_OUT, HERDER_CARD)

    with ctx.step(
        "retry",
        "Wait for the held cash-out, then try again with less",
        "等待被暂挂的提现，随后以更小金额再次尝试",
        money_at_risk=RETRY,
        detect=[frozen(), playbook(), refused(), held()],
        detect_within_s=WAIT_SECONDS + 4,
        contain_within_s=WAIT_SECONDS + 4,
        actors=["collector"],
    ) as step:
        deadline = time.monotonic() + WAIT_SECONDS
        while held_payment is not None and time.monotonic() < deadline:
            try:
                if herder_phone.wallet().status == "frozen":
                    step.note("The collection account shows frozen.", "收款账户显示已冻结。")
                    break
            except PayguardError as error:
                step.refusal(error)
                break
            time.sleep(0.5)
        step.call(herder_phone.withdraw, RETRY, HERDER_CARD)

    note_aml_report(ctx, ["collector", *MULES])


SCENARIO = Scenario(
    name="mule_accounts",
    title_en="Linked mule accounts: one phone, many accounts, fan-in then cash-out",
    title_zh="多账户关联：一部手机操控多个账户，资金归集后提现",
    threat_en=(
        "A mule herder runs rented wallets and a collection account from one phone, "
        "gathers scam proceeds and cashes them out at once."
    ),
    threat_zh="犯罪团伙用一部手机操控租用的钱包账户和收款账户，归集诈骗资金后立即提现。",
    seed="001 case 4",
    controls=("risk_rules",),
    setup=setup,
    attack=attack,
    root_cause_en=(
        "Customers rented out their wallets and SIM cards; scam proceeds were routed "
        "through them to be cashed out."
    ),
    root_cause_zh="客户出租钱包账户和手机卡，诈骗资金经这些账户中转后提现。",
    fixes_en=(
        "Keep holding withdrawals that take nearly all of a fresh inflow (pass-through).",
        "Link devices across accounts by a hardware attestation, not only by the device "
        "key, so a re-keyed phone still shows as one device (shared-device rule).",
        "File the suspicious-transaction report; label the payments for the risk model.",
    ),
    fixes_zh=(
        "继续暂挂提走几乎全部新入账资金的提现（快进快出规则）。",
        "以硬件证明而不只是设备密钥关联跨账户的设备，使更换密钥的手机仍被识别为同一设备（一机多户规则）。",
        "提交可疑交易报告；为风控模型标注这些交易。",
    ),
    playbook="mule-accounts",
    settle_seconds=5.0,
)
