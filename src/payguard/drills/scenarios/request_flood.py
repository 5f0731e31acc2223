"""Request flood against the payment API (seed 004: attacks on availability; seed 000:
network attack scenarios).

A bot sends payment requests as fast as it can from one machine: first through one
session of its own (a cheap registered account), then without any session from the
same address, with several connections at once. A flood like this does not need to
move money to hurt: every request the platform works on (a session lookup, a
signature check, a database row) is capacity taken from the customers paying at the
same moment.

Expected: the API's token buckets (payguard/rate_limits.py) refuse the flood with
``429 rate-limited`` and ``Retry-After`` before any work is done — per session, then
per source address — and record ``security.rate_limited``; the legitimate customers
paying during the flood from their own addresses are still served; no money moves.

The flood is bounded (at most 600 and 1,500 requests, 8 seconds each, and it stops once
it has been refused 25 times) and in the sandbox it comes
from 127.0.0.2 (a second loopback address) to the sandbox server on 127.0.0.1, so that
the bot and the customers have different source addresses, as on the internet.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx

from payguard.drills import controls
from payguard.drills.context import DrillContext, StepHandle
from payguard.drills.scenario import Scenario, event, refused

SESSION_FLOOD = 600  # at most this many requests through the bot's own session
ADDRESS_FLOOD = 1500  # at most this many without a session, from the bot's address
ENOUGH = 25  # a flood stops once this many of its requests were refused as rate-limited
CONNECTIONS = 6
MAX_SECONDS = 8.0  # and after this long, whatever is left
BOT_ADDRESS = "127.0.0.2"

controls.register(
    controls.Control(
        "rate_limits",
        "Write requests to the API are rate-limited per session and per source address "
        "(429 with Retry-After).",
        "按会话和来源地址对 API 写请求限速（返回 429 并给出 Retry-After）。",
        env={"PAYGUARD_RATE_LIMIT_ENABLED": "false"},
    )
)


def setup(ctx: DrillContext) -> None:
    ctx.customer("bot", balance=10_000)  # the attacker's own cheap account
    ctx.customer("mule", device=False)
    ctx.customer("regular", balance=60_000)  # a customer paying during the flood
    ctx.customer("shopper_a", balance=50_000, background=True)
    ctx.customer("shopper_b", balance=50_000, background=True)
    ctx.merchant("cafe")


def _bot_http(ctx: DrillContext) -> httpx.Client:
    """The bot's own connection: from a second loopback address in the sandbox."""
    host = urlsplit(ctx.base_url).hostname
    if host not in ("127.0.0.1", "localhost"):
        return ctx.http()  # a --target: the bot is this machine, whatever its address
    return httpx.Client(
        base_url=ctx.base_url,
        timeout=10.0,
        transport=httpx.HTTPTransport(local_address=BOT_ADDRESS),
        limits=httpx.Limits(max_connections=CONNECTIONS),
    )


def _junk_payment(payee: str) -> dict[str, Any]:
    return {
        "kind": "p2p",
        "amount": 1,
        "currency": "CNY",
        "payee_account_id": payee,
        "nonce": secrets.token_hex(16),
    }


def _flood(
    http: httpx.Client, step: StepHandle, count: int, headers: dict[str, str], payee: str
) -> dict[str, int]:
    """Send up to ``count`` requests over a few connections, as fast as they go; stop
    after MAX_SECONDS or once ENOUGH were refused as rate-limited."""
    deadline = time.monotonic() + MAX_SECONDS
    seen: dict[str, int] = {}
    recorded: set[str] = set()
    lock = threading.Lock()

    def one(_number: int) -> None:
        if time.monotonic() > deadline or seen.get("rate-limited", 0) >= ENOUGH:
            return
        try:
            reply = http.post(
                "/v1/payments",
                json=_junk_payment(payee),
                headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
            )
        except httpx.HTTPError:
            with lock:
                seen["transport-error"] = seen.get("transport-error", 0) + 1
            return
        body = reply.json() if reply.content else {}
        code = str(body.get("code", reply.status_code)) if isinstance(body, dict) else "?"
        with lock:
            seen[code] = seen.get(code, 0) + 1
            first = code not in recorded
            recorded.add(code)
        if first:  # one refusal per kind in the record: the counts go in a note
            step.response(reply)

    with ThreadPoolExecutor(max_workers=CONNECTIONS) as pool:
        list(pool.map(one, range(count)))
    return seen


