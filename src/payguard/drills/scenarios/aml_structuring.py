"""AML structuring below the reporting line (seed 003: anti-money laundering).

A launderer brings money into a wallet in top-ups each just under the CNY 50,000
large-value line for cash (a wallet top-up or withdrawal is payguard's cash channel,
docs/aml.md), from several bank cards, and takes it out again the same way: withdrawals
of 48,500-49,500, each under the line, then, when those stop, a transfer of the same
size to an accomplice.

One payment just under the line is, alone, an ordinary large payment: the first
withdrawal goes through (the rules give it a few points, near-threshold) and is the
pattern's baseline, not a scored step. Expected from the second on: the structuring rule
holds each near-line payment for review with a STRUCTURING alert; the switch of channel
is held the same way. At the end the compliance officer pulls the platform's AML report:
it shows the structured cash-in (completed top-ups) as a structuring case and a
cumulative large-value report, from the platform's own records.
"""

from __future__ import annotations

from payguard.drills.context import BANK_ACCOUNT, DrillContext
from payguard.drills.scenario import Scenario, alert, frozen, held, refused
from payguard.drills.scenarios._aml import note_aml_report

PLACEMENT = (4_800_000, 4_850_000, 4_900_000, 4_750_000, 4_950_000)  # just under 50,000.00
CARDS = ("6222020211110000", "6222020222220000", "6222020233330000", "6222020244440000")
FIRST = 4_900_000
STRUCTURED = (4_850_000, 4_950_000)
TRANSFER = 4_880_000
LAUNDERER_CARD = "6222020255550000"


def setup(ctx: DrillContext) -> None:
    launderer = ctx.customer("launderer", balance=PLACEMENT[0], tier=3)
    for amount, card in zip(PLACEMENT[1:], CARDS, strict=True):
        topped = launderer.client.top_up(amount, card)
        if topped.status != "confirmed":
            raise RuntimeError(f"a drill top-up ended {topped.status}")
    ctx.customer("accomplice", device=False)
    ctx.customer("shopper_a", balance=50_000, background=True)
    ctx.customer("shopper_b", balance=50_000, background=True)
    ctx.merchant("corner_shop")
    assert BANK_ACCOUNT not in CARDS


def attack(ctx: DrillContext) -> None:
    launderer, accomplice = ctx.actor("launderer"), ctx.actor("accomplice")
    phone = launderer.client

    with ctx.step(
        "first-cash-out",
        "Withdraw just under the large-value line (the pattern's first payment)",
        "提现金额略低于大额报告标准（该模式的第一笔）",
    ) as step:
        # Not step.call: alone, this is an ordinary large withdrawal (not scored).
        first = phone.withdraw(FIRST, LAUNDERER_CARD)
        step.note(f"The first withdrawal {first.id} ended {first.status}.")

    with ctx.step(
        "structured-cash-out",
        "Keep withdrawing amounts just under the line",
        "继续以略低于报告标准的金额提现",
        money_at_risk=sum(STRUCTURED),
        detect=[alert("STRUCTURING"), held()],
        detect_within_s=3,
        contain_within_s=3,
        actors=["launderer"],
    ) as step:
        for amount in STRUCTURED:
            step.call(phone.withdraw, amount, LAUNDERER_CARD)

    with ctx.step(
        "switch-channel",
        "Switch to a transfer of the same size to an accomplice",
        "改为向同伙转账相同量级的金额",
        money_at_risk=TRANSFER,
        detect=[alert("STRUCTURING"), held(), refused(), frozen()],
        detect_within_s=3,
        contain_within_s=3,
        actors=["launderer"],
    ) as step:
        step.call(phone.pay_p2p, TRANSFER, payee_username=accomplice.username)

    note_aml_report(ctx, ["launderer"])


SCENARIO = Scenario(
    name="aml_structuring",
    title_en="AML structuring: payments kept just under the large-value reporting line",
    title_zh="反洗钱拆分交易：将交易金额控制在大额报告标准之下",
    threat_en=(
        "A launderer moves a large sum in and out in many payments each just below the "
        "CNY 50,000 large-value line, to stay out of the reports."
    ),
    threat_zh="洗钱者把大额资金拆成多笔略低于 5 万元大额报告标准的交易转入转出，以逃避报告。",
    seed="003 (AML), 001 §5 (thresholds for large payments)",
    controls=("risk_rules",),
    setup=setup,
    attack=attack,
    root_cause_en=(
        "A customer used the wallet to launder money, splitting it to stay under the "
        "reporting line (structuring)."
    ),
    root_cause_zh="客户利用钱包洗钱，拆分交易以低于报告标准（拆分交易）。",
    fixes_en=(
        "Keep the structuring rule holding repeated near-line payments for review.",
        "Hold structured top-ups too: the risk engine does not score cash-in against the "
        "line; only the AML report sees it afterwards.",
        "File the suspicious-transaction report from the AML report's structuring case.",
    ),
    fixes_zh=(
        "继续由拆分交易规则将重复的接近报告标准的交易转人工审核。",
        "对拆分充值同样暂挂：风控引擎目前不按报告标准对入金评分，只有事后的反洗钱报告能发现。",
        "依据反洗钱报告中的拆分交易案例提交可疑交易报告。",
    ),
    playbook=None,
    settle_seconds=3.0,
)
