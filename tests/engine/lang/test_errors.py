"""Every error class of the rule language, with its exact message: YAML cases in tests/engine/lang/errors/.

A case is ``name``, ``files`` ({path: rule text}) and ``want``, the exact sorted list of
diagnostics ``{at: "path:line:col", code, message, hint?}`` (no ``hint`` means none).
``want_formatted`` optionally pins one diagnostic as ``Diagnostic.format(source)`` renders
it (the one whose headline is its first line), so the caret is checked too.  ``xfail: reason``
marks a case whose expectation is what the checker *should* say and does not yet.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ruledesk.engine import RulesetError, default_actions, default_events
from ruledesk.engine.lang.ruleset import check_sources, load_ruleset
from ruledesk.grammar.diagnostics import CODES, Diagnostic, Diagnostics
from support import load_cases

CASE_DIR = Path(__file__).parent / "errors"
CASE_KEYS = {"name", "files", "want", "want_formatted", "xfail"}
WANT_KEYS = {"at", "code", "message", "hint"}
# Codes that no rule text can produce (reported to the lead): E106 "bad escape or literal" --
# the lexer keeps any unknown backslash sequence as written and no stage emits E106.
UNREACHABLE = {"E106"}
# Tested below through load_ruleset, not through rule text.
NOT_FROM_TEXT = {"E110"}
# Not a problem in the rules: the formatter's self-check (tests/grammar/test_formatter.py).
NOT_FROM_CHECK = {"E900"}


CASES = load_cases(CASE_DIR, "/")


def _params() -> list:
    return [
        pytest.param(case, id=case_id,
                     marks=[pytest.mark.xfail(strict=True, reason=case["xfail"])] if "xfail" in case else [])
        for case_id, case in CASES
    ]


def _as_want(d: Diagnostic) -> dict[str, str]:
    entry = {"at": f"{d.loc.file}:{d.loc.line}:{d.loc.col}", "code": d.code, "message": d.message}
    if d.suggestion is not None:
        entry["hint"] = d.suggestion
    return entry


def _check(files: dict[str, str]) -> Diagnostics:
    _, diagnostics = check_sources(files, default_events(), default_actions())
    return diagnostics


@pytest.mark.parametrize("case", _params())
def test_error_case(case):
    files = case["files"]
    diagnostics = _check(files)
    got = diagnostics.sorted()
    assert [_as_want(d) for d in got] == case["want"]
    for d in got:
        assert d.severity == ("warning" if d.code.startswith("W") else "error"), d
    assert bool(diagnostics) == any(d.code.startswith("E") for d in got)
    if "want_formatted" in case:
        want = case["want_formatted"].rstrip("\n")
        headline = want.splitlines()[0]
        matching = [d for d in got if d.headline() == headline]
        assert matching, f"no diagnostic has the headline {headline!r}"
        assert matching[0].format(files[matching[0].loc.file]) == want


def test_cases_are_well_formed():
    names = [case_id for case_id, _ in CASES]
    assert len(names) == len(set(names)), "case names must be unique within a file"
    for case_id, case in CASES:
        assert set(case) <= CASE_KEYS and {"name", "files", "want"} <= set(case), case_id
        assert case["files"] and all(isinstance(t, str) for t in case["files"].values()), case_id
        for entry in case["want"]:
            assert set(entry) <= WANT_KEYS and {"at", "code", "message"} <= set(entry), (case_id, entry)
            assert entry["code"] in CODES, (case_id, entry["code"])


def test_every_code_has_a_passing_case():
    """Each code is pinned by at least one case that passes today (an xfail alone does not count)."""
    covered = {entry["code"] for _, case in CASES if "xfail" not in case for entry in case["want"]}
    assert set(CODES) - covered - UNREACHABLE - NOT_FROM_TEXT - NOT_FROM_CHECK == set()
    assert covered & UNREACHABLE == set(), "a code listed as unreachable is reached: update UNREACHABLE"


def test_warnings_alone_are_not_errors():
    diagnostics = _check({"w.rules": 'rule "quiet" {\n    when "Order is Imported"\n    then\n}\n'})
    assert [d.code for d in diagnostics.sorted()] == ["W501"]
    assert not diagnostics
    assert diagnostics.errors == [] and [d.code for d in diagnostics.warnings] == ["W501"]


def test_missing_rule_file_is_e110(tmp_path):
    missing = tmp_path / "nope.rules"
    with pytest.raises(RulesetError) as caught:
        load_ruleset([missing], default_events(), default_actions())
    assert [_as_want(d) for d in caught.value.diagnostics] == [
        {"at": f"{missing}:0:0", "code": "E110", "message": f"no such rule file or directory: {missing}"},
    ]


def test_rule_file_that_is_not_utf8_is_e110(tmp_path):
    latin1 = tmp_path / "latin1.rules"
    latin1.write_bytes('rule "caf\xe9" {\n    when "Order is Imported"\n    then\n}\n'.encode("latin-1"))
    with pytest.raises(RulesetError) as caught:
        load_ruleset([tmp_path], default_events(), default_actions())
    [d] = caught.value.diagnostics
    assert (d.code, d.loc.file) == ("E110", str(latin1))
    assert d.message.startswith(f"cannot read {latin1}: 'utf-8' codec can't decode byte 0xe9")
