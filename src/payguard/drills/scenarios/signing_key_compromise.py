"""Signing-key compromise: a copy of a customer's device key signs instructions elsewhere.

The realistic variant played here: malware (or an unencrypted phone backup) copied the
private key of the victim's registered device out of the phone's key store; a keylogger
took the password too. The attacker signs from their own machine on another network.
They try, in the order an attacker would:

1. the stolen key alone, with no session: a perfectly signed instruction;
2. the stolen key under a session of their own account (the mule's), naming the
   victim's device and wallet;
3. key **and** password: a session bound to the victim's device, from a new network, and
   a payment to a new payee just below the new-payee step-up amount;
4. after the owner has revoked the copied key and bound a fresh one (the key rotation of
   seed 003), the stolen key once more.

Expected: a signature is only honoured inside a session of the device's own customer
(session binding); a new network and a new payee at once demand the second factor on
the owner's phone (risk rule ``new-network-new-payee``); a revoked device key ends its
sessions and signs nothing any more; the owner's fresh key pays as before. No money is
lost. (A copied key *with* the victim's live session on the victim's own network is
instruction tampering by malware: see the ``instruction_tampering`` drill.)

In the sandbox the attacker's machine is 127.0.0.3, a second loopback address, so that
the platform sees another network than the victim's 127.0.0.1.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy.orm import Session

from payguard import clock
from payguard.client.sdk import PayguardError
from payguard.drills import controls
from payguard.drills.context import DrillClient, DrillContext
from payguard.drills.scenario import Scenario, refused
from payguard.risk import rules

RULE = "new-network-new-payee"
VICTIM_BALANCE = 300_000
STEAL = 95_000  # below the new-payee step-up amount (1,000.00): only the risk rule asks
ATTACKER_ADDRESS = "127.0.0.3"


def _publish_without_rule(session: Session) -> None:
    """The built-in rules in force, minus the new-network rule (as an edit would)."""
    kept = [item for item in rules.default_rules() if item.id != RULE]
    record = rules.save_draft(session, kept, note=f"drill: {RULE} switched off", by="drill")
    record.status, record.published_at = rules.PUBLISHED, clock.now()
    session.flush()


controls.register(
    controls.Control(
        "risk_rule_new_network",
        "A payment to a new payee from a network other than the payer's last one demands "
        "the second factor (risk rule new-network-new-payee).",
        "从与上次不同的网络向新收款方付款须二次验证（风控规则 new-network-new-payee）。",
        prepare=_publish_without_rule,
    )
)


def setup(ctx: DrillContext) -> None:
    victim = ctx.customer("victim", balance=VICTIM_BALANCE, tier=1)
    ctx.customer("mule", device=False)  # the attacker's own account, the payee
    ctx.customer("shopper_a", balance=50_000, background=True)
    ctx.customer("shopper_b", balance=50_000, background=True)
    shop = ctx.merchant("pharmacy")
    # The victim's ordinary day: a payment from home (the network the platform knows).
    paid = victim.client.pay_merchant(2_300, str(shop["id"]))
    if paid.status != "confirmed":
        raise RuntimeError(f"the victim's drill payment ended {paid.status}")


def _attacker(ctx: DrillContext) -> DrillClient:
    """The attacker's own SDK client on their own network (127.0.0.3 in the sandbox)."""
    thief = ctx.attacker()
    if urlsplit(ctx.base_url).hostname in ("127.0.0.1", "localhost"):
        thief.http.close()
        thief.http = httpx.Client(
            base_url=ctx.base_url,
            timeout=30.0,
            transport=httpx.HTTPTransport(local_address=ATTACKER_ADDRESS),
        )
    return thief


def _steal_key(thief: DrillClient, victim: Any) -> None:
    thief.device_key, thief.device_id = victim.client.device_key, victim.client.device_id


