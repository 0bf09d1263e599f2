"""Where the daemon keeps its state: the Store interface and its SQLite and PostgreSQL backends."""

from __future__ import annotations

from ruledesk.engine.store.base import StoreError
from ruledesk.engine.store.sql import SqlStore

Store = SqlStore

__all__ = ["Store", "StoreError", "open_store"]


def open_store(url: str, *, migrate: bool = True, **options) -> SqlStore:
    """Open the store at ``url`` (``sqlite:///path/file.db``, ``sqlite:///:memory:`` or
    ``postgresql://...``) and bring its schema up to date."""
    if url.startswith("sqlite:///"):
        from ruledesk.engine.store.sqlite import SqliteStore
        store: SqlStore = SqliteStore(url.removeprefix("sqlite:///"), url=url, **options)
    elif url.startswith(("postgresql://", "postgres://")):
        from ruledesk.engine.store.postgres import PostgresStore
        store = PostgresStore(url, **options)
    else:
        raise ValueError(f"--db takes sqlite:///path/file.db or postgresql://..., not {url!r}")
    if migrate:
        try:
            store.migrate()
        except BaseException:
            store.close()
            raise
    return store
