"""Credential stuffing (seed 004: login attempt limits; seed 003: account lock and alert).

The attacker bought a list of username/password pairs leaked from another site and
tries them all, as fast as the platform answers, from one machine: most pairs are old
or wrong, some usernames do not exist, and three pairs are valid for drill customers.
Expected: login throttling (delays, then lock-out per account and per source address)
refuses the burst until the bot gives up, so the valid pairs at the end of the list get
no session (on a slow platform the per-account lock-out refuses them). Any session
gained is then tried for money (an unsigned payment), which the platform refuses.
"""

from __future__ import annotations

import secrets

from payguard.drills.context import DrillContext
from payguard.drills.scenario import Scenario, event, incident, refused

VICTIMS = ("alice", "bob", "carol")
WRONG_PER_VICTIM = 5
GHOSTS = 6
GIVE_UP_AFTER = 3  # throttled refusals in a row


def setup(ctx: DrillContext) -> None:
    for name in VICTIMS:
        ctx.customer(name, balance=60_000)
    ctx.customer("mule", device=False)
    ctx.customer("shopper_a", balance=50_000, background=True)
    ctx.customer("shopper_b", balance=50_000, background=True)
    ctx.merchant("corner_shop")


def leaked_pairs(ctx: DrillContext) -> list[tuple[str, str]]:
    """The combo list: wrong and unknown pairs first, the valid ones last (the order of
    a list sorted by the breach it came from)."""
    pairs: list[tuple[str, str]] = []
    for round_number in range(WRONG_PER_VICTIM):
        for name in VICTIMS:
            pairs.append((ctx.actor(name).username, f"Old-password-{round_number}-{name}"))
        if round_number < GHOSTS:
            pairs.append((f"{ctx.tag}ghost{round_number}", secrets.token_urlsafe(12)))
    pairs += [(ctx.actor(name).username, ctx.actor(name).password) for name in VICTIMS]
    return pairs


def attack(ctx: DrillContext) -> None:
    bot = ctx.attacker()
    sessions: list[str] = []
    with ctx.step(
        "stuffing",
        "Try a leaked combo list against the login, as fast as possible",
        "用泄露的账号密码列表高速尝试登录（撞库）",
        detect=[refused("too-many-attempts"), event("security.login_locked"), incident()],
        contain=[refused("too-many-attempts"), event("security.login_locked")],
        detect_within_s=5,
        contain_within_s=5,
    ) as step:
        throttled = 0
        for username, password in leaked_pairs(ctx):
            if step.call(bot.login, username, password) is not None:
                sessions.append(username)
                step.breach(f"a session for {username}", what_zh=f"获得 {username} 的会话")
                bot.token = None
            throttled = (
                throttled + 1
                if step.record.refusals[-1:]
                and (step.record.refusals[-1].code == "too-many-attempts")
                else 0
            )
            if throttled >= GIVE_UP_AFTER:
                # Slowed to a crawl: a bot moves on to a target that does not throttle.
                step.note(
                    "The bot gave up: every attempt is being throttled.",
                    "攻击程序放弃：每次尝试都被限速。",
                )
                break
    mule = ctx.actor("mule")
    for username in sessions:
        name = username.removeprefix(ctx.tag)
        thief = ctx.attacker()
        with ctx.step(
            f"cash-out-{name}",
            f"Move money out of the stuffed account {name}",
            f"从撞库得手的账户 {name} 转出资金",
            money_at_risk=50_000,
            detect=[refused()],
            actors=[name],
        ) as step:
            thief.login(username, ctx.actor(name).password)
            step.call(thief.pay_p2p, 50_000, payee_username=mule.username)


SCENARIO = Scenario(
    name="credential_stuffing",
    title_en="Credential stuffing: a leaked combo list tried against the login",
    title_zh="撞库攻击：用泄露的账号密码列表批量尝试登录",
    threat_en="Username/password pairs leaked elsewhere, tried in bulk from one machine.",
    threat_zh="攻击者从单一来源批量尝试其他网站泄露的账号密码。",
    seed="004",
    controls=("login_throttle",),
    setup=setup,
    attack=attack,
    root_cause_en="Customers reused passwords that leaked from another service.",
    root_cause_zh="客户在其他服务上使用的相同密码发生泄露。",
    fixes_en=(
        "Keep per-account and per-address login throttling and lock-out on.",
        "Check new passwords against known-breached lists; offer passkeys.",
        "Alert the security team on lock-out bursts; block the source address.",
    ),
    fixes_zh=(
        "保持按账户和来源地址的登录限速与锁定。",
        "设置新密码时比对已泄露密码库；推广通行密钥。",
        "锁定激增时告警安全团队；封禁攻击来源地址。",
    ),
    playbook="credential-stuffing",
    settle_seconds=3.0,
)
