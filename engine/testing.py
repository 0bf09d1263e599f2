"""Rule tests: load ``*_test.yaml`` case files, run each case through the engine in dry-run, diff expectations.

A case file is YAML (docs/testing.md)::

    now: "2026-11-23 12:00:00"          # optional: the clock of every case (now() in rules)
    cases:
      - name: EU orders are routed
        order: fixtures/eu-order.json    # a fixture (relative to this file) or an inline mapping
        overrides: {shipping: {country: FR}}
        expect:
          fired_includes: [Route EU orders]

``load_cases`` validates the files (a bad case is reported at its ``file:line``, never a
traceback), ``run_tests`` runs every case on one engine built once per ruleset (explain="full",
so a failing ``fired`` says which clause kept the rule from firing, and coverage can see every
clause), and returns a ``TestRun`` the CLI prints as text, JSON or JUnit XML.
"""

from __future__ import annotations

import copy
import datetime as _dt
import difflib
import json
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from . import ast
from .catalogue import ActionSpec, Catalogue, EventSpec
from .diagnostics import Diagnostic, Diagnostics
from .engine import Decision, Engine, default_actions, default_events
from .explain import FULL, deciding_line
from .models import dump_value
from .ruleset import Ruleset, RulesetError, build_ruleset, find_rule_files, format_diagnostics, read_sources
from .runtime import utcnow

PASSED, FAILED, ERROR = "passed", "failed", "error"
TEST_FILE_SUFFIXES = ("_test.yaml", "_test.yml")
INLINE_RULES = "inline.rules"  # the file name check errors of a case's inline `rules:` carry
DEFAULT_EVENT = "Order is Imported"
RULES_CASE = "<rules>"  # the pseudo-case that reports rules which do not check


# ---- the case model ------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class ActionExpectation(_Strict):
    """One expected action: its name, a subset of its rendered parameters, optionally its rule and status."""

    action: str
    params: dict[str, Any] = {}
    rule: str | None = None
    status: str | None = None

    def render(self) -> str:
        return _action_text(self.action, self.params)


class CheckErrorExpectation(_Strict):
    """One error the checker must report: its code, optionally where (``[FILE:]LINE[:COL]``) and a message part."""

    code: str
    at: str | None = None
    message_contains: str | None = None

    def render(self) -> str:
        parts = [self.code]
        if self.at:
            parts.append(f"at {self.at}")
        if self.message_contains:
            parts.append(f"containing {json.dumps(self.message_contains, ensure_ascii=False)}")
        return " ".join(parts)

    def matches(self, diagnostic: Diagnostic) -> bool:
        if diagnostic.code != self.code:
            return False
        if self.message_contains is not None and self.message_contains not in diagnostic.message:
            return False
        return self.at is None or _location_matches(self.at, diagnostic.loc)


class Expectations(_Strict):
    fired: list[str] | None = None
    fired_includes: list[str] | None = None
    not_fired: list[str] | None = None
    actions: list[ActionExpectation] | None = None
    actions_include: list[ActionExpectation] | None = None
    emitted: list[str] | None = None
    order: dict[Any, Any] | None = None
    check_errors: list[CheckErrorExpectation] | None = None

    @field_validator("actions", "actions_include", mode="before")
    @classmethod
    def _action_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"action": v} if isinstance(v, str) else v for v in value]
        return value

    @field_validator("check_errors", mode="before")
    @classmethod
    def _code_shorthand(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"code": v} if isinstance(v, str) else v for v in value]
        return value

    def is_vacuous(self) -> bool:
        """True when nothing is really expected (an empty ``fired_includes`` checks nothing)."""
        exact = (self.fired, self.actions, self.emitted, self.check_errors)
        loose = (self.fired_includes, self.not_fired, self.actions_include, self.order)
        return all(v is None for v in exact) and not any(loose)


Order = dict[Any, Any] | str


class CaseSpec(_Strict):
    """A case as written, after ``params`` were merged in (one CaseSpec per generated case)."""

    name: str
    event: str | None = None  # default "Order is Imported" unless button or schedule is given
    button: str | None = None
    schedule: str | None = None
    payload: dict[str, Any] = {}
    order: Order | None = None
    orders: list[Order] | None = None
    overrides: dict[Any, Any] | None = None
    store: dict[str, Any] | str | None = None
    now: str | None = None
    rules: str | None = None
    params: list[dict[str, Any]] | None = None
    expect: Expectations | None = None

    @model_validator(mode="after")
    def _one_trigger(self) -> "CaseSpec":
        given = [key for key in ("event", "button", "schedule") if getattr(self, key) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of event, button or schedule, not {' and '.join(given)}")
        if given and given[0] != "event" and self.payload:
            raise ValueError(f"a {given[0]} has no payload")
        return self

    @field_validator("now")
    @classmethod
    def _valid_now(cls, value: str | None) -> str | None:
        if value is not None:
            parse_now(value)
        return value


FILE_KEYS = ("cases", "now", "store")
PARAM_KEYS = ("id",)


def parse_now(text: str) -> _dt.datetime:
    """``YYYY-MM-DD HH:MM:SS`` (or ISO 8601, or a date) as an aware UTC datetime; ValueError otherwise."""
    try:
        moment = _dt.datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise ValueError(f"not a date and time: {text!r} (write YYYY-MM-DD HH:MM:SS, UTC)") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=_dt.timezone.utc)
    return moment.astimezone(_dt.timezone.utc)


