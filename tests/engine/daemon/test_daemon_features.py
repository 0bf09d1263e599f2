"""The daemon's features in process (a ``Daemon`` and its FastAPI app, no subprocess): schedules
with an injected clock, buttons, replay, the read endpoints and explanations, health and metrics,
follow intake with its rejects, and a PostgreSQL server that goes away and comes back."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ruledesk.engine.daemon.api import create_app
from ruledesk.engine.daemon.service import Daemon, Options
from ruledesk.engine.model.config import Config
from ruledesk.engine.store import open_store

RULES = """\
rule "Tag VIP" {
    when "Order is Imported"
    if order.email == "vip@example.com"
    then "Tag Order"(name: "vip")
}

rule "Park" {
    when "Order is Imported"
    then "Move to Folder"(folder: "Waiting")
}

rule "Nudge" {
    when every 1h in folder "Waiting"
    then "Set Order Metadata"(field: "nudged", value: "yes")
}

rule "Approve" {
    when button "Approve"
    then "Set Order Metadata"(field: "approved", value: "yes")
}

rule "Remember the note" {
    when "Note Added"
    then "Set Order Metadata"(field: "last_note", value: "{{ event.note }}")
}
"""

T0 = dt.datetime(2026, 11, 23, 12, 10, tzinfo=dt.timezone.utc)
SETTLE = 30.0  # seconds the work of a test may take on a loaded machine


def eventually(condition: Callable[[], object], timeout: float = SETTLE, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not hold within {timeout} s"
        time.sleep(0.05)


class Clock:
    """A clock the test moves (the daemon's wall: leases, schedules, timestamps)."""

    def __init__(self, at: dt.datetime = T0) -> None:
        self.at = at

    def __call__(self) -> dt.datetime:
        return self.at


@pytest.fixture
def rules(tmp_path) -> Path:
    folder = tmp_path / "rules.d"
    folder.mkdir()
    (folder / "features.rules").write_text(RULES, encoding="utf-8")
    return folder


def make_daemon(store, rules: Path, clock: Callable[[], dt.datetime] | None = None, **options) -> Daemon:
    # schedule_tick: the background scheduler stays out of the way; the tests call schedule_now()
    settings = {"rules": [str(rules)], "watch": False, "schedule_tick": 3600.0, **options}
    kwargs = {"clock": clock} if clock is not None else {}
    return Daemon(store, Config(), Options(**settings), **kwargs)


@pytest.fixture
def running(tmp_path, rules):
    """A started daemon on SQLite with a fixed clock, its app's client and write/read tokens."""
    store = open_store(f"sqlite:///{tmp_path / 'ruledesk.db'}")
    clock = Clock()
    daemon = make_daemon(store, rules, clock)
    daemon.start()
    client = TestClient(create_app(daemon))
    tokens = {scope: store.create_token("default", scope, 0.0) for scope in ("read", "write")}
    tokens["other"] = store.create_token("globex", "write", 0.0)
    env = type("Env", (), {})()
    env.store, env.daemon, env.client, env.clock, env.tokens = store, daemon, client, clock, tokens
    env.auth = lambda scope="write": {"Authorization": f"Bearer {tokens[scope]}"}
    yield env
    client.close()
    daemon.stop()
    store.close()


def idle(daemon: Daemon) -> None:
    eventually(daemon.idle, what="the daemon being idle")


def decisions(store, order_id: str, store_name: str = "default") -> list[dict]:
    return [json.loads(text) for text in store.decisions(store_name, order_id)]


def import_order(env, order_id: str, email: str = "a@example.com", event_id: str | None = None) -> None:
    body = {"event": "Order is Imported", "order": {"id": order_id, "email": email}, "id": event_id or f"imp-{order_id}"}
    response = env.client.post("/v1/events", json=body, headers=env.auth())
    assert response.status_code == 202, response.text


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a Prometheus text page (None if absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        found = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if not found or found.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', found.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(found.group(3))
    return None


# ---- 2. schedules ---------------------------------------------------------------------------------------
def test_schedule_runs_once_per_period_and_not_again_after_a_restart(tmp_path, rules):
    url = f"sqlite:///{tmp_path / 'ruledesk.db'}"
    clock = Clock()
    store = open_store(url)
    daemon = make_daemon(store, rules, clock)
    try:
        daemon.start()
        client = TestClient(create_app(daemon))
        token = store.create_token("default", "write", 0.0)
        for order_id in ("1", "2"):
            response = client.post("/v1/events", json={"event": "Order is Imported", "order": {"id": order_id},
                                                       "id": f"imp-{order_id}"},
                                   headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 202, response.text
        idle(daemon)
        assert sorted(store.orders_in_folder("default", "Waiting")) == ["1", "2"]

        assert daemon.schedule_now() == 2  # one run per order in the folder
        assert daemon.schedule_now() == 0  # same period: nothing new
        idle(daemon)
        period = "Nudge@2026-11-23T12:00:00Z"
        for order_id in ("1", "2"):
            scheduled = [d for d in decisions(store, order_id) if d["event_id"].startswith("Nudge@")]
            assert [d["event_id"] for d in scheduled] == [f"{period}/default/{order_id}"]
            assert scheduled[0]["event"] == 'Every 1h in folder "Waiting"'
            assert scheduled[0]["fired"] == ["Nudge"]
            assert json.loads(store.order("default", order_id))["order_metadata"]["nudged"] == "yes"

        clock.at = T0 + dt.timedelta(minutes=40)  # 12:50: still the 12:00 period
        assert daemon.schedule_now() == 0
        clock.at = T0 + dt.timedelta(hours=1)  # 13:10: the next period
        assert daemon.schedule_now() == 2
        assert daemon.schedule_now() == 0
        idle(daemon)
        client.close()
    finally:
        daemon.stop()
        store.close()

    # a restart within the 13:00 period runs nothing twice
    store = open_store(url)
    again = make_daemon(store, rules, clock)
    try:
        again.start()
        assert again.schedule_now() == 0
        idle(again)
        for order_id in ("1", "2"):
            ids = [d["event_id"] for d in decisions(store, order_id) if d["event_id"].startswith("Nudge@")]
            assert ids == [f"Nudge@2026-11-23T12:00:00Z/default/{order_id}",
                           f"Nudge@2026-11-23T13:00:00Z/default/{order_id}"], ids
        clock.at = T0 + dt.timedelta(hours=2)
        assert again.schedule_now() == 2
    finally:
        again.stop()
        store.close()


# ---- 3. buttons over HTTP ---------------------------------------------------------------------------------
def test_button_press_over_http(running):
    import_order(running, "1")
    idle(running.daemon)
    response = running.client.post("/v1/orders/1/buttons/Approve", headers=running.auth())
    assert response.status_code == 202, response.text
    [event_id] = response.json()["ids"]
    idle(running.daemon)
    pressed = [d for d in decisions(running.store, "1") if d["event_id"] == event_id]
    assert len(pressed) == 1, decisions(running.store, "1")
    assert pressed[0]["event"] == 'Button "Approve"' and pressed[0]["fired"] == ["Approve"]
    assert json.loads(running.store.order("default", "1"))["order_metadata"]["approved"] == "yes"

    # labels match case-insensitively; the decision names the rule's spelling.  (A press's id is
    # derived from the daemon's clock: the test clock moves, or a second press at the same instant
    # would be acknowledged as a duplicate of the first.)
    running.clock.at += dt.timedelta(seconds=1)
    response = running.client.post("/v1/orders/1/buttons/approve", headers=running.auth())
    assert response.status_code == 202, response.text
    assert response.json()["duplicates"] == [] and response.json()["ids"] != [event_id]

    response = running.client.post("/v1/orders/1/buttons/Aprove", headers=running.auth())
    assert response.status_code == 422, response.text
    assert "Approve" in response.json()["error"] and "did you mean" in response.json()["error"]
    response = running.client.post("/v1/orders/nope/buttons/Approve", headers=running.auth())
    assert response.status_code == 404, response.text
    response = running.client.post("/v1/orders/1/buttons/Approve", headers=running.auth("read"))
    assert response.status_code == 403, response.text
    response = running.client.post("/v1/orders/1/buttons/Approve")
    assert response.status_code == 401, response.text
    idle(running.daemon)
    assert running.store.counts().get("events_done") == 3  # the import and two presses
    assert running.store.counts().get("events_pending") is None


def test_ruledesk_press_with_order_goes_through_the_daemon(tmp_path, rules):
    """``ruledesk press "LABEL" --order ID --db URL``: the press is queued in the daemon's inbox."""
    from typer.testing import CliRunner

    from ruledesk.engine.cli import app

    url = f"sqlite:///{tmp_path / 'ruledesk.db'}"
    store = open_store(url)
    daemon = make_daemon(store, rules, poll=0.02)  # the real clock: the CLI stamps its press with time.time()
    try:
        daemon.start()
        daemon.intake.write([daemon.intake.one({"event": "Order is Imported", "order": {"id": "1"}, "id": "e1"})])
        idle(daemon)
        result = CliRunner().invoke(app, ["press", "approve", "--order", "1", "--db", url, "--format", "json",
                                          "--wait", "30"])
        assert result.exit_code == 0, result.output
        [printed] = [json.loads(line) for line in result.stdout.splitlines()]
        assert printed["event"] == 'Button "Approve"' and printed["fired"] == ["Approve"]
        assert json.loads(store.order("default", "1"))["order_metadata"]["approved"] == "yes"
    finally:
        daemon.stop()
        store.close()


def test_ruledesk_press_with_an_unknown_label_is_refused_and_queues_nothing(tmp_path, rules):
    from typer.testing import CliRunner

    from ruledesk.engine.cli import app

    url = f"sqlite:///{tmp_path / 'ruledesk.db'}"
    store = open_store(url)
    daemon = make_daemon(store, rules, poll=0.02)
    try:
        daemon.start()
        daemon.intake.write([daemon.intake.one({"event": "Order is Imported", "order": {"id": "1"}, "id": "e1"})])
        idle(daemon)
        # refused like the API's 422, with the suggestion, and nothing queued
        pending_before = len(store.events())
        result = CliRunner().invoke(app, ["press", "Aprove", "--order", "1", "--db", url, "--wait", "30"])
        assert result.exit_code == 2, result.output
        assert "Approve" in result.output, result.output
        assert len(store.events()) == pending_before, "an unknown button was queued (it can only end as poison)"
    finally:
        daemon.stop()
        store.close()


# ---- 4. replay -----------------------------------------------------------------------------------------
def test_replay_endpoint_copies_a_stored_event(running):
    import_order(running, "1", event_id="e1")
    idle(running.daemon)
    first = running.client.post("/v1/events/e1/replay", headers=running.auth())
    assert first.status_code == 202, first.text
    assert first.json() == {"ids": ["e1/replay/1"], "duplicates": []}
    second = running.client.post("/v1/events/e1/replay", headers=running.auth())
    assert second.status_code == 202, second.text
    assert second.json() == {"ids": ["e1/replay/2"], "duplicates": []}
    idle(running.daemon)
    own = [d["event_id"] for d in decisions(running.store, "1") if d["depth"] == 0]
    assert own == ["e1", "e1/replay/1", "e1/replay/2"]
    for copy in ("e1/replay/1", "e1/replay/2"):
        stored = running.store.event(copy)
        assert stored.status == "done" and stored.source == "replay" and stored.name == "Order is Imported"
        assert [json.loads(t)["event_id"] for t in running.store.decisions_of(copy)] == [copy, f"{copy}.1"]

    assert running.client.post("/v1/events/nope/replay", headers=running.auth()).status_code == 404
    assert running.client.post("/v1/events/e1/replay", headers=running.auth("read")).status_code == 403
    # another store's token does not see the event
    assert running.client.post("/v1/events/e1/replay", headers=running.auth("other")).status_code == 404


# ---- 5. reads, explanations, health, OpenAPI, metrics ---------------------------------------------------
def test_reads_explanations_health_and_metrics(running):
    client, auth = running.client, running.auth
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert client.get(path).status_code == 200, path  # no token needed
    spec = client.get("/openapi.json").json()
    assert "/v1/events" in spec["paths"] and "post" in spec["paths"]["/v1/events"]
    ready = client.get("/readyz").json()
    assert ready["ok"] is True and ready["ruleset"]["source"] == "files" and "warning" not in ready
    assert ready["ruleset"]["version"] == running.daemon.ruleset.version

    before = client.get("/metrics").text
    assert metric(before, "ruledesk_events_received_total", event="Order is Imported") in (None, 0.0)
    import_order(running, "1", email="a@example.com")
    import_order(running, "2", email="vip@example.com")
    note = {"event": "Note Added", "order": {"id": "1"}, "payload": {"note": "hi"}, "id": "n1"}
    assert client.post("/v1/events", json=note, headers=auth()).status_code == 202
    idle(running.daemon)

    page = client.get("/metrics").text
    assert metric(page, "ruledesk_events_received_total", event="Order is Imported") == 2.0
    assert metric(page, "ruledesk_events_received_total", event="Note Added") == 1.0
    assert metric(page, "ruledesk_events_processed_total", event="Order is Imported") == 2.0
    assert metric(page, "ruledesk_events_processed_total", event="Note Added") == 1.0
    assert metric(page, "ruledesk_queue_depth", queue="events", status="done") == 3.0
    assert metric(page, "ruledesk_store_up") == 1.0
    assert metric(page, "ruledesk_ruleset_active", version=running.daemon.ruleset.version, source="files") == 1.0
    # a duplicate moves the duplicate counter, not the received one
    assert client.post("/v1/events", json=note, headers=auth()).json()["duplicates"] == ["n1"]
    page = client.get("/metrics").text
    assert metric(page, "ruledesk_events_duplicate_total") == 1.0
    assert metric(page, "ruledesk_events_received_total", event="Note Added") == 1.0

    # the order as stored
    response = client.get("/v1/orders/1", headers=auth("read"))
    assert response.status_code == 200, response.text
    order = response.json()
    assert order["id"] == "1" and order["folder"] == "Waiting" and order["order_metadata"]["last_note"] == "hi"
    assert client.get("/v1/orders/404", headers=auth("read")).status_code == 404
    assert client.get("/v1/orders/1").status_code == 401

    # decisions, plain and explained
    response = client.get("/v1/decisions", params={"order_id": "1"}, headers=auth("read"))
    assert response.status_code == 200, response.text
    plain = response.json()
    assert [d["event_id"] for d in plain] == ["imp-1", "imp-1.1", "n1"]
    assert all("why" not in d and "explain" not in d for d in plain)
    assert plain[0]["ruleset"] == running.daemon.ruleset.version
    response = client.get("/v1/decisions", params={"order_id": "1", "explain": "true"}, headers=auth("read"))
    assert response.status_code == 200, response.text
    explained = response.json()
    assert [d["event_id"] for d in explained] == ["imp-1", "imp-1.1", "n1"]
    entries = {e["rule"]: e for e in explained[0]["explain"]}
    assert set(entries) == {"Tag VIP", "Park"}
    assert entries["Park"]["fired"] is True
    vip = entries["Tag VIP"]
    assert vip["fired"] is False
    assert re.fullmatch(r".*features\.rules:3:\d+", vip["at"]), vip
    assert vip["clause"] == 'order.email == "vip@example.com"'
    assert "a@example.com" in vip["compared"], vip
    for entry in (e for d in explained for e in d["explain"]):
        assert set(entry) >= {"rule", "fired"}
    # the VIP order fired both
    vip_decision = client.get("/v1/decisions", params={"order_id": "2", "explain": "true"},
                              headers=auth("read")).json()[0]
    assert all(e["fired"] for e in vip_decision["explain"]), vip_decision["explain"]

    # a token of another store cannot read this store's data
    response = client.get("/v1/decisions", params={"order_id": "1", "store": "default"}, headers=auth("other"))
    assert response.status_code == 403, response.text
    response = client.get("/v1/orders/1", params={"store": "default"}, headers=auth("other"))
    assert response.status_code == 403, response.text
    assert client.get("/v1/decisions", params={"order_id": "1"}, headers=auth("other")).json() == []
    assert client.get("/v1/orders/1", headers=auth("other")).status_code == 404


# ---- 6. follow intake ------------------------------------------------------------------------------------
def _line(event: dict) -> str:
    return json.dumps(event) + "\n"


def test_follow_takes_good_lines_rejects_bad_ones_and_dedupes_a_second_read(running, tmp_path):
    source = tmp_path / "events.jsonl"
    source.write_text(
        _line({"event": "Order is Imported", "order": {"id": "F1", "email": "f1@example.com"}})
        + '{"event": "Order is Imported", "order": {"id": "F2"\n'  # line 2: malformed JSON
        + "\n"  # line 3: blank, ignored
        + _line({"event": "Order is Exploded", "order": {"id": "F3"}})  # line 4: unknown event
        + _line({"event": "Note Added", "order": {"id": "F1"}, "payload": {"note": "from the file"}})
        + _line({"id": "F4", "email": "bare@example.com"}),  # line 6: a bare order = Order is Imported
        encoding="utf-8")
    thread = running.daemon.follow(str(source), keep_following=False)
    thread.join(SETTLE)
    assert not thread.is_alive()
    idle(running.daemon)
    store = running.store
    assert store.counts() == {"events_done": 3}, store.counts()
    assert json.loads(store.order("default", "F1"))["order_metadata"]["last_note"] == "from the file"
    assert json.loads(store.order("default", "F4"))["folder"] == "Waiting"
    rejects = store.rejects()
    assert [r[0] for r in rejects] == [f"{source}:2", f"{source}:4"], rejects
    assert rejects[0][1].startswith('{"event": "Order is Imported", "order": {"id": "F2"')
    assert "JSON" in rejects[0][2]
    assert "Order is Exploded" in rejects[1][1] and "Order is Exploded" in rejects[1][2]
    page = running.client.get("/metrics").text
    assert metric(page, "ruledesk_events_refused_total", status="400") == 1.0
    assert metric(page, "ruledesk_events_refused_total", status="422") == 1.0

    # read again (a restart): lines already taken are acknowledged and ignored
    decided = {oid: len(store.decisions("default", oid)) for oid in ("F1", "F4")}
    thread = running.daemon.follow(str(source), keep_following=False)
    thread.join(SETTLE)
    assert not thread.is_alive()
    idle(running.daemon)
    assert store.counts() == {"events_done": 3}, store.counts()
    assert {oid: len(store.decisions("default", oid)) for oid in ("F1", "F4")} == decided
    assert metric(running.client.get("/metrics").text, "ruledesk_events_duplicate_total") == 3.0
    assert [r[0] for r in store.rejects()] == [f"{source}:2", f"{source}:4"], "a re-read kept its rejects twice"


def test_follow_takes_lines_appended_later(running, tmp_path):
    source = tmp_path / "growing.jsonl"
    source.write_text(_line({"event": "Order is Imported", "order": {"id": "G1"}, "id": "g1"}), encoding="utf-8")
    thread = running.daemon.follow(str(source))  # keeps following
    eventually(lambda: running.store.event("g1") is not None, what="the first line taken")
    with source.open("a", encoding="utf-8") as out:
        out.write(_line({"event": "Order is Imported", "order": {"id": "G2"}, "id": "g2"}))
        out.flush()
        # a line written in two parts is taken once it is whole
        out.write('{"event": "Note Added", "order": {"id": "G1"}, ')
        out.flush()
        time.sleep(0.5)
        assert running.store.event("g3") is None
        out.write('"payload": {"note": "later"}, "id": "g3"}\n')
    eventually(lambda: running.store.event("g3") is not None and running.store.event("g2") is not None,
               what="the appended lines taken")
    # (idle() stays false while a followed file may still grow: wait for the inbox instead)
    eventually(lambda: running.store.counts() == {"events_done": 3}, what="the three events done")
    assert thread.is_alive()
    assert running.store.rejects() == []
    assert json.loads(running.store.order("default", "G1"))["order_metadata"]["last_note"] == "later"
    assert running.store.counts() == {"events_done": 3}


# ---- 7. a lost PostgreSQL server ---------------------------------------------------------------------------
@pytest.fixture
def own_cluster():
    """A PostgreSQL server of this test alone, so it can be stopped and started again."""
    from ruledesk.engine.store.pgtemp import TempCluster

    try:
        cluster = TempCluster().start()
    except RuntimeError as exc:
        pytest.skip(f"cannot start a throwaway PostgreSQL: {exc}")
    yield cluster
    cluster.stop()


def _pg_down(cluster) -> None:
    cluster._run("pg_ctl", "stop", "-D", str(cluster.data_dir), "-m", "fast", "-w", "-t", "30")


def _pg_up(cluster) -> None:
    """Start the same cluster again, on the same port (TempCluster has no restart of its own)."""
    from ruledesk.engine.store.pgtemp import SETTINGS

    options = " ".join(f"-c {key}={value}" for key, value in SETTINGS.items())
    options += f" -p {cluster.port} -k {cluster.directory}"
    cluster._run("pg_ctl", "start", "-D", str(cluster.data_dir), "-l", str(cluster.log_file), "-w", "-t", "30",
                 "-o", options)


def test_lost_postgresql_is_survived_and_work_resumes(own_cluster, rules):
    store = open_store(own_cluster.url, timeout=2.0)
    daemon = make_daemon(store, rules, poll=0.05)
    client = TestClient(create_app(daemon))
    try:
        daemon.start()
        token = store.create_token("default", "write", 0.0)
        auth = {"Authorization": f"Bearer {token}"}
        response = client.post("/v1/events", json={"event": "Order is Imported", "order": {"id": "P1"}, "id": "p1"},
                               headers=auth)  # the token is known from now on
        assert response.status_code == 202, response.text
        idle(daemon)
        assert client.get("/readyz").status_code == 200

        _pg_down(own_cluster)
        # readiness says so (503), the store's problem is recorded, and nothing crashes
        eventually(lambda: not daemon.readiness()[0], what="readiness false")
        response = client.get("/readyz")
        assert response.status_code == 503, response.text
        assert response.json()["store"]["ok"] is False and response.json()["ok"] is False
        response = client.post("/v1/events", json={"event": "Order is Imported", "order": {"id": "P2"}, "id": "p2"},
                               headers=auth)
        assert response.status_code == 503, response.text
        assert response.headers.get("retry-after"), response.headers
        eventually(lambda: daemon.store_problem is not None, what="the worker seeing the store gone")
        page = client.get("/metrics").text  # answers without the store
        assert metric(page, "ruledesk_store_up") == 0.0
        errors_then = metric(page, "ruledesk_store_errors_total", operation="work") or 0.0
        time.sleep(3.0)
        errors_later = metric(client.get("/metrics").text, "ruledesk_store_errors_total", operation="work") or 0.0
        # backing off: a handful of tries in 3 s, not one per poll (0.05 s)
        assert errors_later - errors_then <= 10, (errors_then, errors_later)
        assert all(t.is_alive() for t in daemon._threads), [t.name for t in daemon._threads if not t.is_alive()]

        _pg_up(own_cluster)
        restarted = time.monotonic()
        eventually(lambda: daemon.readiness()[0], timeout=60, what="readiness true again")
        deadline = time.monotonic() + 60
        while True:  # the pool may hand out a broken connection or two before it reconnects
            response = client.post("/v1/events", json={"event": "Order is Imported", "order": {"id": "P2"},
                                                       "id": "p2"}, headers=auth)
            if response.status_code == 202 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert response.status_code == 202, response.text
        # the worker loop may be in its backoff (up to a few seconds): the event is processed after it
        eventually(lambda: (e := store.event("p2")) is not None and e.status == "done", timeout=60,
                   what="the event posted after the restart processed")
        print(f"the event posted after the restart was processed {time.monotonic() - restarted:.1f} s after it")
        assert metric(client.get("/metrics").text, "ruledesk_store_up") == 1.0
        assert [json.loads(t)["event_id"] for t in store.decisions("default", "P2")] == ["p2", "p2.1"]
    finally:
        client.close()
        daemon.stop()
        store.close()


def test_unreachable_store_at_readiness_does_not_stop_the_loops(running):
    """Without a server to stop: a store whose every operation fails (a full disk, a lost file)."""
    from ruledesk.engine.store.base import StoreError

    store = running.store
    broken = threading.Event()
    original = store._read, store._transaction

    def failing(*args, **kwargs):
        raise StoreError("disk I/O error (simulated)")

    def read(*args, **kwargs):
        return failing() if broken.is_set() else original[0](*args, **kwargs)

    def transaction(*args, **kwargs):
        return failing() if broken.is_set() else original[1](*args, **kwargs)

    store._read, store._transaction = read, transaction
    try:
        broken.set()
        ready, report = running.daemon.readiness()
        assert not ready and report["store"]["ok"] is False and "simulated" in report["store"]["error"]
        assert running.client.get("/readyz").status_code == 503
        eventually(lambda: running.daemon.store_problem is not None, what="the worker seeing the failure")
        time.sleep(0.5)
        assert all(t.is_alive() for t in running.daemon._threads)
        broken.clear()
        eventually(lambda: running.daemon.readiness()[0], what="readiness true again")
        import_order(running, "R1")
        eventually(lambda: (e := store.event("imp-R1")) is not None and e.status == "done", timeout=60,
                   what="processing again")
    finally:
        store._read, store._transaction = original


# ---- tokens revoked, lines too long --------------------------------------------------------------------
def test_a_revoked_token_is_refused_once_the_cache_time_is_over(running, monkeypatch):
    from typer.testing import CliRunner

    from ruledesk.engine.cli import app
    from ruledesk.engine.daemon import api

    import_order(running, "r1")  # the token is cached now
    result = CliRunner().invoke(app, ["tokens", "revoke", running.tokens["write"], "--db", running.store.url])
    assert result.exit_code == 0, result.output
    assert running.store.token(running.tokens["write"]) is None
    monkeypatch.setattr(api, "TOKEN_CACHE_SECONDS", 0.0)
    response = running.client.post("/v1/events", json={"event": "Order is Imported", "order": {"id": "r2"}},
                                   headers=running.auth())
    assert response.status_code == 401 and response.json()["error"] == "the token is not valid"
    again = CliRunner().invoke(app, ["tokens", "revoke", running.tokens["write"], "--db", running.store.url])
    assert again.exit_code == 1 and "no such token" in again.output


def test_a_followed_line_over_the_cap_is_refused_and_the_next_one_taken(tmp_path, rules):
    store = open_store(f"sqlite:///{tmp_path / 'ruledesk.db'}")
    daemon = make_daemon(store, rules, max_line=1000)
    daemon.start()
    try:
        path = tmp_path / "in.jsonl"
        long = json.dumps({"event": "Order is Imported", "id": "big", "order": {"id": "9", "note": "x" * 5000}})
        good = json.dumps({"event": "Order is Imported", "id": "small", "order": {"id": "8"}})
        path.write_text(long + "\n" + good + "\n", encoding="utf-8")
        daemon.follow(str(path), keep_following=False)
        idle(daemon)
        assert [e.id for e in store.events()] == ["small"]
        [(where, body, reason)] = store.rejects()
        assert where == f"{path}:1" and reason == "the line is longer than 1000 bytes"
        assert body.endswith("...") and len(body) <= 210
    finally:
        daemon.stop()
        store.close()
