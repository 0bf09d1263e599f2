"""Name resolution and type checking of parsed rule files: every problem, in one pass, located."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from jinja2 import TemplateSyntaxError
from pydantic import ConfigDict, TypeAdapter, ValidationError

from ruledesk.grammar import ast
from ruledesk.engine.model import types as T
from ruledesk.engine.model.catalogue import ActionSpec, Catalogue, EventSpec
from ruledesk.grammar.diagnostics import Diagnostics, closest, did_you_mean
from ruledesk.engine.model.order import ORDER_TYPE
from ruledesk.engine.model.settings import STORE_TYPE
from ruledesk.engine.lang.templates import is_template, template_environment
from ruledesk.engine.lang.expansion import MAX_EXPANSION, ExpansionSizes
from ruledesk.engine.lang.typer import RESERVED, ROOTS, Binding, Scope, Typer, located

MAX_NESTING = 64  # levels of expression nesting in one rule or let: far beyond what people write


def nesting(tree: ast.Node) -> int:
    """How deeply the nodes under ``tree`` nest (without recursion: the tree may be very deep)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(tree, 0)]
    pop, push = stack.pop, stack.append
    node_class, child_fields = ast.Node, ast.child_fields
    while stack:
        node, depth = pop()
        if isinstance(node, (tuple, list)):
            for child in node:
                push((child, depth))
            continue
        if not isinstance(node, node_class):
            continue
        if depth > deepest:
            deepest = depth
        depth += 1
        for name in child_fields(node.__class__):
            push((getattr(node, name), depth))
    return deepest


@dataclass
class CheckedRule:
    rule: ast.Rule
    file_index: int
    position: int
    events: tuple[str, ...]  # canonical event names (empty for schedules and buttons)
    scope: Scope
    typer: "Typer | None" = None  # kept so the compiler reuses the types the checker inferred

    @property
    def name(self) -> str:
        return self.rule.name


@dataclass
class CheckResult:
    modules: list[ast.Module]
    rules: list[CheckedRule]
    lets: dict[str, ast.Let]
    diagnostics: Diagnostics