def _legitimate_payment(ctx: DrillContext, step: StepHandle) -> None:
    """A customer paying during the flood must still be served."""
    regular = ctx.actor("regular")
    cafe = ctx.merchants["cafe"]
    try:
        paid = regular.client.pay_merchant(1_200, str(cafe["id"]))
    except Exception as error:  # refused or unreachable: the flood denied service
        step.breach(f"a legitimate customer's payment failed: {type(error).__name__}")
        return
    if paid.status != "confirmed":
        step.breach(f"a legitimate customer's payment ended {paid.status}")
    else:
        step.note(
            "A customer paying during the flood was served.", "洪泛期间正常客户的支付照常完成。"
        )


def _summary(seen: dict[str, int]) -> str:
    return ", ".join(f"{code}: {count}" for code, count in sorted(seen.items()))


def attack(ctx: DrillContext) -> None:
    bot, mule = ctx.actor("bot"), ctx.actor("mule")
    with _bot_http(ctx) as http:
        _play(ctx, http, bot.client.token or "", mule.wallet_id)


def _play(ctx: DrillContext, http: httpx.Client, token: str, payee: str) -> None:
    session_headers = {"Authorization": f"Bearer {token}"}
    with ctx.step(
        "session-flood",
        "Flood the payment API through one session",
        "通过单个会话向支付接口发起请求洪泛",
        detect=[refused("rate-limited"), event("security.rate_limited", limit_scope="session")],
        contain=[refused("rate-limited")],
        detect_within_s=4,
        contain_within_s=4,
    ) as step:
        seen = _flood(http, step, SESSION_FLOOD, session_headers, payee)
        step.note(f"Replies to the flood: {_summary(seen)}.", f"洪泛请求的应答：{_summary(seen)}。")
        _legitimate_payment(ctx, step)

    with ctx.step(
        "address-flood",
        "Flood the payment API from one address without a session, several connections",
        "不带会话、多连接从同一地址向支付接口发起请求洪泛",
        detect=[refused("rate-limited"), event("security.rate_limited", limit_scope="ip")],
        contain=[refused("rate-limited")],
        detect_within_s=5,
        contain_within_s=5,
    ) as step:
        seen = _flood(http, step, ADDRESS_FLOOD, {}, payee)
        step.note(f"Replies to the flood: {_summary(seen)}.", f"洪泛请求的应答：{_summary(seen)}。")
        _legitimate_payment(ctx, step)


SCENARIO = Scenario(
    name="request_flood",
    title_en="Request flood against the payment API",
    title_zh="针对支付接口的请求洪泛攻击",
    threat_en="A bot floods the payment API from one machine, through a session and without.",
    threat_zh="攻击者从单一机器通过会话及不带会话向支付接口发起大量请求，企图耗尽服务能力。",
    seed="004",
    controls=("rate_limits",),
    setup=setup,
    attack=attack,
    root_cause_en=(
        "Any client can send requests as fast as its connection allows; without limits "
        "every request costs the platform work before it is refused."
    ),
    root_cause_zh="任何客户端都可以按其网络能力无限速发送请求；没有限速时，每个请求在被拒绝前都要消耗平台资源。",
    fixes_en=(
        "Keep the per-session and per-address token buckets on, shared through Redis "
        "when several server processes run.",
        "Block-list the flooding address range during the attack (credential-stuffing "
        "playbook: block_ip) and review the limits against the attack's rate.",
        "Put a network-level limit (load balancer or WAF) in front of the API as well.",
    ),
    fixes_zh=(
        "保持按会话和按来源地址的令牌桶限速；多进程部署时通过 Redis 共享。",
        "攻击期间将洪泛来源地址段加入黑名单（撞库/洪泛预案：block_ip），并按攻击速率复核限速值。",
        "在 API 之前再加一层网络级限速（负载均衡或 WAF）。",
    ),
    playbook="credential-stuffing",
    settle_seconds=3.0,
)
