"""Rule files -> a checked, compiled, immutable Ruleset, versioned by a content hash."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ruledesk.grammar import ast
from ruledesk.engine.model.catalogue import ActionSpec, Catalogue, EventSpec
from ruledesk.engine.lang.checker import Checker
from ruledesk.engine.lang.compiler import CompiledRule, Compiler, EventPlan
from ruledesk.grammar.diagnostics import Diagnostic, Diagnostics


class RulesetError(Exception):
    """The rule files have errors; ``diagnostics`` says which, ``sources`` lets them be shown with carets."""

    def __init__(self, diagnostics: list[Diagnostic], sources: dict[str, str]) -> None:
        self.diagnostics = diagnostics
        self.sources = sources
        errors = [d for d in diagnostics if d.is_error]
        super().__init__(f"{len(errors)} error(s) in the rules:\n" + format_diagnostics(errors, sources))


def format_diagnostics(diagnostics: Iterable[Diagnostic], sources: dict[str, str]) -> str:
    return "\n".join(d.format(sources.get(d.loc.file)) for d in diagnostics)


@dataclass(frozen=True)
class Ruleset:
    """Everything an Engine needs to run a set of rule files; never changes once built."""

    version: str
    rules: tuple[CompiledRule, ...]
    plans: dict[str, EventPlan]
    files: tuple[str, ...]
    sources: dict[str, str] = field(repr=False)
    diagnostics: tuple[Diagnostic, ...] = ()
    traced: bool = False  # built with trace support (full explanations)

    def plan(self, event: str) -> EventPlan | None:
        return self.plans.get(event)

    def rule(self, name: str) -> CompiledRule | None:
        return next((r for r in self.rules if r.name == name), None)

    def warm(self) -> "Ruleset":
        """Compile now everything that is otherwise compiled on first use (every plan's
        ``match_why`` and deciding-clause value functions, every rule's ``act``, and ``trace`` and
        ``why`` when traced), so a ruleset built off the hot path costs the first events nothing.
        Returns the ruleset."""
        for plan in self.plans.values():
            plan.warm()
        for rule in self.rules:
            rule.warm()
        return self


def find_rule_files(paths: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Every ``*.rules`` file under the given directories (recursively) and files, in sorted path order."""
    found: set[str] = set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.update(str(p) for p in path.rglob("*.rules") if p.is_file())
        else:
            found.add(str(path))
    return sorted(found)


def read_sources(files: Iterable[str], diagnostics: Diagnostics) -> dict[str, str]:
    sources: dict[str, str] = {}
    for name in files:
        try:
            sources[name] = Path(name).read_text(encoding="utf-8")
        except FileNotFoundError:
            diagnostics.error(ast.Loc(name, 0, 0), "E110", f"no such rule file or directory: {name}")
        except (OSError, UnicodeDecodeError) as exc:
            diagnostics.error(ast.Loc(name, 0, 0), "E110", f"cannot read {name}: {exc}")
    return sources


def content_hash(sources: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(sources):
        digest.update(name.encode() + b"\0" + sources[name].encode() + b"\0")
    return "sha256:" + digest.hexdigest()


def _freeze_survivors(phase: str, info: dict) -> None:
    if phase == "stop" and info["generation"] >= 1:
        gc.freeze()


@contextlib.contextmanager
def _young_collections_only():
    """Building a ruleset allocates many small, long-lived objects; full collections would rescan
    them over and over (half again the build time at 10,000 rules).  The collector stays on for
    every thread (never ``gc.disable()``, which is process-wide): young generations are collected
    as usual, so any thread's fresh cyclic garbage goes; what survives a middle-generation
    collection during the build is frozen (``gc.freeze``), so the full collections have nothing
    to rescan.  Afterwards everything is unfrozen into the oldest generation, as if the build had
    run with the default collector: nothing stays uncollectable.  Another thread's garbage that is
    old enough to be frozen waits for the end of the build."""
    gc.callbacks.append(_freeze_survivors)
    try:
        yield
    finally:
        gc.callbacks.remove(_freeze_survivors)
        if _freeze_survivors not in gc.callbacks:  # the last of concurrent builds
            gc.unfreeze()


def check_sources(sources: dict[str, str], events: Catalogue[EventSpec], actions: Catalogue[ActionSpec],
                  diagnostics: Diagnostics | None = None):
    """Parse and check; returns (CheckResult, diagnostics) without compiling."""
    from ruledesk.grammar import parse

    diagnostics = diagnostics if diagnostics is not None else Diagnostics()
    modules = [parse(text, name, diagnostics) for name, text in sorted(sources.items())]
    incomplete = any(d.code.startswith("E1") for d in diagnostics.items)
    result = Checker(events, actions).check(modules, diagnostics, incomplete)
    return result, diagnostics


def build_ruleset(sources: dict[str, str], events: Catalogue[EventSpec], actions: Catalogue[ActionSpec],
                  diagnostics: Diagnostics | None = None, *, trace: bool = False, index: bool = True) -> Ruleset:
    """Parse, check and compile; raises RulesetError if there is any error (warnings are kept).

    ``trace=True`` also generates the traced conditions a full explanation needs; ``index=False``
    matches without the index (the same results: tests and benchmarks compare the two)."""
    with _young_collections_only():
        result, diagnostics = check_sources(sources, events, actions, diagnostics)
        if diagnostics:
            raise RulesetError(diagnostics.sorted(), sources)
        code = Compiler(result, actions, trace=trace, index=index).compile()
    return Ruleset(content_hash(sources), tuple(code.rules), code.plans, tuple(sorted(sources)), dict(sources),
                   tuple(diagnostics.sorted()), trace)


def read_rule_files(paths: Iterable[str | os.PathLike[str]],
                    diagnostics: Diagnostics | None = None) -> tuple[dict[str, str], Diagnostics]:
    """The text of every ``*.rules`` file under ``paths``; a path that cannot be read, a directory
    without rule files, or no rule file at all is error E110 (never an empty ruleset)."""
    diagnostics = diagnostics if diagnostics is not None else Diagnostics()
    paths = [str(path) for path in paths]
    for path in paths:
        if Path(path).is_dir() and not find_rule_files([path]):
            diagnostics.error(ast.Loc(path, 0, 0), "E110", f"no *.rules files under {path}")
    sources = read_sources(find_rule_files(paths), diagnostics)
    if not sources and not diagnostics:
        diagnostics.error(ast.Loc(", ".join(paths) or "<no paths>", 0, 0), "E110", "no rule files were given")
    return sources, diagnostics


def load_ruleset(paths: Iterable[str | os.PathLike[str]], events: Catalogue[EventSpec],
                 actions: Catalogue[ActionSpec], *, trace: bool = False) -> Ruleset:
    """The one way to build a ruleset from rule files and directories; RulesetError on any error."""
    sources, diagnostics = read_rule_files(paths)
    if diagnostics:
        raise RulesetError(diagnostics.sorted(), sources)
    return build_ruleset(sources, events, actions, diagnostics, trace=trace)
