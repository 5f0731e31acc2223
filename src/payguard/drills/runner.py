"""Running one drill: platform up, actors seeded, attack and background traffic played,
detections awaited, the result scored, stored and (optionally) written as a record."""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from payguard import clock, ids
from payguard.db.engine import Database
from payguard.drills import controls as controls_module
from payguard.drills import scenarios as scenario_registry
from payguard.drills import scoring
from payguard.drills import service as drills
from payguard.drills.context import DrillContext, ProgressCallback, StepRecord
from payguard.drills.observe import Observation, Observer, Records
from payguard.drills.sandbox import Platform, Sandbox, Target
from payguard.drills.scenario import Scenario
from payguard.errors import ValidationProblem
from payguard.settings import Settings


@dataclass
class RunOptions:
    target: str | None = None  # None: a sandbox
    disabled: tuple[str, ...] = ()
    out_dir: Path | None = None  # where the record goes; None: no record files
    plan_id: str | None = None
    keep_sandbox: bool = False
    record_languages: tuple[str, ...] = ("zh-CN", "en")


def _seconds(later: datetime | None, earlier: datetime) -> float | None:
    return None if later is None else round(max(0.0, (later - earlier).total_seconds()), 3)


def _platform(
    options: RunOptions, run_id: str, settings: Settings
) -> AbstractContextManager[Platform]:
    if options.target:
        return Target(options.target, settings)
    return Sandbox(
        run_id, controls_module.resolve(list(options.disabled)), keep=options.keep_sandbox
    )


def run(
    scenario_name: str,
    settings: Settings,
    options: RunOptions | None = None,
    *,
    on_progress: ProgressCallback | None = None,
) -> dict[str, Any]:
    """Run ``scenario_name``; the run is stored in ``settings``' database (the drill
    history), whatever platform it attacked. Returns the stored result."""
    options = options or RunOptions()
    scenario = scenario_registry.get(scenario_name)
    controls_module.resolve(list(options.disabled))
    if options.target and options.disabled:
        raise ValidationProblem(
            "--disable-control works in the sandbox only: a drill never weakens a running platform"
        )
    run_id = ids.new_id("drill_run")
    home = Database(settings.database_url)
    try:
        target = options.target or "sandbox"
        home.transact(
            lambda session: drills.start_run(
                session,
                run_id=run_id,
                scenario=scenario.name,
                target=target,
                plan_id=options.plan_id,
            )
        )
        try:
            with _platform(options, run_id, settings) as platform:
                result = _play(scenario, platform, run_id, options, on_progress)
        except Exception as error:
            detail = f"{type(error).__name__}: {error}"[:500]
            home.transact(lambda session: drills.fail_run(session, run_id, detail))
            raise
        record_dir: str | None = None
        if options.out_dir is not None:
            from payguard.drills import record

            plan = None
            if options.plan_id is not None:
                plan = home.transact(
                    lambda session: drills.get_plan(session, str(options.plan_id))
                ).model_dump(mode="json")
            files = record.write_record(
                result,
                scenario,
                options.out_dir / run_id,
                languages=options.record_languages,
                plan=plan,
                timezone=settings.risk_timezone,
            )
            record_dir = str(options.out_dir / run_id)
            result["record_files"] = [str(path) for path in files]
        home.transact(lambda session: drills.finish_run(session, run_id, result, record_dir))
        return result
    finally:
        home.dispose()


def _play(
    scenario: Scenario,
    platform: Platform,
    run_id: str,
    options: RunOptions,
    on_progress: ProgressCallback | None,
) -> dict[str, Any]:
    context = DrillContext(
        run_id=run_id,
        base_url=platform.base_url,
        settings=platform.settings,
        db=platform.db,
        on_progress=on_progress,
    )
    errors: list[str] = []
    try:
        context.progress("phase", None, "setup")
        # The incident responder on duty (seed 003: the command centre), with TOTP.
        context.staff("responder", "incident_commander")
        scenario.setup(context)
        context.note("Drill actors seeded; the drill begins.", "演练人员与账户准备完毕，演练开始。")
        background = scenario.background or (lambda ctx: ctx.normal_traffic())
        background_errors: list[str] = []

        def play_background() -> None:
            try:
                background(context)
            except Exception as error:  # recorded, the attack goes on
                background_errors.append(f"background: {type(error).__name__}: {error}")

        thread = threading.Thread(target=play_background, name="drill-background", daemon=True)
        thread.start()
        context.progress("phase", None, "attack")
        try:
            scenario.attack(context)
        except Exception as error:
            errors.append(f"attack: {type(error).__name__}: {error}")
            errors.append(traceback.format_exc(limit=3)[-800:])
        thread.join(timeout=60)
        context.stop_background.set()
        errors += background_errors
        context.progress("phase", None, "observe")
        observer = Observer(platform.db, context)
        steps, records = _await_signals(observer, context, scenario)
        money = observer.money()
        context.note("Attack over; results collected.", "攻击结束，结果已收集。")
    finally:
        context.close()
    integrity = scoring.Integrity(
        money.invariants_ok,
        money.invariant_problems,
        money.acknowledged,
        money.acknowledged_lost,
        money.duplicate_debits,
    )
    graded = scoring.score(steps, integrity)
    if errors:
        graded.passed = False
        graded.failures += [line for line in errors if not line.startswith("Traceback")][:3]
    return _result(
        scenario, context, platform, options, steps, records, observer, integrity, graded, errors
    )


