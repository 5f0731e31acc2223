"""The drill record: a document in the form of seed 002 (GB/T 38645 Annex A), with the
scores and improvement items, in Markdown and PDF, zh-CN and en, and a timeline chart.

Sections follow seed 002: guiding principle; organisation and duties; the plan (time,
content, purpose); the drill (time, place, method, participants; the timestamped record
of events; handling; root cause and fixes; investigation); evaluation; plus the scores
and the improvement items. Only ids and drill_ usernames appear: no personal data.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from payguard.documents import (
    Bullets,
    Document,
    Heading,
    Image,
    KeyValues,
    Paragraph,
    Table,
    write_report,
)
from payguard.drills.scenario import Scenario

LANES = ["attack", "detect", "contain", "platform", "drill"]

TEXT: dict[str, dict[str, str]] = {
    "title": {
        "zh-CN": "电子支付系统安全应急演练记录",
        "en": "Payment system security drill record",
    },
    "s1": {"zh-CN": "一、指导思想", "en": "1. Guiding principle"},
    "principle": {
        "zh-CN": "以保障支付业务系统、客户资金与个人信息安全为宗旨，"
        "按照“预防为主，积极处置”的原则，通过模拟真实攻击检验监测、处置与资金安全控制措施，发现薄弱环节并持续改进"
        "（演练方案：评估系统安全性、提升人员意识与技能、检验应急响应机制）。",
        "en": "To keep the payment system, customers' money and personal data safe, on the "
        'principle of "prevention first, active response": attack the platform as a real '
        "attacker would, test its detection, response and money controls, find the weak "
        "points and improve continuously (drill plan: assess the system's security, build "
        "the team's awareness and skills, test the incident response mechanism).",
    },
    "s2": {"zh-CN": "二、组织机构", "en": "2. Organisation and duties"},
    "org": {
        "zh-CN": "应急演练工作组负责演练的具体工作：分析和评估演练对业务的影响；"
        "收集分析处置过程中的数据和记录；报告演练进展和事态发展；提供演练所需的资源保障。",
        "en": "The drill working group runs the drill: it assesses the drill's impact on "
        "the business, collects the data and records of the response, reports progress "
        "and how the situation develops, and provides the resources the drill needs.",
    },
    "s3": {"zh-CN": "三、演练方案", "en": "3. The drill plan"},
    "s4": {"zh-CN": "四、应急演练阶段", "en": "4. The drill"},
    "s4_1": {
        "zh-CN": "（一）演练时间、地点、方式及参加人员",
        "en": "4.1 Time, place, method and participants",
    },
    "s4_2": {"zh-CN": "（二）演练内容记录", "en": "4.2 Record of events"},
    "s4_3": {"zh-CN": "（三）紧急处理过程与应急措施", "en": "4.3 Handling and measures taken"},
    "s4_4": {"zh-CN": "（四）事件根源与解决方案", "en": "4.4 Root cause and fixes"},
    "s4_5": {"zh-CN": "（五）事件调查", "en": "4.5 Investigation"},
    "s5": {"zh-CN": "五、演练效果评估", "en": "5. Evaluation"},
    "s6": {"zh-CN": "六、评分", "en": "6. Scores"},
    "s7": {"zh-CN": "七、改进事项", "en": "7. Improvement items"},
    "time": {"zh-CN": "时间", "en": "Time"},
    "place": {"zh-CN": "地点", "en": "Place"},
    "method": {"zh-CN": "方式", "en": "Method"},
    "participants": {"zh-CN": "参加人员", "en": "Participants"},
    "content": {"zh-CN": "演练内容", "en": "Content"},
    "purpose": {"zh-CN": "演练目的", "en": "Purpose"},
    "scenario": {"zh-CN": "演练场景", "en": "Scenario"},
    "seed": {"zh-CN": "依据", "en": "Based on"},
    "run": {"zh-CN": "演练编号", "en": "Drill run"},
    "lane": {"zh-CN": "类别", "en": "Lane"},
    "event": {"zh-CN": "事件", "en": "Event"},
    "role": {"zh-CN": "角色", "en": "Role"},
    "who": {"zh-CN": "人员", "en": "Who"},
    "duty": {"zh-CN": "职责", "en": "Duty"},
    "step": {"zh-CN": "攻击步骤", "en": "Attack step"},
    "detected": {"zh-CN": "发现", "en": "Detected"},
    "ttd": {"zh-CN": "发现用时(秒)", "en": "Time to detect (s)"},
    "contained": {"zh-CN": "遏制", "en": "Contained"},
    "ttc": {"zh-CN": "遏制用时(秒)", "en": "Time to contain (s)"},
    "at_risk": {"zh-CN": "风险资金", "en": "Money at risk"},
    "lost": {"zh-CN": "损失资金", "en": "Money lost"},
    "yes": {"zh-CN": "是", "en": "yes"},
    "no": {"zh-CN": "否", "en": "no"},
    "passed": {"zh-CN": "通过", "en": "PASSED"},
    "failed": {"zh-CN": "未通过", "en": "FAILED"},
    "chart": {"zh-CN": "演练时间线", "en": "Drill timeline"},
    "sandbox": {
        "zh-CN": "隔离的演练沙箱（独立的平台实例与临时数据库）",
        "en": "an isolated drill sandbox (its own platform instance and temporary database)",
    },
    "default_method": {
        "zh-CN": "模拟演练，实操（自动化攻击者经由客户端 SDK 和 HTTP 攻击平台接口）",
        "en": "simulated, hands-on (an automated attacker hits the platform's API through "
        "the client SDK and HTTP)",
    },
}

LANE_NAMES = {
    "attack": {"zh-CN": "攻击", "en": "attack"},
    "detect": {"zh-CN": "发现", "en": "detect"},
    "contain": {"zh-CN": "遏制", "en": "contain"},
    "platform": {"zh-CN": "平台", "en": "platform"},
    "drill": {"zh-CN": "演练", "en": "drill"},
}

DEFAULT_PARTICIPANTS = [
    {
        "role": "commander",
        "zh-CN": ("应急指挥", "组织演练，决定处置措施，向管理层报告"),
        "en": ("Commander", "runs the drill, decides the measures, reports to management"),
    },
    {
        "role": "red_team",
        "zh-CN": ("攻击方（自动化）", "按场景经由客户端 SDK 和 HTTP 实施攻击"),
        "en": ("Attacker (automated)", "plays the scenario through the client SDK and HTTP"),
    },
    {
        "role": "technical_support",
        "zh-CN": ("技术支持", "监测告警，执行处置预案，分析日志"),
        "en": ("Technical support", "watches alerts, runs the playbook, analyses the logs"),
    },
    {
        "role": "business_operations",
        "zh-CN": ("业务运营", "核实交易，复核放行或拒绝挂起的付款"),
        "en": ("Business operations", "checks payments, releases or declines held payouts"),
    },
    {
        "role": "scribe",
        "zh-CN": ("记录员", "平台自动记录时间线（本记录）"),
        "en": ("Scribe", "the platform records the timeline (this record)"),
    },
]


def _t(key: str, language: str) -> str:
    return TEXT[key][language]


def _when(value: str, zone: ZoneInfo, fmt: str = "%H:%M:%S") -> str:
    return datetime.fromisoformat(value).astimezone(zone).strftime(fmt)


def _yes(flag: bool, language: str) -> str:
    return _t("yes" if flag else "no", language)


def _money(amount: int) -> str:
    return f"{amount / 100:,.2f} CNY"


def build(
    result: dict[str, Any],
    scenario: Scenario,
    language: str,
    chart: Path | None,
    *,
    plan: dict[str, Any] | None = None,
    timezone: str = "Asia/Shanghai",
) -> Document:
    """The drill record of ``result`` (runner output) as a document in ``language``."""
    zh = language == "zh-CN"
    zone = ZoneInfo(timezone)
    title = scenario.title_zh if zh else scenario.title_en
    verdict = _t("passed" if result["passed"] else "failed", language)
    started = _when(result["started_at"], zone, "%Y-%m-%d %H:%M:%S")
    blocks: list[Any] = [
        KeyValues(
            [
                (_t("run", language), result["run_id"]),
                (_t("scenario", language), f"{result['scenario']}: {title}"),
                (_t("seed", language), f"seed {result['seed']}"),
                ("结果" if zh else "Result", f"{verdict}, {result['score']}/100"),
            ]
        ),
        Heading(_t("s1", language)),
        Paragraph(_t("principle", language)),
        Heading(_t("s2", language)),
        Paragraph(_t("org", language)),
        _participants(plan, result, language),
        Heading(_t("s3", language)),
        KeyValues(
            [
                (_t("time", language), f"{started} ({timezone})"),
                (_t("content", language), scenario.threat_zh if zh else scenario.threat_en),
                (
                    _t("purpose", language),
                    (plan or {}).get("purpose")
                    or (
                        f"检验以下控制措施：{'、'.join(scenario.controls)}"
                        if zh
                        else f"Test the controls: {', '.join(scenario.controls)}"
                    ),
                ),
            ]
        ),
        Heading(_t("s4", language)),
        Heading(_t("s4_1", language), level=3),
        KeyValues(
            [
                (_t("time", language), f"{started} ({timezone})"),
                (
                    _t("place", language),
                    _t("sandbox", language) if result["target"] == "sandbox" else result["target"],
                ),
                (
                    _t("method", language),
                    (plan or {}).get("method") or _t("default_method", language),
                ),
                (_t("participants", language), _actor_line(result, language)),
            ]
        ),
    ]
    if result.get("disabled_controls"):
        blocks.append(
            Paragraph(
                ("本次演练关闭的控制措施：" if zh else "Controls switched off for this drill: ")
                + ", ".join(result["disabled_controls"])
            )
        )
    blocks += [
        Heading(_t("s4_2", language), level=3),
        Table(
            headers=[_t("time", language), _t("lane", language), _t("event", language)],
            rows=[
                [
                    _when(line["at"], zone, "%H:%M:%S.%f")[:-3],
                    LANE_NAMES.get(line["lane"], {}).get(language, line["lane"]),
                    line["zh"] if zh else line["en"],
                ]
                for line in result["timeline"]
            ],
            col_widths=[1.3, 1.0, 5.0],
        ),
    ]
    if chart is not None:
        blocks.append(Image(path=chart, caption=_t("chart", language)))
    blocks += _handling(result, language, zone)
    blocks += [
        Heading(_t("s4_4", language), level=3),
        Paragraph(
            ("事件根源：" if zh else "Root cause: ")
            + ((scenario.root_cause_zh if zh else scenario.root_cause_en) or "-")
        ),
        Paragraph("解决方案：" if zh else "Fixes:"),
        Bullets(list(scenario.fixes_zh if zh else scenario.fixes_en) or ["-"], ordered=True),
        Heading(_t("s4_5", language), level=3),
        _investigation(result, language, zone),
        Heading(_t("s5", language)),
        Paragraph(_evaluation(result, language)),
        Heading(_t("s6", language)),
        _steps_table(result, language),
        _score_parts(result, language),
        Heading(_t("s7", language)),
        Bullets([item["zh"] if zh else item["en"] for item in result["improvements"]] or ["-"]),
    ]
    return Document(
        title=_t("title", language),
        language="zh-CN" if zh else "en",
        subtitle=title,
        blocks=blocks,
        author="payguard drills",
    )


def _participants(plan: dict[str, Any] | None, result: dict[str, Any], language: str) -> Table:
    headers = [_t("role", language), _t("who", language), _t("duty", language)]
    if plan and plan.get("participants"):
        rows = [
            [str(item.get("role", "")), str(item.get("name", "")), str(item.get("duty", ""))]
            for item in plan["participants"]
        ]
    else:
        names = result.get("actors", [])
        group = "演练工作组" if language == "zh-CN" else "drill working group"
        on_duty = {
            "commander": [name for name in names if name.endswith("_responder")],
            "business_operations": [
                name for name in names if name.endswith(("_operations", "_compliance"))
            ],
            "red_team": ["payguard drill runner"],
            "scribe": ["payguard drill runner"],
        }
        rows = []
        for item in DEFAULT_PARTICIPANTS:
            label, duty = item[language]
            who = on_duty.get(str(item["role"])) or [group]
            rows.append([label, ", ".join(who), duty])
    return Table(headers=headers, rows=rows, col_widths=[1.5, 2.5, 4.0])


def _actor_line(result: dict[str, Any], language: str) -> str:
    actors = result.get("actors", [])
    if language == "zh-CN":
        return f"演练工作组；演练账户 {len(actors)} 个（用户名以 drill_ 开头）；自动化攻击方"
    return (
        f"the drill working group; {len(actors)} drill accounts (usernames drill_…); "
        "the automated attacker"
    )


def _handling(result: dict[str, Any], language: str, zone: ZoneInfo) -> list[Any]:
    zh = language == "zh-CN"
    lines: list[str] = []
    for step in result["steps"]:
        if not step["attack"]:
            continue
        name = step["title_zh"] if zh else step["title_en"]
        if step["contained"]:
            lines.append(
                f"{name}：{step['contained_by']}（{step['time_to_contain_s']} 秒）"
                if zh
                else f"{name}: {step['contained_by']} ({step['time_to_contain_s']} s)"
            )
        else:
            lines.append(f"{name}：未遏制" if zh else f"{name}: not contained")
    for item in result.get("incidents", []):
        lines.append(
            f"平台开立事件 {item['id']}（{item['grade']} 级，状态 {item['status']}），"
            f"时间 {_when(item['reported_at'], zone)}"
            if zh
            else f"The platform opened incident {item['id']} (grade {item['grade']}, "
            f"{item['status']}) at {_when(item['reported_at'], zone)}"
        )
    for item in result.get("playbook_steps", []):
        lines.append(
            f"{_when(item['at'], zone)} 预案步骤 {item['action']}：{item['status']}"
            if zh
            else f"{_when(item['at'], zone)} playbook step {item['action']}: {item['status']}"
        )
    return [Heading(_t("s4_3", language), level=3), Bullets(lines or ["-"])]


def _investigation(result: dict[str, Any], language: str, zone: ZoneInfo) -> Bullets:
    zh = language == "zh-CN"
    start = datetime.fromisoformat(result["attack_started_at"])
    end = datetime.fromisoformat(result["finished_at"])
    duration = round((end - start).total_seconds(), 1)
    integrity = result["integrity"]
    if zh:
        items = [
            f"影响范围：演练账户 {len(result.get('actors', []))} 个；风险资金 "
            f"{_money(result['money_at_risk'])}；损失资金 {_money(result['money_lost'])}。",
            f"事件发生时间 {_when(result['attack_started_at'], zone)}，持续 {duration} 秒。",
            f"攻击步骤 {result['attacks']} 个，成功防御 {result['attacks_defended']} 个；"
            f"最长发现用时 {result['time_to_detect_s']} 秒，"
            f"最长遏制用时 {result['time_to_contain_s']} 秒。",
            f"账务核对：总账平衡 {_yes(integrity['invariants_ok'], language)}；已确认支付 "
            f"{integrity['acknowledged_payments']} 笔，"
            f"丢失 {len(integrity['acknowledged_lost'])} 笔；"
            f"重复扣款 {len(integrity['duplicate_debits'])} 笔。",
        ]
        items += [f"问题：{failure}" for failure in result["failures"]]
    else:
        items = [
            f"Scope: {len(result.get('actors', []))} drill accounts; money at risk "
            f"{_money(result['money_at_risk'])}; money lost {_money(result['money_lost'])}.",
            f"Started {_when(result['attack_started_at'], zone)}, lasted {duration} s.",
            f"{result['attacks']} attack steps, {result['attacks_defended']} defended; slowest "
            f"detection {result['time_to_detect_s']} s, slowest containment "
            f"{result['time_to_contain_s']} s.",
            f"Money checks: ledger balanced {_yes(integrity['invariants_ok'], language)}; "
            f"{integrity['acknowledged_payments']} acknowledged payments, "
            f"{len(integrity['acknowledged_lost'])} lost; "
            f"{len(integrity['duplicate_debits'])} debited twice.",
        ]
        items += [f"Finding: {failure}" for failure in result["failures"]]
    return Bullets(items)


def _evaluation(result: dict[str, Any], language: str) -> str:
    if language == "zh-CN":
        verdict = "通过" if result["passed"] else "未通过"
        return f"演练{verdict}，得分 {result['score']}/100。" + (
            "攻击均被及时发现和遏制，资金安全，账务一致。"
            if result["passed"]
            else "存在未及时发现或遏制的攻击，或资金核对未通过，须按改进事项整改后重新演练。"
        )
    verdict = "passed" if result["passed"] else "failed"
    return f"The drill {verdict} with a score of {result['score']}/100. " + (
        "Every attack was detected and contained in time; the money stayed right."
        if result["passed"]
        else "Some attack was not detected or contained in time, or a money check failed: "
        "fix the improvement items and run the drill again."
    )


def _steps_table(result: dict[str, Any], language: str) -> Table:
    rows = []
    for step in result["steps"]:
        if not step["attack"]:
            continue
        rows.append(
            [
                step["title_zh"] if language == "zh-CN" else step["title_en"],
                _yes(step["detected"], language),
                "-" if step["time_to_detect_s"] is None else f"{step['time_to_detect_s']:.2f}",
                _yes(step["contained"], language),
                "-" if step["time_to_contain_s"] is None else f"{step['time_to_contain_s']:.2f}",
                _money(step["money_at_risk"]),
                _money(step["money_lost"]),
            ]
        )
    headers = [
        _t(key, language)
        for key in ("step", "detected", "ttd", "contained", "ttc", "at_risk", "lost")
    ]
    return Table(headers=headers, rows=rows, col_widths=[3.0, 0.8, 1.0, 0.8, 1.0, 1.3, 1.3])


def _score_parts(result: dict[str, Any], language: str) -> KeyValues:
    names = {
        "detection": ("发现 (40)", "Detection (40)"),
        "timeliness": ("及时性 (15)", "Timeliness (15)"),
        "containment": ("遏制 (20)", "Containment (20)"),
        "money": ("资金 (15)", "Money (15)"),
        "integrity": ("账务一致 (10)", "Integrity (10)"),
    }
    index = 0 if language == "zh-CN" else 1
    items = [(names[key][index], f"{value:g}") for key, value in result["score_parts"].items()]
    items.append(("总分" if index == 0 else "Total", f"{result['score']}/100"))
    return KeyValues(items)


def chart_points(result: dict[str, Any]) -> list[tuple[datetime, str, str, str]]:
    """The key moments only (at, lane, en, zh): each attack step's start, its first
    detection and containment, incidents opened; a chart of every line is unreadable."""
    points: list[tuple[datetime, str, str, str]] = []
    for step in result["steps"]:
        if not step["attack"]:
            continue
        start = datetime.fromisoformat(step["started_at"])
        points.append((start, "attack", step["key"], step["key"]))
        if step["time_to_detect_s"] is not None:
            points.append(
                (
                    start + timedelta(seconds=step["time_to_detect_s"]),
                    "detect",
                    step["key"],
                    step["key"],
                )
            )
        if step["time_to_contain_s"] is not None:
            points.append(
                (
                    start + timedelta(seconds=step["time_to_contain_s"]),
                    "contain",
                    step["key"],
                    step["key"],
                )
            )
    for item in result.get("incidents", []):
        points.append((datetime.fromisoformat(item["reported_at"]), "detect", "incident", "事件"))
        if item.get("contained_at"):
            points.append(
                (datetime.fromisoformat(item["contained_at"]), "contain", "incident", "事件")
            )
    return _merge_close(sorted(points))


def _merge_close(
    points: list[tuple[datetime, str, str, str]], within: float = 2.0
) -> list[tuple[datetime, str, str, str]]:
    """Points of one lane less than ``within`` seconds apart become one (an automated
    drill moves in milliseconds; their labels would lie on top of each other)."""
    merged: list[tuple[datetime, str, str, str]] = []
    last: dict[str, int] = {}
    for at, lane, en, zh in points:
        index = last.get(lane)
        if index is not None and (at - merged[index][0]).total_seconds() < within:
            first_at, _lane, first_en, first_zh = merged[index]
            if en not in first_en.split(", "):
                merged[index] = (first_at, lane, f"{first_en}, {en}", f"{first_zh}、{zh}")
            continue
        last[lane] = len(merged)
        merged.append((at, lane, en, zh))
    return merged


def timeline_chart(result: dict[str, Any], out: Path, language: str, timezone: str) -> Path:
    from payguard.documents import charts

    points = [
        charts.TimelinePoint(
            at=at,
            lane=charts.label(LANE_NAMES[lane]["zh-CN"], lane, language),
            label=charts.label(zh, en, language),
        )
        for at, lane, en, zh in chart_points(result)
    ]
    lanes = [charts.label(LANE_NAMES[lane]["zh-CN"], lane, language) for lane in LANES[:3]]
    title = charts.label("演练时间线", "Drill timeline", language)
    return charts.timeline_chart(points, out, title, lanes=lanes, tz=timezone)


def write_record(
    result: dict[str, Any],
    scenario: Scenario,
    out_dir: Path,
    *,
    languages: tuple[str, ...] = ("zh-CN", "en"),
    plan: dict[str, Any] | None = None,
    timezone: str = "Asia/Shanghai",
) -> list[Path]:
    """Write drill-record-<lang>.md/.pdf (and the timeline PNG) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for language in languages:
        short = "zh" if language == "zh-CN" else "en"
        chart = timeline_chart(result, out_dir / f"timeline-{short}.png", language, timezone)
        document = build(result, scenario, language, chart, plan=plan, timezone=timezone)
        files = write_report(document, out_dir=out_dir, stem=f"drill-record-{short}")
        written += [files.markdown, files.pdf, chart]
    return written
