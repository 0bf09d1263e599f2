"""Rule tests: run cases through the engine in dry-run, diff the outcome against the expectations, watch files."""

from __future__ import annotations

import datetime as _dt
import json
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from ruledesk.grammar import ast
from ruledesk.engine.model.catalogue import ActionSpec, Catalogue, EventSpec
from ruledesk.grammar.diagnostics import closest
from ruledesk.engine.run.engine import Decision, Engine, default_actions, default_events
from ruledesk.engine.run.explain import FULL, deciding_line
from ruledesk.engine.model.order import dump_value
from ruledesk.engine.lang.ruleset import Ruleset, RulesetError, build_ruleset, format_diagnostics, load_ruleset
from ruledesk.engine.model.context import utcnow
from ruledesk.engine.testing.cases import (ActionExpectation, Case, CaseLines, CheckErrorExpectation, Expectations, action_text,
                        find_test_files, load_cases, quote, value_text)
from ruledesk.engine.testing.results import ERROR, FAILED, PASSED, CaseResult, TestRun

INLINE_RULES = "inline.rules"  # the file name check errors of a case's inline `rules:` carry
DEFAULT_EVENT = "Order is Imported"
RULES_CASE = "<rules>"  # the pseudo-case that reports rules which do not check


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
            ruleset = load_ruleset(rule_paths, events, actions, trace=True)
            engine = Engine(ruleset, events=events, actions=actions, clock=clock, explain=FULL)
            run.ruleset = ruleset
        except RulesetError as exc:
            run.rules_error = exc
            if not any(isinstance(c, Case) and c.spec.expect.check_errors is not None for c in loaded):
                errors = [d for d in exc.diagnostics if d.is_error]
                run.results.append(CaseResult(
                    ", ".join(rule_paths), 0, RULES_CASE, ERROR,
                    format_diagnostics(errors, exc.sources).splitlines()
                    + [f"the rules have {_counted(len(errors), 'error')}; "
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
        result.messages = [f"not run: the rules have {_counted(errors, 'error')}"]
        return result

    clock.moment = case.now
    spec = case.spec
    try:
        if spec.button is not None:
            decisions = engine.press(spec.button, case.order, store=case.store, dry_run=True, explain=FULL).decisions
        elif spec.schedule is not None:
            decisions = engine.run_schedule(spec.schedule, case.order, store=case.store, dry_run=True, explain=FULL).decisions
        else:
            data = {"event": spec.event or DEFAULT_EVENT, "order": case.order, "payload": spec.payload,
                    "store": case.store}
            decisions = engine.process(data, dry_run=True, explain=FULL).decisions
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
                messages.append(f"  {quote(name)} fired{_on(name, decisions)} but is not expected")
        if sorted(fired) == sorted(expect.fired):
            messages.append("  the same rules fired, in another order")
    for index, name in enumerate(expect.fired_includes or ()):
        if name not in fired:
            messages.append(f"{where.at('expect', 'fired_includes', index)}: fired_includes: {quote(name)} did not "
                            f"fire; fired: {_names(fired)}")
            messages.extend(_why_not_fired(name, decisions, ruleset))
    for index, name in enumerate(expect.not_fired or ()):
        if name in fired:
            messages.append(f"{where.at('expect', 'not_fired', index)}: not_fired: {quote(name)} fired"
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


def _names(names: Sequence[str]) -> str:
    return json.dumps(list(names), ensure_ascii=False)


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' if count != 1 else ''}"


def _expected_got(expected: Sequence[str], got: Sequence[str]) -> str:
    one_line = f"expected {_names(expected)}, got {_names(got)}"
    if len(one_line) <= 100:
        return one_line
    return f"\n    expected {_names(expected)}\n    got      {_names(got)}"


def _on(name: str, decisions: list[Decision]) -> str:
    events = [d.event for d in decisions if name in d.fired]
    return f" on {', '.join(quote(e) for e in dict.fromkeys(events))}" if events else ""


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
            lines.append(f"  {quote(name)} did not fire on {quote(decision.event)}: {reason}")
            line = deciding_line(outcome, decision.sources)
            if line:
                lines.append(f"      {line}")
    if lines:
        return lines
    if rule.disabled:
        return [f"  {quote(name)} is disabled"]
    trigger = rule.trigger
    seen = ", ".join(quote(e) for e in dict.fromkeys(d.event for d in decisions))
    if isinstance(trigger, ast.EveryTrigger):
        runs = (f"it runs every {trigger.every.raw or trigger.every.seconds} in folder {quote(trigger.folder)} "
                f"(a case runs it with `schedule: {quote(name)}`)")
    elif isinstance(trigger, ast.ButtonTrigger):
        runs = (f"it runs from the button {quote(trigger.label)} "
                f"(a case presses it with `button: {quote(trigger.label)}`)")
    else:
        runs = "it runs on " + ", ".join(quote(e) for e in rule.events)
    return [f"  {quote(name)} was not evaluated: no event of this case triggers it (events: {seen}); {runs}"]


def _unknown_rule(name: str, ruleset: Ruleset) -> str:
    close = closest(name, [r.name for r in ruleset.rules])
    hint = f" (did you mean {quote(close[0])}?)" if close else ""
    return f"there is no rule named {quote(name)}{hint}"


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
    return f"{action_text(record.action, dump_value(record.params))}  [{quote(record.rule)}, {status}]"


def _expected_text(expected: ActionExpectation) -> str:
    extra = [f"rule {quote(expected.rule)}"] if expected.rule else []
    extra += [f"status {expected.status}"] if expected.status else []
    return expected.render() + (f"  [{', '.join(extra)}]" if extra else "")


def _actions_diff(expected: list[ActionExpectation], decisions: list[Decision], ruleset: Ruleset, where: CaseLines,
                  key: str, exact: bool) -> list[str]:
    records = [record for d in decisions for record in d.actions]
    if exact:
        matched = len(expected) == len(records) and all(_record_matches(e, r) for e, r in zip(expected, records))
        if matched:
            return []
        lines = [f"{where.at('expect', key)}: {key}: expected {_counted(len(expected), 'action')}, "
                 f"got {len(records)}"
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
    """The incoming order after the cascade: the last decision about the same order (same store and
    id: a copy in another store keeps the id)."""
    if not decisions:
        return {}
    first = (decisions[0].store, decisions[0].order_id)
    same = [d for d in decisions if (d.store, d.order_id) == first]
    return (same or decisions)[-1].order


def _subset_diff(expected: Any, actual: Any, path: tuple, where: CaseLines | None) -> list[str]:
    """Every place where ``expected`` is not a subset of ``actual`` (maps: subset of keys, at any
    depth; lists: same length, element by element, or a map of indexes; numbers: by value)."""
    if isinstance(expected, dict) and isinstance(actual, list) and all(isinstance(k, int) for k in expected):
        lines = []
        for index, value in expected.items():
            if not -len(actual) <= index < len(actual):
                lines.append(f"{_at_path(path, where)}: expected an element {index}, the list has {len(actual)}")
            else:
                lines.extend(_subset_diff(value, actual[index], path + (index,), where))
        return lines
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{_at_path(path, where)}: expected a mapping, got {value_text(actual)}"]
        lines = []
        for key, value in expected.items():
            if key not in actual:
                if value is not None:
                    lines.append(f"{_at_path(path + (key,), where)}: expected {value_text(value)}, "
                                 f"but there is no such field")
                continue
            lines.extend(_subset_diff(value, actual[key], path + (key,), where))
        return lines
    if isinstance(expected, list):
        if not isinstance(actual, list):
            return [f"{_at_path(path, where)}: expected a list, got {value_text(actual)}"]
        if len(expected) != len(actual):
            return [f"{_at_path(path, where)}: expected {_counted(len(expected), 'element')}, "
                    f"got {len(actual)}: {value_text(actual, 200)}"]
        lines = []
        for index, (value, got) in enumerate(zip(expected, actual)):
            lines.extend(_subset_diff(value, got, path + (index,), where))
        return lines
    if _same(expected, actual):
        return []
    return [f"{_at_path(path, where)}: expected {value_text(expected)}, got {value_text(actual)}"]


def _at_path(path: tuple, where: CaseLines | None) -> str:
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


# ---- check errors ------------------------------------------------------------------------------


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
    lines = [f"{at}: check_errors: expected {_counted(len(expected), 'error')}, got {len(actual)}"]
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


__all__ = ["Debouncer", "compare", "run_tests", "watch", "RULES_CASE"]