# ---- results -------------------------------------------------------------------------------------


@dataclass
class CaseResult:
    """How one case came out.  ``messages`` are the readable lines of a failure or an error."""

    file: str
    line: int
    name: str
    status: str
    messages: list[str] = field(default_factory=list)
    duration: float = 0.0
    decisions: list[Decision] = field(default_factory=list, repr=False)
    on_main_ruleset: bool = True  # False for a case with its own inline rules

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"

    @property
    def located_id(self) -> str:
        return f"{self.file}:{self.line}::{self.name}" if self.line else self.id

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "name": self.name, "status": self.status,
                "messages": list(self.messages), "duration": round(self.duration, 6)}


@dataclass
class TestRun:
    """Every case result, the ruleset they ran on, and the ruleset's errors if it did not build."""

    __test__ = False  # not a pytest class

    results: list[CaseResult]
    ruleset: Ruleset | None = None
    rules_error: RulesetError | None = None
    test_files: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def ok(self) -> bool:
        return bool(self.results) and self.rules_error is None and all(r.status == PASSED for r in self.results)

    def summary(self) -> str:
        """``N passed, M failed`` (``, K errors`` only when there are errors)."""
        text = f"{self.count(PASSED)} passed, {self.count(FAILED)} failed"
        errors = self.count(ERROR)
        return text + (f", {errors} error{'s' if errors != 1 else ''}" if errors else "")

    def decisions(self) -> list[Decision]:
        """Every decision of every case that ran on the main ruleset (what coverage measures)."""
        return [d for r in self.results if r.on_main_ruleset for d in r.decisions]

    def rules_error_text(self) -> str:
        if self.rules_error is None:
            return ""
        return format_diagnostics(self.rules_error.diagnostics, self.rules_error.sources)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "summary": {"passed": self.count(PASSED), "failed": self.count(FAILED), "errors": self.count(ERROR),
                        "text": self.summary()},
            "files": list(self.test_files),
            "cases": [r.to_json() for r in self.results],
        }
        if self.rules_error is not None:
            data["rules_errors"] = [d.to_json() for d in self.rules_error.diagnostics]
        return data

    def to_junit(self) -> str:
        """JUnit XML: one ``testsuite`` per test file, one ``testcase`` per case."""
        root = ET.Element("testsuites", name="ruledesk", tests=str(len(self.results)),
                          failures=str(self.count(FAILED)), errors=str(self.count(ERROR)),
                          time=f"{sum(r.duration for r in self.results):.3f}")
        by_file: dict[str, list[CaseResult]] = {}
        for result in self.results:
            by_file.setdefault(result.file, []).append(result)
        for file, results in by_file.items():
            suite = ET.SubElement(root, "testsuite", name=file, tests=str(len(results)),
                                  failures=str(sum(r.status == FAILED for r in results)),
                                  errors=str(sum(r.status == ERROR for r in results)), skipped="0",
                                  time=f"{sum(r.duration for r in results):.3f}")
            for result in results:
                case = ET.SubElement(suite, "testcase", classname=file, name=result.name, file=file,
                                     line=str(result.line), time=f"{result.duration:.3f}")
                if result.status != PASSED:
                    tag = "failure" if result.status == FAILED else "error"
                    detail = ET.SubElement(case, tag, message=result.messages[0] if result.messages else tag,
                                           type="expectation" if tag == "failure" else "error")
                    detail.text = "\n".join(result.messages)
        ET.indent(root)
        return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ---- discovery and loading -----------------------------------------------------------------------


def find_test_files(test_paths: Iterable[str], rule_paths: Iterable[str]) -> list[str]:
    """Test files: those given (files, or directories searched for ``*_test.yaml``); by default the
    ``*_test.yaml`` files under the rule directories and ``NAME_test.yaml`` next to a rule file."""
    found: set[str] = set()
    explicit = list(test_paths)
    for raw in explicit or rule_paths:
        path = Path(raw)
        if path.is_dir():
            found.update(str(p) for suffix in TEST_FILE_SUFFIXES for p in path.rglob("*" + suffix) if p.is_file())
        elif explicit:
            found.add(str(path))
        else:
            found.update(str(sibling) for suffix in TEST_FILE_SUFFIXES
                         if (sibling := path.with_name(path.stem + suffix)).is_file())
    return sorted(found)


@dataclass
class Case:
    """One runnable case: the validated spec, the resolved input, and where it is written."""

    file: str
    line: int
    name: str
    spec: CaseSpec
    order: dict[str, Any] | None
    store: dict[str, Any] | str
    now: _dt.datetime | None
    where: "_Where"

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"


class _Where:
    """Lines of keys in the YAML a case came from: a ``params`` entry first, then the case itself."""

    def __init__(self, file: str, *nodes: Any) -> None:
        self.file = file
        self.nodes = [n for n in nodes if n is not None]

    def line(self, *path: Any) -> int:
        best = 0
        for node in self.nodes:
            line, depth = _yaml_line(node, path)
            if depth == len(path) and line:
                return line
            best = best or line
        return best

    def at(self, *path: Any) -> str:
        return f"{self.file}:{self.line(*path)}"


