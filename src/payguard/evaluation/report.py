"""The evaluation report: Markdown and PDF, zh-CN and en, with charts and suggestions.

Charts: each indicator's score against the pass score, each indicator's value against its
threshold (this evaluation, the previous one, the previous period), and the trend of the
overall and group scores over the stored evaluations. Every failed indicator gets
optimisation suggestions tied to the platform's controls; every indicator without data
says how to get data.
"""

from __future__ import annotations

from pathlib import Path

from payguard.documents import (
    Block,
    Bullets,
    Document,
    Heading,
    Image,
    KeyValues,
    Language,
    Paragraph,
    Table,
    write_report,
)
from payguard.evaluation.indicators import IndicatorSystem
from payguard.evaluation.schemas import EvaluationOut, EvaluationSummary, IndicatorResultOut

TREND_RUNS = 12
LANGUAGES: tuple[Language, ...] = ("zh-CN", "en")
STEMS = {"zh-CN": "evaluation-report-zh", "en": "evaluation-report-en"}


def _t(language: str, zh: str, en: str) -> str:
    return zh if language == "zh-CN" else en


# ------------------------------------------------------------------ suggestions

# Each failed indicator: what to look at and which control to turn, in both languages.
SUGGESTIONS: dict[str, list[tuple[str, str]]] = {
    "drill_defence_rate": [
        (
            "逐一查看未通过的演练场景(`payguard drill history`),对照演练记录中“未检测”的攻击步骤,"
            "补充或收紧对应的风控规则(`payguard risk rules show` / `save`),发布前用 "
            "`payguard risk backtest` 回测。",
            "Go through the failed drill scenarios (`payguard drill history`) and the attack "
            "steps their records mark as undetected; add or tighten the matching risk rules "
            "(`payguard risk rules show` / `save`) and backtest them with `payguard risk "
            "backtest` before publishing.",
        ),
        (
            "修复后用 `payguard drill run <场景>` 复演同一场景,"
            "确认差异;把复演结果作为整改项的关闭依据。",
            "After the fix, re-run the same scenario with `payguard drill run <scenario>` and "
            "compare; close the improvement item on the re-run's evidence.",
        ),
        (
            "检查遏制预案是否自动执行(事件 intake 映射中的 playbook),缩短检测到遏制的时间。",
            "Check that the containment playbook starts on its own (the playbook named in the "
            "incident intake mapping), so detection turns into containment without waiting.",
        ),
    ],
    "open_vulnerabilities": [
        (
            "逐个查看有未关闭整改项的事件(`payguard incidents list`、`payguard incidents "
            "show <事件>`),为每项指定责任人和期限(`payguard incidents task`),完成后用 "
            "`payguard incidents task-status` 关闭;先处理与数据泄露、凭证泄露相关的项。",
            "Go through the incidents with open improvement items (`payguard incidents list`, "
            "`payguard incidents show <incident>`), give each item an owner and a due date "
            "(`payguard incidents task`) and close it with `payguard incidents task-status` "
            "when done; start with those about data leaks and leaked credentials.",
        ),
        (
            "需要四眼审批的整改(规则发布、密钥轮换)尽快安排第二审批人,避免积压。",
            "Fixes behind four-eyes approval (rule publication, key rotation) need their "
            "second approver scheduled, or the backlog grows.",
        ),
    ],
    "payment_failure_rate": [
        (
            "按失败原因分析(rail_rejected 多为银行通道问题,hold_expired 为审核超时):通道失败率高时"
            "联系银行通道并考虑暂停该通道;"
            "审核超时说明审核队列处理不及时(`payguard risk reviews list`)。",
            "Break the failures down by code: rail_rejected points at the bank rail (talk "
            "to the bank, consider suspending the channel), hold_expired at a review queue "
            "nobody works in time (`payguard risk reviews list`).",
        ),
        (
            "核对账务一致性(`payguard ledger check`),确认失败交易的资金均已退回、无重复扣款。",
            "Check the ledger (`payguard ledger check`): every failed payment's funds back "
            "with the payer, no duplicate debit.",
        ),
    ],
    "data_leak_events": [
        (
            "对每起数据泄露事件执行数据泄露预案(`payguard playbooks run <事件> data-leak`):"
            "吊销相关会话、强制重置密码、轮换密钥(`payguard keys rotate`),"
            "并按 PBoC 2025 第 4 号规定的时限向监管报告。",
            "Run the data-leak playbook on each incident (`payguard playbooks run <incident> "
            "data-leak`): revoke the sessions involved, force password resets, rotate keys "
            "(`payguard keys rotate`), and report to the regulator within the PBoC 2025 No. 4 "
            "deadline.",
        ),
        (
            "检查员工批量导出和查询的权限(最小权限原则),用审计日志(`payguard audit verify`)确认"
            "泄露范围;事后复盘并把根因整改列为整改项。",
            "Review staff bulk-export and lookup permissions (least privilege) and use the "
            "audit log (`payguard audit verify`) to establish the scope; record the root-cause "
            "fix as an improvement item.",
        ),
    ],
    "payment_latency_p95": [
        (
            "对照风控决策耗时(报告中的 risk decision p95):若风控耗时占主要部分,检查规则表达式和模型"
            "(`payguard risk rules show`),"
            "必要时调整 risk_time_budget_ms;否则检查数据库与银行通道延迟。",
            "Compare with the risk decision p95 shown in the detail: if the engine takes most "
            "of it, look at costly rules and the model (`payguard risk rules show`) and the "
            "risk_time_budget_ms budget; otherwise look at the database and rail latency.",
        ),
        (
            "高并发时使用 PostgreSQL 与 Redis 计数器(PAYGUARD_REDIS_URL),避免 SQLite 单写锁排队。",
            "Under load, run on PostgreSQL with Redis counters (PAYGUARD_REDIS_URL) so "
            "payments do not queue on SQLite's single write lock.",
        ),
    ],
    "legit_step_up_rate": [
        (
            "查看触发加强验证最多的原因:new_payee 过多可提高 step_up_new_payee_amount;风控 "
            "challenge 过多时回测规则集(`payguard risk backtest`),调整 large-amount-for-tier、"
            "amount-far-above-habit 等规则的阈值。",
            "See which reasons trigger step-up most: many new_payee step-ups suggest raising "
            "step_up_new_payee_amount; many risk challenges call for a backtest of the rule "
            "set (`payguard risk backtest`) and higher thresholds on rules such as "
            "large-amount-for-tier and amount-far-above-habit.",
        ),
        (
            "检查是否有仍在生效的加强验证分组(事件遏制时提高的 step-up)"
            ",事件结束后执行恢复步骤撤销。",
            "Check for step-up segments still in force from a past containment (raise_step_up) "
            "and run their recovery step once the incident is over.",
        ),
    ],
    "login_success_rate": [
        (
            "按失败原因查看:bad_credentials 集中在少数 IP 时多为撞库攻击,用风险名单封禁来源"
            "(`payguard risk lists add block ip <地址>`)"
            "并启动撞库预案(credential-stuffing);分散的失败说明用户体验问题,推广通行密钥登录。",
            "Look at the failure reasons: bad_credentials concentrated on a few IPs is "
            "credential stuffing (block the sources with "
            "`payguard risk lists add block ip <address>` and run "
            "the `credential-stuffing` playbook); spread-out failures are a usability problem "
            "(promote passkey sign-in).",
        ),
        (
            "检查锁定策略(login_max_failures、login_lock_seconds)是否过严,以及被强制重置密码的客户是否收到通知。",
            "Check whether the lockout policy (login_max_failures, login_lock_seconds) is too "
            "strict, and that customers with a forced password reset were told.",
        ),
    ],
    "detection_rate": [
        (
            "逐笔查看漏检的欺诈交易(`payguard risk explain <payment>`),找出缺少的特征或规则;"
            "新增规则后用 `payguard risk backtest` 回测召回率。",
            "Go through the missed fraud payments (`payguard risk explain <payment>`) to see "
            "which feature or rule was missing; backtest new rules for recall with `payguard "
            "risk backtest`.",
        ),
        (
            "用分析师标注重新训练模型(`payguard risk train`),对比新旧模型指标后经四眼审批启用。",
            "Retrain the model on the analysts' labels (`payguard risk train`), compare its "
            "metrics with the active one, and activate it through four-eyes approval.",
        ),
        (
            "把确认的欺诈收款账户加入阻断名单"
            "(`payguard risk lists add block payee <账户>`),并与同业共享。",
            "Put confirmed mule payees on the block list "
            "(`payguard risk lists add block payee <account>`) and "
            "share them with partner institutions.",
        ),
    ],
    "false_positive_rate": [
        (
            "误报率高于阈值:用 `payguard risk backtest` 回测规则集,"
            "查看命中最多的规则(按 rule hits 排序),"
            "对误报集中的规则提高阈值或改为 challenge;发布需四眼审批。",
            "False-positive rate above threshold: backtest the rule set with `payguard risk "
            "backtest`, look at the top rules by hits among the legitimate payments, raise "
            "their thresholds or turn their action from review/block into challenge; "
            "publishing takes four-eyes approval.",
        ),
        (
            "把确认的正常客户或商户加入白名单"
            "(`payguard risk lists add allow account <账户>`),减少重复拦截;"
            "审核结论要及时标注,模型才能学到。",
            "Allow-list customers and merchants confirmed as legitimate (`payguard risk lists "
            "add allow account <account>`) to stop repeat holds; label review outcomes "
            "promptly so the next model learns from them.",
        ),
    ],
    "mean_time_to_dispose": [
        (
            "查看待处理的告警与审核队列(`payguard risk alerts list`、`payguard risk reviews list`),"
            "为值班分析师分配告警;把重复的处置步骤做成自动执行的预案步骤。",
            "Look at the open alerts and the review queue (`payguard risk alerts list`, "
            "`payguard risk reviews list`) and assign them to on-duty analysts; turn repeated "
            "manual disposal steps into automatic playbook steps.",
        ),
        (
            "对事件,检查 intake 映射是否自动启动遏制预案,以及需要审批的步骤是否有人及时审批。",
            "For incidents, check that the intake mapping starts the containment playbook by "
            "itself and that guarded steps find an approver quickly.",
        ),
    ],
}