def _await_signals(
    observer: Observer, context: DrillContext, scenario: Scenario
) -> tuple[list[scoring.StepScore], Records]:
    """Poll the platform's records until every attack step's signals are seen, or the
    scenario's settle time is over (incidents and playbooks come asynchronously)."""
    # Signals seen as alternatives (an incident besides a refusal) are waited for too,
    # within the settle time: they belong in the record.
    deadline = time.monotonic() + scenario.settle_seconds
    while True:
        records = observer.records()
        steps = [_score_step(observer, step, records) for step in context.steps]
        complete = all(
            step.detected and (step.contained or step.money_lost or step.breaches)
            for step in steps
            if step.attack
        )
        incident_expected = any(
            signal.kind in ("incident", "playbook")
            for step in context.steps
            for signal in (*step.detect, *step.contain)
        )
        if (
            complete
            and (not incident_expected or _incident_signals_seen(observer, context, records))
        ) or time.monotonic() > deadline:
            return steps, records
        time.sleep(0.5)


def _incident_signals_seen(observer: Observer, context: DrillContext, records: Records) -> bool:
    for step in context.steps:
        for signal in (*step.detect, *step.contain):
            if signal.kind in ("incident", "playbook") and not observer.resolve(
                step, signal, records
            ):
                return False
    return True


def _first(
    observer: Observer, step: StepRecord, signals: tuple[Any, ...], records: Records
) -> Observation | None:
    firsts = [found[0] for signal in signals if (found := observer.resolve(step, signal, records))]
    return min(firsts, key=lambda item: item.at) if firsts else None


def _score_step(observer: Observer, step: StepRecord, records: Records) -> scoring.StepScore:
    lost = sum(
        payment.amount
        for payment in step.payments
        if records.payment_status.get(payment.payment_id, payment.status) in ("confirmed", "posted")
    ) + sum(amount for _at, _what, amount in step.breaches)
    scored = scoring.StepScore(
        key=step.key,
        title_en=step.title_en,
        title_zh=step.title_zh,
        attack=step.is_attack,
        required=step.required,
        started_at=step.started_at,
        money_at_risk=step.money_at_risk,
        money_lost=lost,
        detect_within_s=step.detect_within_s,
        contain_within_s=step.contain_within_s,
        refusals=[refusal.code for refusal in step.refusals],
        breaches=[what for _at, what, _amount in step.breaches],
        expected_detection=[signal.describe() for signal in step.detect],
    )
    detected = _first(observer, step, step.detect, records)
    if detected is not None:
        scored.detected, scored.detected_by = True, detected.detail
        scored.time_to_detect_s = _seconds(detected.at, step.started_at)
    contained = _first(observer, step, step.contain, records)
    if contained is not None and lost == 0 and not step.breaches:
        scored.contained, scored.contained_by = True, contained.detail
        scored.time_to_contain_s = _seconds(contained.at, step.started_at)
    return scored