def _yaml_line(node: Any, path: Sequence[Any]) -> tuple[int, int]:
    """The 1-based line of the deepest key of ``path`` found in ``node``, and how many keys were found."""
    line = node.lc.line + 1 if hasattr(node, "lc") else 0
    current = node
    for depth, key in enumerate(path):
        if isinstance(current, CommentedMap) and key in current:
            line = current.lc.key(key)[0] + 1
        elif isinstance(current, CommentedSeq) and isinstance(key, int) and 0 <= key < len(current):
            line = current.lc.item(key)[0] + 1
        else:
            return line, depth
        current = current[key]
    return line, len(path)


class CaseFileError(Exception):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def load_cases(path: str, default_now: _dt.datetime | None = None) -> list[Case | CaseResult]:
    """Every case of one test file; a problem with the file or a case becomes an error CaseResult."""
    try:
        data = _read_yaml(path)
        if not isinstance(data, CommentedMap):
            raise CaseFileError(1, "a test file is a mapping with a `cases:` list")
        unknown = [k for k in data if k not in FILE_KEYS]
        if unknown:
            raise CaseFileError(_yaml_line(data, [unknown[0]])[0], _unknown_key(unknown[0], FILE_KEYS, "test file"))
        cases = data.get("cases")
        if not isinstance(cases, CommentedSeq) or not cases:
            raise CaseFileError(_yaml_line(data, ["cases"])[0], "`cases:` must be a non-empty list of cases")
        file_now = parse_now(data["now"]) if data.get("now") is not None else default_now
    except CaseFileError as exc:
        return [CaseResult(path, exc.line, "<file>", ERROR, [f"{path}:{exc.line}: {exc}"])]
    except ValueError as exc:  # a bad `now:`
        line = _yaml_line(data, ["now"])[0]
        return [CaseResult(path, line, "<file>", ERROR, [f"{path}:{line}: now: {exc}"])]
    file_store = _plain(data.get("store")) or {}
    loaded: list[Case | CaseResult] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(cases):
        line = cases.lc.item(index)[0] + 1
        for item in _expand(path, line, raw, file_now, file_store):
            if isinstance(item, Case):
                if item.name in seen:
                    item = CaseResult(path, item.line, item.name, ERROR,
                                      [f"{path}:{item.line}: a case named {item.name!r} is already at line "
                                       f"{seen[item.name]}; names must be unique in a file"])
                else:
                    seen[item.name] = item.line
            loaded.append(item)
    return loaded