NO_DATA_HINTS: dict[str, tuple[str, str]] = {
    "drill_defence_rate": (
        "本期没有演练:用 `payguard drill run <场景>` 演练,"
        "或用 `payguard drill schedule` 定期演练。",
        "No drill ran in the period: run one with `payguard drill run <scenario>` or schedule "
        "them with `payguard drill schedule`.",
    ),
    "payment_failure_rate": (
        "本期没有完成的交易。",
        "No payment finished in the period.",
    ),
    "payment_latency_p95": (
        "本期没有直接确认的交易,无法计算时延。",
        "No payment was confirmed straight through in the period: no latency to measure.",
    ),
    "legit_step_up_rate": ("本期没有客户交易。", "No customer payment in the period."),
    "login_success_rate": ("本期没有客户登录。", "No customer login in the period."),
    "detection_rate": (
        "本期没有标注为欺诈的交易:分析师处理告警和审核时请标注(`payguard risk label`)。",
        "No payment of the period is labelled fraud: analysts label outcomes when they close "
        "alerts and reviews (`payguard risk label`).",
    ),
    "false_positive_rate": (
        "本期没有可判定为正常的交易。",
        "No payment of the period can be taken as legitimate.",
    ),
    "mean_time_to_dispose": (
        "本期没有关闭的告警或已遏制的事件。",
        "No alert was closed and no incident contained in the period.",
    ),
}


