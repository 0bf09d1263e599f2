"""Fixtures every test may use: a PostgreSQL server ($RULEDESK_TEST_PG, else a throwaway one) and a fresh database on it."""

from __future__ import annotations

import os

import pytest


def _unavailable(reason: str) -> None:
    """Without PostgreSQL its tests are skipped, except on CI, where they must run."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required on CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_cluster():
    """A throwaway PostgreSQL server of this test process (one per xdist worker)."""
    from ruledesk.engine.store.pgtemp import TempCluster

    try:
        cluster = TempCluster().start()
    except RuntimeError as exc:
        _unavailable(f"cannot start a throwaway PostgreSQL: {exc}")
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def pg_server(request):
    """A server to create databases on (``.new_database() -> url``): $RULEDESK_TEST_PG, else ``pg_cluster``."""
    url = os.environ.get("RULEDESK_TEST_PG")
    if not url:
        yield request.getfixturevalue("pg_cluster")
        return
    import psycopg

    from ruledesk.engine.store.pgtemp import DatabaseServer

    server = DatabaseServer(url)
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        _unavailable(f"cannot connect to RULEDESK_TEST_PG: {exc}")
    yield server
    server.drop_created()


@pytest.fixture
def pg_url(pg_server) -> str:
    """The URL of a fresh, empty database for this test."""
    return pg_server.new_database()


@pytest.fixture
def serves():
    """Start ``ruledesk serve`` processes with ``serves(workdir, db, rules, *args)`` (support.Serve);
    every one still running is killed at the end."""
    from support import Serve

    started = []

    def make(*args, **kwargs):
        serve = Serve(*args, **kwargs)
        started.append(serve)
        return serve.start()

    yield make
    for serve in started:
        if serve.alive():
            serve.kill()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_store(request, tmp_path):
    """An empty store on each backend in turn: a SQLite file, then a fresh PostgreSQL database."""
    from ruledesk.engine.store import open_store

    url = f"sqlite:///{tmp_path}/t.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    store = open_store(url)
    yield store
    store.close()
