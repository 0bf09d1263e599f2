"""A throwaway PostgreSQL server in a temporary directory, and fresh databases on a server, for tests and benchmarks."""

from __future__ import annotations

import atexit
import glob
import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

RUN_AS = "postgres"  # initdb and postgres refuse to run as root
HOST = "127.0.0.1"
SETTINGS = {  # throwaway: nothing needs to survive a crash, so nothing waits for the disk
    "listen_addresses": f"'{HOST}'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}
HBA = f"local all all trust\nhost all all {HOST}/32 trust\n"
START_ATTEMPTS = 3  # a port picked free may be taken before the server binds it (parallel test workers)
LOG_TAIL_LINES = 20


def find_binaries() -> Path | None:
    """The folder of initdb and pg_ctl: $RULEDESK_PG_BIN, else the newest /usr/lib/postgresql/*/bin,
    else ``pg_config --bindir``; None when there is no PostgreSQL server here."""
    given = os.environ.get("RULEDESK_PG_BIN")
    if given:
        return Path(given) if (Path(given) / "pg_ctl").is_file() else None
    versions = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if (Path(p) / "pg_ctl").is_file()]
    numbered = [p for p in versions if p.parent.name.isdigit()]
    if numbered:
        return max(numbered, key=lambda p: int(p.parent.name))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None
        if (Path(bindir) / "pg_ctl").is_file():
            return Path(bindir)
    return None


class DatabaseServer:
    """A PostgreSQL server we may create databases on (``url`` names any database we can connect to):
    ``new_database`` makes an empty one, ``drop_created`` drops every one it made."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.created: list[str] = []

    def new_database(self, name: str | None = None) -> str:
        """Create an empty database (a unique name when none is given) and return its URL."""
        name = name or f"ruledesk_{uuid.uuid4().hex[:12]}"
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
            raise ValueError(f"a database name is lowercase letters, digits and _ (at most 63): {name!r}")
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.created.append(name)
        return _with_database(self.url, name)

    def drop_created(self) -> None:
        """Drop every database ``new_database`` made, disconnecting whoever still uses it."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            while self.created:
                name = self.created.pop()
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _with_database(url: str, name: str) -> str:
    """``url`` naming the database ``name`` instead (query parameters kept)."""
    base, sep, query = url.partition("?")
    scheme, _, rest = base.partition("://")
    authority = rest.split("/", 1)[0]
    return f"{scheme}://{authority}/{name}{sep}{query}"


class TempCluster:
    """A PostgreSQL server of its own in a fresh temporary directory: 127.0.0.1 on a free port, unix
    sockets in the directory, trust authentication, no fsync; the database ``ruledesk`` at ``url``.

    ``with TempCluster() as cluster:`` (or ``start()`` and ``stop()``); stopped and removed at exit
    too, so a test run that crashes leaves no server and no directory behind.
    """

    def __init__(self, bin_dir: str | Path | None = None, database: str = "ruledesk") -> None:
        found = Path(bin_dir) if bin_dir is not None else find_binaries()
        if found is None:
            raise RuntimeError("no PostgreSQL server binaries found (set RULEDESK_PG_BIN to the folder of pg_ctl)")
        self.bin_dir = found
        self.database = database
        self.directory: Path | None = None
        self.port: int | None = None
        self._server: DatabaseServer | None = None

    @property
    def url(self) -> str:
        """The URL of the ``ruledesk`` database (``postgresql://postgres@127.0.0.1:PORT/ruledesk``)."""
        return _with_database(self._running().url, self.database)

    @property
    def data_dir(self) -> Path:
        return self._directory() / "data"

    @property
    def log_file(self) -> Path:
        return self._directory() / "server.log"

    def __enter__(self) -> TempCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> TempCluster:
        """Create the cluster and start the server; RuntimeError with the server log's tail if it cannot."""
        if self._server is not None:
            return self
        self.directory = Path(tempfile.mkdtemp(prefix="ruledesk-pg-"))
        atexit.register(self.stop)
        try:
            if os.geteuid() == 0:
                shutil.chown(self.directory, RUN_AS, RUN_AS)
            self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "-A", "trust", "-E", "UTF8",
                      "--locale=C", "--no-sync", "--no-instructions")
            (self.data_dir / "pg_hba.conf").write_text(HBA, encoding="utf-8")
            self._start_server()
            self._server = DatabaseServer(f"postgresql://postgres@{HOST}:{self.port}/postgres")
            self._server.new_database(self.database)
        except BaseException:
            self.stop()
            raise
        return self

    def new_database(self, name: str | None = None) -> str:
        """Create another empty database (a unique name when none is given) and return its URL."""
        return self._running().new_database(name)

    def stop(self) -> None:
        """Stop the server at once (nothing needs a clean shutdown) and remove the directory."""
        atexit.unregister(self.stop)
        directory, self.directory, self._server = self.directory, None, None
        if directory is None:
            return
        if (directory / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "stop", "-D", str(directory / "data"), "-m", "immediate", "-w", check=False)
        shutil.rmtree(directory, ignore_errors=True)

    def _start_server(self) -> None:
        for attempt in range(START_ATTEMPTS):
            self.port = _free_port()
            options = " ".join(f"-c {key}={value}" for key, value in SETTINGS.items())
            options += f" -p {self.port} -k {self._directory()}"
            started = self._run("pg_ctl", "start", "-D", str(self.data_dir), "-l", str(self.log_file), "-w",
                                "-t", "30", "-o", options, check=False)
            if started.returncode == 0:
                return
            log = self._log_tail()
            if "could not bind" not in log or attempt == START_ATTEMPTS - 1:
                raise RuntimeError(f"PostgreSQL did not start (pg_ctl: {started.stdout.strip()}); "
                                   f"the end of its log:\n{log}")
            self.log_file.unlink(missing_ok=True)

    def _run(self, program: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", RUN_AS, "--", *command]
        done = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, cwd="/")  # a folder the postgres user may enter
        if check and done.returncode != 0:
            raise RuntimeError(f"{program} failed ({done.returncode}): {done.stdout.strip()}")
        return done

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def _directory(self) -> Path:
        if self.directory is None:
            raise RuntimeError("the cluster is not started")
        return self.directory

    def _running(self) -> DatabaseServer:
        if self._server is None:
            raise RuntimeError("the cluster is not started")
        return self._server


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]
