"""`ruledesk serve`: the daemon (HTTP API, JSONL intake, workers, jobs, schedules, hot reload);
`ruledesk tokens create`; `ruledesk reload`."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import quote
from pathlib import Path
from collections.abc import Callable
from typing import Annotated, Any

import typer

from ruledesk.engine.cli.options import EXIT_ERRORS, EXIT_USAGE, ConfigOption, RulesOption, load_config_or_exit, \
    rule_paths, stderr
from ruledesk.engine.model.config import Config
from ruledesk.engine.model.settings import StoreSettings
from ruledesk.engine.store import StoreError, open_store

DEFAULT_DB = "sqlite:///ruledesk.db"
DEFAULT_PIDFILE = "ruledesk.pid"

DbOption = Annotated[str, typer.Option("--db", metavar="URL", help="sqlite:///path/file.db or postgresql://...")]
PidfileOption = Annotated[str, typer.Option("--pidfile", metavar="FILE", help="Where serve writes its process id "
                                            "(reload reads it).")]


class JsonLogs(logging.Formatter):
    """One JSON object per line: time, level, logger and the message (a dict message is merged in)."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                                "logger": record.name}
        if isinstance(record.msg, dict):
            data.update(record.msg)
        else:
            data["msg"] = record.getMessage()
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def _logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogs())
    root = logging.getLogger("ruledesk")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def serve(
    rules: RulesOption = None,
    db: DbOption = DEFAULT_DB,
    host: Annotated[str, typer.Option("--host", metavar="H", help="The address the HTTP API listens on.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="N", help="The HTTP API's port (0: any free port).")] = 8080,
    config: ConfigOption = None,
    follow: Annotated[list[str] | None, typer.Option(
        "--follow", metavar="FILE", show_default=False,
        help="Read JSONL events from FILE as it grows (\"-\": standard input), besides the HTTP API.")] = None,
    exit_when_idle: Annotated[bool, typer.Option(
        "--exit-when-idle", help="Stop once the --follow inputs are read and nothing is left to do.")] = False,
    workers: Annotated[int, typer.Option("--workers", min=0, metavar="N", help="Worker processes running the "
                                         "rules (0: in this process; N: this process only takes events in).")] = 0,
    lease: Annotated[float, typer.Option("--lease", min=1.0, metavar="SECONDS",
                                         help="How long a claim holds its orders (renewed while it works).")] = 30.0,
    max_body: Annotated[int, typer.Option("--max-body", metavar="BYTES", help="Larger request bodies get 413.")]
    = 5 * 1024 * 1024,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not print the decisions on standard output.")]
    = False,
    static: Annotated[bool, typer.Option("--static", help="Do not watch the rule files, templates and "
                                         "configuration (SIGHUP or `ruledesk reload` still reloads).")] = False,
    log_level: Annotated[str, typer.Option("--log-level", metavar="LEVEL")] = "info",
    pidfile: PidfileOption = DEFAULT_PIDFILE,
    role: Annotated[str, typer.Option("--role", hidden=True)] = "all",
    podos_simulator: Annotated[bool, typer.Option(
        "--podos-simulator", help="Start a podOS simulator (shipping each order a second after it is submitted) "
        "and point every configured store's podOS at it, shipment callbacks included (demos, trials).")] = False,
    mail_sink: Annotated[bool, typer.Option(
        "--mail-sink", help="Start a local SMTP server that logs the email the rules send (\"mail received\" "
        "lines) instead of delivering it, and point email at it (demos, trials).")] = False,
    mail_at: Annotated[str | None, typer.Option("--mail-at", hidden=True)] = None,
    podos_at: Annotated[str | None, typer.Option("--podos-at", hidden=True)] = None,
    podos_callback: Annotated[str | None, typer.Option("--podos-callback", hidden=True)] = None,
) -> None:
    """Run the daemon: events in over HTTP (and --follow), rules run, effects out exactly once.

    Events are stored before they are acknowledged; workers run them, one order at a time and in
    order, and commit each event's order change, decisions and jobs in one transaction; jobs run
    once in effect; `every D in folder` rules run once per period; rule files reload when they
    change (SIGHUP or `ruledesk reload` forces it).  Decisions are printed as JSON lines on
    stdout, logs are JSON lines on stderr.  SIGTERM or Ctrl-C drains the work in progress and stops.
    """
    import uvicorn

    from ruledesk.engine.daemon.api import create_app
    from ruledesk.engine.daemon.service import Daemon, Options

    err = stderr()
    _logging(log_level)
    if config is None and Path("ruledesk.yaml").is_file():
        config = "ruledesk.yaml"
    settings = load_config_or_exit(config, err) or Config()
    simulator = None
    if podos_simulator and role != "worker":
        simulator = _start_simulator(settings, err)
        podos_at = simulator.url
    if mail_sink and role != "worker":
        sink = _start_mail_sink(err, simulator)
        simulator = _DemoServers(simulator, sink)
        mail_at = sink.url
    sock = None
    if role != "worker":
        sock = _listen(host, port, err, simulator)
        bound = sock.getsockname()[1]
        if simulator is not None:
            podos_callback = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{bound}"
    adjust = _overrides(_podos_override(podos_at, podos_callback) if podos_at else None,
                        _mail_override(mail_at) if mail_at else None)
    if adjust is not None:
        settings = adjust(settings)
    try:
        store = open_store(db)
    except (StoreError, ValueError) as exc:
        err.print(f"error: {exc}")
        _close(sock, simulator)
        raise typer.Exit(EXIT_USAGE) from None
    options = Options(rules=rule_paths(rules), config_path=config, lease=lease, watch=not static,
                      print_decisions=None if quiet else sys.stdout, work=workers == 0 or role == "worker",
                      clear_leases=role == "all", adjust_config=adjust, idle_horizon=IDLE_HORIZON)
    daemon = Daemon(store, settings, options)
    try:
        daemon.start_ruleset()
    except Exception as exc:
        from ruledesk.engine.daemon.service import _describe
        err.print(_describe(exc))
        err.print("error: the rule files have errors and the store has no earlier ruleset to serve; nothing runs")
        store.close()
        _close(sock, simulator)
        raise typer.Exit(EXIT_ERRORS) from None
    if daemon.ruleset_source == "store":
        err.print(f"WARNING: the rule files have errors; serving the last good ruleset {daemon.ruleset.version} "
                  "from the store (see /readyz)")
    if role == "worker":
        _work(daemon, store)
        return
    app = create_app(daemon, max_body=max_body)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                           timeout_graceful_shutdown=5))
    def on_signal(signum: int, frame: Any) -> None:
        # Before uvicorn has put its own handlers in (start-up) a stop must not be lost; after it
        # restores these, it re-raises the signals it caught, which find the server stopped.
        server.should_exit = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    children: list[subprocess.Popen] = []

    def on_hup(signum: int, frame: Any) -> None:
        daemon.request_reload()
        for child in children:
            child.send_signal(signal.SIGHUP)

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_hup)
    Path(pidfile).write_text(f"{os.getpid()}\n", encoding="utf-8")
    daemon.start()
    if workers:
        args = [sys.executable, "-m", "ruledesk.engine.cli", "serve", "--role", "worker", "--db", db,
                "--lease", str(lease), "--log-level", log_level, ] + (["--static"] if static else [])
        args += [part for path in options.rules for part in ("--rules", path)]
        args += ["--config", config] if config else []
        args += ["--quiet"] if quiet else []
        args += ["--podos-at", podos_at] if podos_at else []
        args += ["--mail-at", mail_at] if mail_at else []
        args += ["--podos-callback", podos_callback] if podos_callback else []
        children.extend(subprocess.Popen(args) for _ in range(workers))
    for source in follow or ():
        daemon.follow(source, keep_following=not exit_when_idle)
    logging.getLogger("ruledesk.daemon").info(
        {"msg": "serving", "url": f"http://{host}:{bound}", "db": store.url_for_display,
         "ruleset": daemon.ruleset.version, "pid": os.getpid()})
    if podos_simulator and podos_at:
        err.print(f"podOS simulator on {podos_at} (ships each order {SIMULATOR_SHIPS_AFTER:g} s after it is "
                  "submitted; shipments come back by callback and by polling)")
    if mail_sink and mail_at:
        err.print(f"mail sink on {mail_at} (the email the rules send is logged as \"mail received\", not delivered)")
    err.print(f"ruledesk serving on http://{host}:{bound} (store {store.url_for_display}, "
              f"ruleset {daemon.ruleset.version[:19]}); Ctrl-C stops")
    watchers = []
    if exit_when_idle:
        watchers.append(threading.Thread(target=_exit_when_idle, args=(daemon, server), daemon=True))
    if sys.stderr.isatty():
        watchers.append(threading.Thread(target=_progress, args=(daemon, server), daemon=True))
    for thread in watchers:
        thread.start()
    try:
        server.run(sockets=[sock])
    finally:
        # already stopping: a second SIGTERM or Ctrl-C must not cut the drain short (the event loop,
        # once closed, may have put the default handlers back)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for child in children:
            child.send_signal(signal.SIGTERM)
        daemon.stop()
        for child in children:
            try:
                child.wait(timeout=9)
            except subprocess.TimeoutExpired:
                child.kill()
        store.close()
        _close(None, simulator)
        with contextlib.suppress(OSError):
            Path(pidfile).unlink()
    err.print(f"ruledesk stopped: {daemon.received} events received, {daemon.processed} processed")