def _result(
    scenario: Scenario,
    context: DrillContext,
    platform: Platform,
    options: RunOptions,
    steps: list[scoring.StepScore],
    records: Records,
    observer: Observer,
    integrity: scoring.Integrity,
    graded: scoring.Score,
    errors: list[str],
) -> dict[str, Any]:
    attacks = [step for step in steps if step.attack]
    timeline = _timeline(context, records, observer)
    playbooks_run = {item["action"].split("/", 1)[0] for item in _playbook_dicts(records)}
    playbook_steps = _playbook_dicts(records)
    return {
        "run_id": context.run_id,
        "scenario": scenario.name,
        "title_en": scenario.title_en,
        "title_zh": scenario.title_zh,
        "seed": scenario.seed,
        "target": platform.target,
        "disabled_controls": list(options.disabled),
        "controls": list(scenario.controls),
        "started_at": context.started_at.isoformat(),
        "attack_started_at": (context.attack_started_at or context.started_at).isoformat(),
        "finished_at": clock.now().isoformat(),
        "passed": graded.passed,
        "score": graded.score,
        "score_parts": {key: round(value, 2) for key, value in graded.parts.items()},
        "failures": graded.failures,
        "errors": errors,
        "attacks": len(attacks),
        "attacks_defended": sum(step.defended for step in attacks),
        "time_to_detect_s": scoring.worst_time([step.time_to_detect_s for step in attacks]),
        "time_to_contain_s": scoring.worst_time([step.time_to_contain_s for step in attacks]),
        "money_at_risk": sum(step.money_at_risk for step in attacks),
        "money_lost": sum(step.money_lost for step in steps),
        "integrity": {
            "ok": integrity.ok,
            "invariants_ok": integrity.invariants_ok,
            "invariant_problems": integrity.invariant_problems,
            "acknowledged_payments": integrity.acknowledged,
            "acknowledged_lost": integrity.acknowledged_lost,
            "duplicate_debits": integrity.duplicate_debits,
        },
        "steps": [scoring.step_dict(step) for step in steps],
        "incidents": [
            {
                "id": item.id,
                "title": item.title,
                "grade": item.grade,
                "status": item.status,
                "reported_at": item.reported_at.isoformat(),
                "contained_at": item.contained_at.isoformat() if item.contained_at else None,
            }
            for item in records.incidents
        ],
        "playbook_steps": playbook_steps,
        "background": dict(context.background_stats),
        "actors": sorted(
            [actor.username for actor in context.actors.values()]
            + [staff.username for staff in context.staff_actors.values()]
        ),
        "timeline": timeline,
        "expected_playbook": scenario.playbook,
        "playbooks_run": sorted(playbooks_run),
        "improvements": improvements(
            scenario, steps, graded, options, playbooks_run if records.incidents else None
        ),
    }


def _playbook_dicts(records: Records) -> list[dict[str, str]]:
    return [
        {"incident_id": item.id, "at": at.isoformat(), "action": action, "status": status}
        for item in records.incidents
        for at, action, status in item.playbook_steps
    ]


def _timeline(context: DrillContext, records: Records, observer: Observer) -> list[dict[str, str]]:
    """Every timestamped line of the drill: the attacker's side and the platform's."""
    lines: list[dict[str, str]] = []

    def add(at: datetime, lane: str, text_en: str, text_zh: str | None = None) -> None:
        lines.append({"at": at.isoformat(), "lane": lane, "en": text_en, "zh": text_zh or text_en})

    for at, text_en, text_zh in context.notes:
        add(at, "drill", text_en, text_zh)
    for step in context.steps:
        add(
            step.started_at, "attack", f"attack step: {step.title_en}", f"攻击步骤：{step.title_zh}"
        )
        for refusal in step.refusals:
            add(
                refusal.at,
                "detect",
                f"platform refused: {refusal.status} {refusal.code}",
                f"平台拒绝：{refusal.status} {refusal.code}",
            )
        for payment in step.payments:
            add(
                payment.at,
                "attack",
                f"attacker payment {payment.payment_id}: {payment.status}",
                f"攻击者支付 {payment.payment_id}：{payment.status}",
            )
        for at, text_en, text_zh in step.notes:
            add(at, "attack", text_en, text_zh)
    lanes = {"alert": "detect", "incident": "detect", "playbook": "contain", "event": "platform"}
    since = context.attack_started_at or context.started_at
    for item in observer.timeline(records):
        if item.at < since or item.detail.startswith(QUIET_TOPICS):
            continue  # the setup's own approvals; duplicates of the playbook step lines
        lane = lanes.get(item.kind, "platform")
        if item.kind == "event" and item.detail.startswith(
            ("controls.", "ledger.account_status_changed")
        ):
            lane = "contain"
        text_en, text_zh = TOPIC_TEXT.get(item.detail, (item.detail, item.detail))
        add(item.at, lane, text_en, text_zh)
    lines.sort(key=lambda line: line["at"])
    return lines


