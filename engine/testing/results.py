"""How a rule test run came out: each case's result, the run's summary, and its JSON and JUnit XML reports."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from ruledesk.engine.run.engine import Decision
from ruledesk.engine.lang.ruleset import Ruleset, RulesetError

PASSED, FAILED, ERROR = "passed", "failed", "error"


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


__all__ = ["CaseResult", "TestRun", "ERROR", "FAILED", "PASSED"]