IDLE_HORIZON = 30.0  # --exit-when-idle waits for jobs due within this many seconds (podOS status polls)
SIMULATOR_SHIPS_AFTER = 1.0


def _listen(host: str, port: int, err: Any, simulator: Any) -> socket.socket:
    """The API's listening socket, bound before anything is configured with its address."""
    try:
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on connections of a socket that says it is
        # TCP; without it every response on a kept-alive connection waits ~40 ms (Nagle + delayed ACK)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                             socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # before "serving on" is printed: a client acting on that line is not refused
    except OSError as exc:
        err.print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}")
        _close(None, simulator)
        raise typer.Exit(EXIT_USAGE) from None
    return sock


class _DemoServers:
    """The demo servers started beside the daemon (the podOS simulator, the mail sink), stopped together."""

    def __init__(self, *servers: Any) -> None:
        self.servers = [server for server in servers if server is not None]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def _start_mail_sink(err: Any, simulator: Any) -> Any:
    from ruledesk.actions.mailsink import MailSink, MailSinkUnavailable

    try:
        return MailSink().start()
    except (MailSinkUnavailable, OSError) as exc:
        err.print(f"error: {exc}")
        if simulator is not None:
            simulator.stop()
        raise typer.Exit(EXIT_USAGE) from None


def _mail_override(url: str) -> Callable[[Config], Config]:
    """Send every email to the mail sink at ``url`` (the configuration's From and templates kept)."""

    def adjust(config: Config) -> Config:
        from ruledesk.engine.model.config import EmailSettings

        if config.email is None:
            email = EmailSettings.model_validate({"smtp": url, "from": "ruledesk@localhost"})
        else:
            email = config.email.model_copy(update={"smtp": url, "starttls": False, "username": None,
                                                    "password": None, "ca_file": None})
        return config.model_copy(update={"email": email})

    return adjust