def suggestions(item: IndicatorResultOut, language: str) -> list[str]:
    """The suggestions for one indicator (failed: how to improve; no data: how to measure)."""
    if item.state == "no_data":
        hint = NO_DATA_HINTS.get(item.id)
        return [_t(language, *hint)] if hint else []
    if item.state != "fail":
        return []
    found = [_t(language, zh, en) for zh, en in SUGGESTIONS.get(item.id, [])]
    facts = _facts_line(item, language)
    return ([facts] if facts else []) + found


def _facts_line(item: IndicatorResultOut, language: str) -> str | None:
    """What the data itself says, ahead of the generic advice."""
    detail = item.detail
    if item.id == "detection_rate" and detail.get("missed"):
        return _t(
            language,
            f"本期有 {detail['missed']} 笔欺诈交易未被任何控制拦截。",
            f"{detail['missed']} fraud payment(s) of the period passed every control.",
        )
    if item.id == "payment_failure_rate" and detail.get("failure_codes"):
        codes = ", ".join(f"{code} x{count}" for code, count in detail["failure_codes"].items())
        return _t(language, f"失败原因:{codes}。", f"Failure codes: {codes}.")
    if item.id == "login_success_rate" and detail.get("failure_reasons"):
        reasons = ", ".join(f"{key} x{count}" for key, count in detail["failure_reasons"].items())
        return _t(language, f"失败原因:{reasons}。", f"Failure reasons: {reasons}.")
    if item.id == "drill_defence_rate" and detail.get("scenarios_failed"):
        names = ", ".join(detail["scenarios_failed"])
        return _t(language, f"未通过的场景:{names}。", f"Scenarios that failed: {names}.")
    if item.id == "open_vulnerabilities" and detail.get("overdue"):
        return _t(
            language,
            f"其中 {detail['overdue']} 项已逾期。",
            f"{detail['overdue']} of them are overdue.",
        )
    return None


