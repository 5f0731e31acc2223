"""Wallet data scraping by an insider or a stolen staff session (seed 001, case 2).

Seed 001's second case: a customer sees payments she did not make and gets sales calls
from people who know her payment habits and personal data; the wallet's data had
reached a third party. Here the data leaves through the front door: a customer-service
agent's staff session (stolen from a shared workstation, or the agent selling data)
pages through every account, payment list, statement and customer profile it can read,
round after round, far beyond what a person at a console reads.

The role is allowed to read each record, so least privilege alone does not stop it.
Expected: the staff read-volume watch (identity/staff_watch.py) counts the records
the session reads; past the alert line it raises a risk alert and
``security.staff_read_volume``, incident intake opens an incident and starts the
insider-abuse playbook, which ends the staff member's sessions; past the block line the
session's reads are refused (429 read-volume-exceeded). The scraper is cut off before it
has harvested everything; no money moves.
"""

from __future__ import annotations

from typing import Any

import httpx

from payguard.drills import controls
from payguard.drills.context import DrillContext, StepHandle
from payguard.drills.scenario import Scenario, event, incident, playbook, refused

PAGE = 200  # what a scraper asks for per page: the API's largest
ROUNDS = 12  # the whole harvest: 12 passes over everything the role can read

controls.register(
    controls.Control(
        "staff_read_volume",
        "Staff reads of customer data are counted per staff member; bulk reading raises "
        "an alert (incident, sessions ended) and is then refused.",
        "按工作人员统计其读取客户数据的数量；批量读取触发告警（事件、终止会话）并随后被拒绝。",
        env={
            "PAYGUARD_STAFF_READ_ALERT_RECORDS": controls.NEVER,
            "PAYGUARD_STAFF_READ_BLOCK_RECORDS": controls.NEVER,
        },
    )
)


def setup(ctx: DrillContext) -> None:
    for name in ("saver_a", "saver_b", "saver_c"):
        ctx.customer(name, balance=80_000)
    ctx.customer("shopper_a", balance=50_000, background=True)
    ctx.customer("shopper_b", balance=50_000, background=True)
    ctx.merchant("grocer")
    ctx.staff("agent", "viewer")  # the customer-service agent whose session is used


def _get(http: httpx.Client, step: StepHandle, path: str, **params: Any) -> Any:
    """One read; a problem reply is recorded as a refusal and ends the harvest."""
    reply = http.get(path, params=params or None)
    if reply.status_code >= 400:
        step.response(reply)
        return None
    return reply.json()


def _harvest_round(http: httpx.Client, step: StepHandle) -> int | None:
    """One pass over everything: records read, or None when the platform cut it off."""
    read = 0
    accounts = _get(http, step, "/v1/accounts", limit=PAGE)
    if accounts is None:
        return None
    payments = _get(http, step, "/v1/payments", limit=PAGE)
    if payments is None:
        return None
    read += len(accounts["items"]) + len(payments["items"])
    for account in accounts["items"]:
        if account["kind"] != "wallet":
            continue
        if _get(http, step, f"/v1/accounts/{account['id']}/statement") is None:
            return None
        read += 1
        owner = account.get("owner_id")
        if owner and str(owner).startswith("cus_"):
            if _get(http, step, f"/v1/customers/{owner}") is None:
                return None
            read += 1
    return read


def attack(ctx: DrillContext) -> None:
    agent = ctx.staff_actors["agent"]
    with ctx.step(
        "steal-session",
        "Take over the customer-service agent's staff session",
        "窃取客服人员的工作人员会话",
    ) as step:
        http = ctx.http()
        http.headers["Authorization"] = f"Bearer {agent.client.token}"
        me = http.get("/v1/me")
        step.note(
            f"The stolen session answers as staff ({me.status_code}).",
            f"被窃取的会话以工作人员身份应答（{me.status_code}）。",
        )

    with ctx.step(
        "bulk-export",
        "Page through every account, payment, statement and customer profile, repeatedly",
        "反复翻页读取全部账户、交易、对账单和客户资料（批量导出）",
        detect=[event("security.staff_read_volume"), incident()],
        contain=[
            refused("read-volume-exceeded", "not-authenticated"),
            event("controls.sessions_revoked"),
            playbook("revoke_sessions"),
        ],
        detect_within_s=8,
        contain_within_s=15,
    ) as step:
        total = 0
        for number in range(1, ROUNDS + 1):
            read = _harvest_round(http, step)
            if read is None:
                step.note(
                    f"Cut off in round {number} after {total} records.",
                    f"第 {number} 轮被切断，此前已读取 {total} 条记录。",
                )
                break
            total += read
        else:
            step.breach(f"the complete harvest: {ROUNDS} rounds, {total} records")


SCENARIO = Scenario(
    name="data_scraping",
    title_en="Wallet data scraping through a staff session (bulk export)",
    title_zh="利用工作人员会话批量爬取钱包数据（批量导出）",
    threat_en=(
        "An insider, or someone with a stolen customer-service session, reads customer, "
        "account, statement and payment data in bulk to sell it."
    ),
    threat_zh="内部人员或窃取客服会话的攻击者批量读取客户、账户、对账单和交易数据并出售。",
    seed="001 case 2",
    controls=("staff_read_volume",),
    setup=setup,
    attack=attack,
    root_cause_en=(
        "A staff session may read every record its role allows, at any volume; a stolen "
        "or abused session is indistinguishable from work without a volume watch."
    ),
    root_cause_zh="工作人员会话可按角色权限无限量读取数据；缺少读取量监测时，被盗或被滥用的会话与正常工作无法区分。",
    fixes_en=(
        "Keep the per-staff read-volume watch on; tune its lines to the team's real work.",
        "End the staff member's sessions and reset the password on a bulk-read alert.",
        "Give customer-service roles search by case, not open listing of all accounts.",
        "Review the audit log of the staff member's reads; tell affected customers.",
    ),
    fixes_zh=(
        "保持按工作人员统计读取量的监测，并按团队实际工作量调整阈值。",
        "出现批量读取告警时终止该工作人员全部会话并重置口令。",
        "客服角色按工单检索客户，不开放全量账户列表。",
        "审查该工作人员读取记录的审计日志，并告知受影响客户。",
    ),
    playbook="insider-abuse",
    settle_seconds=8.0,
)