def _overrides(*adjusts: Callable[[Config], Config] | None) -> Callable[[Config], Config] | None:
    """One configuration adjustment doing each of ``adjusts`` (None: there is none)."""
    given = [adjust for adjust in adjusts if adjust is not None]
    if not given:
        return None

    def adjust(config: Config) -> Config:
        for one in given:
            config = one(config)
        return config

    return adjust


def _close(sock: socket.socket | None, simulator: Any) -> None:
    if sock is not None:
        sock.close()
    if simulator is not None:
        simulator.stop()


def _start_simulator(settings: Config, err: Any) -> Any:
    """A podOS simulator on a free loopback port, taking the configured stores' podOS token."""
    from ruledesk.actions.podos.simulator import Simulator

    tokens = {s.podos.token.get_secret_value() for s in settings.stores if s.podos is not None}
    if len(tokens) != 1:
        err.print("error: --podos-simulator needs a configuration (--config) whose stores have podos: settings "
                  "with one token" + (" (they have different tokens)" if tokens else ""))
        raise typer.Exit(EXIT_USAGE)
    return Simulator(token=tokens.pop(), ship_after=SIMULATOR_SHIPS_AFTER).start()


def _podos_override(url: str, callback_base: str | None) -> Callable[[Config], Config]:
    """Point every store's podOS at ``url`` and its shipment callbacks at this daemon."""

    def adjust(config: Config) -> Config:
        stores = []
        for store in config.stores:
            if store.podos is not None:
                update: dict[str, Any] = {"url": url}
                if callback_base:
                    update["callback_url"] = f"{callback_base}/v1/callbacks/podos/{quote(store.name, safe='')}"
                store = StoreSettings.model_validate({**dict(store), "podos": store.podos.model_copy(update=update)})
            stores.append(store)
        return config.model_copy(update={"stores": stores})

    return adjust


