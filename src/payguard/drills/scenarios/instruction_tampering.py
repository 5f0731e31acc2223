"""Instruction tampering and replay (seed 004: tampering with amount and payee).

Malware on the victim's phone (or a proxy between the app and the platform) captures a
signed payment request on its way: the session token, the Idempotency-Key and the
signed body. It then alters the payee and the amount, replays the captured request as
it is and with a fresh key, and finally strips the signature off. Expected: the
signature over the canonical instruction and the nonce refuse every variant; a
stripped instruction is refused because instructions must be signed.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from payguard.drills.context import DrillContext
from payguard.drills.scenario import Scenario, event, refused

AMOUNT = 30_000
STOLEN = 95_000  # below the new-payee step-up amount: the signature is the only guard
SIGNATURE_FIELDS = ("device_id", "nonce", "client_timestamp", "signature", "algorithm")


def setup(ctx: DrillContext) -> None:
    ctx.customer("victim", balance=200_000, tier=1)
    ctx.customer("mule", device=False)
    ctx.customer("shopper_a", balance=50_000, background=True)
    ctx.customer("shopper_b", balance=50_000, background=True)
    ctx.merchant("utility")


def attack(ctx: DrillContext) -> None:
    victim, mule = ctx.actor("victim"), ctx.actor("mule")
    utility = ctx.merchants["utility"]
    captured: list[httpx.Request] = []

    def capture(request: httpx.Request) -> None:
        if request.method == "POST" and request.url.path == "/v1/payments":
            captured.append(request)

    with ctx.step(
        "capture",
        "Capture the victim's signed payment on its way to the platform",
        "在传输途中截获受害者已签名的支付请求",
    ) as step:
        victim.client.http.event_hooks["request"].append(capture)
        try:
            paid = victim.client.pay_merchant(AMOUNT, str(utility["id"]))
        finally:
            victim.client.http.event_hooks["request"].remove(capture)
        step.note(f"The victim's payment {paid.id} went through ({paid.status}).")
    request = captured[-1]
    headers = {
        "Authorization": request.headers["authorization"],
        "Content-Type": "application/json",
    }
    key = request.headers["idempotency-key"]
    body: dict[str, Any] = json.loads(request.content)
    http = ctx.http()

    def send(document: dict[str, Any], idempotency_key: str) -> httpx.Response:
        return http.post(
            "/v1/payments", json=document, headers={**headers, "Idempotency-Key": idempotency_key}
        )

    redirected = {
        **{k: v for k, v in body.items() if k != "merchant_id"},
        "kind": "p2p",
        "payee_account_id": mule.wallet_id,
        "amount": STOLEN,
    }
    with ctx.step(
        "tamper-payee",
        "Redirect the captured instruction to the thief's account with a larger amount",
        "篡改截获指令的收款方为攻击者账户并提高金额",
        money_at_risk=STOLEN,
        detect=[refused("bad-signature"), event("security.instruction_rejected")],
        detect_within_s=2,
        contain_within_s=2,
        actors=["victim"],
    ) as step:
        step.response(send(redirected, str(uuid.uuid4())))

    with ctx.step(
        "tamper-amount",
        "Multiply the amount of the captured instruction",
        "篡改截获指令的金额",
        money_at_risk=AMOUNT * 9,
        detect=[refused("bad-signature"), event("security.instruction_rejected")],
        detect_within_s=2,
        contain_within_s=2,
        actors=["victim"],
    ) as step:
        step.response(send({**body, "amount": AMOUNT * 10}, str(uuid.uuid4())))

    with ctx.step(
        "replay",
        "Replay the captured request exactly",
        "原样重放截获的请求",
        money_at_risk=AMOUNT,
        detect=[refused("instruction-replayed")],
        detect_within_s=2,
        contain_within_s=2,
        actors=["victim"],
    ) as step:
        step.response(send(body, key))

    with ctx.step(
        "replay-new-key",
        "Replay the captured instruction under a fresh Idempotency-Key",
        "更换幂等键后重放截获的指令",
        money_at_risk=AMOUNT,
        detect=[refused("bad-signature", "instruction-replayed")],
        detect_within_s=2,
        contain_within_s=2,
        actors=["victim"],
    ) as step:
        step.response(send(body, str(uuid.uuid4())))

    stripped = {k: v for k, v in redirected.items() if k not in SIGNATURE_FIELDS}
    with ctx.step(
        "strip-signature",
        "Send the redirected instruction without any signature",
        "去掉签名后发送篡改的指令",
        money_at_risk=STOLEN,
        detect=[refused("signature-required")],
        detect_within_s=2,
        contain_within_s=2,
        actors=["victim"],
    ) as step:
        step.response(send(stripped, str(uuid.uuid4())))


SCENARIO = Scenario(
    name="instruction_tampering",
    title_en="Instruction tampering and replay: altered payee and amount, replayed requests",
    title_zh="支付指令篡改与重放：篡改收款方和金额、重放请求",
    threat_en="A captured signed payment request altered and replayed by malware or a proxy.",
    threat_zh="恶意软件或代理截获已签名的支付请求，篡改后重放。",
    seed="004",
    controls=("signed_instructions",),
    setup=setup,
    attack=attack,
    root_cause_en="The victim's phone was compromised; requests were captured in transit.",
    root_cause_zh="受害者手机被植入恶意软件，请求在传输途中被截获。",
    fixes_en=(
        "Keep instruction signatures over amount, payee, nonce and time mandatory.",
        "Keep the nonce cache and the timestamp window; alert on repeated rejections.",
        "Pin TLS in the app and detect hooking frameworks on the device.",
    ),
    fixes_zh=(
        "保持对金额、收款方、随机数和时间的强制签名。",
        "保持一次性随机数缓存和时间窗口；对反复被拒的指令告警。",
        "应用内固定 TLS 证书，并检测设备上的挂钩框架。",
    ),
    playbook="malware-auto-debit",
    settle_seconds=3.0,
)
