"""Helpers shared by the test modules (the one module tests import from; test files never import each other)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[1]
LANGUAGE_CASES = Path(__file__).parent / "engine" / "lang" / "cases"
NOW = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.timezone.utc)


def fixed_clock() -> dt.datetime:
    return NOW


def load_cases(folder: Path = LANGUAGE_CASES, separator: str = "::") -> list[tuple[str, dict[str, Any]]]:
    """The YAML cases of ``folder`` (each file a list of cases with a ``name``) as (id, case) pairs;
    by default the language conformance cases (tests/engine/lang/cases/*.yaml)."""
    yaml = YAML(typ="safe")
    cases = []
    for path in sorted(folder.glob("*.yaml")):
        for case in yaml.load(path.read_text(encoding="utf-8")):
            cases.append((f"{path.stem}{separator}{case['name']}", case))
    return cases


CASES = load_cases()


def expected_actions(case: dict[str, Any]) -> list[dict[str, Any]]:
    """Every action expectation of a case, from ``actions`` and from ``decisions``."""
    found = list(case.get("actions") or [])
    for entry in case.get("decisions") or []:
        if isinstance(entry, dict):
            found.extend(entry.get("actions") or [])
    return found