def _work(daemon: Any, store: Any) -> None:
    """A worker process of `serve --workers N`: rules, jobs and schedules, no intake; it stops on
    SIGTERM (draining) or when the serving process is gone."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda signum, frame: daemon.request_reload())
    parent = os.getppid()
    daemon.start()
    try:
        while not stop.wait(0.5):
            if os.getppid() != parent:
                break
    finally:
        daemon.stop()
        store.close()


def _exit_when_idle(daemon: Any, server: Any) -> None:
    quiet_since = None
    while not server.should_exit:
        time.sleep(0.1)
        try:
            idle = daemon.idle()
        except StoreError:
            idle = False
        if not idle:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 0.3:
            server.should_exit = True


def _progress(daemon: Any, server: Any) -> None:
    while not server.should_exit:
        time.sleep(1.0)
        try:
            counts = daemon.store.counts()
        except StoreError:
            counts = {}
        line = (f"received {daemon.received}, processed {daemon.processed}, pending {counts.get('events_pending', 0)}"
                f", poison {counts.get('events_poison', 0)}, jobs pending {counts.get('jobs_pending', 0)}"
                f" | ruleset {daemon.ruleset.version[7:19] if daemon.ruleset else '-'}")
        sys.stderr.write(f"\r\033[K{line}")
        sys.stderr.flush()


tokens_app = typer.Typer(help="API tokens: one store each, read or write scope.", no_args_is_help=True,
                         rich_markup_mode=None)


@tokens_app.command("create")
def create_token(
    store: Annotated[str, typer.Option("--store", metavar="NAME", help="The store the token may use.")],
    scope: Annotated[str, typer.Option("--scope", metavar="read|write", help="read: GET only; write: also post "
                                       "events, press buttons, replay.")] = "read",
    db: DbOption = DEFAULT_DB,
    label: Annotated[str | None, typer.Option("--label", metavar="TEXT", help="A note to tell tokens apart.")]
    = None,
) -> None:
    """Create an API token; it is printed once, alone as the last word of the last line (only its
    hash is stored)."""
    err = stderr()
    if scope not in ("read", "write"):
        err.print(f"error: --scope is read or write, not {scope!r}")
        raise typer.Exit(EXIT_USAGE)
    try:
        with open_store(db) as opened:
            known = opened.store_names()
            if known and store not in known:
                err.print(f"warning: store {store!r} is not in the configuration the daemon last started with "
                          f"({', '.join(known)})")
            token = opened.create_token(store, scope, time.time(), label)
    except (StoreError, ValueError) as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    print(f"created a {scope} token for store {store}; it is shown only now:\n{token}")


@tokens_app.command("revoke")
def revoke_token(
    token: Annotated[str, typer.Argument(metavar="TOKEN", help="The token to revoke.")],
    db: DbOption = DEFAULT_DB,
) -> None:
    """Revoke an API token: running daemons refuse it within 30 seconds."""
    err = stderr()
    try:
        with open_store(db) as opened:
            gone = opened.revoke_token(token)
    except (StoreError, ValueError) as exc:
        err.print(f"error: {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    if not gone:
        err.print("error: no such token")
        raise typer.Exit(EXIT_ERRORS)
    print("revoked")


def reload(pidfile: PidfileOption = DEFAULT_PIDFILE,
           pid: Annotated[int | None, typer.Option("--pid", metavar="PID", help="The daemon's process id "
                                                   "(instead of --pidfile).", show_default=False)] = None) -> None:
    """Make a running `ruledesk serve` reload its rule files and configuration now (SIGHUP)."""
    err = stderr()
    if pid is None:
        try:
            pid = int(Path(pidfile).read_text(encoding="utf-8").strip())
        except (OSError, ValueError) as exc:
            err.print(f"error: cannot read the daemon's pid from {pidfile}: {getattr(exc, 'strerror', None) or exc}")
            raise typer.Exit(EXIT_USAGE) from None
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as exc:
        err.print(f"error: cannot signal process {pid}: {exc.strerror or exc}")
        raise typer.Exit(EXIT_USAGE) from None
    print(f"asked ruledesk (pid {pid}) to reload")
