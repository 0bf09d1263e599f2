"""The run-time helpers compiled rules call: one list of built-ins, and every helper is total."""

from __future__ import annotations

from ruledesk.grammar import ast
from ruledesk.engine.lang import runtime


def test_every_builtin_function_but_now_has_its_runtime_helper():
    missing = [name for name in ast.BUILTIN_FUNCTIONS if name != "now" and f"rt_{name}" not in runtime.RUNTIME_NAMESPACE]
    assert missing == []
