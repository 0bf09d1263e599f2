"""Helpers shared by the test modules (the one module tests import from; test files never import each other)."""

from __future__ import annotations

import dataclasses
import time
import threading
import sys
import subprocess
import signal
import re
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
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


# --- the fast parser against Lark (tests/grammar/test_fastparse*.py) ---------------------------------


def ast_dump(value: Any) -> Any:
    """Everything in a tree, locations and raw text included (AST equality leaves them out)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__name__,) + tuple(ast_dump(getattr(value, f.name)) for f in dataclasses.fields(value)
                                               if f.name != "source")
    if isinstance(value, (tuple, list)):
        return tuple(ast_dump(v) for v in value)
    return (type(value).__name__, value)


def fast_reading(text: str) -> tuple | None:
    """(items, comments, diagnostics) as the fast parser reads ``text``, or None when it gives the
    text to Lark."""
    from ruledesk.grammar.fastparse import Bail, FastParser
    from ruledesk.grammar.transformer import ASTBuilder

    builder = ASTBuilder()
    builder.path = "f.rules"
    try:
        items, comments = FastParser(builder).parse(text)
    except (Bail, RecursionError):
        return None
    return ast_dump(items), ast_dump(comments), [dataclasses.astuple(d) for d in builder.diagnostics.items]


def lark_reading(text: str) -> tuple:
    """(items, comments, diagnostics) as Lark reads ``text``."""
    from ruledesk.grammar.diagnostics import Diagnostics
    from ruledesk.grammar.parser import parse_with_lark

    diagnostics = Diagnostics()
    module = parse_with_lark(text, "f.rules", diagnostics)
    return ast_dump(module.items), ast_dump(module.comments), [dataclasses.astuple(d) for d in diagnostics.items]


# ---- `ruledesk serve` as a process (the daemon tests) ------------------------------------------------

DAEMON_STARTUP = 60.0  # seconds a daemon may take to say it serves (a loaded 2-core machine)
_SERVING = re.compile(r"ruledesk serving on http://([^\s:]+|\[[^\]]+\]):(\d+)")


def cli() -> list[str]:
    """The ruledesk command line of this interpreter."""
    return [sys.executable, "-m", "ruledesk.engine.cli"]


class Serve:
    """One ``ruledesk serve`` process (the daemon tests' subprocess); ``url`` once it says it serves."""

    def __init__(self, workdir: Path, db: str, rules: Path, *extra: str, port: int = 0, name: str = "serve",
                 watch: bool = False) -> None:
        self.workdir, self.db, self.rules, self.extra, self.port, self.name = workdir, db, rules, extra, port, name
        self.watch = watch  # most tests need no file watching: --static unless asked
        self.pidfile = workdir / f"{name}.pid"
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self.url: str | None = None
        self.starts = 0

    def start(self) -> "Serve":
        self.starts += 1
        self.url = None
        self.lines = []
        ready = threading.Event()
        args = [*cli(), "serve", "--db", self.db, "--rules", str(self.rules), "--port", str(self.port),
                "--quiet", "--pidfile", str(self.pidfile), *self.extra]
        if not self.watch and "--static" not in self.extra:
            args.append("--static")
        proc = subprocess.Popen(args, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace")
        self.proc = proc
        lines = self.lines

        def read() -> None:
            for line in proc.stderr:
                lines.append(line)
                found = _SERVING.search(line)
                if found:
                    self.port = int(found.group(2))  # restarts listen on the same port
                    self.url = f"http://127.0.0.1:{self.port}"
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True, name=f"stderr of {self.name}").start()
        deadline = time.monotonic() + DAEMON_STARTUP
        while not ready.wait(0.1):
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"{self.name} did not start in {DAEMON_STARTUP} s:\n{self.stderr()}")
        if self.url is None:
            proc.wait(10)
            pytest.fail(f"{self.name} exited ({proc.returncode}) before serving:\n{self.stderr()}")
        return self

    def stderr(self) -> str:
        return "".join(self.lines[-60:])

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signum)

    def kill(self) -> None:
        """kill -9 and reap it."""
        if self.proc is not None:
            self.signal(signal.SIGKILL)
            self.proc.wait(30)

    def stop(self, timeout: float = 15.0, signalled: bool = False) -> int:
        """SIGTERM (unless ``signalled`` already: a second one may kill it while it exits); its exit
        code (killed if it does not stop in ``timeout``)."""
        assert self.proc is not None
        if not signalled:
            self.signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.name} did not stop within {timeout} s of SIGTERM:\n{self.stderr()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def create_token(db: str, store: str = "default", scope: str = "write", cwd: Path | None = None) -> str:
    done = subprocess.run([*cli(), "tokens", "create", "--db", db, "--store", store, "--scope", scope],
                          capture_output=True, text=True, timeout=120, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1].split()[-1]


def ping_engine(rules: str) -> Any:
    """An Engine over ``rules`` whose catalogue has "Ping"(target), an action recording a job of
    kind ``ping`` (the job runners' tests), on the fixed clock."""
    from pydantic import BaseModel

    from ruledesk.engine.model.catalogue import ActionSpec
    from ruledesk.engine.run.engine import Engine, default_actions, default_events

    class PingParams(BaseModel):
        target: str

    actions = default_actions()
    actions.register(ActionSpec("Ping", PingParams, job="ping", description="test: ping a target"))
    return Engine.from_source(rules, actions=actions, events=default_events(), clock=fixed_clock)


class VirtualTime:
    """A clock that a runner's waits advance (job retries with backoff, over hours, take no real time)."""

    def __init__(self) -> None:
        self.now = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.timezone.utc)

    def __call__(self) -> dt.datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


def settle(worker: Any, runner: Any, store: Any, now: list[float], horizon: float = float("inf"),
           rounds: int = 500) -> None:
    """Run a Worker and a DurableRunner until nothing is left due within ``horizon`` seconds of
    ``now[0]``, the virtual wall clock both read (it jumps to each due job: retries and polls take
    no real time); fails the test if that never happens."""
    limit = now[0] + horizon
    for _ in range(rounds):
        busy = worker.run_once() > 0
        while runner.run_once():
            busy = True
        if busy:
            continue
        due = min((j.due_at for j in store.jobs() if j.status == "pending"), default=None)
        if due is None or due > limit:
            return
        now[0] = max(now[0], due)
    pytest.fail("the durable path did not settle")
