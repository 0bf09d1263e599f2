"""The SQLite store: one file, WAL, one connection per thread; the embedded default (one daemon per file)."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from ruledesk.engine.store.base import StoreError
from ruledesk.engine.store.sql import SqlStore, Tx


class SqliteStore(SqlStore):
    backend = "sqlite"
    ID = "INTEGER PRIMARY KEY AUTOINCREMENT"
    REAL = "REAL"

    def __init__(self, path: str | Path, *, url: str | None = None, timeout: float = 30.0) -> None:
        self.path = str(path)
        self.url = url or f"sqlite:///{self.path}"
        self.timeout = timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if self.path != ":memory:" and not self.path.startswith("file:"):
            parent = Path(self.path).expanduser().resolve().parent
            if not parent.is_dir():
                raise StoreError(f"cannot open {self.url}: the folder {parent} does not exist")

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                       check_same_thread=False, uri=self.path.startswith("file:"))
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot open {self.url}: {exc}") from None
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Tx]:
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"{self.url}: {exc}") from None
        try:
            yield Tx(conn.cursor(), "?")
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise StoreError(f"{self.url}: {exc}") from None
            raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[Tx]:
        conn = self._connection()
        try:
            yield Tx(conn.cursor(), "?")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"{self.url}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
        self._local = threading.local()
