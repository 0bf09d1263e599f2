"""Explain output as golden files: one per construct group of LANGUAGE.md section 4, plus a cascade.

Each ``tests/engine/run/explain/NAME.rules`` runs on ``NAME.order.json`` (an Order Desk order, or an
event object with ``event``/``payload``/``store``) through
``ruledesk explain --full --now "2026-11-23 12:00:00" --rules NAME.rules NAME.order.json`` from that
directory; the output must equal ``NAME.golden``.  ``RULEDESK_UPDATE_GOLDEN=1`` rewrites the goldens
(review the diff before committing).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ruledesk.engine.cli import app

GOLDEN_DIR = Path(__file__).parent / "explain"
NOW = "2026-11-23 12:00:00"
GROUPS = sorted(p.stem for p in GOLDEN_DIR.glob("*.rules"))
# LANGUAGE.md section 4, one golden per row group (and the cascade, which is section 7).
EXPECTED_GROUPS = ["aggregates", "arithmetic", "builtins", "cascade", "comparisons", "lets", "literals", "logic",
                   "membership", "paths", "quantifiers", "strings", "tests"]


def explain_output(name: str, monkeypatch: pytest.MonkeyPatch, *options: str) -> str:
    monkeypatch.chdir(GOLDEN_DIR)
    result = CliRunner().invoke(app, ["explain", *options, "--now", NOW, "--rules", f"{name}.rules",
                                      f"{name}.order.json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_every_construct_group_has_a_golden():
    assert GROUPS == EXPECTED_GROUPS
    for name in GROUPS:
        assert (GOLDEN_DIR / f"{name}.order.json").is_file(), name
        assert (GOLDEN_DIR / f"{name}.golden").is_file() or os.environ.get("RULEDESK_UPDATE_GOLDEN") == "1", name


@pytest.mark.parametrize("name", GROUPS)
def test_full_explanation_matches_the_golden(name: str, monkeypatch: pytest.MonkeyPatch):
    output = explain_output(name, monkeypatch, "--full")
    golden = GOLDEN_DIR / f"{name}.golden"
    if os.environ.get("RULEDESK_UPDATE_GOLDEN") == "1":
        golden.write_text(output, encoding="utf-8")
    assert output == golden.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", GROUPS)
def test_the_default_explanation_is_the_full_one_without_traces(name: str, monkeypatch: pytest.MonkeyPatch):
    """Without --full, every rule keeps its verdict and deciding clause; only the trace lines go."""
    default = explain_output(name, monkeypatch).splitlines()
    full = (GOLDEN_DIR / f"{name}.golden").read_text(encoding="utf-8").splitlines()
    # A deciding line sits right under its rule's "did not fire" line; trace lines are the other indented ones.
    verdicts = [line for index, line in enumerate(full)
                if not line.startswith("       ") or (index > 0 and full[index - 1].endswith("did not fire"))]
    assert default == verdicts
