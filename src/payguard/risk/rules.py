"""Rules of the risk engine: CEL expressions over the features, in versioned rule sets.

A rule (:class:`~payguard.risk.schemas.RuleDefinition`) is a CEL expression over the
feature dictionary of ``features.py`` that yields a bool; a hit adds the rule's points
and asks for at least its action. Rule sets are numbered versions in ``risk_rulesets``:
a saved set is a *draft*; publishing one is a four-eyes operation
(:func:`publish_action`); the newest published version is in force in every server
process within ``risk_reload_seconds`` (:class:`RulesCache`). While nothing is
published, the built-in pack ``risk/data/default_rules.yaml`` is in force
(:func:`builtin_ruleset`). :func:`backtest` replays stored decisions through any rule
set, and :func:`combine` is how the engine turns hits and model points into an action.

How a rule is checked before it can be saved (:func:`compile_rule`):

1. **Syntax.** ``cel.compile`` parses it; a parse error is reported with the rule id,
   the line and column, and the line with a caret under the error.
2. **Names.** Every variable it reads (``Program.variables()``, less the variables that
   macros such as ``exists(x, ...)`` bind) must be a feature of ``FEATURE_TYPES``; an
   unknown one is pointed at, with the closest feature name as a suggestion (difflib).
3. **Literal comparisons.** CEL's ``==`` between different types is simply false
   (``kind == 1``), never an error, so a feature compared by ``==``/``!=`` with a literal
   of another type (a string with a number, a flag with a string) is refused.
4. **Types, by evaluation.** The library has no static type checker, so the program is
   *evaluated* against sample activations built from ``FEATURE_TYPES`` for exactly the
   features it reads, with values of each feature's own type: zero / empty / false,
   one / "x" / true, the unknown marker -1, a large value, and then the numeric and
   string literals of the expression itself and their neighbours (``x > 5`` is tried
   with 4, 5 and 6), combined exhaustively when that is small and otherwise by a
   seeded sample. A "no such overload" (or "unsupported operation") ``TypeError`` in
   any of them (``amount * 1.5`` mixes int and double; ``kind > 1`` compares a string
   with a number) refuses the rule, naming the values that showed it; so does an
   unknown function, and any error at all (a division by zero) with the plain
   zero and one activations, which is what ordinary traffic looks like. Other errors
   with the searched values (an overflow at 10⁹) are data-dependent and allowed.
5. **Result.** Every evaluation must yield a bool.

Evaluation is a search for a counter-example, not a proof: a type error behind a
condition that none of the sample values satisfies can slip through. That is why the
engine never trusts a rule to run: a rule raising at run time counts as not hit and is
reported as a hit with mode ``error``; the decision goes on.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import math
import random
import re
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol

import cel
import yaml
from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from payguard import clock
from payguard.errors import Conflict, NotFound, ValidationProblem
from payguard.events import service as events
from payguard.identity.approvals import Action
from payguard.identity.models import ApprovalRequest
from payguard.identity.permissions import Permission
from payguard.observability import get_logger
from payguard.risk.engine import SEVERITY
from payguard.risk.engine import Action as Verdict
from payguard.risk.features import FEATURE_TYPES
from payguard.risk.models import RiskLabel, RiskReceipt, RuleSet
from payguard.risk.reloading import ReloadingCache
from payguard.risk.schemas import RuleDefinition
from payguard.settings import Settings

log = get_logger(__name__)

RULESET_PUBLISH = "risk.ruleset_publish"
DRAFT, PUBLISHED, SUPERSEDED = "draft", "published", "superseded"
VERDICTS: tuple[Verdict, ...] = ("allow", "challenge", "review", "block")
FLAGGED = frozenset({"review", "block"})
DEFAULT_RULES = "data/default_rules.yaml"


# ---------------------------------------------------------------------- hits and sets


@dataclass(frozen=True, slots=True)
class RuleHit:
    """One rule that matched (or, with mode ``error``, failed) for one payment."""

    rule_id: str
    reason_code: str
    action: str | None
    score: int
    mode: str  # active | shadow | error
    severe: bool
    reason_en: str
    reason_zh: str
    tip_en: str | None
    tip_zh: str | None


@dataclass(frozen=True)
class CompiledRule:
    definition: RuleDefinition
    program: Any  # cel.Program
    hit: RuleHit  # what a match reports: the same immutable object every time
    failure: RuleHit  # what a run-time error reports


class CompiledRuleSet:
    """A checked rule set, ready for the engine: ``evaluate(features) -> hits``."""

    def __init__(self, version: str, rules: Sequence[CompiledRule]) -> None:
        self.version = version
        self.rules: tuple[CompiledRule, ...] = tuple(rules)
        self._runnable: tuple[tuple[Any, RuleHit, RuleHit], ...] = tuple(
            (rule.program.execute, rule.hit, rule.failure)
            for rule in self.rules
            if rule.definition.enabled
        )

    @property
    def definitions(self) -> list[RuleDefinition]:
        return [rule.definition for rule in self.rules]

    def evaluate(self, features: Mapping[str, Any]) -> list[RuleHit]:
        """The enabled rules' hits for one feature dictionary, in rule order.

        One context per call, shared by every rule; it resolves only the features a
        rule reads, when it reads them (converting all of them up front would cost
        more than running the rules). A rule that raises is reported with mode
        ``error`` and counts as not hit."""
        context = cel.Context()
        context.set_variable_resolver(features.get)
        hits: list[RuleHit] = []
        for execute, hit, failure in self._runnable:
            try:
                result = execute(context)
            except Exception:
                hits.append(failure)
                continue
            if result is True:
                hits.append(hit)
            elif result is not False:
                hits.append(failure)
        return hits

    def __repr__(self) -> str:
        return f"CompiledRuleSet(version={self.version!r}, rules={len(self.rules)})"


class _Scored(Protocol):
    @property
    def mode(self) -> str: ...

    @property
    def score(self) -> int: ...

    @property
    def action(self) -> str | None: ...


def combine(hits: Iterable[_Scored], model_points: int, settings: Settings) -> tuple[Verdict, int]:
    """The action and score of one decision.

    score = min(100, sum of the active hits' points + the model's points); its band
    (``risk_block_score``, ``risk_review_score``, ``risk_challenge_score``) gives an
    action; the most severe of that and the active hits' own actions wins. Shadow and
    failed rules count for nothing."""
    points = model_points
    worst = 0
    for hit in hits:
        if hit.mode != "active":
            continue
        points += hit.score
        if hit.action is not None:
            worst = max(worst, SEVERITY[hit.action])
    score = max(0, min(100, points))
    if score >= settings.risk_block_score:
        band = 3
    elif score >= settings.risk_review_score:
        band = 2
    elif score >= settings.risk_challenge_score:
        band = 1
    else:
        band = 0
    return VERDICTS[max(band, worst)], score


def ranking_scorer(
    ruleset: CompiledRuleSet, settings: Settings
) -> Callable[[Mapping[str, Any]], float]:
    """A rule set as one number per payment, for ranking metrics against a model: the
    action first (a block outranks any score), then the points."""

    def score(features: Mapping[str, Any]) -> float:
        action, total = combine(ruleset.evaluate(features), 0, settings)
        return float(SEVERITY[action] * 100 + total)

    return score


def points(hits: Iterable[_Scored]) -> int:
    """The active hits' points, uncapped (a ranking score for comparisons with a model)."""
    return sum(hit.score for hit in hits if hit.mode == "active")