# ---------------------------------------------------------------------- formatting


def format_value(value: float | None, unit: str, language: str = "en") -> str:
    if value is None:
        return _t(language, "无数据", "no data")
    if unit == "ratio":
        return f"{value * 100:.2f}%"
    if unit == "count":
        return f"{value:g}"
    if unit == "ms":
        return f"{value:.1f} ms"
    if unit == "minutes":
        return f"{value:.1f} min"
    return f"{value:g}"


def state_text(state: str, language: str) -> str:
    names = {
        "pass": ("达标", "pass"),
        "fail": ("未达标", "FAIL"),
        "no_data": ("无数据", "no data"),
    }
    zh, en = names.get(state, (state, state))
    return _t(language, zh, en)


def trend_text(trend: str, language: str) -> str:
    names = {
        "better": ("↑ 改善", "↑ better"),
        "worse": ("↓ 变差", "↓ worse"),
        "same": ("→ 持平", "→ same"),
        "none": ("—", "—"),
    }
    zh, en = names.get(trend, (trend, trend))
    return _t(language, zh, en)


def direction_text(direction: str, language: str) -> str:
    if direction == "higher":
        return _t(language, "越高越好", "higher is better")
    return _t(language, "越低越好", "lower is better")


def _score(value: float | None, language: str) -> str:
    return _t(language, "无数据", "no data") if value is None else f"{value:.1f}"


def _chart_value(value: float, unit: str) -> float:
    return value * 100 if unit == "ratio" else value


def _unit_label(unit: str) -> str:
    return {"ratio": "%", "count": "count", "ms": "ms", "minutes": "minutes"}.get(unit, unit)


# --------------------------------------------------------------------------- charts


