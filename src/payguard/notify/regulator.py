"""The draft of the report to the regulator, and the reporting clock of the grade.

Seed 002 lists what the first report carries: the time, the scope, the trend, and the
measures taken. The clock: PBoC Order 2025 No. 4 (《中国人民银行业务领域网络安全事件报告
管理办法》) sets reporting time limits by grade; the minutes per grade are settings
(``notify_regulator_deadline_minutes``) because docs/notify.md could not confirm every
value from the official text — see there before relying on the defaults.

The draft works from plain facts (:class:`IncidentFacts`), so it does not depend on the
incident tables; :func:`facts_for_incident` reads them from ``payguard.incidents`` when
that domain is installed.
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from payguard import clock
from payguard.errors import NotFound, ValidationProblem
from payguard.money import format_amount
from payguard.notify import templates
from payguard.notify.models import Notification
from payguard.notify.schemas import DeadlineOut, RegulatorReportOut
from payguard.settings import Settings

BASIS = (
    "PBoC Order 2025 No. 4 reporting time limits by grade, as configured "
    "(PAYGUARD_NOTIFY_REGULATOR_DEADLINE_MINUTES); see docs/notify.md"
)
_DATETIME_FIELDS = (
    "detected_at",
    "reported_at",
    "first_evidence_at",
    "contained_at",
    "recovered_at",
    "closed_at",
    "filed_at",
)


@dataclass
class IncidentFacts:
    incident_id: str
    title: str
    grade: str
    detected_at: datetime
    category: str = "10"
    status: str = "reported"
    reported_at: datetime | None = None
    first_evidence_at: datetime | None = None
    contained_at: datetime | None = None
    recovered_at: datetime | None = None
    closed_at: datetime | None = None
    impact: dict[str, Any] = field(default_factory=dict)
    summary: str | None = None
    measures: list[str] = field(default_factory=list)
    trend: str | None = None  # None: said from the status
    links: dict[str, int] = field(default_factory=dict)  # kind -> how many linked
    alerts_after_containment: int = 0
    filed_at: datetime | None = None  # when a report was sent: the clock stops

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IncidentFacts:
        known = {name for name in cls.__dataclass_fields__}
        unknown = set(data) - known
        if unknown:
            raise ValidationProblem(f"unknown incident facts: {', '.join(sorted(unknown))}")
        values = dict(data)
        for name in _DATETIME_FIELDS:
            if isinstance(values.get(name), str):
                values[name] = datetime.fromisoformat(values[name])
        try:
            return cls(**values)
        except TypeError as error:
            raise ValidationProblem(f"incident facts: {error}") from error


@dataclass
class RegulatorReportDraft:
    incident_id: str
    language: str
    title: str
    grade: str
    category: str
    status: str
    time: dict[str, datetime | None]
    scope: list[str]
    trend: str
    measures: list[str]
    deadline: DeadlineOut
    summary: str | None
    timezone: str
    subject: str = ""
    text: str = ""

    def _local(self, moment: datetime | None) -> str | None:
        if moment is None:
            return None
        return moment.astimezone(ZoneInfo(self.timezone)).strftime("%Y-%m-%d %H:%M:%S %z")

    def category_label(self) -> str:
        try:
            grading: Any = importlib.import_module("payguard.incidents.grading")
            name = str(grading.category_name(self.category, self.language))
        except (ImportError, AttributeError):
            return self.category
        return self.category if name == self.category else f"{self.category} {name}"

    def template_context(self) -> dict[str, Any]:
        return {
            "incident_id": self.incident_id,
            "title": self.title,
            "grade": self.grade,
            "category": self.category_label(),
            "status": self.status,
            "detected_at": self._local(self.time.get("detected_at")),
            "first_evidence_at": self._local(self.time.get("first_evidence_at")),
            "contained_at": self._local(self.time.get("contained_at")),
            "recovered_at": self._local(self.time.get("recovered_at")),
            "report_due_at": self._local(self.deadline.report_due_at),
            "deadline_minutes": self.deadline.minutes,
            "full_report_due_at": self._local(self.deadline.full_report_due_at),
            "full_report_minutes": self.deadline.full_report_minutes,
            "final_report_days": self.deadline.final_report_days,
            "overdue": self.deadline.overdue,
            "scope": self.scope,
            "trend": self.trend,
            "measures": self.measures,
            "summary": self.summary,
        }

    def to_out(self) -> RegulatorReportOut:
        return RegulatorReportOut(
            incident_id=self.incident_id,
            language=self.language,
            title=self.title,
            grade=self.grade,
            category=self.category,
            status=self.status,
            time=self.time,
            scope=self.scope,
            trend=self.trend,
            measures=self.measures,
            deadline=self.deadline,
            subject=self.subject,
            text=self.text,
        )

    def write(self, out_dir: Path, stem: str | None = None) -> Any:
        """Markdown and PDF of the draft (payguard.documents); returns ReportFiles."""
        from payguard.documents import (
            Bullets,
            Document,
            Heading,
            KeyValues,
            Paragraph,
            write_report,
        )

        zh = self.language == "zh-CN"
        grade_name = templates._namer(templates.GRADE_NAMES, self.language)(self.grade)
        status_name = templates._namer(templates.STATUS_NAMES, self.language)(self.status)
        local = {key: self._local(value) or "-" for key, value in self.time.items()}
        due = self._local(self.deadline.report_due_at) or "-"
        full_due = self._local(self.deadline.full_report_due_at) or "-"
        doc = Document(
            title=("网络安全事件报告（草稿）" if zh else "Cyber security incident report (draft)"),
            subtitle=f"{self.incident_id} · {self.title}",
            language="zh-CN" if zh else "en",
            blocks=[
                Paragraph(
                    "本报告为草稿，须经法律合规岗审核后报送。依据：《中国人民银行业务领域网络"
                    "安全事件报告管理办法》（中国人民银行令〔2025〕第4号）。"
                    if zh
                    else "Draft for review by legal and compliance before it is filed. "
                    "Basis: PBoC Order 2025 No. 4."
                ),
                Heading("一、事件概况" if zh else "1. Incident", level=2),
                KeyValues(
                    [
                        ("编号" if zh else "Reference", self.incident_id),
                        ("级别" if zh else "Grade", f"{self.grade} ({grade_name})"),
                        ("分类" if zh else "Category", self.category_label()),
                        ("状态" if zh else "Status", status_name),
                    ]
                ),
                Heading("二、时间" if zh else "2. Time", level=2),
                KeyValues(
                    [
                        ("发现时间" if zh else "Detected", local.get("detected_at", "-")),
                        ("控制时间" if zh else "Contained", local.get("contained_at", "-")),
                        ("恢复时间" if zh else "Recovered", local.get("recovered_at", "-")),
                        (
                            "简要报告时限" if zh else "Brief report due",
                            f"{due}（发现后 {self.deadline.minutes} 分钟）"
                            if zh
                            else f"{due} ({self.deadline.minutes} minutes after detection)",
                        ),
                        (
                            "事发报告时限" if zh else "Full report due",
                            f"{full_due}（发现后 {self.deadline.full_report_minutes} 分钟）"
                            if zh
                            else f"{full_due} ({self.deadline.full_report_minutes} minutes)",
                        ),
                    ]
                ),
                Heading("三、影响范围" if zh else "3. Scope", level=2),
                Bullets(self.scope or ["-"]),
                Heading("四、发展趋势" if zh else "4. Trend", level=2),
                Paragraph(self.trend),
                Heading("五、已采取的措施" if zh else "5. Measures taken", level=2),
                Bullets(self.measures or (["暂无记录"] if zh else ["none recorded yet"])),
            ],
        )
        return write_report(doc, out_dir, stem or f"regulator-report-{self.incident_id}")


def _say(language: str, zh: str, en: str) -> str:
    return zh if language == "zh-CN" else en


def _scope(facts: IncidentFacts, language: str) -> list[str]:
    impact = facts.impact or {}
    lines: list[str] = []
    if impact.get("people_affected") is not None:
        n = impact["people_affected"]
        lines.append(_say(language, f"受影响人数：{n}", f"People affected: {n}"))
    if impact.get("money_at_risk") is not None:
        money = format_amount(int(impact["money_at_risk"]), str(impact.get("currency", "CNY")))
        lines.append(_say(language, f"涉及资金：{money}", f"Money at risk: {money}"))
    if impact.get("hours_interrupted") is not None:
        h = impact["hours_interrupted"]
        lines.append(_say(language, f"业务中断时长：{h} 小时", f"Service interrupted: {h} hours"))
    if impact.get("regions_affected") is not None:
        r = impact["regions_affected"]
        lines.append(_say(language, f"涉及省级行政区：{r} 个", f"Regions affected: {r}"))
    if facts.links:
        parts = ", ".join(f"{kind} × {count}" for kind, count in sorted(facts.links.items()))
        lines.append(_say(language, f"关联对象：{parts}", f"Linked: {parts}"))
    return lines or [_say(language, "影响范围尚在评估", "Scope still being assessed")]


def _trend(facts: IncidentFacts, language: str) -> str:
    if facts.trend:
        return facts.trend
    if facts.status in ("recovered", "closed"):
        text = _say(
            language, "业务已恢复，影响已消除。", "Service recovered; the impact has ended."
        )
    elif facts.status == "contained":
        text = _say(
            language,
            "事件已得到控制，影响未继续扩大。",
            "Contained; the impact is no longer growing.",
        )
    else:
        text = _say(
            language,
            "事件仍在处置中，影响可能继续扩大，正在调查。",
            "Still being handled; the impact may still grow; under investigation.",
        )
    if facts.alerts_after_containment:
        n = facts.alerts_after_containment
        text += _say(
            language, f"控制后仍有 {n} 条新告警。", f" {n} new alert(s) after containment."
        )
    return text


def deadline_for(
    settings: Settings,
    grade: str,
    detected_at: datetime,
    *,
    now: datetime,
    filed_at: datetime | None,
) -> DeadlineOut:
    table = settings.notify_regulator_deadline_minutes
    minutes = table.get(grade, table.get("IV", 1440))
    full_table = settings.notify_regulator_full_report_minutes
    full = max(full_table.get(grade, full_table.get("IV", 2880)), minutes)
    due = detected_at + timedelta(minutes=minutes)
    stop = filed_at or now
    return DeadlineOut(
        grade=grade,
        minutes=minutes,
        clock_starts_at=detected_at,
        report_due_at=due,
        seconds_left=int((due - now).total_seconds()),
        overdue=stop > due,
        full_report_minutes=full,
        full_report_due_at=detected_at + timedelta(minutes=full),
        final_report_days=settings.notify_regulator_final_report_days,
        basis=BASIS,
    )


def draft_from_facts(
    settings: Settings, facts: IncidentFacts, *, language: str, now: datetime | None = None
) -> RegulatorReportDraft:
    if language not in templates.LANGUAGES:
        raise ValidationProblem(f"language must be one of {', '.join(templates.LANGUAGES)}")
    moment = now or clock.now()
    draft = RegulatorReportDraft(
        incident_id=facts.incident_id,
        language=language,
        title=facts.title,
        grade=facts.grade,
        category=facts.category,
        status=facts.status,
        time={
            "detected_at": facts.detected_at,
            "reported_at": facts.reported_at,
            "first_evidence_at": facts.first_evidence_at,
            "contained_at": facts.contained_at,
            "recovered_at": facts.recovered_at,
            "closed_at": facts.closed_at,
        },
        scope=_scope(facts, language),
        trend=_trend(facts, language),
        measures=list(facts.measures),
        deadline=deadline_for(
            settings, facts.grade, facts.detected_at, now=moment, filed_at=facts.filed_at
        ),
        summary=facts.summary,
        timezone=settings.risk_timezone,
    )
    rendered = templates.render("regulator_report", language, draft.template_context())
    draft.subject, draft.text = rendered.subject, rendered.body
    return draft


def facts_for_incident(session: Session, incident_id: str) -> IncidentFacts:
    """The facts of a recorded incident, read through ``payguard.incidents.service``."""
    try:
        incidents: Any = importlib.import_module("payguard.incidents.service")
    except ImportError as error:  # pragma: no cover - incidents ship with the platform
        raise NotFound("the incidents domain is not installed; pass the facts instead") from error
    incident = incidents.get_incident(session, incident_id)
    entries = list(incidents.timeline(session, incident_id))
    measures: list[str] = []
    after_containment = 0
    for entry in entries:
        if entry.kind in ("action", "status"):
            measures.append(f"{entry.at.strftime('%Y-%m-%d %H:%M')} {entry.text}")
        if (
            entry.kind == "alert"
            and incident.contained_at is not None
            and entry.at > incident.contained_at
        ):
            after_containment += 1
    if getattr(incident, "measures", None):
        measures += [line.strip() for line in incident.measures.splitlines() if line.strip()]
    links: dict[str, int] = {}
    for item in incidents.links_of(session, incident_id):
        links[item.kind] = links.get(item.kind, 0) + 1
    filed_at = session.scalar(
        select(Notification.sent_at)
        .where(
            Notification.incident_id == incident_id,
            Notification.template == "regulator_report",
            Notification.status == "sent",
        )
        .order_by(Notification.sent_at)
        .limit(1)
    )
    return IncidentFacts(
        incident_id=incident.id,
        title=incident.title,
        grade=incident.grade,
        category=incident.category,
        status=incident.status,
        detected_at=incident.detected_at,
        reported_at=incident.reported_at,
        first_evidence_at=getattr(incident, "first_evidence_at", None),
        contained_at=incident.contained_at,
        recovered_at=incident.recovered_at,
        closed_at=incident.closed_at,
        impact=dict(incident.impact or {}),
        summary=incident.summary,
        measures=measures,
        links=links,
        alerts_after_containment=after_containment,
        filed_at=filed_at,
    )


def facts_as_dict(facts: IncidentFacts) -> dict[str, Any]:
    return asdict(facts)