def attack(ctx: DrillContext) -> None:
    victim, mule = ctx.actor("victim"), ctx.actor("mule")
    stolen_device = str(victim.client.device_id)
    thief = _attacker(ctx)
    with ctx.step(
        "copy-key",
        "Copy the private key of the victim's registered device",
        "复制受害者已绑定设备的私钥",
    ) as step:
        _steal_key(thief, victim)
        step.note(
            f"The attacker holds the key of device {stolen_device}.",
            f"攻击者持有设备 {stolen_device} 的私钥。",
        )

    with ctx.step(
        "key-only",
        "Sign an instruction with the stolen key and send it without a session",
        "用窃取的私钥签名指令并在无会话的情况下提交",
        money_at_risk=STEAL,
        detect=[refused("not-authenticated")],
        detect_within_s=3,
        contain_within_s=3,
        actors=["victim"],
    ) as step:
        step.call(thief.pay_p2p, STEAL, payee_username=mule.username)

    with ctx.step(
        "own-session",
        "Sign with the stolen key under the attacker's own session, from the victim's wallet",
        "在攻击者自己账户的会话中用窃取的私钥签名，从受害者钱包付款",
        money_at_risk=STEAL,
        detect=[refused("unknown-device", "forbidden", "account-not-found", "not-found")],
        detect_within_s=3,
        contain_within_s=3,
        actors=["victim"],
    ) as step:
        own = _attacker(ctx)
        own.login(mule.username, mule.password)
        _steal_key(own, victim)
        step.call(
            own.submit,
            {
                "kind": "p2p",
                "amount": STEAL,
                "currency": "CNY",
                "payer_account_id": victim.wallet_id,
                "payee_account_id": mule.wallet_id,
            },
        )

    with ctx.step(
        "key-and-password",
        "With key and password: a device-bound session from another network, a new payee",
        "持有私钥和密码：从其他网络建立绑定设备的会话并向新收款方付款",
        money_at_risk=STEAL,
        detect=[refused("challenge-required")],
        detect_within_s=3,
        contain_within_s=3,
        actors=["victim"],
    ) as step:
        thief.login(victim.username, victim.password)
        step.note(
            "The attacker has a session bound to the victim's device.",
            "攻击者获得了绑定受害者设备的会话。",
        )
        step.call(thief.pay_p2p, STEAL, payee_username=mule.username)

    with ctx.step(
        "rotate-key",
        "The owner revokes the copied device key and binds a fresh one",
        "设备所有者吊销被复制的设备密钥并绑定新密钥",
    ) as step:
        victim.client.revoke_device(stolen_device)
        victim.client.device_key = victim.client.device_id = None
        victim.client.login(victim.username, victim.password)
        victim.client.request_code("sms", "device")
        victim.client.register_device(
            "drill phone, new key", factor="otp", code=ctx.phone_code(victim.phone)
        )
        victim.client.login(victim.username, victim.password)
        step.note(
            "Device key revoked (its sessions ended) and a new key bound.",
            "旧设备密钥已吊销（其会话随之终止），新密钥已绑定。",
        )

    with ctx.step(
        "after-revocation",
        "Use the stolen key again after the revocation",
        "吊销后再次使用窃取的私钥",
        money_at_risk=STEAL,
        detect=[refused("not-authenticated", "unknown-device", "device-revoked")],
        detect_within_s=3,
        contain_within_s=3,
        actors=["victim"],
    ) as step:
        step.call(thief.pay_p2p, STEAL, payee_username=mule.username)
        thief.token = None
        try:
            thief.login(victim.username, victim.password)
        except PayguardError as error:
            step.refusal(error)
        else:
            step.call(thief.pay_p2p, STEAL, payee_username=mule.username)
        shop = ctx.merchants["pharmacy"]
        try:
            paid = victim.client.pay_merchant(1_800, str(shop["id"]))
        except PayguardError as error:
            step.breach(f"the owner's fresh key could not pay: {error.code}")
        else:
            if paid.status != "confirmed":
                step.breach(f"the owner's payment with the fresh key ended {paid.status}")


SCENARIO = Scenario(
    name="signing_key_compromise",
    title_en="Signing-key compromise: a copied device key signs from another network",
    title_zh="签名密钥泄露：被复制的设备私钥在其他网络签名支付指令",
    threat_en=(
        "The private key of a customer's registered device (and later the password) is "
        "copied by malware and used to sign payment instructions from another network."
    ),
    threat_zh="恶意软件复制了客户已绑定设备的私钥（随后还有密码），攻击者在其他网络用其签名支付指令。",
    seed="003",
    controls=("risk_rule_new_network",),
    setup=setup,
    attack=attack,
    root_cause_en=(
        "The device key was exportable from the phone (software key store, unencrypted "
        "backup), so a copy signs exactly as the device does."
    ),
    root_cause_zh="设备私钥可从手机导出（软件密钥库、未加密备份），复制的私钥与设备签名完全相同。",
    fixes_en=(
        "Keep signatures valid only inside a session of the device's own customer.",
        "Keep the second factor for a new network with a new payee (new-network-new-payee).",
        "Make the app keep keys in the phone's hardware key store, not exportable; "
        "exclude them from backups.",
        "On suspicion, revoke the device key at once and bind a fresh one (key rotation).",
    ),
    fixes_zh=(
        "签名仅在该设备所属客户的会话中有效。",
        "对新网络加新收款方的付款保持二次验证（new-network-new-payee 规则）。",
        "应用将私钥保存在手机硬件密钥库中且不可导出，并排除在备份之外。",
        "一旦怀疑泄露，立即吊销设备密钥并绑定新密钥（密钥轮换）。",
    ),
    playbook="key-compromise",
    settle_seconds=3.0,
)
