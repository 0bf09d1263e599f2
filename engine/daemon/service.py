"""The daemon: the active engine (swapped on reload), the worker, job runner, scheduler and
follow-intake threads over one store, and the state /readyz and /metrics report."""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ruledesk.engine.daemon.intake import Intake, IntakeError, parse_body, schedule_periods, schedule_run
from ruledesk.engine.daemon.metrics import Metrics
from ruledesk.engine.daemon.worker import Handled, Worker, daemon_id
from ruledesk.engine.jobs.durable import DurableRunner, JobAttempt
from ruledesk.engine.lang.ruleset import Ruleset, RulesetError, build_ruleset, format_diagnostics, load_ruleset
from ruledesk.engine.model.config import Config
from ruledesk.engine.model.context import utcnow
from ruledesk.engine.model.jobs import HANDLERS, JobHandlers
from ruledesk.engine.model.order import load_json
from ruledesk.engine.run.decision import stored_explanation
from ruledesk.engine.run.engine import Engine, default_actions, default_events
from ruledesk.engine.store.base import Inbound, StoreError
from ruledesk.engine.store.sql import SqlStore

log = logging.getLogger("ruledesk.daemon")
events_log = logging.getLogger("ruledesk.events")


@dataclass
class Options:
    rules: list[str] = field(default_factory=lambda: ["rules.d"])
    config_path: str | None = None
    workers: int = 1
    job_runners: int = 1
    lease: float = 30.0
    batch: int = 200
    max_attempts: int = 5  # poison events are set aside after this many failed runs
    job_attempts: int = 5
    poll: float = 0.05  # how often an idle worker looks for work another daemon's intake wrote
    schedule_tick: float = 1.0
    debounce: float = 0.2
    watch: bool = True
    work: bool = True  # run the workers, job runners and schedules here (False: intake only, workers elsewhere)
    clear_leases: bool = True  # SQLite: leases left by a killed daemon are dropped on start (one daemon per file)
    max_line: int = 5 * 1024 * 1024  # followed JSONL lines over this are refused (as HTTP bodies are)
    print_decisions: IO[str] | None = None  # decisions as JSON lines, as they happen
    # applied to the configuration whenever it is read (serve --podos-simulator points podOS at it)
    adjust_config: Callable[[Config], Config] | None = None
    idle_horizon: float = 0.0  # idle() counts a job due within this many seconds as work still to do