def _read_yaml(path: str) -> Any:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CaseFileError(0, "no such test file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CaseFileError(0, f"cannot read the test file: {exc}") from None
    try:
        return YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise CaseFileError(line, f"invalid YAML: {exc.problem or exc.context}") from None


def _expand(path: str, line: int, raw: Any, file_now, file_store) -> list[Case | CaseResult]:
    """One raw case -> the cases it stands for (one per ``orders`` entry and ``params`` entry)."""
    name = raw.get("name") if isinstance(raw, CommentedMap) else None
    label = name if isinstance(name, str) else f"<case at line {line}>"

    def error(at: int, message: str) -> CaseResult:
        return CaseResult(path, at, label, ERROR, [f"{path}:{at}: {message}"])

    if not isinstance(raw, CommentedMap):
        return [error(line, "a case is a mapping with at least `name:` and `expect:`")]
    params = raw.get("params")
    if params is not None and (not isinstance(params, CommentedSeq) or not params
                               or not all(isinstance(p, CommentedMap) for p in params)):
        return [error(_yaml_line(raw, ["params"])[0], "`params:` must be a non-empty list of mappings")]
    orders = raw.get("orders")
    if orders is not None and (not isinstance(orders, CommentedSeq) or not orders):
        return [error(_yaml_line(raw, ["orders"])[0], "`orders:` must be a non-empty list of orders")]
    if orders is not None and "order" in raw:
        return [error(_yaml_line(raw, ["orders"])[0], "give either `order:` or `orders:`, not both")]

    # (name suffix, order entry, params entry, line of the entry): one per generated case
    variants: list[tuple[str, Any, CommentedMap | None, int]] = [("", None, None, line)]
    if orders is not None:
        variants = [(_order_label(entry, i), entry, None, orders.lc.item(i)[0] + 1) for i, entry in enumerate(orders)]
    if params is not None:
        combined = []
        for suffix, order, _, order_line in variants:
            for i, entry in enumerate(params):
                label_part = str(entry["id"]) if entry.get("id") is not None else str(i + 1)
                combined.append((f"{suffix}, {label_part}" if suffix else label_part, order, entry,
                                 params.lc.item(i)[0] + 1 if orders is None else order_line))
        variants = combined

    expanded: list[Case | CaseResult] = []
    for suffix, order, param, entry_line in variants:
        data = _plain(raw)
        data.pop("params", None)
        data.pop("orders", None)
        if param is not None:
            extra = {k: v for k, v in _plain(param).items() if k not in PARAM_KEYS}
            bad = [k for k in extra if k in ("name", "params", "orders")]
            if bad:
                return [error(_yaml_line(param, [bad[0]])[0], f"`{bad[0]}` cannot be set in a params entry")]
            data = deep_merge(data, extra)
        if order is not None:
            data["order"] = _plain(order)
        where = _Where(path, param, raw)
        if isinstance(data.get("name"), str) and suffix:
            data["name"] = f"{data['name']}[{suffix}]"
        expanded.append(_validate_case(path, entry_line, data, where, file_now, file_store))
    return expanded


def _order_label(entry: Any, index: int) -> str:
    if isinstance(entry, str):
        return Path(entry).name
    if isinstance(entry, dict) and entry.get("id") not in (None, ""):
        return f"order {entry['id']}"
    return f"order {index + 1}"


def _validate_case(path: str, line: int, data: dict[str, Any], where: _Where, file_now,
                   file_store) -> Case | CaseResult:
    label = data.get("name") if isinstance(data.get("name"), str) else f"<case at line {line}>"
    try:
        spec = CaseSpec.model_validate(data)
    except ValidationError as exc:
        return CaseResult(path, line, label, ERROR, [_validation_line(exc, where, label)])
    problem = None
    if spec.expect is None or spec.expect.is_vacuous():
        problem = (where.line("expect") or line,
                   "the case has no expectation: add `expect:` with fired, fired_includes, not_fired, actions, "
                   "actions_include, emitted, order or check_errors (a case that checks nothing never passes)")
    elif spec.expect.check_errors is not None:
        others = [k for k in spec.expect.model_fields_set if k != "check_errors"]
        if others:
            problem = (where.line("expect", others[0]),
                       f"`check_errors` cannot be combined with `{others[0]}`: rules with errors do not run")
    elif spec.order is None:
        problem = (line, "the case has no order: give `order:` (a mapping or a fixture path) or `orders:`")
    if problem is not None:
        return CaseResult(path, line, spec.name, ERROR, [f"{path}:{problem[0]}: {problem[1]}"])
    order = None
    if spec.order is not None and spec.expect.check_errors is None:
        try:
            order = _resolve_order(path, spec.order, spec.overrides)
        except CaseFileError as exc:
            at = where.line("order") if exc.line == 0 else exc.line
            return CaseResult(path, line, spec.name, ERROR, [f"{path}:{at}: {exc}"])
    now = parse_now(spec.now) if spec.now is not None else file_now
    store = spec.store if spec.store is not None else file_store
    return Case(path, line, spec.name, spec, order, store, now, where)


def _validation_line(exc: ValidationError, where: _Where, label: str) -> str:
    error = exc.errors()[0]
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "extra_forbidden":
        parent = _model_at(loc[:-1])
        key = str(loc[-1])
        message = _unknown_key(key, tuple(parent.model_fields) if parent else (), "case")
    else:
        text = str(error.get("msg")).removeprefix("Value error, ")
        message = f"{'.'.join(str(p) for p in loc)}: {text}" if loc else text
    more = len(exc.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{where.at(*loc)}: case {_q(label)}: {message}{suffix}"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: type[BaseModel] | None = CaseSpec
    for key in loc:
        if isinstance(key, int):
            continue
        if model is None or key not in model.model_fields:
            return None
        model = {"expect": Expectations, "actions": ActionExpectation, "actions_include": ActionExpectation,
                 "check_errors": CheckErrorExpectation}.get(key)
    return model


def _unknown_key(key: str, known: Sequence[str], what: str) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean `{close[0]}`?)" if close else ""
    return f"unknown {what} key `{key}`{hint}; known keys: {', '.join(known)}"


def _resolve_order(test_file: str, spec: Order, overrides: dict | None) -> dict[str, Any]:
    if isinstance(spec, str):
        fixture = Path(test_file).parent / spec
        try:
            order = json.loads(fixture.read_text(encoding="utf-8"), parse_float=Decimal)
        except FileNotFoundError:
            raise CaseFileError(0, f"order fixture not found: {fixture}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise CaseFileError(0, f"cannot read order fixture {fixture}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise CaseFileError(0, f"order fixture {fixture}:{exc.lineno}: invalid JSON: {exc.msg}") from None
        if not isinstance(order, dict):
            raise CaseFileError(0, f"order fixture {fixture} must hold one JSON object (an Order Desk order)")
    else:
        order = spec
    if overrides:
        try:
            order = deep_merge(order, overrides)
        except (IndexError, TypeError) as exc:
            raise CaseFileError(0, f"overrides: {exc}") from None
    return order


def deep_merge(base: Any, override: Any) -> Any:
    """``override`` merged onto a copy of ``base``: mappings merge key by key at any depth; a list is
    replaced by a list, or edited by a mapping of indexes (``order_items: {0: {quantity: 3}}``);
    anything else is replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = copy.deepcopy(base)
        for key, value in override.items():
            merged[key] = deep_merge(merged[key], value) if key in merged else copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(override, dict) and all(isinstance(k, int) for k in override):
        merged = copy.deepcopy(base)
        for index, value in override.items():
            if not -len(merged) <= index < len(merged):
                raise IndexError(f"no element {index} in a list of {len(merged)}")
            merged[index] = deep_merge(merged[index], value)
        return merged
    return copy.deepcopy(override)


def _plain(node: Any) -> Any:
    """YAML values as plain Python: floats as exact Decimals, timestamps as Order Desk date text."""
    if isinstance(node, dict):
        return {_plain(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, float):
        return Decimal(repr(float(node)))
    if isinstance(node, int):
        return int(node)
    if isinstance(node, _dt.datetime):
        return node.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(node, _dt.date):
        return node.isoformat()
    if isinstance(node, str):
        return str(node)
    return node


# ---- running -----------------------------------------------------------------------------------


class CaseClock:
    """The engine's clock during a run: the case's ``now`` when it has one, else the real time."""

    def __init__(self) -> None:
        self.moment: _dt.datetime | None = None

    def __call__(self) -> _dt.datetime:
        return self.moment if self.moment is not None else utcnow()


def run_tests(rule_paths: Sequence[str], test_paths: Sequence[str] = (), *, pattern: str | None = None,
              now: _dt.datetime | None = None, events: Catalogue[EventSpec] | None = None,
              actions: Catalogue[ActionSpec] | None = None) -> TestRun:
    """Load the test files, select cases by ``pattern`` (a substring of ``FILE::NAME``, any case),
    build the ruleset once and run every case on it in dry-run with full explanations."""
    events = events if events is not None else default_events()
    actions = actions if actions is not None else default_actions()
    files = find_test_files(test_paths, rule_paths)
    loaded: list[Case | CaseResult] = []
    for path in files:
        loaded.extend(load_cases(path, now))
    if pattern:
        needle = pattern.casefold()
        loaded = [c for c in loaded if c.name == "<file>" or needle in c.id.casefold()]

    run = TestRun([], test_files=files)
    clock = CaseClock()
    engine: Engine | None = None
    if any(isinstance(c, Case) and c.spec.rules is None for c in loaded):
        try:
            ruleset = _load_ruleset(rule_paths, events, actions)
            engine = Engine(ruleset, events=events, actions=actions, clock=clock, explain=FULL)
            run.ruleset = ruleset
        except RulesetError as exc:
            run.rules_error = exc
            if not any(isinstance(c, Case) and c.spec.expect.check_errors is not None for c in loaded):
                errors = [d for d in exc.diagnostics if d.is_error]
                run.results.append(CaseResult(
                    ", ".join(rule_paths), 0, RULES_CASE, ERROR,
                    format_diagnostics(errors, exc.sources).splitlines()
                    + [f"the rules have {len(errors)} error{'s' if len(errors) != 1 else ''}; "
                       "no case that uses them can run"], on_main_ruleset=False))
    for item in loaded:
        if isinstance(item, CaseResult):
            run.results.append(item)
            continue
        started = time.perf_counter()
        result = _run_case(item, engine, run.rules_error, events, actions, clock)
        result.duration = time.perf_counter() - started
        run.results.append(result)
    return run


def _load_ruleset(rule_paths: Sequence[str], events, actions) -> Ruleset:
    diagnostics = Diagnostics()
    for path in rule_paths:
        if Path(path).is_dir() and not find_rule_files([path]):
            diagnostics.error(ast.Loc(path, 0, 0), "E110", f"no *.rules files under {path}")
    sources = read_sources(find_rule_files(rule_paths), diagnostics)
    if diagnostics:
        raise RulesetError(diagnostics.sorted(), sources)
    return build_ruleset(sources, events, actions, diagnostics, trace=True)


def _run_case(case: Case, engine: Engine | None, rules_error: RulesetError | None, events, actions,
              clock: CaseClock) -> CaseResult:
    expect = case.spec.expect
    assert expect is not None
    result = CaseResult(case.file, case.line, case.name, PASSED, on_main_ruleset=case.spec.rules is None)
    if case.spec.rules is not None:
        try:
            ruleset = build_ruleset({INLINE_RULES: case.spec.rules}, events, actions, trace=True)
        except RulesetError as exc:
            return _finish(result, _check_errors_diff(case, exc, expect) if expect.check_errors is not None
                           else None, exc)
        if expect.check_errors is not None:
            return _finish(result, _check_errors_diff(case, None, expect))
        engine = Engine(ruleset, events=events, actions=actions, clock=clock, explain=FULL)
    elif expect.check_errors is not None:
        return _finish(result, _check_errors_diff(case, rules_error, expect))
    elif engine is None:
        errors = sum(d.is_error for d in rules_error.diagnostics) if rules_error else 0
        result.status = ERROR
        result.messages = [f"not run: the rules have {errors} error{'s' if errors != 1 else ''}"]
        return result

    clock.moment = case.now
    spec = case.spec
    try:
        if spec.button is not None:
            decisions = engine.press(spec.button, case.order, store=case.store, dry_run=True, explain=FULL)
        elif spec.schedule is not None:
            decisions = engine.run_schedule(spec.schedule, case.order, store=case.store, dry_run=True, explain=FULL)
        else:
            data = {"event": spec.event or DEFAULT_EVENT, "order": case.order, "payload": spec.payload,
                    "store": case.store}
            decisions = engine.process(data, dry_run=True, explain=FULL)
    except ValueError as exc:  # EventError: unknown event or button, an order or payload that does not validate
        result.status = ERROR
        key = next((k for k in ("button", "schedule", "event") if getattr(spec, k) is not None
                    and str(getattr(spec, k)) in str(exc)), "order")
        result.messages = [f"{case.where.at(key)}: {exc}"]
        return result
    except Exception as exc:  # an engine bug must not stop the other cases
        result.status = ERROR
        result.messages = [f"{case.file}:{case.line}: internal error: {type(exc).__name__}: {exc}"]
        return result
    finally:
        clock.moment = None
    result.decisions = decisions
    messages = compare(case, decisions, engine.ruleset)
    if messages:
        result.status = FAILED
        result.messages = messages
    return result


def _finish(result: CaseResult, messages: list[str] | None, rules_error: RulesetError | None = None) -> CaseResult:
    if messages is None and rules_error is not None:  # inline rules that do not build, no check_errors expected
        result.status = ERROR
        result.messages = ["the case's rules have errors:"] + format_diagnostics(
            [d for d in rules_error.diagnostics if d.is_error], rules_error.sources).splitlines()
    elif messages:
        result.status = FAILED
        result.messages = messages
    return result


# ---- comparing ---------------------------------------------------------------------------------


def compare(case: Case, decisions: list[Decision], ruleset: Ruleset) -> list[str]:
    """Readable lines for every expectation the decisions do not meet (empty: the case passed)."""
    expect = case.spec.expect
    assert expect is not None
    where = case.where
    fired = [name for d in decisions for name in d.fired]
    messages: list[str] = []
    if expect.fired is not None and fired != expect.fired:
        messages.append(f"{where.at('expect', 'fired')}: fired: {_expected_got(expect.fired, fired)}")
        for name in expect.fired:
            if name not in fired:
                messages.extend(_why_not_fired(name, decisions, ruleset))
        for name in fired:
            if name not in expect.fired:
                messages.append(f"  {_q(name)} fired{_on(name, decisions)} but is not expected")
        if sorted(fired) == sorted(expect.fired):
            messages.append("  the same rules fired, in another order")
    for index, name in enumerate(expect.fired_includes or ()):
        if name not in fired:
            messages.append(f"{where.at('expect', 'fired_includes', index)}: fired_includes: {_q(name)} did not "
                            f"fire; fired: {_names(fired)}")
            messages.extend(_why_not_fired(name, decisions, ruleset))
    for index, name in enumerate(expect.not_fired or ()):
        if name in fired:
            messages.append(f"{where.at('expect', 'not_fired', index)}: not_fired: {_q(name)} fired"
                            f"{_on(name, decisions)}")
        elif ruleset.rule(name) is None:
            messages.append(f"{where.at('expect', 'not_fired', index)}: not_fired: {_unknown_rule(name, ruleset)}")
    if expect.actions is not None:
        messages.extend(_actions_diff(expect.actions, decisions, ruleset, where, "actions", exact=True))
    if expect.actions_include is not None:
        messages.extend(_actions_diff(expect.actions_include, decisions, ruleset, where, "actions_include",
                                      exact=False))
    emitted = [name for d in decisions for name in d.emitted]
    if expect.emitted is not None and emitted != expect.emitted:
        messages.append(f"{where.at('expect', 'emitted')}: emitted: {_expected_got(expect.emitted, emitted)}")
    if expect.order is not None:
        final = _final_order(decisions)
        messages.extend(_subset_diff(expect.order, final, ("order",), where))
    return messages


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _names(names: Sequence[str]) -> str:
    return json.dumps(list(names), ensure_ascii=False)


def _expected_got(expected: Sequence[str], got: Sequence[str]) -> str:
    one_line = f"expected {_names(expected)}, got {_names(got)}"
    if len(one_line) <= 100:
        return one_line
    return f"\n    expected {_names(expected)}\n    got      {_names(got)}"


def _on(name: str, decisions: list[Decision]) -> str:
    events = [d.event for d in decisions if name in d.fired]
    return f" on {', '.join(_q(e) for e in dict.fromkeys(events))}" if events else ""


def _why_not_fired(name: str, decisions: list[Decision], ruleset: Ruleset) -> list[str]:
    """Why an expected rule did not fire: its deciding clause on every event that evaluated it."""
    rule = ruleset.rule(name)
    if rule is None:
        return [f"  {_unknown_rule(name, ruleset)}"]
    lines: list[str] = []
    for decision in decisions:
        for outcome in decision.outcomes:
            if outcome.rule.name != name or outcome.fired:
                continue
            reason = outcome.note or "its condition is false"
            lines.append(f"  {_q(name)} did not fire on {_q(decision.event)}: {reason}")
            line = deciding_line(outcome, decision.sources)
            if line:
                lines.append(f"      {line}")
    if lines:
        return lines
    if rule.disabled:
        return [f"  {_q(name)} is disabled"]
    trigger = rule.trigger
    seen = ", ".join(_q(e) for e in dict.fromkeys(d.event for d in decisions))
    if isinstance(trigger, ast.EveryTrigger):
        runs = (f"it runs every {trigger.every.raw or trigger.every.seconds} in folder {_q(trigger.folder)} "
                f"(a case runs it with `schedule: {_q(name)}`)")
    elif isinstance(trigger, ast.ButtonTrigger):
        runs = f"it runs from the button {_q(trigger.label)} (a case presses it with `button: {_q(trigger.label)}`)"
    else:
        runs = "it runs on " + ", ".join(_q(e) for e in rule.events)
    return [f"  {_q(name)} was not evaluated: no event of this case triggers it (events: {seen}); {runs}"]


def _unknown_rule(name: str, ruleset: Ruleset) -> str:
    close = difflib.get_close_matches(name, [r.name for r in ruleset.rules], n=1, cutoff=0.6)
    hint = f" (did you mean {_q(close[0])}?)" if close else ""
    return f"there is no rule named {_q(name)}{hint}"


def _action_text(action: str, params: dict[str, Any]) -> str:
    if not params:
        return _q(action)
    shown = ", ".join(f"{key}: {_show(value)}" for key, value in params.items())
    return f"{_q(action)}({shown})"


def _record_matches(expected: ActionExpectation, record) -> bool:
    if expected.action.casefold() != record.action.casefold():
        return False
    if expected.rule is not None and expected.rule != record.rule:
        return False
    if expected.status is not None and expected.status != record.status:
        return False
    return not _subset_diff(expected.params, dump_value(record.params), (), None)


def _record_text(record) -> str:
    status = record.status + (f": {record.error}" if record.error else "")
    return f"{_action_text(record.action, dump_value(record.params))}  [{_q(record.rule)}, {status}]"


def _expected_text(expected: ActionExpectation) -> str:
    extra = [f"rule {_q(expected.rule)}"] if expected.rule else []
    extra += [f"status {expected.status}"] if expected.status else []
    return expected.render() + (f"  [{', '.join(extra)}]" if extra else "")


def _actions_diff(expected: list[ActionExpectation], decisions: list[Decision], ruleset: Ruleset, where: _Where,
                  key: str, exact: bool) -> list[str]:
    records = [record for d in decisions for record in d.actions]
    if exact:
        matched = len(expected) == len(records) and all(_record_matches(e, r) for e, r in zip(expected, records))
        if matched:
            return []
        lines = [f"{where.at('expect', key)}: {key}: expected {len(expected)} action"
                 f"{'s' if len(expected) != 1 else ''}, got {len(records)}"
                 + (" (in order; parameters are a subset)" if len(expected) == len(records) else "")]
        for index in range(max(len(expected), len(records))):
            exp = expected[index] if index < len(expected) else None
            rec = records[index] if index < len(records) else None
            if exp is not None and rec is not None and _record_matches(exp, rec):
                lines.append(f"  ok        {_record_text(rec)}")
                continue
            if exp is not None:
                lines.append(f"  expected  {_expected_text(exp)}")
            lines.append(f"  got       {_record_text(rec)}" if rec is not None else "  got       (nothing)")
        return lines
    position = 0
    for index, exp in enumerate(expected):
        hit = next((i for i in range(position, len(records)) if _record_matches(exp, records[i])), None)
        if hit is None:
            after = f" after {_record_text(records[position - 1])}" if position else ""
            lines = [f"{where.at('expect', key, index)}: {key}: no action{after} matches {_expected_text(exp)}",
                     "  the actions, in order:"]
            lines += [f"    {_record_text(r)}" for r in records] or ["    (none)"]
            if exp.rule is not None and not any(r.rule == exp.rule for r in records):
                lines.extend(_why_not_fired(exp.rule, decisions, ruleset))
            return lines
        position = hit + 1
    return []


def _final_order(decisions: list[Decision]) -> dict[str, Any]:
    """The incoming order after the cascade: the last decision about the same order."""
    if not decisions:
        return {}
    first = decisions[0].order_id
    same = [d for d in decisions if d.order_id == first]
    return (same or decisions)[-1].order


def _subset_diff(expected: Any, actual: Any, path: tuple, where: _Where | None) -> list[str]:
    """Every place where ``expected`` is not a subset of ``actual`` (maps: subset of keys, at any
    depth; lists: same length, element by element, or a map of indexes; numbers: by value)."""
    def at() -> str:
        name = _path_text(path)
        return f"{where.at('expect', *path)}: {name}" if where is not None else name

    if isinstance(expected, dict) and isinstance(actual, list) and all(isinstance(k, int) for k in expected):
        lines = []
        for index, value in expected.items():
            if not -len(actual) <= index < len(actual):
                lines.append(f"{at()}: expected an element {index}, the list has {len(actual)}")
            else:
                lines.extend(_subset_diff(value, actual[index], path + (index,), where))
        return lines
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{at()}: expected a mapping, got {_show(actual)}"]
        lines = []
        for key, value in expected.items():
            if key not in actual:
                if value is not None:
                    lines.append(f"{_at_key(path + (key,), where)}: expected {_show(value)}, "
                                 f"but there is no such field")
                continue
            lines.extend(_subset_diff(value, actual[key], path + (key,), where))
        return lines
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{at()}: expected a list, got {_show(actual)}"]
        if len(expected) != len(actual):
            return [f"{at()}: expected {len(expected)} element{'s' if len(expected) != 1 else ''}, "
                    f"got {len(actual)}: {_show(actual, 200)}"]
        lines = []
        for index, (value, got) in enumerate(zip(expected, actual)):
            lines.extend(_subset_diff(value, got, path + (index,), where))
        return lines
    if _same(expected, actual):
        return []
    return [f"{at()}: expected {_show(expected)}, got {_show(actual)}"]


def _at_key(path: tuple, where: _Where | None) -> str:
    name = _path_text(path)
    return f"{where.at('expect', *path)}: {name}" if where is not None else name


def _path_text(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "params"


def _same(expected: Any, actual: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    numbers = (_number(expected), _number(actual))
    if isinstance(expected, (int, Decimal, float)) or isinstance(actual, (int, Decimal, float)):
        if None not in numbers:
            return numbers[0] == numbers[1]
    return expected == actual


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return Decimal(value.strip())
        except InvalidOperation:
            return None
    return None


def _show(value: Any, limit: int = 120) -> str:
    text = json.dumps(dump_value(value), ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---- check errors ------------------------------------------------------------------------------


def _location_matches(at: str, loc: ast.Loc) -> bool:
    """``at`` is ``LINE``, ``LINE:COL``, ``FILE:LINE`` or ``FILE:LINE:COL``; FILE matches a path suffix."""
    parts = str(at).strip().split(":")
    numbers: list[int] = []
    while parts and parts[-1].strip().isdigit() and len(numbers) < 2:
        numbers.insert(0, int(parts.pop()))
    file = ":".join(parts)
    if not numbers:
        return False
    if numbers[0] != loc.line or (len(numbers) == 2 and numbers[1] != loc.col):
        return False
    return not file or loc.file == file or loc.file.endswith("/" + file) or Path(loc.file).name == file


def _check_errors_diff(case: Case, error: RulesetError | None, expect: Expectations) -> list[str]:
    expected = list(expect.check_errors or ())
    at = case.where.at("expect", "check_errors")
    if error is None:
        return [f"{at}: check_errors: expected {', '.join(e.render() for e in expected)}; "
                "the rules have no errors"]
    actual = [d for d in error.diagnostics if d.is_error]
    unmatched_actual = list(actual)
    missing: list[CheckErrorExpectation] = []
    for exp in expected:
        hit = next((d for d in unmatched_actual if exp.matches(d)), None)
        if hit is None:
            missing.append(exp)
        else:
            unmatched_actual.remove(hit)
    if not missing and not unmatched_actual:
        return []
    lines = [f"{at}: check_errors: expected {len(expected)} error{'s' if len(expected) != 1 else ''}, "
             f"got {len(actual)}"]
    lines += [f"  missing     {e.render()}" for e in missing]
    lines += [f"  unexpected  {d.headline()}" for d in unmatched_actual]
    lines.append("  the checker reported:")
    lines += ["    " + line for line in format_diagnostics(actual, error.sources).splitlines()]
    return lines


# ---- watching ----------------------------------------------------------------------------------


WATCHED_SUFFIXES = (".rules", ".yaml", ".yml", ".json", ".jsonl")


class Debouncer:
    """Collapses a burst of triggers into one: ``wait`` returns once ``delay`` seconds passed
    without a new trigger (a save that writes three times runs the tests once)."""

    def __init__(self, delay: float = 0.3, clock: Callable[[], float] = time.monotonic) -> None:
        self.delay = delay
        self.clock = clock
        self._pending = threading.Event()
        self._last = 0.0
        self._lock = threading.Lock()

    def trigger(self) -> None:
        with self._lock:
            self._last = self.clock()
            self._pending.set()

    def wait(self, timeout: float | None = None) -> bool:
        """True when a burst of triggers has settled; False if nothing came within ``timeout``."""
        if not self._pending.wait(timeout):
            return False
        while True:
            with self._lock:
                quiet = self.clock() - self._last
                if quiet >= self.delay:
                    self._pending.clear()
                    return True
            time.sleep(self.delay - quiet)


def watch(paths: Iterable[str], rerun: Callable[[], Any], *, delay: float = 0.3,
          stop: threading.Event | None = None, poll: float = 0.2) -> None:
    """Call ``rerun`` now and after every settled burst of changes to rule, test or fixture files
    under ``paths``, until ``stop`` is set (or KeyboardInterrupt)."""
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    debouncer = Debouncer(delay)
    stop = stop or threading.Event()

    class _Handler(FileSystemEventHandler):
        def on_any_event(self, event) -> None:
            if event.event_type in ("opened", "closed_no_write"):
                return
            names = [str(event.src_path), str(getattr(event, "dest_path", "") or "")]
            if any(name.endswith(WATCHED_SUFFIXES) for name in names):
                debouncer.trigger()

    observer = Observer()
    handler = _Handler()
    watched: set[str] = set()
    for raw in paths:
        path = Path(raw)
        directory = path if path.is_dir() else path.parent
        key = str(directory.resolve())
        if key not in watched and directory.exists():
            watched.add(key)
            observer.schedule(handler, str(directory), recursive=True)
    observer.start()
    try:
        rerun()
        while not stop.is_set():
            if debouncer.wait(timeout=poll):
                rerun()
    finally:
        observer.stop()
        observer.join(timeout=5)


__all__ = ["ActionExpectation", "Case", "CaseResult", "CaseSpec", "CheckErrorExpectation", "Debouncer",
           "Expectations", "TestRun", "compare", "deep_merge", "find_test_files", "load_cases", "parse_now",
           "run_tests", "watch", "ERROR", "FAILED", "PASSED"]
