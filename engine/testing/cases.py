"""Rule test case files (``*_test.yaml``): the case model, loading and validation, fixtures, overrides, params."""

from __future__ import annotations

import copy
import datetime as _dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from ruledesk.grammar import ast
from ruledesk.grammar.diagnostics import Diagnostic, closest
from ruledesk.engine.model.order import dump_value
from ruledesk.engine.testing.results import ERROR, CaseResult

TEST_FILE_SUFFIXES = ("_test.yaml", "_test.yml")


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
        return action_text(self.action, self.params)


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
            parts.append(f"containing {quote(self.message_contains)}")
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

    @field_validator("actions", "actions_include", "check_errors", mode="before")
    @classmethod
    def _shorthand(cls, value: Any, info: ValidationInfo) -> Any:
        """A bare string stands for an action name (a code, in ``check_errors``)."""
        key = "code" if info.field_name == "check_errors" else "action"
        if isinstance(value, list):
            return [{key: v} if isinstance(v, str) else v for v in value]
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


# ---- names and values as messages show them ------------------------------------------------------


def quote(text: str) -> str:
    """A name as messages show it: JSON-quoted."""
    return json.dumps(text, ensure_ascii=False)


def value_text(value: Any, limit: int = 120) -> str:
    """A value as JSON, cut to ``limit`` characters."""
    text = json.dumps(dump_value(value), ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def action_text(action: str, params: dict[str, Any]) -> str:
    """``"Action"(key: value, ...)``, or just the quoted action without parameters."""
    if not params:
        return quote(action)
    shown = ", ".join(f"{key}: {value_text(value)}" for key, value in params.items())
    return f"{quote(action)}({shown})"


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
    where: "CaseLines"

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"


class CaseLines:
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
        where = CaseLines(path, param, raw)
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


def _validate_case(path: str, line: int, data: dict[str, Any], where: CaseLines, file_now,
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


def _validation_line(exc: ValidationError, where: CaseLines, label: str) -> str:
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
    return f"{where.at(*loc)}: case {quote(label)}: {message}{suffix}"


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
    close = closest(key, list(known))
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
        except RecursionError:
            raise CaseFileError(0, f"order fixture {fixture}: invalid JSON: nested too deeply") from None
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


__all__ = ["ActionExpectation", "Case", "CaseLines", "CaseSpec", "CheckErrorExpectation", "Expectations",
           "action_text", "deep_merge", "find_test_files", "load_cases", "parse_now", "quote", "value_text"]