def _charts(
    evaluation: EvaluationOut,
    history: list[EvaluationSummary],
    language: str,
    folder: Path,
) -> dict[str, Path]:
    from payguard.documents import charts

    made: dict[str, Path] = {}
    scores = [
        (charts.label(item.name_zh, item.id, language), item.score)
        for item in evaluation.indicators
        if item.score is not None
    ]
    made["scores"] = charts.bar_chart(
        [(name, value) for name, value in scores if value is not None],
        folder / "scores.png",
        charts.label("各指标得分(虚线为及格分)", "Indicator scores (dashed: pass score)", language),
        "score",
        threshold=evaluation.pass_score,
        higher_is_better=True,
    )
    for item in evaluation.indicators:
        if item.value is None:
            continue
        bars: list[tuple[str, float]] = []
        if item.previous_period_value is not None:
            bars.append(
                (
                    charts.label("上一周期", "last period", language),
                    _chart_value(item.previous_period_value, item.unit),
                )
            )
        if item.previous_value is not None:
            bars.append(
                (
                    charts.label("上次评估", "last evaluation", language),
                    _chart_value(item.previous_value, item.unit),
                )
            )
        bars.append((charts.label("本次", "now", language), _chart_value(item.value, item.unit)))
        made[item.id] = charts.bar_chart(
            bars,
            folder / f"indicator-{item.id}.png",
            charts.label(
                f"{item.name_zh}(虚线为阈值)", f"{item.name_en} (dashed: threshold)", language
            ),
            _unit_label(item.unit),
            threshold=_chart_value(item.threshold, item.unit),
            higher_is_better=item.direction == "higher",
        )
    # Stored evaluations oldest first, then this one if it is not stored among them.
    runs = list(reversed(history))
    if evaluation.id is None or all(run.id != evaluation.id for run in runs):
        runs.append(
            EvaluationSummary(
                id=evaluation.id or "current",
                period=evaluation.period,
                period_start=evaluation.period_start,
                period_end=evaluation.period_end,
                overall_score=evaluation.overall_score,
                verdict=evaluation.verdict,
                passed=evaluation.passed,
                failed=evaluation.failed,
                no_data=evaluation.no_data,
                group_scores={group.id: group.score for group in evaluation.groups},
                created_by=evaluation.created_by,
                created_at=evaluation.created_at,
            )
        )
    runs = runs[-TREND_RUNS:]
    series: dict[str, list[tuple[str, float]]] = {}
    overall_name = charts.label("总分", "overall", language)
    for number, run in enumerate(runs, start=1):
        # Numbered: two evaluations in the same minute stay two points.
        stamp = f"{number}. {run.created_at:%m-%d %H:%M}"
        if run.overall_score is not None:
            series.setdefault(overall_name, []).append((stamp, run.overall_score))
        for group in evaluation.groups:
            value = run.group_scores.get(group.id)
            if value is not None:
                name = charts.label(group.name_zh, group.name_en, language)
                series.setdefault(name, []).append((stamp, value))
    made["trend"] = charts.line_chart(
        series,
        folder / "trend.png",
        charts.label("历次评估得分趋势", "Scores over the stored evaluations", language),
        "score",
        threshold=evaluation.pass_score,
    )
    return made


# ------------------------------------------------------------------------ document