class Checker:
    """Checks a whole ruleset (every file, one namespace) against the catalogues."""

    def __init__(self, events: Catalogue[EventSpec], actions: Catalogue[ActionSpec]) -> None:
        self.events = events
        self.actions = actions
        self.order_type = ORDER_TYPE
        self.store_type = STORE_TYPE
        self.templates = template_environment()
        self.event_fields: dict[str, list[str]] = {}
        for spec in events:
            for fname in T.record_of_model(spec.payload).fields:
                self.event_fields.setdefault(fname, []).append(spec.name)
        self._event_types: dict[tuple[str, ...], T.Record] = {}

    def check(self, modules: list[ast.Module], diagnostics: Diagnostics, incomplete: bool = False) -> CheckResult:
        """Check every module.  ``incomplete``: some file did not parse, so its lets are missing and
        names they define are not reported as unknown (the syntax error is what to fix first)."""
        self.incomplete = incomplete
        lets = self._collect_lets(modules, diagnostics)
        recursive = self._find_recursion(lets, diagnostics)
        rules: list[CheckedRule] = []
        seen_rules: dict[str, ast.Rule] = {}
        # A let body is checked once with `event` open (its fields depend on the rule that uses it);
        # each use checks it again against that rule's event and reports there.
        generic_scope = self._scope(T.Record("event", {"name": T.STRING}, T.ANY))
        self.sources = {m.path: m.source for m in modules}
        self.diagnostics = diagnostics
        let_typer = self._typer(lets, generic_scope, recursive)
        too_deep = {name for name, let in lets.items() if self._too_deep(let, let.body, diagnostics)}
        self.sizes = ExpansionSizes(lets, frozenset(recursive | too_deep))
        too_large = {name for name, let in lets.items() if name not in recursive | too_deep
                     and self._too_large(let, self.sizes.of_let(name), diagnostics)}
        self.sizes.skip.update(too_large)
        recursive = recursive | too_deep | too_large
        for let in lets.values():
            if let.name not in recursive:
                scope = Scope({k: v for k, v in generic_scope.names.items()}, let.name)
                for p in let.params or ():
                    scope = scope.bind(p, Binding("param", T.ANY))
                let_typer.infer(let.body, scope)
        for file_index, module in enumerate(modules):
            position = 0
            for item in module.items:
                if not isinstance(item, ast.Rule):
                    continue
                if item.name in seen_rules:
                    first = seen_rules[item.name]
                    diagnostics.error(item.loc, "E402", f'duplicate rule name "{item.name}"',
                                      f"the first is at {first.loc}; rule names must be unique across files")
                else:
                    seen_rules[item.name] = item
                checked = self._check_rule(item, lets, recursive, diagnostics)
                checked.file_index, checked.position = file_index, position
                rules.append(checked)
                position += 1
        return CheckResult(modules, rules, lets, diagnostics)

    def _typer(self, lets: dict[str, ast.Let], scope: Scope, recursive: frozenset[str]) -> Typer:
        typer = Typer(lets, self.diagnostics, scope, recursive)
        typer.generic = self.diagnostics
        typer.sources = self.sources
        typer.event_fields = self.event_fields
        typer.incomplete = self.incomplete
        return typer

    # -- lets
    def _collect_lets(self, modules: list[ast.Module], diagnostics: Diagnostics) -> dict[str, ast.Let]:
        lets: dict[str, ast.Let] = {}
        for module in modules:
            for item in module.items:
                if not isinstance(item, ast.Let):
                    continue
                if item.name in RESERVED or item.name in ROOTS:
                    diagnostics.error(item.loc, "E403", f"{item.name!r} is reserved and cannot be a let name",
                                      "choose another name")
                    continue
                if item.name in ast.BUILTIN_FUNCTIONS:
                    diagnostics.error(item.loc, "E403", f"{item.name!r} is a built-in function and cannot be redefined",
                                      "choose another name")
                    continue
                params = item.params or ()
                locs = item.param_locs or (item.loc,) * len(params)
                for index, (param, loc) in enumerate(zip(params, locs)):
                    if param in RESERVED or param in ROOTS:
                        free = next(n for n in ("x", "y", "z", "v", "w") if n not in params)
                        diagnostics.error(loc, "E403", f"{param!r} is reserved and cannot be a parameter",
                                          f"choose another name, such as {free}", length=len(param))
                    elif param in params[:index]:
                        diagnostics.error(loc, "E402", f"let {item.name} names the parameter {param!r} twice",
                                          "give each parameter its own name", length=len(param))
                if item.name in lets:
                    diagnostics.error(item.loc, "E402", f"duplicate let name {item.name!r}",
                                      f"the first is at {lets[item.name].loc}; let names must be unique across files")
                    continue
                lets[item.name] = item
        return lets

    def _find_recursion(self, lets: dict[str, ast.Let], diagnostics: Diagnostics) -> frozenset[str]:
        graph = {name: sorted(_let_references(let, lets)) for name, let in lets.items()}
        recursive: set[str] = set()
        state: dict[str, int] = {}
        stack: list[str] = []

        def visit(name: str) -> None:
            state[name] = 1
            stack.append(name)
            for ref in graph[name]:
                if state.get(ref) == 1:
                    cycle = stack[stack.index(ref):] + [ref]
                    for member in cycle:
                        recursive.add(member)
                    let = lets[ref]
                    diagnostics.error(let.loc, "E401", f"recursive let: {' -> '.join(cycle)}",
                                      "lets are expanded at compile time and cannot refer to themselves")
                elif ref not in state:
                    visit(ref)
            stack.pop()
            state[name] = 2

        for name in graph:
            if name not in state:
                visit(name)
        return frozenset(recursive)

    # -- rules
    def event_type(self, names: tuple[str, ...]) -> T.Record:
        key = tuple(sorted(names))
        cached = self._event_types.get(key)
        if cached is not None:
            return cached
        fields: dict[str, T.Type] = {"name": T.STRING}
        for name in key:
            spec = self.events.get(name)
            if spec is None:
                continue
            for fname, ftype in T.record_of_model(spec.payload).fields.items():
                fields[fname] = T.unify(fields[fname], ftype) if fname in fields else ftype
        record = T.Record("event" if len(key) != 1 else f'event "{key[0]}"', fields, None)
        self._event_types[key] = record
        return record

    def _scope(self, event: T.Record) -> Scope:
        return Scope({
            "order": Binding("root", self.order_type),
            "event": Binding("root", event),
            "store": Binding("root", self.store_type),
        })

    def _too_deep(self, owner: ast.Let | ast.Rule, tree: ast.Node, diagnostics: Diagnostics) -> bool:
        """Nesting deeper than MAX_NESTING is refused: Python could not compile what it becomes."""
        depth = nesting(tree)
        if depth <= MAX_NESTING:
            return False
        what = f'rule "{owner.name}"' if isinstance(owner, ast.Rule) else f"let {owner.name}"
        diagnostics.error(owner.loc, "E406", f"{what} is nested {depth} levels deep; at most {MAX_NESTING} are allowed",
                          "split it into lets", length=len(owner.name) + 2)
        return True

    def _too_large(self, owner: ast.Let | ast.Rule, size: int, diagnostics: Diagnostics) -> bool:
        """Larger than MAX_EXPANSION nodes once lets are expanded inline is refused: it would take
        the checker and the compiler time and memory in proportion (``expansion.py``)."""
        if size <= MAX_EXPANSION:
            return False
        what = f'rule "{owner.name}"' if isinstance(owner, ast.Rule) else f"let {owner.name}"
        shown = f"{size:,}" if size < MAX_EXPANSION * 1000 else f"more than {MAX_EXPANSION * 1000:,}"
        diagnostics.error(owner.loc, "E407", f"{what} expands to {shown} nodes once its lets are expanded; "
                          f"at most {MAX_EXPANSION:,} are allowed",
                          "every use of a let is expanded in place: a let used twice in another that is used "
                          "twice... doubles at each level; compute the value once in fewer levels",
                          length=len(owner.name) + 2)
        return True

    def _check_rule(self, rule: ast.Rule, lets, recursive, diagnostics: Diagnostics) -> CheckedRule:
        if self._too_deep(rule, rule, diagnostics) or self._too_large(rule, self.sizes.of_rule(rule), diagnostics):
            return CheckedRule(rule, 0, 0, (), self._scope(self.event_type(())))
        names: list[str] = []
        trigger = rule.trigger
        if isinstance(trigger, ast.EventTrigger):
            for ref in trigger.events:
                spec = self.events.get(ref.name)
                if spec is None:
                    diagnostics.error(ref.loc, "E201", f'unknown event "{ref.name}"',
                                      did_you_mean(self.events.suggest(ref.name)) or "`ruledesk events` lists them")
                elif spec.name not in names:
                    names.append(spec.name)
        elif isinstance(trigger, ast.EveryTrigger) and trigger.every.seconds <= 0 and trigger.every.raw[-1:] in "smhdw" \
                and trigger.every.raw[:-1].isdigit():
            diagnostics.error(trigger.every.loc, "E208", "a schedule needs a positive duration")
        scope = self._scope(self.event_type(tuple(names)))
        typer = self._typer(lets, scope, recursive)
        if isinstance(trigger, ast.ButtonTrigger):
            typer.no_payload = "a button rule has no event payload"
        elif isinstance(trigger, ast.EveryTrigger):
            typer.no_payload = "a scheduled rule has no event payload"
        if rule.condition is not None:
            typer.expect_bool(rule.condition, scope, "the if condition")
        if not rule.actions:
            diagnostics.warning(rule.then_loc if rule.then_loc.line else rule.loc, "W501",
                                f'rule "{rule.name}" does nothing: its then is empty', "add an action, or delete the rule")
        self._check_statements(rule.actions, typer, scope, diagnostics, in_for=False)
        return CheckedRule(rule, 0, 0, tuple(names), scope, typer)

    def _check_statements(self, statements: Iterable[ast.Statement], typer: Typer, scope: Scope,
                          diagnostics: Diagnostics, in_for: bool) -> None:
        for stmt in statements:
            if isinstance(stmt, ast.ForBlock):
                elem = typer.element_type(stmt.iterable, scope)
                inner = typer.bind_var(stmt.var, located(stmt.var_loc, stmt.loc), elem, scope)
                if stmt.cond is not None:
                    typer.expect_bool(stmt.cond, inner, "the where condition of for")
                if not stmt.body:
                    diagnostics.warning(stmt.loc, "W502", "this for block is empty", "add an action or delete it",
                                        length=3)
                self._check_statements(stmt.body, typer, inner, diagnostics, in_for=True)
            else:
                self._check_action(stmt, typer, scope, diagnostics, in_for)

    def _check_action(self, call: ast.ActionCall, typer: Typer, scope: Scope, diagnostics: Diagnostics,
                      in_for: bool) -> None:
        spec = self.actions.get(call.name)
        if spec is None:
            diagnostics.error(call.loc, "E202", f'unknown action "{call.name}"',
                              did_you_mean(self.actions.suggest(call.name)) or "`ruledesk actions` lists them")
            for arg in call.args:
                typer.infer(arg.value, scope)
            return
        if spec.needs_item and not in_for:
            diagnostics.error(call.loc, "E208", f'"{spec.name}" acts on an item and must be inside a for block',
                              f'write for item in order.order_items {{ "{spec.name}"(...) }}')
        fields = spec.params.model_fields
        by_name = {(info.alias or name): info for name, info in fields.items()}
        given: dict[str, ast.Arg] = {}
        literals: dict[str, Any] = {}
        meant: set[str] = set()  # parameters an unknown, misspelt one most likely stands for
        for arg in call.args:
            if arg.name in given:
                diagnostics.error(arg.loc, "E203", f'parameter {arg.name!r} is given twice to "{spec.name}"')
                continue
            given[arg.name] = arg
            value_type = typer.infer(arg.value, scope)
            info = by_name.get(arg.name)
            if info is None:
                close = closest(arg.name, [n for n in by_name if n not in given])
                hint = did_you_mean(close, quote=False)
                meant.update(close[:1])
                if not by_name:
                    hint = f'"{spec.name}" takes no parameters'
                elif hint is None:
                    hint = "its parameters: " + ", ".join(by_name)
                diagnostics.error(arg.loc, "E203", f'"{spec.name}" has no parameter {arg.name!r}', hint)
                continue
            expected = T.type_of_annotation(info.annotation)
            if not T.compatible(expected, value_type) and not (expected == T.STRING and value_type in (T.NUMBER, T.BOOL)):
                diagnostics.error(arg.value.loc, "E301",
                                  f'parameter {arg.name!r} of "{spec.name}" wants a {expected}, got {value_type}')
            literal = _literal(arg.value)
            if literal is not _NOT_LITERAL:
                literals[arg.name] = literal
                if isinstance(literal, str) and is_template(literal):
                    self._check_template(arg.value, diagnostics)
                else:
                    self._check_literal(spec, arg, info, literal, diagnostics)
        for name, info in by_name.items():
            if info.is_required() and name not in given and name not in meant:
                diagnostics.error(call.loc, "E204", f'"{spec.name}" needs parameter {name!r}',
                                  f'write "{spec.name}"({", ".join(n + ": ..." for n, i in by_name.items() if i.is_required())})',
                                  length=len(call.name) + 2)
        if spec.static_check is not None:
            for param, message, suggestion in spec.static_check(literals):
                loc = given[param].value.loc if param in given else call.loc
                diagnostics.error(loc, "E208", message, did_you_mean([suggestion]) if suggestion else None)

    def _check_literal(self, spec: ActionSpec, arg: ast.Arg, info: Any, value: Any, diagnostics: Diagnostics) -> None:
        """A literal parameter value must pass the parameter's own validation (non-empty names, ...)."""
        adapter = _adapter(spec.params, arg.name)
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            problem = exc.errors()[0]
            message = str(problem.get("msg", "invalid value"))
            if problem.get("type") == "string_too_short" and value == "":
                message = "must not be empty"
            diagnostics.error(arg.value.loc, "E208", f'parameter {arg.name!r} of "{spec.name}" {message[0].lower()}{message[1:]}'
                              if message == "must not be empty" else
                              f'bad value for parameter {arg.name!r} of "{spec.name}": {message}')

    def _check_template(self, lit: ast.StringLit, diagnostics: Diagnostics) -> None:
        try:
            self.templates.parse(lit.value)
        except TemplateSyntaxError as exc:
            diagnostics.error(lit.loc, "E304", f"bad template: {exc.message}",
                              "templates are Jinja2: {{ order.id }}, {% if ... %}...{% endif %}")


_NOT_LITERAL = object()


def _literal(e: ast.Expr) -> Any:
    """The python value of a literal parameter value, or _NOT_LITERAL."""
    if isinstance(e, (ast.StringLit, ast.NumberLit, ast.BoolLit)):
        return e.value
    if isinstance(e, ast.NullLit):
        return None
    return _NOT_LITERAL


@functools.lru_cache(maxsize=None)
def _adapter(model: type, field: str) -> TypeAdapter:
    """A validator for one field of a parameter model, with the field's constraints."""
    info = next(i for n, i in model.model_fields.items() if (i.alias or n) == field)
    annotation = Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation
    config = ConfigDict(coerce_numbers_to_str=True) if model.model_config.get("coerce_numbers_to_str") else None
    return TypeAdapter(annotation, config=config)


def _let_references(let: ast.Let, lets: dict[str, ast.Let]) -> set[str]:
    params = set(let.params or ())
    refs: set[str] = set()
    for node in ast.walk(let.body):
        if isinstance(node, ast.Name) and node.id in lets and node.id not in params:
            refs.add(node.id)
        elif isinstance(node, ast.Call) and node.func in lets:
            refs.add(node.func)
    return refs
