"""The throwaway PostgreSQL server: it starts, isolates databases, listens on 127.0.0.1 only, and leaves nothing behind."""

from __future__ import annotations

import socket

import psycopg
import pytest

from ruledesk.engine.store import pgtemp
from ruledesk.engine.store.pgtemp import TempCluster, find_binaries


def test_the_cluster_accepts_connections_to_its_ruledesk_database(pg_cluster) -> None:
    assert pg_cluster.url == f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/ruledesk"
    with psycopg.connect(pg_cluster.url) as conn:
        database, fsync, connections = conn.execute(
            "SELECT current_database(), current_setting('fsync'), current_setting('max_connections')").fetchone()
    assert (database, fsync, connections) == ("ruledesk", "off", "200")


def test_new_databases_are_isolated(pg_cluster) -> None:
    first, second = pg_cluster.new_database("isolated_a"), pg_cluster.new_database()
    assert first.endswith("/isolated_a") and first != second
    with psycopg.connect(first) as conn:
        conn.execute("CREATE TABLE jobs (id int)")
    with psycopg.connect(second) as conn:
        assert conn.execute("SELECT to_regclass('jobs')").fetchone() == (None,)


def test_it_listens_on_127_0_0_1_only(pg_cluster) -> None:
    with psycopg.connect(pg_cluster.url) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("127.0.0.1",)
    with socket.create_connection(("127.0.0.1", pg_cluster.port), timeout=2):
        pass
    with pytest.raises(OSError):  # another loopback address: nothing listens there
        socket.create_connection(("127.0.0.2", pg_cluster.port), timeout=2).close()


def test_stop_ends_the_server_and_removes_its_directory(pg_cluster) -> None:
    cluster = TempCluster().start()
    url, directory = cluster.url, cluster.directory
    assert (directory / "data" / "PG_VERSION").read_text().strip() == "15"
    cluster.stop()
    assert not directory.exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)
    cluster.stop()  # twice is harmless (atexit may call it again)


def test_a_startup_failure_says_why_with_the_log(monkeypatch, pg_cluster) -> None:
    monkeypatch.setitem(pgtemp.SETTINGS, "max_connections", "nonsense")
    with pytest.raises(RuntimeError, match='invalid value for parameter "max_connections"'):
        TempCluster().start()


def test_the_binaries_are_found_from_the_environment_first(tmp_path, monkeypatch) -> None:
    (tmp_path / "pg_ctl").touch()
    monkeypatch.setenv("RULEDESK_PG_BIN", str(tmp_path))
    assert find_binaries() == tmp_path
    monkeypatch.setenv("RULEDESK_PG_BIN", str(tmp_path / "absent"))
    assert find_binaries() is None


@pytest.mark.parametrize("run", ["first", "second"])
def test_the_fixtures_give_a_fresh_database_per_test(pg_url, run) -> None:
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone() == (0,)
        conn.execute("CREATE TABLE mine (id int)")  # the other run would find it in a shared database
