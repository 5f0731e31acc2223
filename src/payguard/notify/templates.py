"""Message templates: ``templates/<language>/<name>.txt``, Jinja2, a subject line and a body.

The first line is ``Subject: ...``; everything after the next blank line is the body.
Templates are plain text (no HTML escaping) and are rendered with StrictUndefined, so a
missing required value is an error, not an empty gap in a message to a customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound
from jinja2.exceptions import TemplateError, UndefinedError

from payguard.errors import ValidationProblem
from payguard.money import format_amount

TEMPLATES = Path(__file__).parent / "templates"
LANGUAGES = ("zh-CN", "en")

ROLE_NAMES = {
    "commander": ("应急指挥", "incident commander"),
    "technical_support": ("技术支持", "technical support"),
    "business_operations": ("业务保障", "business operations"),
    "legal_compliance": ("法律合规", "legal and compliance"),
    "scribe": ("记录员", "scribe"),
}
STATUS_NAMES = {
    "reported": ("已报告", "reported"),
    "confirmed": ("已确认", "confirmed"),
    "contained": ("已控制", "contained"),
    "recovered": ("已恢复", "recovered"),
    "closed": ("已关闭", "closed"),
}
GRADE_NAMES = {
    "I": ("特别重大", "particularly serious"),
    "II": ("重大", "serious"),
    "III": ("较大", "relatively serious"),
    "IV": ("一般", "ordinary"),
}


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


def _namer(names: dict[str, tuple[str, str]], language: str) -> Any:
    def name(value: object) -> str:
        zh, en = names.get(str(value), (str(value), str(value)))
        return zh if language == "zh-CN" else en

    return name


def _money(amount: object, currency: str = "CNY") -> str:
    try:
        return format_amount(int(str(amount)), currency)
    except (TypeError, ValueError):
        return str(amount)


@lru_cache(maxsize=4)
def _environment(language: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES / language),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
        autoescape=False,  # noqa: S701
    )
    env.filters["role_name"] = _namer(ROLE_NAMES, language)
    env.filters["status_name"] = _namer(STATUS_NAMES, language)
    env.filters["grade_name"] = _namer(GRADE_NAMES, language)
    env.filters["money"] = _money
    return env


def names() -> list[str]:
    """Templates that exist in every language."""
    sets = [{path.stem for path in (TEMPLATES / lang).glob("*.txt")} for lang in LANGUAGES]
    return sorted(set.intersection(*sets))


def render(name: str, language: str, context: dict[str, Any]) -> Rendered:
    if language not in LANGUAGES:
        raise ValidationProblem(f"language must be one of {', '.join(LANGUAGES)}")
    if "/" in name or "\\" in name or name.startswith("."):
        raise ValidationProblem(f"no template '{name}'")
    try:
        text = _environment(language).get_template(f"{name}.txt").render(**context)
    except TemplateNotFound as error:
        raise ValidationProblem(
            f"no template '{name}' in {language}; known: {', '.join(names())}"
        ) from error
    except UndefinedError as error:
        raise ValidationProblem(f"template '{name}' needs a value: {error.message}") from error
    except TemplateError as error:
        raise ValidationProblem(f"template '{name}' failed: {error.message}") from error
    head, _, body = text.partition("\n")
    if not head.startswith("Subject:"):
        raise ValidationProblem(f"template '{name}' ({language}) must start with 'Subject:'")
    # Collapse the blank lines that skipped optional parts leave behind.
    lines: list[str] = []
    for line in body.strip("\n").splitlines():
        if line.strip() or (lines and lines[-1].strip()):
            lines.append(line.rstrip())
    subject = " ".join(head.removeprefix("Subject:").split())
    return Rendered(subject=subject[:300], body="\n".join(lines).strip() + "\n")