# Events whose line the timeline already has in another form.
QUIET_TOPICS = ("playbook.step_done", "playbook.step_failed", "incident.linked")
TOPIC_TEXT = {
    "security.login_locked": ("login locked after repeated failures", "多次失败后登录被锁定"),
    "security.instruction_rejected": ("payment instruction rejected", "支付指令被拒绝"),
    "ledger.account_status_changed": ("account status changed", "账户状态变更"),
    "incident.opened": ("incident opened", "事件已开立"),
    "incident.status_changed": ("incident status changed", "事件状态变更"),
    "incident.task_added": ("incident task added", "事件任务已添加"),
    "playbook.run_started": ("playbook started", "处置预案启动"),
    "playbook.run_finished": ("playbook finished", "处置预案完成"),
    "controls.account_frozen": ("account frozen", "账户已冻结"),
    "controls.sessions_revoked": ("sessions revoked", "会话已撤销"),
    "controls.password_reset_forced": ("password reset forced", "已强制重置密码"),
    "controls.step_up_raised": ("step-up raised", "已提高二次验证要求"),
    "controls.channel_suspended": ("payment channel suspended", "支付通道已暂停"),
    "controls.funds_secured": ("merchant funds secured", "商户资金已转入安全账户"),
    "approval.requested": ("four-eyes approval requested", "已提交四眼复核申请"),
    "approval.executed": ("four-eyes approval executed", "四眼复核已执行"),
}


def improvements(
    scenario: Scenario,
    steps: list[scoring.StepScore],
    graded: scoring.Score,
    options: RunOptions,
    playbooks_run: set[str] | None = None,
) -> list[dict[str, str]]:
    """Improvement items (seed 000: feedback and continuous improvement).

    ``playbooks_run``: the playbooks of the drill's incidents (None: no incident opened,
    so no playbook was due)."""
    items: list[dict[str, str]] = []
    for name in options.disabled:
        items.append(
            {
                "en": f"Control '{name}' was switched off for this drill: keep it on in "
                "production; this run shows the exposure without it.",
                "zh": f"本次演练关闭了控制措施“{name}”：生产环境必须保持开启；"
                "本次结果显示缺少该措施时的风险暴露。",
            }
        )
    for step in steps:
        if not step.attack:
            continue
        if not step.detected:
            items.append(
                {
                    "en": f"'{step.title_en}' was not detected: review the controls "
                    f"{', '.join(scenario.controls)} and the alert-to-incident mapping.",
                    "zh": f"“{step.title_zh}”未被发现：检查相关控制措施"
                    f"（{', '.join(scenario.controls)}）及告警转事件规则。",
                }
            )
        elif not step.in_time:
            items.append(
                {
                    "en": f"'{step.title_en}' was handled too slowly: shorten intake and "
                    "playbook start times.",
                    "zh": f"“{step.title_zh}”处置过慢：缩短事件受理与预案启动时间。",
                }
            )
        if step.money_lost:
            items.append(
                {
                    "en": f"'{step.title_en}' lost {step.money_lost} (minor units): add a "
                    "control that holds or refuses this payment.",
                    "zh": f"“{step.title_zh}”造成资金损失 {step.money_lost}（最小货币单位）："
                    "需增加拦截或暂挂该类支付的控制。",
                }
            )
    if scenario.playbook and playbooks_run is not None and scenario.playbook not in playbooks_run:
        ran = ", ".join(sorted(playbooks_run)) or "none"
        items.append(
            {
                "en": f"The playbook '{scenario.playbook}' was expected but did not run "
                f"(ran: {ran}): check the alert-to-incident mapping.",
                "zh": f"预期启动处置预案“{scenario.playbook}”但未启动（已启动：{ran}）："
                "请检查告警转事件规则。",
            }
        )
    if graded.passed and not items:
        items.append(
            {
                "en": "Keep the drill scheduled; re-run it after every change to the "
                "controls it exercises.",
                "zh": "保持定期演练；相关控制措施每次变更后重新演练。",
            }
        )
    return items


def progress_printer(echo: Callable[[str], None]) -> ProgressCallback:
    """A plain-text progress callback (the CLI shows a live table instead)."""

    def show(what: str, step: StepRecord | None, detail: str) -> None:
        if step is not None:
            echo(f"[{what}] {step.key}: {detail}")
        else:
            echo(f"[{what}] {detail}")

    return show