def build_document(
    evaluation: EvaluationOut,
    system: IndicatorSystem,
    language: Language,
    chart_files: dict[str, Path],
) -> Document:
    lang = language
    period = (
        f"{evaluation.period_start:%Y-%m-%d %H:%M} – {evaluation.period_end:%Y-%m-%d %H:%M} UTC"
    )
    verdict = {
        "pass": _t(lang, "达标", "pass"),
        "fail": _t(lang, "未达标", "fail"),
        "no_data": _t(lang, "无数据", "no data"),
    }[evaluation.verdict]
    previous = (
        _score(evaluation.previous_overall_score, lang)
        if evaluation.previous_run_id
        else _t(lang, "无(首次评估)", "none (first evaluation)")
    )
    blocks: list[Block] = [
        KeyValues(
            [
                (_t(lang, "评估周期", "Period"), f"{evaluation.period} ({period})"),
                (
                    _t(lang, "评估编号", "Evaluation"),
                    evaluation.id or _t(lang, "未保存", "not stored"),
                ),
                (_t(lang, "综合得分", "Overall score"), _score(evaluation.overall_score, lang)),
                (
                    _t(lang, "结论", "Verdict"),
                    f"{verdict} ({_t(lang, '及格分', 'pass score')} {evaluation.pass_score:g})",
                ),
                (
                    _t(lang, "指标情况", "Indicators"),
                    _t(
                        lang,
                        f"达标 {evaluation.passed},未达标 {evaluation.failed},"
                        f"无数据 {evaluation.no_data}",
                        f"{evaluation.passed} pass, {evaluation.failed} fail, "
                        f"{evaluation.no_data} no data",
                    ),
                ),
                (
                    _t(lang, "数据覆盖(权重)", "Coverage (weight)"),
                    f"{evaluation.coverage * 100:.0f}%",
                ),
                (_t(lang, "上次评估得分", "Previous evaluation"), previous),
                (
                    _t(lang, "指标配置", "Indicator system"),
                    f"{evaluation.config_source} (sha256 {evaluation.config_sha[:12]})",
                ),
            ]
        ),
        Heading(_t(lang, "1. 总体结果", "1. Overall result"), 2),
        Paragraph(
            _t(
                lang,
                "依据《电子钱包与手机银行的安全协同策略》第六部分(评估指标体系构建),从安全性、用户体验、"
                "风险防控三个维度评估。每个指标达到目标值得 100 分,恰好达到阈值得及格分,之间线性;"
                "无数据的指标不计入得分,其权重由同组其他指标分担。",
                "Following seed 001 §6 (the indicator system), the platform is evaluated on "
                "security, user experience and risk control. An indicator at or beyond its "
                "target scores 100, exactly at its threshold the pass score, linear in "
                "between; an indicator without data is not scored and its weight goes to the "
                "other indicators of its group.",
            )
        ),
        Table(
            headers=[
                _t(lang, "维度", "Group"),
                _t(lang, "权重", "Weight"),
                _t(lang, "得分", "Score"),
                _t(lang, "数据覆盖", "Coverage"),
                _t(lang, "达标/未达标/无数据", "Pass / fail / no data"),
            ],
            rows=[
                [
                    _t(lang, group.name_zh, group.name_en),
                    f"{group.weight:g}",
                    _score(group.score, lang),
                    f"{group.coverage * 100:.0f}%",
                    f"{group.passed} / {group.failed} / {group.no_data}",
                ]
                for group in evaluation.groups
            ],
        ),
    ]
    if "scores" in chart_files:
        blocks.append(
            Image(chart_files["scores"], caption=_t(lang, "各指标得分", "Indicator scores"))
        )
    blocks += [
        Heading(_t(lang, "2. 指标明细", "2. Indicators"), 2),
        Table(
            headers=[
                _t(lang, "指标", "Indicator"),
                _t(lang, "数值", "Value"),
                _t(lang, "阈值", "Threshold"),
                _t(lang, "目标", "Target"),
                _t(lang, "方向", "Direction"),
                _t(lang, "权重", "Weight"),
                _t(lang, "得分", "Score"),
                _t(lang, "结果", "Result"),
                _t(lang, "较上次", "vs previous"),
                _t(lang, "较上期", "vs last period"),
            ],
            rows=[
                [
                    _t(lang, item.name_zh, item.name_en),
                    format_value(item.value, item.unit, lang),
                    format_value(item.threshold, item.unit, lang),
                    format_value(item.target, item.unit, lang),
                    direction_text(item.direction, lang),
                    f"{item.weight:g} ({item.effective_weight * 100:.1f}%)",
                    _score(item.score, lang),
                    state_text(item.state, lang),
                    trend_text(item.trend, lang),
                    trend_text(item.period_trend, lang),
                ]
                for item in evaluation.indicators
            ],
            col_widths=[3, 1.6, 1.4, 1.4, 1.6, 1.4, 1, 1.2, 1.4, 1.4],
        ),
        Heading(_t(lang, "3. 各指标与阈值对比", "3. Each indicator against its threshold"), 2),
    ]
    for item in evaluation.indicators:
        chart = chart_files.get(item.id)
        if chart is not None:
            blocks.append(
                Image(chart, caption=_t(lang, item.name_zh, item.name_en), width_fraction=0.7)
            )
    blocks += [
        Heading(_t(lang, "4. 趋势", "4. Trend"), 2),
        Paragraph(
            _t(
                lang,
                "历次保存的评估的综合得分与各维度得分。",
                "The overall and group scores of the stored evaluations.",
            )
        ),
    ]
    if "trend" in chart_files:
        blocks.append(Image(chart_files["trend"], caption=_t(lang, "得分趋势", "Score trend")))
    blocks.append(Heading(_t(lang, "5. 优化建议", "5. Optimisation suggestions"), 2))
    failed = [item for item in evaluation.indicators if item.state == "fail"]
    if not failed:
        blocks.append(
            Paragraph(_t(lang, "所有有数据的指标均达标。", "Every indicator with data passes."))
        )
    for item in failed:
        blocks.append(
            Heading(
                _t(
                    lang,
                    f"{item.name_zh}:{format_value(item.value, item.unit, lang)}"
                    f"(阈值 {format_value(item.threshold, item.unit, lang)})",
                    f"{item.name_en}: {format_value(item.value, item.unit, lang)} "
                    f"(threshold {format_value(item.threshold, item.unit, lang)})",
                ),
                3,
            )
        )
        blocks.append(Bullets(suggestions(item, lang)))
    missing = [item for item in evaluation.indicators if item.state == "no_data"]
    if missing:
        blocks.append(Heading(_t(lang, "无数据的指标", "Indicators without data"), 3))
        blocks.append(
            Bullets(
                [
                    f"{_t(lang, item.name_zh, item.name_en)}: "
                    + " ".join(suggestions(item, lang) or [_t(lang, "无数据。", "No data.")])
                    for item in missing
                ]
            )
        )
    blocks.append(
        Heading(_t(lang, "6. 口径与默认值来源", "6. What is measured, and why these numbers"), 2)
    )
    specs = {spec.id: spec.config for spec in system.indicators}
    blocks.append(
        Bullets(
            [
                f"{_t(lang, item.name_zh, item.name_en)}: {specs[item.id].source}"
                for item in evaluation.indicators
                if item.id in specs and specs[item.id].source
            ]
        )
    )
    return Document(
        title=_t(lang, "支付平台安全评估报告", "payguard evaluation report"),
        language=language,
        subtitle=_t(lang, f"评估周期 {period}", f"Period {period}"),
        blocks=blocks,
        author="payguard",
    )


def write(
    evaluation: EvaluationOut,
    history: list[EvaluationSummary],
    system: IndicatorSystem,
    out_dir: Path,
) -> list[Path]:
    """Write both languages' reports into ``out_dir``; returns the files written."""
    from payguard.documents import charts

    out_dir.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    drawn: dict[str, dict[str, Path]] = {}
    for language in LANGUAGES:
        # Without a CJK font the charts are English for both documents: draw them once.
        chart_language = language if charts.cjk_font() is not None else "en"
        if chart_language not in drawn:
            folder = out_dir / "charts" / chart_language
            drawn[chart_language] = _charts(evaluation, history, chart_language, folder)
        document = build_document(evaluation, system, language, drawn[chart_language])
        written = write_report(document, out_dir, STEMS[language])
        files += [written.markdown, written.pdf]
    return files
