"""The post-incident report (事件总结报告), generated from the incident record.

Summary, impact, organisation, timeline (table and chart), response times, root cause,
measures, lessons and improvement items; Markdown and PDF, in zh-CN and en. Labels are
translated; what people wrote (title, notes, summary) is kept as they wrote it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from payguard.documents import (
    Block,
    Bullets,
    Document,
    Heading,
    Image,
    KeyValues,
    Language,
    Paragraph,
    ReportFiles,
    Table,
    write_report,
)
from payguard.incidents import grading
from payguard.incidents import service as incidents
from payguard.incidents.metrics import times_of
from payguard.incidents.models import Incident, IncidentTimelineEntry
from payguard.money import format_amount
from payguard.settings import Settings

LANGUAGES: tuple[Language, ...] = ("zh-CN", "en")

_L: dict[str, tuple[str, str]] = {
    "title": ("事件总结报告", "Post-incident report"),
    "overview": ("一、事件概况", "1. Overview"),
    "summary": ("二、事件经过与总结", "2. What happened"),
    "impact": ("三、影响范围", "3. Impact"),
    "organisation": ("四、组织与职责", "4. Organisation and duties"),
    "timeline": ("五、事件时间线", "5. Timeline"),
    "times": ("六、响应时效", "6. Response times"),
    "root_cause": ("七、根本原因", "7. Root cause"),
    "measures": ("八、处置措施", "8. Measures taken"),
    "lessons": ("九、经验教训", "9. Lessons learned"),
    "improvements": ("十、改进项", "10. Improvement items"),
    "links": ("十一、关联对象", "11. Linked objects"),
    "id": ("事件编号", "Incident id"),
    "name": ("事件名称", "Title"),
    "category": ("事件类别 (GB/T 20986-2023)", "Category (GB/T 20986-2023)"),
    "grade": ("事件级别", "Grade"),
    "grade_computed": ("按影响计算的级别", "Grade computed from impact"),
    "override": ("级别调整理由", "Grade override reason"),
    "status": ("状态", "Status"),
    "source": ("来源", "Source"),
    "drill": ("演练批次", "Drill run"),
    "reported_at": ("报告时间", "Reported"),
    "detected_at": ("发现时间", "Detected"),
    "acknowledged_at": ("确认时间", "Confirmed"),
    "contained_at": ("控制时间", "Contained"),
    "recovered_at": ("恢复时间", "Recovered"),
    "closed_at": ("结束时间", "Closed"),
    "people": ("影响人数", "People affected"),
    "money": ("涉及资金", "Money at risk"),
    "hours": ("业务中断时长(小时)", "Hours of interruption"),
    "regions": ("影响省级行政区数", "Provincial regions affected"),
    "role": ("角色", "Role"),
    "staff": ("人员", "Staff"),
    "assigned": ("指派时间", "Assigned"),
    "time": ("时间", "Time"),
    "kind": ("类型", "Kind"),
    "actor": ("执行者", "Actor"),
    "event": ("事件", "Event"),
    "ttd": ("发现用时", "Time to detect"),
    "tta": ("确认用时", "Time to acknowledge"),
    "ttc": ("控制用时", "Time to contain"),
    "ttr": ("恢复用时", "Time to recover"),
    "item": ("改进项", "Item"),
    "owner": ("负责人", "Owner"),
    "due": ("完成期限", "Due"),
    "link_kind": ("对象类型", "Kind"),
    "ref": ("编号", "Reference"),
    "none": ("(无)", "(none)"),
    "not_recorded": ("(尚未记录)", "(not recorded yet)"),
    "chart": ("事件时间线图", "Incident timeline"),
    "actions": ("平台自动与人工执行的处置动作:", "Containment and recovery actions on record:"),
    "tz": ("时间均为", "Times are in"),
}
_STATUS = {
    "reported": ("已报告", "reported"),
    "confirmed": ("已确认", "confirmed"),
    "contained": ("已控制", "contained"),
    "recovered": ("已恢复", "recovered"),
    "closed": ("已结束", "closed"),
}
_SOURCE = {"alert": ("告警", "alert"), "manual": ("人工", "manual"), "drill": ("演练", "drill")}
_TASK_STATUS = {
    "open": ("进行中", "open"),
    "done": ("已完成", "done"),
    "cancelled": ("已取消", "cancelled"),
}
_KIND = {
    "alert": "告警",
    "status": "状态",
    "action": "处置",
    "approval": "审批",
    "notification": "通知",
    "note": "记录",
    "grade": "定级",
    "role": "职责",
    "task": "任务",
    "link": "关联",
    "drill": "演练",
    "playbook": "预案",
}
# Timeline kinds grouped into the chart's lanes.
_LANE = {
    "alert": "detect",
    "status": "status",
    "grade": "status",
    "action": "contain",
    "playbook": "contain",
    "approval": "contain",
    "notification": "notify",
    "role": "organise",
    "task": "organise",
    "note": "record",
    "link": "detect",
    "drill": "drill",
}


@dataclass(frozen=True)
class IncidentReport:
    incident_id: str
    files: dict[str, ReportFiles]  # language -> files


def _t(key: str, language: Language) -> str:
    zh, en = _L[key]
    return zh if language == "zh-CN" else en


def _pick(pair: tuple[str, str], language: Language) -> str:
    return pair[0] if language == "zh-CN" else pair[1]


def _when(moment: datetime | None, zone: ZoneInfo, language: Language) -> str:
    if moment is None:
        return _t("not_recorded", language)
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None, language: Language) -> str:
    if seconds is None:
        return _t("not_recorded", language)
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if language == "zh-CN":
        parts = [f"{hours}小时" if hours else "", f"{minutes}分" if minutes else "", f"{secs}秒"]
    else:
        parts = [f"{hours} h " if hours else "", f"{minutes} min " if minutes else "", f"{secs} s"]
    return "".join(parts).strip()


def _text_or(value: str | None, language: Language) -> str:
    return value.strip() if value and value.strip() else _t("not_recorded", language)


def build_document(
    session: Session, settings: Settings, incident: Incident, language: Language, chart: Path | None
) -> Document:
    zone = ZoneInfo(settings.risk_timezone)
    entries = incidents.timeline(session, incident.id)
    roles = incidents.roles_of(session, incident.id)
    improvements = incidents.tasks_of(session, incident.id, kind="improvement")
    links = incidents.links_of(session, incident.id)
    times = times_of(incident)
    names = _staff_names(session)
    zh = language == "zh-CN"

    grade = f"{incident.grade} {grading.grade_name(incident.grade, language)}"
    overview: list[tuple[str, str]] = [
        (_t("id", language), incident.id),
        (_t("name", language), incident.title),
        (
            _t("category", language),
            f"{incident.category} {grading.category_name(incident.category, language)}",
        ),
        (_t("grade", language), grade),
        (
            _t("grade_computed", language),
            f"{incident.grade_computed} {grading.grade_name(incident.grade_computed, language)}",
        ),
    ]
    if incident.grade_override_reason:
        overview.append((_t("override", language), incident.grade_override_reason))
    overview += [
        (_t("status", language), _pick(_STATUS[incident.status], language)),
        (_t("source", language), _pick(_SOURCE.get(incident.source, ("-", "-")), language)),
    ]
    if incident.drill_run_id:
        overview.append((_t("drill", language), incident.drill_run_id))
    for key in (
        "reported_at",
        "detected_at",
        "acknowledged_at",
        "contained_at",
        "recovered_at",
        "closed_at",
    ):
        overview.append((_t(key, language), _when(getattr(incident, key), zone, language)))

    impact = incident.impact
    currency = str(impact.get("currency") or settings.default_currency)
    impact_items = [
        (_t("people", language), str(impact.get("people_affected", 0))),
        (_t("money", language), format_amount(int(impact.get("money_at_risk", 0)), currency)),
        (_t("hours", language), f"{impact.get('hours_interrupted', 0):g}"),
        (_t("regions", language), str(impact.get("regions_affected", 0))),
    ]

    blocks: list[Block] = [
        Paragraph(f"{_t('tz', language)} {settings.risk_timezone}."),
        Heading(_t("overview", language)),
        KeyValues(overview),
        Heading(_t("summary", language)),
        Paragraph(_text_or(incident.summary, language)),
        Heading(_t("impact", language)),
        KeyValues(impact_items),
        Heading(_t("organisation", language)),
    ]
    if roles:
        blocks.append(
            Table(
                headers=[_t("role", language), _t("staff", language), _t("assigned", language)],
                rows=[
                    [
                        _pick(incidents.ROLE_NAMES[role.role], language),
                        names.get(role.staff_id, role.staff_id),
                        _when(role.assigned_at, zone, language),
                    ]
                    for role in roles
                ],
            )
        )
    else:
        blocks.append(Paragraph(_t("none", language)))

    blocks.append(Heading(_t("timeline", language)))
    if chart is not None and chart.is_file():
        blocks.append(Image(path=chart, caption=_t("chart", language)))
    blocks.append(
        Table(
            headers=[
                _t("time", language),
                _t("kind", language),
                _t("actor", language),
                _t("event", language),
            ],
            rows=[
                [
                    entry.at.astimezone(zone).strftime("%m-%d %H:%M:%S"),
                    _KIND.get(entry.kind, entry.kind) if zh else entry.kind,
                    names.get(entry.actor, entry.actor),
                    entry.text,
                ]
                for entry in entries
            ],
            col_widths=[0.16, 0.11, 0.15, 0.58],
        )
    )

    blocks += [
        Heading(_t("times", language)),
        KeyValues(
            [
                (_t("ttd", language), _duration(times.time_to_detect_s, language)),
                (_t("tta", language), _duration(times.time_to_acknowledge_s, language)),
                (_t("ttc", language), _duration(times.time_to_contain_s, language)),
                (_t("ttr", language), _duration(times.time_to_recover_s, language)),
            ]
        ),
        Heading(_t("root_cause", language)),
        Paragraph(_text_or(incident.root_cause, language)),
        Heading(_t("measures", language)),
        Paragraph(_text_or(incident.measures, language)),
    ]
    actions = [entry for entry in entries if entry.kind in ("action", "playbook")]
    if actions:
        blocks.append(Paragraph(_t("actions", language)))
        blocks.append(
            Bullets(
                [
                    f"{entry.at.astimezone(zone).strftime('%H:%M:%S')} {entry.text}"
                    for entry in actions
                ]
            )
        )
    blocks += [Heading(_t("lessons", language)), Paragraph(_text_or(incident.lessons, language))]
    blocks.append(Heading(_t("improvements", language)))
    if improvements:
        blocks.append(
            Table(
                headers=[
                    _t("item", language),
                    _t("owner", language),
                    _t("due", language),
                    _t("status", language),
                ],
                rows=[
                    [
                        task.title,
                        names.get(task.owner_staff_id or "", task.owner_staff_id or "-"),
                        _when(task.due_at, zone, language) if task.due_at else "-",
                        _pick(_TASK_STATUS[task.status], language),
                    ]
                    for task in improvements
                ],
                col_widths=[0.5, 0.18, 0.2, 0.12],
            )
        )
    else:
        blocks.append(Paragraph(_t("none", language)))
    blocks.append(Heading(_t("links", language)))
    if links:
        blocks.append(
            Table(
                headers=[_t("link_kind", language), _t("ref", language)],
                rows=[[link.kind, link.ref] for link in links],
            )
        )
    else:
        blocks.append(Paragraph(_t("none", language)))
    title = f"{_t('title', language)}{'：' if zh else ': '}{incident.title}"
    return Document(
        title=title,
        language=language,
        subtitle=f"{incident.id} · {grade}",
        blocks=blocks,
        author="payguard",
    )


def _staff_names(session: Session) -> dict[str, str]:
    from payguard.identity import service as identity

    return identity.staff_names(session)


def timeline_chart(
    entries: list[IncidentTimelineEntry], out: Path, title: str, tz: str
) -> Path | None:
    if not entries:
        return None
    from payguard.documents import charts

    points = [
        charts.TimelinePoint(at=entry.at, lane=_LANE.get(entry.kind, "record"), label=entry.text)
        for entry in entries
        if entry.kind != "grade"
    ]
    return charts.timeline_chart(
        points,
        out,
        title,
        lanes=["detect", "status", "contain", "notify", "organise", "record", "drill"],
        tz=tz,
    )


def default_out_dir(settings: Settings, incident_id: str) -> Path:
    base = settings.incident_reports_dir or settings.var_dir / "reports" / "incidents"
    return base / incident_id


def write_incident_report(
    session: Session,
    settings: Settings,
    incident_id: str,
    *,
    out_dir: Path | None = None,
    languages: tuple[Language, ...] | list[Language] = LANGUAGES,
    chart: bool = True,
) -> IncidentReport:
    """Write ``post-incident-<lang>.md`` and ``.pdf`` per language into ``out_dir``."""
    incident = incidents.get_incident(session, incident_id)
    folder = out_dir or default_out_dir(settings, incident.id)
    folder.mkdir(parents=True, exist_ok=True)
    picture = None
    if chart:
        picture = timeline_chart(
            incidents.timeline(session, incident.id),
            folder / "timeline.png",
            f"{incident.id} timeline",
            settings.risk_timezone,
        )
    files: dict[str, ReportFiles] = {}
    for language in dict.fromkeys(languages):
        document = build_document(session, settings, incident, language, picture)
        files[language] = write_report(document, folder, f"post-incident-{language}")
    return IncidentReport(incident_id=incident.id, files=files)