# ---------------------------------------------------------------------- checking

_TOKEN = re.compile(
    r"""
    (?P<string>[rRbB]{0,2}(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"))
  | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)[uU]?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/%<>!?:.,()\[\]{}])
  | (?P<space>\s+)
  | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_MACROS = frozenset({"all", "exists", "exists_one", "map", "filter"})
_KEYWORDS = {"true": "bool", "false": "bool", "null": "null"}
_PARSE_ERROR = re.compile(r"<input>:(\d+):(\d+):\s*(.+)")
_EXHAUSTIVE = 512  # combinations tried one by one up to this many
_SAMPLES = 512  # otherwise, this many seeded random ones
_PLAIN = 2  # the first activations: what ordinary traffic looks like
_BASE: tuple[dict[str, Any], ...] = (
    {"int": 0, "double": 0.0, "bool": False, "string": ""},
    {"int": 1, "double": 1.0, "bool": True, "string": "x"},
    {"int": -1, "double": -1.0, "bool": False, "string": ""},
    {"int": 1_000_000_000, "double": 1e9, "bool": True, "string": "x"},
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    start: int


def _tokens(expression: str) -> list[_Token]:
    found = []
    for match in _TOKEN.finditer(expression):
        kind = match.lastgroup or "other"
        if kind != "space":
            found.append(_Token(kind, match.group(), match.start()))
    return found


def _where(expression: str, offset: int) -> tuple[int, int, str]:
    """(line, column, the line with a caret under the column), 1-based."""
    line = expression.count("\n", 0, offset) + 1
    start = expression.rfind("\n", 0, offset) + 1
    end = expression.find("\n", offset)
    text = expression[start : end if end >= 0 else len(expression)]
    column = offset - start + 1
    return line, column, _caret(text, column)


def _caret(text: str, column: int) -> str:
    return f"    {text}\n    {' ' * (column - 1)}^"


def _problem(rule_id: str, message: str, *, at: tuple[int, int, str] | None = None) -> Exception:
    if at is None:
        return ValidationProblem(f"rule '{rule_id}': {message}", rule_id=rule_id)
    line, column, picture = at
    return ValidationProblem(
        f"rule '{rule_id}': {message} (line {line}, column {column})\n{picture}",
        rule_id=rule_id,
        line=line,
        column=column,
    )


def _syntax_problem(rule_id: str, expression: str, error: ValueError) -> Exception:
    found = _PARSE_ERROR.search(str(error))
    if found is None:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "cannot parse"
        return _problem(rule_id, f"the expression does not parse: {first[:300]}")
    line, column, message = int(found.group(1)), int(found.group(2)), found.group(3).strip()
    message = re.sub(r"^syntax error:\s*", "", message, flags=re.IGNORECASE)
    lines = expression.split("\n")
    text = lines[line - 1] if 0 < line <= len(lines) else ""
    expected = message.find(" expecting {")
    if expected >= 0 and len(message) - expected > 80:
        message = (
            message[:expected] + " (expected an operand here: a feature, a literal, '(' or '!')"
        )
    message = message[:300]
    return _problem(
        rule_id, f"syntax error: {message}", at=(line, max(1, column), _caret(text, max(1, column)))
    )


def _bound_names(tokens: list[_Token]) -> set[str]:
    """Variables that macros bind: ``list.exists(x, x > 1)`` binds ``x``."""
    bound = set()
    for index in range(len(tokens) - 4):
        dot, macro, paren, name, comma = tokens[index : index + 5]
        if (
            dot.text == "."
            and macro.text in _MACROS
            and paren.text == "("
            and name.kind == "name"
            and comma.text == ","
        ):
            bound.add(name.text)
    return bound


def _free_name_token(tokens: list[_Token], name: str) -> _Token | None:
    for index, token in enumerate(tokens):
        free = index == 0 or tokens[index - 1].text != "."
        if token.kind == "name" and token.text == name and free:
            return token
    return None


def _literal_kind(token: _Token) -> str | None:
    if token.kind == "string":
        return "string"
    if token.kind == "number":
        text = token.text.lower()
        if text.startswith("0x") or text.endswith("u"):
            return "int"
        return "double" if any(mark in text for mark in ".e") else "int"
    if token.kind == "name":
        return _KEYWORDS.get(token.text)
    return None


def _check_literal_comparisons(rule_id: str, expression: str, tokens: list[_Token]) -> None:
    for index in range(1, len(tokens) - 1):
        operator = tokens[index]
        if operator.text not in ("==", "!="):
            continue
        for feature_at, literal_at in ((index - 1, index + 1), (index + 1, index - 1)):
            feature, literal = tokens[feature_at], tokens[literal_at]
            if feature.kind != "name" or feature.text not in FEATURE_TYPES:
                continue
            if feature_at > 0 and tokens[feature_at - 1].text == ".":
                continue
            if feature_at + 1 < len(tokens) and tokens[feature_at + 1].text in ("(", "."):
                continue
            operand_goes_on = index + 2 < len(tokens) and tokens[index + 2].text in ".(["
            if feature_at == index - 1 and operand_goes_on:
                continue  # the literal only starts the operand ('x'.size())
            kind = _literal_kind(literal)
            expected = FEATURE_TYPES[feature.text]
            numeric = expected in ("int", "double")
            if kind is None or (numeric and kind in ("int", "double")) or kind == expected:
                continue
            raise _problem(
                rule_id,
                f"{feature.text} is {'an' if expected == 'int' else 'a'} {expected}; comparing "
                f"it with {literal.text} is always {'false' if operator.text == '==' else 'true'}",
                at=_where(expression, literal.start),
            )


def _literals(tokens: list[_Token]) -> tuple[list[float], list[str]]:
    numbers: list[float] = []
    strings: list[str] = []
    for token in tokens:
        if token.kind == "number":
            text = token.text.rstrip("uU")
            try:
                value = float(int(text, 16)) if text.lower().startswith("0x") else float(text)
            except ValueError:
                continue
            if math.isfinite(value) and value not in numbers:
                numbers.append(value)
        elif token.kind == "string":
            body = token.text.lstrip("rRbB")[1:-1]
            if body not in strings and "\\" not in body:
                strings.append(body)
    return numbers[:12], strings[:12]


def _candidates(kind: str, numbers: list[float], strings: list[str]) -> list[Any]:
    values: list[Any] = [base[kind] for base in _BASE]
    if kind == "int":
        for number in numbers:
            for value in (math.floor(number) - 1, math.floor(number), math.ceil(number) + 1):
                values.append(int(max(-(2**62), min(2**62, value))))
    elif kind == "double":
        for number in numbers:
            values += [number - 1.0, number - 0.01, number, number + 0.01, number + 1.0]
    elif kind == "string":
        values += strings
    return list(dict.fromkeys(values))


def _activations(
    names: list[str], expression: str, tokens: list[_Token]
) -> Iterator[dict[str, Any]]:
    """The plain activations, then the search over each feature's candidate values."""
    for base in _BASE:
        yield {name: base[FEATURE_TYPES[name]] for name in names}
    if not names:
        return
    numbers, strings = _literals(tokens)
    options = [_candidates(FEATURE_TYPES[name], numbers, strings) for name in names]
    if math.prod(len(values) for values in options) <= _EXHAUSTIVE:
        for combination in itertools.product(*options):
            yield dict(zip(names, combination, strict=True))
        return
    rng = random.Random(zlib.crc32(expression.encode()))
    for _ in range(_SAMPLES):
        yield {name: rng.choice(values) for name, values in zip(names, options, strict=True)}


def _shown(activation: Mapping[str, Any]) -> str:
    def cel_literal(value: Any) -> str:
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return repr(value)
        return str(value)

    return ", ".join(f"{name}={cel_literal(value)}" for name, value in activation.items())


def _is_type_error(error: Exception) -> bool:
    text = str(error).lower()
    return isinstance(error, TypeError | ValueError) and (
        "no such overload" in text or "unsupported operation" in text
    )


def _type_check(rule_id: str, expression: str, program: Any, names: list[str]) -> None:
    tokens = _tokens(expression)
    for index, activation in enumerate(_activations(names, expression, tokens)):
        try:
            result = program.execute(cel.Context(activation))
        except Exception as error:
            first = str(error).strip().split(". ")[0].splitlines()[0][:200]
            if first.startswith("Undefined variable or function"):
                raise _problem(rule_id, f"{first}: not a CEL function this engine knows") from None
            if _is_type_error(error):
                types = ", ".join(f"{name} is {FEATURE_TYPES[name]}" for name in names)
                raise _problem(
                    rule_id,
                    f"type error: {first} (with {_shown(activation) or 'no features'}). "
                    f"CEL does not convert between types: {types or 'no features read'}; "
                    "compare like with like, write double(x) to mix an int into double "
                    "arithmetic",
                ) from None
            if index < _PLAIN:
                raise _problem(
                    rule_id,
                    f"fails to evaluate for ordinary values ({_shown(activation)}): {first}; "
                    "guard the expression (e.g. count > 0 && amount / count > 10)",
                ) from None
            continue
        if not isinstance(result, bool):
            raise _problem(
                rule_id,
                f"the expression must yield a bool, but it yields {type(result).__name__} "
                f"({result!r}) for {_shown(activation) or 'any payment'}",
            )


def compile_rule(rule: RuleDefinition | Mapping[str, Any]) -> CompiledRule:
    """Check one rule and compile it; a ValidationProblem names the rule and the problem."""
    definition = _definition(rule, None)
    rule_id, expression = definition.id, definition.expression
    try:
        program = cel.compile(expression)
    except ValueError as error:
        raise _syntax_problem(rule_id, expression, error) from None
    except Exception as error:  # the parser must never take the API down
        raise _problem(rule_id, f"the expression does not compile: {error}") from None
    tokens = _tokens(expression)
    free = [name for name in program.variables() if name not in _bound_names(tokens)]
    for name in free:
        if name in FEATURE_TYPES:
            continue
        close = difflib.get_close_matches(name, list(FEATURE_TYPES), n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else " (the features: docs/risk-rules.md)"
        token = _free_name_token(tokens, name)
        raise _problem(
            rule_id,
            f"unknown feature '{name}'{hint}",
            at=_where(expression, token.start) if token else None,
        )
    _check_literal_comparisons(rule_id, expression, tokens)
    names = sorted({name for name in free if name in FEATURE_TYPES})
    _type_check(rule_id, expression, program, names)
    hit = RuleHit(
        rule_id=rule_id,
        reason_code=definition.reason_code,
        action=definition.action,
        score=definition.score,
        mode=definition.mode,
        severe=definition.severe,
        reason_en=definition.reason_en,
        reason_zh=definition.reason_zh,
        tip_en=definition.tip_en,
        tip_zh=definition.tip_zh,
    )
    failure = RuleHit(
        rule_id=rule_id,
        reason_code=definition.reason_code,
        action=None,
        score=0,
        mode="error",
        severe=False,
        reason_en=definition.reason_en,
        reason_zh=definition.reason_zh,
        tip_en=None,
        tip_zh=None,
    )
    return CompiledRule(definition, program, hit, failure)


def _definition(rule: RuleDefinition | Mapping[str, Any], index: int | None) -> RuleDefinition:
    if isinstance(rule, RuleDefinition):
        return rule
    where = f"rules[{index}]" if index is not None else "rule"
    if not isinstance(rule, Mapping):
        raise ValidationProblem(f"{where}: a rule is an object with id, expression, ...")
    name = rule.get("id")
    label = f"rule '{name}'" if isinstance(name, str) and name else where
    try:
        return RuleDefinition.model_validate(dict(rule))
    except ValidationError as error:
        first = error.errors()[0]
        place = "".join(f"{part}: " for part in first["loc"][:1])
        message = first["msg"].removeprefix("Value error, ")
        raise ValidationProblem(
            f"{label}: {place}{message}", rule_id=name if isinstance(name, str) else None
        ) from None


def check_rules(rules: Sequence[RuleDefinition | Mapping[str, Any]]) -> list[CompiledRule]:
    """Check and compile a whole rule set: every rule valid, ids unique."""
    if isinstance(rules, str | bytes) or not isinstance(rules, Sequence):
        raise ValidationProblem("rules: a list of rules")
    seen: dict[str, int] = {}
    compiled = []
    for index, rule in enumerate(rules):
        definition = _definition(rule, index)
        if definition.id in seen:
            raise ValidationProblem(
                f"rule '{definition.id}': duplicate id (rules {seen[definition.id] + 1} and "
                f"{index + 1}); each rule needs its own",
                rule_id=definition.id,
            )
        seen[definition.id] = index
        compiled.append(compile_rule(definition))
    return compiled


def compile_ruleset(
    version: str, rules: Sequence[RuleDefinition | Mapping[str, Any]]
) -> CompiledRuleSet:
    return CompiledRuleSet(version, check_rules(rules))


def load_rules_text(text: str | bytes, source: str = "the file") -> list[dict[str, Any]]:
    """Rules from YAML (or JSON): a list of rules, or a mapping with a ``rules`` list (an
    exported rule set; its other keys are ignored)."""
    try:
        loaded = yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValidationProblem(f"{source}: not valid YAML{where}: {error.problem}") from None
    except yaml.YAMLError as error:
        raise ValidationProblem(f"{source}: not valid YAML: {error}") from None
    if isinstance(loaded, Mapping):
        loaded = loaded.get("rules")
    if not isinstance(loaded, list) or not loaded:
        raise ValidationProblem(f"{source}: expected a list of rules (or a 'rules:' list)")
    if not all(isinstance(item, Mapping) for item in loaded):
        raise ValidationProblem(f"{source}: every rule is a mapping (id:, expression:, ...)")
    return [dict(item) for item in loaded]


def dump_rules_yaml(
    rules: Sequence[RuleDefinition], header: Mapping[str, Any] | None = None
) -> str:
    """A rule set as YAML that ``load_rules_text`` (and ``payguard risk rules save``) reads."""
    document: dict[str, Any] = dict(header or {})
    document["rules"] = [rule.model_dump(mode="json") for rule in rules]
    return str(yaml.safe_dump(document, allow_unicode=True, sort_keys=False, width=100))


# ---------------------------------------------------------------------- the built-in pack


def default_rules_text() -> bytes:
    return resources.files("payguard.risk").joinpath(DEFAULT_RULES).read_bytes()


def default_rules() -> list[RuleDefinition]:
    """The definitions of the built-in pack (risk/data/default_rules.yaml)."""
    return builtin_ruleset().definitions


@lru_cache(maxsize=1)
def builtin_ruleset() -> CompiledRuleSet:
    """The shipped pack, in force while no rule set has been published."""
    text = default_rules_text()
    digest = hashlib.sha256(text).hexdigest()[:8]
    return compile_ruleset(f"builtin-{digest}", load_rules_text(text, DEFAULT_RULES))


# ---------------------------------------------------------------------- storage


def save_draft(
    session: Session, rules: Sequence[RuleDefinition | Mapping[str, Any]], note: str, by: str
) -> RuleSet:
    """Check the rules and store them as the next version, a draft (in force: nothing)."""
    compiled = check_rules(rules)
    version = int(session.scalar(select(func.max(RuleSet.version))) or 0) + 1
    record = RuleSet(
        version=version,
        status=DRAFT,
        rules=[rule.definition.model_dump(mode="json") for rule in compiled],
        note=note.strip()[:2000],
        created_by=by[:64],
        created_at=clock.now(),
        published_at=None,
        approval_id=None,
    )
    session.add(record)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(
            f"version {version} was saved by someone else a moment ago; save again"
        ) from None
    events.emit(
        session,
        "risk.ruleset_saved",
        {"version": version, "rules": len(compiled), "created_by": record.created_by},
    )
    return record


def get_ruleset(session: Session, version: int) -> RuleSet:
    record = session.get(RuleSet, version)
    if record is None:
        raise NotFound(f"no rule set version {version}")
    return record


def list_rulesets(session: Session, *, limit: int = 200) -> list[RuleSet]:
    return list(session.scalars(select(RuleSet).order_by(RuleSet.version.desc()).limit(limit)))


def _published_version(session: Session) -> int | None:
    found = session.scalar(select(func.max(RuleSet.version)).where(RuleSet.status == PUBLISHED))
    return int(found) if found is not None else None


def published(session: Session) -> RuleSet | None:
    """The rule set in force, if one has been published."""
    version = _published_version(session)
    return session.get(RuleSet, version) if version is not None else None


def force_publish(
    session: Session, rules: Sequence[RuleDefinition | Mapping[str, Any]], note: str, by: str
) -> RuleSet:
    """Store the rules as the next version and put it in force at once, without the
    four-eyes approval (drills use it to stage a careless publication)."""
    record = save_draft(session, rules, note=note, by=by)
    record.status, record.published_at = PUBLISHED, clock.now()
    session.flush()
    return record


def compile_stored(record: RuleSet) -> CompiledRuleSet:
    return compile_ruleset(str(record.version), record.rules)


def active_ruleset(session: Session) -> tuple[CompiledRuleSet, RuleSet | None]:
    """What is in force now: the newest published version, else the built-in pack."""
    record = published(session)
    if record is None:
        return builtin_ruleset(), None
    return compile_stored(record), record


def resolve_ruleset(session: Session, reference: str) -> CompiledRuleSet:
    """A stored version's number, "builtin", or "active"."""
    name = reference.strip().lower()
    if name == "builtin":
        return builtin_ruleset()
    if name == "active":
        return active_ruleset(session)[0]
    return compile_stored(get_ruleset(session, _version_of(reference)))


def _version_of(target: str) -> int:
    text = target.strip().lower().removeprefix("v")
    if not text.isdigit() or len(text) > 9:
        raise ValidationProblem(f"target: a rule set version number, not '{target[:40]}'")
    return int(text)


def _check_publish(session: Session, target: str, params: dict[str, Any]) -> dict[str, Any]:
    if params:
        raise ValidationProblem("params: publishing a rule set takes none")
    record = get_ruleset(session, _version_of(target))
    if record.status == PUBLISHED:
        raise ValidationProblem(f"rule set {record.version} is already in force")
    check_rules(record.rules)
    return {}


def _publish(session: Session, approval: ApprovalRequest) -> dict[str, Any]:
    assert approval.target is not None
    record = get_ruleset(session, _version_of(approval.target))
    previous = _published_version(session)
    session.execute(
        update(RuleSet)
        .where(RuleSet.status == PUBLISHED, RuleSet.version != record.version)
        .values(status=SUPERSEDED)
        .execution_options(synchronize_session="fetch")
    )
    record.status, record.published_at, record.approval_id = PUBLISHED, clock.now(), approval.id
    session.flush()
    events.emit(
        session,
        "security.risk_ruleset_published",
        {
            "version": record.version,
            "previous": previous,
            "rules": len(record.rules),
            "approval_id": approval.id,
            "requested_by": approval.requested_by,
            "by_staff_id": approval.decided_by,
        },
    )
    return {"published": record.version, "previous": previous}


def publish_action() -> Action:
    """Four-eyes: put a rule set version in force (an older version rolls back)."""
    return Action(
        RULESET_PUBLISH,
        Permission.RISK_RULES_PUBLISH,
        "put a saved risk rule set version in force (an older one rolls back)",
        _check_publish,
        _publish,
    )


# ---------------------------------------------------------------------- hot reload


class RulesCache(ReloadingCache[CompiledRuleSet]):
    """The rule set in force in this process, for the engine.

    At most once every ``risk_reload_seconds`` one caller asks the database for the
    newest published version (one small query); only a new version is compiled. Other
    threads meanwhile go on with the set they have. A failed look-up keeps the set
    already loaded; a published set that no longer compiles (a feature it reads was
    removed) is logged and the last good set, or the built-in pack, stays in force."""

    def __init__(self, db: Any, settings: Settings) -> None:
        super().__init__(settings.risk_reload_seconds)
        self._db = db
        self._rules: CompiledRuleSet | None = None
        self._version: int | None = None

    def _value(self) -> CompiledRuleSet:
        assert self._rules is not None
        return self._rules

    def _reload(self) -> None:
        try:
            with self._db.read() as session:
                version = _published_version(session)
                if self._rules is not None and version == self._version:
                    return
                record = session.get(RuleSet, version) if version is not None else None
                stored = list(record.rules) if record is not None else None
        except Exception as error:
            if self._rules is None:
                raise
            log.warning("risk_rules_reload_failed", error_type=type(error).__name__)
            return
        finally:
            self._checked = time.monotonic()
        try:
            rules = builtin_ruleset() if stored is None else compile_ruleset(str(version), stored)
        except ValidationProblem as problem:
            log.error("risk_ruleset_invalid", version=version, detail=problem.detail)
            rules = self._rules or builtin_ruleset()
        self._rules, self._version = rules, version
        log.info("risk_rules_loaded", version=rules.version)


# ---------------------------------------------------------------------- backtest


@dataclass(frozen=True)
class ChangedDecision:
    payment_id: str
    decision_id: str
    at: datetime
    old_action: str
    new_action: str
    old_score: int
    new_score: int


@dataclass
class BacktestReport:
    ruleset_version: str
    start: datetime
    end: datetime
    receipts: int = 0
    skipped: int = 0
    changed_count: int = 0
    changed: list[ChangedDecision] = field(default_factory=list)
    old_actions: dict[str, int] = field(default_factory=dict)
    new_actions: dict[str, int] = field(default_factory=dict)
    labelled: int = 0
    precision: float | None = None
    recall: float | None = None
    old_precision: float | None = None
    old_recall: float | None = None
    alerts_per_day: dict[str, int] = field(default_factory=dict)
    old_alerts_per_day: dict[str, int] = field(default_factory=dict)


_CASTS: dict[str, Any] = {"int": int, "double": float, "bool": bool, "string": str}


def _typed(features: Mapping[str, Any]) -> dict[str, Any]:
    """Stored features with their declared types (JSON may turn 1.0 into 1)."""
    typed = dict(features)
    for name, kind in FEATURE_TYPES.items():
        value = typed.get(name)
        if value is None or type(value) is _CASTS[kind]:
            continue
        try:
            typed[name] = _CASTS[kind](value)
        except (TypeError, ValueError):
            typed.pop(name, None)
    return typed


def _precision_recall(
    flagged: Sequence[bool], labels: Sequence[str]
) -> tuple[float | None, float | None]:
    true_positive = sum(
        1 for hit, label in zip(flagged, labels, strict=True) if hit and label == "fraud"
    )
    flagged_count = sum(1 for hit in flagged if hit)
    frauds = sum(1 for label in labels if label == "fraud")
    precision = round(true_positive / flagged_count, 4) if flagged_count else None
    recall = round(true_positive / frauds, 4) if frauds else None
    return precision, recall


def backtest(
    session: Session,
    ruleset: CompiledRuleSet,
    start: datetime,
    end: datetime,
    settings: Settings | None = None,
    *,
    changed_limit: int = 1000,
) -> BacktestReport:
    """Replay the stored decisions of [start, end) through ``ruleset``.

    Each receipt's own stored features are used (as they were at the time, with the
    model's score then), and its model points are recomputed from the stored
    probability with ``risk_model_weight``, exactly as the engine combines them. The
    report lists the decisions that would change, precision and recall of "flagged"
    (review or block) against analysts' labels (or a receipt context's ``label``), for
    the rule set and for the decisions as they were, and the alerts per day."""
    if settings is None:
        from payguard.settings import get_settings

        settings = get_settings()
    if end <= start:
        raise ValidationProblem("to: must be after from")
    report = BacktestReport(ruleset_version=ruleset.version, start=start, end=end)
    old_actions: Counter[str] = Counter()
    new_actions: Counter[str] = Counter()
    old_alerts: Counter[str] = Counter()
    new_alerts: Counter[str] = Counter()
    outcomes: dict[str, tuple[bool, bool]] = {}
    context_labels: dict[str, str] = {}
    rows = session.execute(
        select(
            RiskReceipt.id,
            RiskReceipt.payment_id,
            RiskReceipt.at,
            RiskReceipt.features,
            RiskReceipt.action,
            RiskReceipt.score,
            RiskReceipt.model_score,
            RiskReceipt.context,
        )
        .where(RiskReceipt.at >= start, RiskReceipt.at < end)
        .order_by(RiskReceipt.at, RiskReceipt.id)
        .execution_options(yield_per=1000)
    )
    for receipt_id, payment_id, at, features, old_action, old_score, probability, context in rows:
        report.receipts += 1
        if not features:
            report.skipped += 1
            continue
        model_points = (
            round(float(probability) * 100 * settings.risk_model_weight)
            if probability is not None
            else 0
        )
        new_action, new_score = combine(ruleset.evaluate(_typed(features)), model_points, settings)
        key = payment_id or receipt_id
        day = at.date().isoformat()
        old_actions[old_action] += 1
        new_actions[new_action] += 1
        if old_action in FLAGGED:
            old_alerts[day] += 1
        if new_action in FLAGGED:
            new_alerts[day] += 1
        outcomes[key] = (old_action in FLAGGED, new_action in FLAGGED)
        label = (context or {}).get("label")
        if label in ("fraud", "legitimate"):
            context_labels[key] = label
        if new_action != old_action:
            report.changed_count += 1
            if len(report.changed) < changed_limit:
                reference = payment_id or (context or {}).get("payment_id") or receipt_id
                report.changed.append(
                    ChangedDecision(
                        str(reference), receipt_id, at, old_action, new_action, old_score, new_score
                    )
                )
    labels = dict(context_labels)
    keys = list(outcomes)
    for first in range(0, len(keys), 500):
        found = session.execute(
            select(RiskLabel.payment_id, RiskLabel.label).where(
                RiskLabel.payment_id.in_(keys[first : first + 500])
            )
        )
        labels.update({payment_id: label for payment_id, label in found})
    judged = [key for key in keys if labels.get(key) in ("fraud", "legitimate")]
    report.labelled = len(judged)
    verdicts = [labels[key] for key in judged]
    report.precision, report.recall = _precision_recall(
        [outcomes[key][1] for key in judged], verdicts
    )
    report.old_precision, report.old_recall = _precision_recall(
        [outcomes[key][0] for key in judged], verdicts
    )
    report.old_actions, report.new_actions = dict(old_actions), dict(new_actions)
    report.alerts_per_day = dict(sorted(new_alerts.items()))
    report.old_alerts_per_day = dict(sorted(old_alerts.items()))
    return report