class Daemon:
    """``ruledesk serve`` without its HTTP server (``api.create_app`` serves this)."""

    def __init__(self, store: SqlStore, config: Config, options: Options, *, handlers: JobHandlers | None = None,
                 clients: dict[str, Any] | None = None, clock: Callable[[], _dt.datetime] = utcnow,
                 name: str | None = None) -> None:
        self.store = store
        self.config = config
        self.options = options
        self.clock = clock
        self.name = name or daemon_id()
        self.events = default_events()
        self.actions = default_actions(config)
        self.metrics = Metrics(store.counts)
        self.handlers = handlers if handlers is not None else HANDLERS.copy()
        self.clients = clients or {}
        self._engine: Engine | None = None
        self.ruleset_source = "files"  # or "store": the rule files have errors, the last good ruleset serves
        self.ruleset_problem: str | None = None
        self.store_problem: str | None = None
        self.stopping = threading.Event()
        self._wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy = 0  # workers and job runners in the middle of something
        self._busy_lock = threading.Lock()
        self.intake = Intake(store, self.engine, wall=self.wall, on_enqueued=self._enqueued)
        # SQLite written by workers of other processes makes a writer wait for the file lock: not on the event loop
        self.intake.inline = store.backend == "sqlite" and options.work
        self.workers = [Worker(store, self.engine, name=f"{self.name}-w{i}", lease=options.lease,
                               batch=options.batch, max_attempts=options.max_attempts, wall=self.wall,
                               on_handled=self._handled) for i in range(options.workers)]
        self.runners = [DurableRunner(store, self.engine, self.handlers, name=f"{self.name}-j{i}",
                                      clients=self.clients, clock=clock, lease=max(options.lease, 60.0),
                                      max_attempts=options.job_attempts, on_attempt=self._attempted)
                        for i in range(options.job_runners)]
        self.reloader = None
        self._reload_lock = threading.Lock()  # forced reloads without a reloader (--no-watch) run one at a time
        self.follows: list[threading.Thread] = []
        self._periods: dict[str, str] = {}
        self._old_rulesets: dict[str, Ruleset] = {}
        self.processed = 0
        self.received = 0

    def wall(self) -> float:
        return self.clock().timestamp()

    def engine(self) -> Engine:
        engine = self._engine
        if engine is None:
            raise RuntimeError("no ruleset is active")
        return engine

    @property
    def ruleset(self) -> Ruleset | None:
        return self._engine.ruleset if self._engine is not None else None

    # ---- rulesets ----------------------------------------------------------------------------
    def build(self) -> tuple[Ruleset, Config]:
        """The ruleset of the rule files now, and the configuration (all or nothing)."""
        from ruledesk.engine.model.config import load_config
        if self.options.config_path:
            config = load_config(self.options.config_path)
            if self.options.adjust_config is not None:
                config = self.options.adjust_config(config)
        else:
            config = self.config
        ruleset = load_ruleset(self.options.rules, self.events, default_actions(config))  # its templates folder
        if not ruleset.rules:
            raise ValueError(
                f"no rule file under {', '.join(self.options.rules)}: a folder with no rules is never activated")
        return ruleset.warm(), config

    def activate(self, ruleset: Ruleset, config: Config, source: str = "files") -> None:
        """Swap in a new engine atomically (a claim in progress finishes on the one it started with)."""
        engine = Engine(ruleset, events=self.events, actions=self.actions, stores=config.stores, config=config, handoff=True,
                        max_depth=config.limits.max_depth, max_firings=config.limits.max_firings)
        self.config = config
        self._engine = engine
        self.ruleset_source = source
        self.metrics.activate(ruleset.version, source)
        if source == "files":
            self.ruleset_problem = None
            try:
                self.store.save_ruleset(ruleset.version, json.dumps(ruleset.sources), self.wall())
            except StoreError as exc:
                log.error("could not persist the ruleset %s: %s", ruleset.version, exc)
        log.info("ruleset %s active (%d rules, from %s)", ruleset.version, len(ruleset.rules), source)

    def start_ruleset(self) -> None:
        """Activate the rule files' ruleset; if they have errors, the last good one the store kept
        (loudly); if there is none, raise the files' error."""
        try:
            ruleset, config = self.build()
        except Exception as exc:
            problem = _describe(exc)
            last = self.store.last_ruleset()
            if last is None:
                raise
            version, sources = last
            ruleset = build_ruleset(json.loads(sources), self.events, self.actions).warm()
            self.ruleset_problem = problem
            self.activate(ruleset, self.config, source="store")
            log.error("THE RULE FILES HAVE ERRORS: serving the last good ruleset %s from the store until they are "
                      "fixed\n%s", version, problem)
            self.metrics.reload_ok.set(0)
            return
        self.activate(ruleset, config)
        self.metrics.reload_ok.set(1)
        self.metrics.reload_time.set(self.wall())

    def reloaded(self, built: tuple[Ruleset, Config], seconds: float) -> None:
        ruleset, config = built
        previous = self.ruleset.version if self.ruleset is not None else None
        self.activate(ruleset, config)
        self.metrics.reload_ok.set(1)
        self.metrics.reload_time.set(self.wall())
        self.metrics.reloads.labels(result="success").inc()
        log.info("reloaded in %.3f s: ruleset %s -> %s", seconds, previous, ruleset.version)

    def reload_failed(self, exc: BaseException, seconds: float) -> None:
        self.ruleset_problem = _describe(exc)
        self.metrics.reload_ok.set(0)
        self.metrics.reloads.labels(result="failure").inc()
        log.error("reload failed; ruleset %s keeps running:\n%s", self.ruleset.version if self.ruleset else None,
                  self.ruleset_problem)

    def ruleset_for(self, version: str) -> Ruleset | None:
        """The ruleset ``version`` (the active one, or one the store kept), to explain old decisions."""
        active = self.ruleset
        if active is not None and active.version == version:
            return active
        cached = self._old_rulesets.get(version)
        if cached is None:
            sources = self.store.ruleset_sources(version)
            if sources is None:
                return None
            cached = build_ruleset(json.loads(sources), self.events, self.actions)
            if len(self._old_rulesets) >= 4:
                self._old_rulesets.pop(next(iter(self._old_rulesets)))
            self._old_rulesets[version] = cached
        return cached

    def explained(self, text: str) -> dict[str, Any]:
        """A stored decision with its explanation (``explain``) instead of the compact ``why``."""
        decision = load_json(text)  # numbers as Decimals, as the explanation compared them
        why = decision.pop("why", None)
        if why is not None:
            ruleset = self.ruleset_for(decision.get("ruleset", ""))
            decision["explain"] = (stored_explanation(why, ruleset) if ruleset is not None else
                                   [{"rule": entry[0], "fired": bool(entry[1])} for entry in why])
        return decision

    def request_reload(self) -> None:
        """Reload now (SIGHUP, ``ruledesk reload``), watching or not: with ``--no-watch`` there is no
        reloader, and the build runs on a thread of its own (one at a time, so the last files win)."""
        if self.reloader is not None:
            self.reloader.request()
            return
        threading.Thread(target=self._reload_now, name="reload", daemon=True).start()

    def _reload_now(self) -> None:
        with self._reload_lock:
            started = time.monotonic()
            try:
                built = self.build()
            except Exception as exc:
                self.reload_failed(exc, time.monotonic() - started)
                return
            self.reloaded(built, time.monotonic() - started)

    # ---- threads ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Recover, activate a ruleset and start the background threads."""
        if self.store.backend == "sqlite" and self.options.clear_leases:
            # one daemon per SQLite file: leases left by a killed daemon are its own
            self.store.clear_leases()
        self.store.sync_stores([(s.name, s.id) for s in self.config.stores], self.wall())
        if self._engine is None:
            self.start_ruleset()
        if self.options.work:
            for worker in self.workers:
                self._spawn(f"worker {worker.name}", self._loop, worker.run_once, self._wake)
            for runner in self.runners:
                self._spawn(f"jobs {runner.name}", self._loop, runner.run_once, None)
            self._spawn("leases", self._renew_leases)
            self._spawn("schedules", self._schedules)
        if self.options.watch:
            self._start_reloader()

    def _start_reloader(self) -> None:
        from ruledesk.engine.daemon.reloader import Reloader
        paths = list(self.options.rules)
        if self.options.config_path:
            paths.append(self.options.config_path)
            if self.config.email is not None:
                paths.append(str(Path(self.options.config_path).parent / self.config.email.templates))
        self.reloader = Reloader([p for p in paths if Path(p).exists()], self.build, on_success=self.reloaded,
                                 on_failure=self.reload_failed, debounce=self.options.debounce)
        self.reloader.start()

    def _spawn(self, name: str, target: Callable, *args: Any) -> threading.Thread:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
        return thread

    def _loop(self, step: Callable[[], int | bool], wake: threading.Event | None) -> None:
        failures = 0
        while not self.stopping.is_set():
            with self._busy_lock:
                self._busy += 1
            try:
                did = step()
                failures = 0
                self._store_ok()
            except StoreError as exc:  # the database is gone or full: report, back off, never crash-loop
                failures += 1
                self._store_failed("work", exc)
                did = 0
                backoff = min(30.0, 0.2 * 2 ** min(failures, 8))
                if wake is not None:  # an event taken in meanwhile says the store answers again: retry then
                    wake.clear()
                    wake.wait(backoff)
                else:
                    self.stopping.wait(backoff)
            except Exception:
                log.exception("unexpected error in %s", threading.current_thread().name)
                did = 0
                self.stopping.wait(1.0)
            finally:
                with self._busy_lock:
                    self._busy -= 1
            if not did:
                if wake is not None:
                    wake.wait(self.options.poll)
                    wake.clear()
                else:
                    self.stopping.wait(max(self.options.poll, 0.1))

    def _store_ok(self) -> None:
        if self.store_problem is not None:
            log.warning("the store answers again")
        self.store_problem = None
        self.metrics.store_up.set(1)

    def _store_failed(self, operation: str, exc: BaseException) -> None:
        if self.store_problem is None:
            log.error("the store failed (%s): %s; retrying with backoff", operation, exc)
        self.store_problem = str(exc)
        self.metrics.store_up.set(0)
        self.metrics.store_errors.labels(operation=operation).inc()

    def _renew_leases(self) -> None:
        while not self.stopping.wait(self.options.lease / 3):
            holders = [w.current for w in (*self.workers, *self.runners) if w.current]
            try:
                self.store.renew(holders, self.wall() + self.options.lease)
            except StoreError as exc:
                self._store_failed("renew", exc)

    def _schedules(self) -> None:
        while not self.stopping.wait(self.options.schedule_tick):
            try:
                self.schedule_now()
            except StoreError as exc:
                self._store_failed("schedule", exc)
            except Exception:
                log.exception("scheduling failed")

    def schedule_now(self) -> int:
        """Put this period's run of each ``every D in folder F`` rule in the inbox, once per order
        of the folder: the event id names the period, so a restart never runs a period twice."""
        ruleset = self.ruleset
        if ruleset is None:
            return 0
        queued = 0
        for key, rule, trigger, period in schedule_periods(ruleset, self.wall()):
            if self._periods.get(key) == period:
                continue
            items = [schedule_run(rule, trigger, period, store, order_id) for store in self._store_names()
                     for order_id in self.store.orders_in_folder(store, trigger.folder)]
            if items:
                queued += sum(self.intake.write(items))
            self._periods[key] = period
        return queued

    def _store_names(self) -> list[str]:
        configured = [s.name for s in self.config.stores]
        return configured or self.store.order_stores()

    # ---- follow intake --------------------------------------------------------------------------
    def follow(self, source: str, *, keep_following: bool = True) -> threading.Thread:
        """Read JSONL events from a file (``-``: standard input) into the inbox; a file is followed
        as it grows (like ``tail -f``) unless ``keep_following`` is False."""
        thread = self._spawn(f"follow {source}", self._follow, source, keep_following)
        self.follows.append(thread)
        return thread

    def _follow(self, source: str, keep_following: bool) -> None:
        stream = sys.stdin.buffer if source == "-" else open(source, "rb")  # noqa: SIM115 (closed below)
        number = 0
        pending: list[Inbound] = []
        partial = b""
        cap = self.options.max_line
        too_long = b""  # the start of a line over the cap, while the rest of it is skipped
        try:
            while not self.stopping.is_set():
                line = stream.readline(cap + 1)
                if line and (too_long or len(partial) + len(line) > cap):
                    too_long = too_long or (partial + line)[:200]
                    partial = b""
                    if line.endswith(b"\n"):  # the end of the long line: refused, kept (its start) for inspection
                        number += 1
                        self._refuse(f"{source}:{number}", too_long + b"...",
                                     IntakeError(413, f"the line is longer than {cap} bytes"))
                        too_long = b""
                    continue
                if line and not line.endswith(b"\n") and (source != "-" or len(line) > cap):
                    partial += line  # a line still being written (or read in parts): wait for its end
                    line = b""
                if line:
                    line, partial = partial + line, b""
                    number += 1
                    self._take_line(source, number, line, pending)
                    if len(pending) >= 500:
                        self._flush(pending)
                    continue
                self._flush(pending)
                if source == "-" or not keep_following:
                    if partial:
                        number += 1
                        self._take_line(source, number, partial, pending)
                        self._flush(pending)
                    return
                self.stopping.wait(0.2)
        finally:
            self._flush(pending)
            if source != "-":
                stream.close()

    def _take_line(self, source: str, number: int, line: bytes, pending: list[Inbound]) -> None:
        if not line.strip():
            return
        where = f"{source}:{number}"
        data = None
        try:
            try:
                data = parse_body(line)
                pending.append(self.intake.one(data, source="follow"))
            except IntakeError:
                raise
            except Exception as exc:  # a line must never end the follow thread: it is refused, the next one read
                log.exception("%s: could not take the line", where)
                raise IntakeError(422, f"could not take the line: {type(exc).__name__}: {exc}") from None
        except IntakeError as exc:
            self._refuse(where, line, exc, data)

    def _refuse(self, where: str, line: bytes, exc: IntakeError, data: Any = None) -> None:
        """Count, log and keep a refused line (secrets redacted), waiting for the store if it is down."""
        self.metrics.refused.labels(status=str(exc.status)).inc()
        log.error("%s: refused: %s", where, exc.message)
        while True:
            try:
                self.store.reject(where, _redacted(line, data), exc.message, self.wall())
                return
            except StoreError as err:
                self._store_failed("reject", err)
                if self.stopping.wait(1.0):
                    return

    def _flush(self, pending: list[Inbound]) -> None:
        while pending:
            try:
                self.intake.write(pending)
                pending.clear()
                self._store_ok()
            except StoreError as exc:
                self._store_failed("intake", exc)
                if self.stopping.wait(1.0):
                    return

    # ---- callbacks --------------------------------------------------------------------------------
    def _enqueued(self, items: list[Inbound], new: list[bool]) -> None:
        for item, fresh in zip(items, new):
            if fresh:
                self.received += 1
                self.metrics.received.labels(event=item.name).inc()
            else:
                self.metrics.duplicates.inc()
        self._wake.set()

    def _handled(self, handled: list[Handled]) -> None:
        out = self.options.print_decisions
        for one in handled:
            event = one.event
            if one.error is not None:
                self.metrics.failed.labels(event=event.name).inc()
                events_log.warning(({"msg": "event failed", "event": event.name, "event_id": event.id,
                                               "order_id": event.order_id, "store": event.store,
                                               "attempt": event.attempts + 1, "error": one.error}))
                continue
            self.processed += 1
            self.metrics.processed.labels(event=event.name).inc()
            self.metrics.latency.observe(one.seconds)
            decisions = one.result.decisions
            events_log.info(({
                "msg": "event processed", "event": event.name, "event_id": event.id, "order_id": event.order_id,
                "store": event.store, "ruleset": decisions[0].ruleset if decisions else None,
                "fired": [name for d in decisions for name in d.fired],
                "duration_ms": round(one.seconds * 1000, 3)}))
            if out is not None:
                for decision in decisions:
                    out.write(decision.to_json_text() + "\n")
        if out is not None:
            out.flush()

    def _attempted(self, attempt: JobAttempt) -> None:
        kind = attempt.job.kind
        self.metrics.job_runs.labels(kind=kind).inc()
        if attempt.status == "retry":
            self.metrics.job_retries.labels(kind=kind).inc()
        elif attempt.status == "failed":
            self.metrics.job_failures.labels(kind=kind).inc()
        log.info(({"msg": "job " + attempt.status, "kind": kind, "key": attempt.job.key,
                             "order_id": attempt.job.order_id, "attempt": attempt.attempt, "error": attempt.error}))
        self._wake.set()

    # ---- state -------------------------------------------------------------------------------------
    def idle(self) -> bool:
        """Nothing left to do now: follow inputs read, no pending event, no job due, nothing running."""
        if any(t.is_alive() for t in self.follows):
            return False
        with self._busy_lock:
            if self._busy:
                return False
        counts = self.store.counts()
        if counts.get("events_pending"):
            return False
        due = self.store.next_job_due()
        return due is None or due > self.wall() + self.options.idle_horizon

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        report: dict[str, Any] = {"daemon": self.name}
        ok = True
        try:
            self.store.ping()
            report["store"] = {"ok": True, "url": self.store.url_for_display}
            self._store_ok()
        except StoreError as exc:
            ok = False
            report["store"] = {"ok": False, "url": self.store.url_for_display, "error": str(exc)}
        ruleset = self.ruleset
        if ruleset is None:
            ok = False
            report["ruleset"] = None
        else:
            report["ruleset"] = {"version": ruleset.version, "rules": len(ruleset.rules), "source": self.ruleset_source}
        if self.ruleset_problem:
            report["warning"] = ("the rule files have errors: the last good ruleset keeps serving"
                                 if self.ruleset_source == "store" else
                                 "the last reload failed: the previous ruleset keeps serving")
            report["problems"] = self.ruleset_problem
        if self.store_problem and ok:
            report["store"]["last_error"] = self.store_problem
        return ok, report

    def stop(self, timeout: float = 8.0) -> None:
        """Finish the work in progress (commit it) and stop every thread within ``timeout``."""
        self.stopping.set()
        self._wake.set()
        if self.reloader is not None:
            self.reloader.stop(timeout=2.0)
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            log.warning("stopped with work still running (its leases end by themselves): %s", ", ".join(stuck))


def _redacted(line: bytes, data: Any) -> str:
    """A refused line as the rejects table keeps it: an inline store's secrets (api_key,
    podos.token) replaced, so a refused line never puts a secret in the database."""
    text = line.decode("utf-8", "replace")
    if data is None and ('"api_key"' in text or '"token"' in text):  # not read as JSON: cannot redact, not kept
        return "(not kept: the line may carry store secrets)\n"
    store = data.get("store") if isinstance(data, dict) else None
    if not isinstance(store, dict):
        return text
    podos = store.get("podos")
    if "api_key" not in store and not (isinstance(podos, dict) and "token" in podos):
        return text
    store = {**store, **({"api_key": "[redacted]"} if "api_key" in store else {})}
    if isinstance(podos, dict) and "token" in podos:
        store["podos"] = {**podos, "token": "[redacted]"}
    try:
        return json.dumps({**data, "store": store}, ensure_ascii=False, default=str) + "\n"
    except (TypeError, ValueError):
        return "(not kept: the line carried store secrets)\n"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RulesetError):
        return format_diagnostics([d for d in exc.diagnostics if d.is_error], exc.sources)
    return str(exc)


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()
