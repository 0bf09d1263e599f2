"""Store conformance: every test runs on SQLite and on PostgreSQL, which must behave the same
(migrations, the inbox, order leases, the commit of a claim, jobs, tokens, rulesets, reads)."""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict

import pytest

from ruledesk.engine.store import StoreError, migrations, open_store
from ruledesk.engine.store.base import Inbound, JobFinish, Processed, Token, Unprocessed, token_hash
from ruledesk.engine.store.sql import LeaseLost

T0 = 1_800_000_000.0
LEASE = 30.0


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request, tmp_path):
    """Opens (another) store object on this test's database; every one is closed after the test."""
    url = f"sqlite:///{tmp_path}/t.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    opened = []

    def open_(**options):
        store = open_store(url, **options)
        opened.append(store)
        return store

    open_.url = url
    open_.backend = request.param
    yield open_
    for store in opened:
        store.close()


@pytest.fixture
def store(opener):
    return opener()


def ev(id, order="1", name="Order is Imported", store="default", kind="event", source="api"):
    body = json.dumps({"event": name, "order": {"id": order}, "store": store, "id": id})
    return Inbound(id, store, order, name, body, kind=kind, source=source)


def done(claim, ruleset="r1"):
    return [Processed(e.seq, ruleset, [], []) for e in claim.events]


def job_row(key, order="1", store="default", event_id="e1", kind="ping", due_at=None):
    row = {"key": key, "kind": kind, "store": store, "order_id": order, "event_id": event_id,
           "body": json.dumps({"key": key}), "hops": 0}
    if due_at is not None:
        row["due_at"] = due_at
    return row


def add_jobs(store, rows, now=T0):
    """Put jobs in the outbox the way the worker does: with a committed claim."""
    store.enqueue([ev(f"seed-{rows[0]['key']}", order="seed")], now)
    claim = store.claim("seeder", now, LEASE)
    store.commit(claim, [Processed(e.seq, "r1", [], rows if i == 0 else []) for i, e in enumerate(claim.events)],
                 [], {}, now)


# ---- schema ------------------------------------------------------------------------------------

def test_migrate_is_idempotent(opener, store):
    assert store.schema_version() == migrations.VERSION
    assert store.migrate() == migrations.VERSION
    again = opener()
    assert again.schema_version() == migrations.VERSION
    with again._read() as tx:
        rows = tx.rows("SELECT version FROM schema_version ORDER BY version")
    assert [r[0] for r in rows] == list(range(1, migrations.VERSION + 1))
    store.ping()


def test_a_database_with_a_newer_schema_is_refused(opener, store):
    with store._transaction() as tx:
        tx.run("INSERT INTO schema_version (version) VALUES (?)", (migrations.VERSION + 1,))
    store.close()
    with pytest.raises(StoreError, match="newer"):
        opener()
    # without migrating it opens (to inspect), and says which version it is
    assert opener(migrate=False).schema_version() == migrations.VERSION + 1


# ---- intake ------------------------------------------------------------------------------------

def test_enqueue_new_and_duplicate_ids(store):
    assert store.enqueue([ev("a"), ev("b"), ev("a")], T0) == [True, True, False]
    assert store.enqueue([ev("b"), ev("c")], T0 + 1) == [False, True]
    assert [(e.id, e.status, e.attempts, e.received_at) for e in store.events()] == [
        ("a", "pending", 0, T0), ("b", "pending", 0, T0), ("c", "pending", 0, T0 + 1)]
    assert store.event("b").body == ev("b").body
    assert store.event("nope") is None
    assert store.counts() == {"events_pending": 3}


def test_enqueued_events_survive_close_and_reopen(opener, store):
    store.enqueue([ev("a", kind="button", source="http"), ev("b", order="2")], T0)
    store.close()
    again = opener()
    got = again.events()
    assert [(e.id, e.order_id, e.kind, e.source, e.status) for e in got] == [
        ("a", "1", "button", "http", "pending"), ("b", "2", "event", "api", "pending")]
    assert again.enqueue([ev("a")], T0) == [False]


def test_events_pages_and_filters(store):
    store.enqueue([ev(f"e{i}", order=str(i % 2)) for i in range(7)], T0)
    store.enqueue([ev("late")], T0 + 10)
    assert [e.id for e in store.events(order_id="1")] == ["e1", "e3", "e5", "late"]
    assert [e.id for e in store.events(since=T0 + 5)] == ["late"]
    first = store.events(limit=3)
    assert [e.id for e in store.events(after_seq=first[-1].seq, limit=3)] == ["e3", "e4", "e5"]
    assert [e.id for e in store.iter_events(limit=3)] == [f"e{i}" for i in range(7)] + ["late"]


# ---- claims --------------------------------------------------------------------------------------

def test_claim_leases_orders_until_the_lease_ends_or_is_released(store):
    store.enqueue([ev("a1", "A"), ev("b1", "B"), ev("a2", "A")], T0)
    claim = store.claim("h1", T0, LEASE)
    assert [e.id for e in claim.events] == ["a1", "b1", "a2"]
    assert claim.orders == {("default", "A"): None, ("default", "B"): None}
    assert claim.until == T0 + LEASE
    assert store.claim("h2", T0 + 1, LEASE) is None
    assert store.claim("h2", T0 + LEASE, LEASE) is None  # the lease still runs at its last instant
    store.release("h1")
    again = store.claim("h2", T0 + 1, LEASE)
    assert [e.id for e in again.events] == ["a1", "b1", "a2"]
    # after the lease has ended, another holder takes the orders
    taken = store.claim("h3", T0 + 1 + LEASE + 0.5, LEASE)
    assert [e.id for e in taken.events] == ["a1", "b1", "a2"]


def test_renew_extends_a_lease(store):
    store.enqueue([ev("a1", "A")], T0)
    store.claim("h1", T0, LEASE)
    store.renew(["h1"], T0 + 100)
    assert store.claim("h2", T0 + LEASE + 1, LEASE) is None
    assert store.claim("h2", T0 + 101, LEASE) is not None


def test_claim_gives_an_orders_events_in_inbox_order_and_its_stored_state(store):
    store.enqueue([ev(f"e{i}", "A") for i in range(5)], T0)
    claim = store.claim("h1", T0, LEASE)
    store.commit(claim, done(claim)[:2], [], {("default", "A"): ('{"id": "A", "n": 1}', "New")}, T0)
    store.enqueue([ev("later", "A")], T0)
    claim = store.claim("h2", T0, LEASE)
    assert [e.id for e in claim.events] == ["e2", "e3", "e4", "later"]
    assert claim.orders == {("default", "A"): '{"id": "A", "n": 1}'}


def test_claim_respects_limit_and_orders(store):
    store.enqueue([ev("a1", "A"), ev("b1", "B"), ev("c1", "C"), ev("a2", "A")], T0)
    claim = store.claim("h1", T0, LEASE, limit=10, orders=2)
    assert [e.id for e in claim.events] == ["a1", "b1", "a2"]
    assert set(claim.orders) == {("default", "A"), ("default", "B")}
    claim = store.claim("h2", T0, LEASE, limit=10, orders=2)
    assert [e.id for e in claim.events] == ["c1"]


def test_claim_takes_orders_no_one_holds_past_a_busy_one(store):
    """A worker holding an order with many pending events must not starve the other orders."""
    store.enqueue([ev("a1", "A"), ev("a2", "A"), ev("a3", "A"), ev("b1", "B")], T0)
    first = store.claim("h1", T0, LEASE, limit=2)
    assert [e.id for e in first.events] == ["a1", "a2"]
    second = store.claim("h2", T0, LEASE, limit=2)
    assert second is not None and [e.id for e in second.events] == ["b1"]


def test_commit_writes_everything_and_releases_the_leases(store):
    store.enqueue([ev("a1", "A"), ev("b1", "B"), ev("a2", "A")], T0)
    claim = store.claim("h1", T0, LEASE)
    decision = {"event_id": "a1", "top_event_id": "a1", "store": "default", "order_id": "A",
                "name": "Order is Imported", "ruleset": "r1", "body": '{"event": "Order is Imported"}'}
    processed = [Processed(claim.events[0].seq, "r1", [decision, {**decision, "event_id": "a1.1",
                                                                  "body": '{"n": 2}'}],
                           [job_row("k1", "A", event_id="a1"), job_row("k2", "A", event_id="a1")]),
                 Processed(claim.events[1].seq, "r1", [], []),
                 Processed(claim.events[2].seq, "r2", [{**decision, "event_id": "a2", "top_event_id": "a2",
                                                        "body": '{"n": 3}'}],
                           [job_row("k1", "A", event_id="a2")])]
    store.commit(claim, processed, [], {("default", "A"): ('{"id": "A"}', "Review"),
                                        ("default", "B"): ('{"id": "B"}', None)}, T0 + 1)
    assert [(e.id, e.status, e.attempts, e.processed_at, e.ruleset) for e in store.events()] == [
        ("a1", "done", 1, T0 + 1, "r1"), ("b1", "done", 1, T0 + 1, "r1"), ("a2", "done", 1, T0 + 1, "r2")]
    assert store.order("default", "A") == '{"id": "A"}' and store.order("default", "B") == '{"id": "B"}'
    assert store.order("default", "C") is None
    assert store.orders_in_folder("default", "Review") == ["A"]
    assert store.decisions("default", "A") == ['{"event": "Order is Imported"}', '{"n": 2}', '{"n": 3}']
    assert store.decisions_of("a1") == ['{"event": "Order is Imported"}', '{"n": 2}']
    jobs = store.jobs()
    assert [(j.key, j.event_id, j.status, j.due_at, j.attempts) for j in jobs] == [
        ("k1", "a1", "pending", T0 + 1, 0), ("k2", "a1", "pending", T0 + 1, 0)]
    assert store.job("k1").order_id == "A" and store.job("nope") is None
    assert store.next_job_due() == T0 + 1
    # the lease is gone: a new event of the same order is claimable at once by anyone
    store.enqueue([ev("a3", "A")], T0 + 1)
    claim = store.claim("h2", T0 + 1, LEASE)
    assert [e.id for e in claim.events] == ["a3"]
    assert claim.orders == {("default", "A"): '{"id": "A"}'}
    assert store.counts() == {"events_done": 3, "events_pending": 1, "jobs_pending": 2}


def test_commit_after_the_lease_was_lost_commits_nothing(store):
    store.enqueue([ev("a1", "A"), ev("b1", "B")], T0)
    late = store.claim("h1", T0, LEASE)
    store.enqueue([ev("b2", "B")], T0)
    thief = store.claim("h2", T0 + LEASE + 1, LEASE, orders=1)  # takes A only
    assert set(thief.orders) == {("default", "A")}
    with pytest.raises(LeaseLost):
        store.commit(late, done(late), [], {("default", "A"): ('{"id": "A"}', "X"),
                                            ("default", "B"): ('{"id": "B"}', "X")}, T0 + LEASE + 2)
    assert {e.id: e.status for e in store.events()} == {"a1": "pending", "b1": "pending", "b2": "pending"}
    assert store.order("default", "A") is None and store.order("default", "B") is None
    assert store.jobs() == []
    # the thief's work commits; its lease was not disturbed by the failed commit
    store.commit(thief, done(thief), [], {("default", "A"): ('{"id": "A"}', None)}, T0 + LEASE + 3)
    assert store.event("a1").status == "done"


def test_commit_after_the_lease_was_taken_and_committed_by_another(store):
    store.enqueue([ev("a1", "A")], T0)
    late = store.claim("h1", T0, LEASE)
    thief = store.claim("h2", T0 + LEASE + 1, LEASE)
    store.commit(thief, done(thief), [], {}, T0 + LEASE + 1)
    with pytest.raises(LeaseLost):
        store.commit(late, done(late), [], {("default", "A"): ('{"id": "stale"}', None)}, T0 + LEASE + 2)
    assert store.order("default", "A") is None and store.event("a1").attempts == 1


def test_unprocessed_events_count_attempts_and_become_poison(store):
    store.enqueue([ev("a1", "A"), ev("a2", "A")], T0)
    for attempt in (1, 2, 3):
        claim = store.claim(f"h{attempt}", T0, LEASE)
        assert [e.id for e in claim.events] == ["a1", "a2"]
        assert claim.events[0].attempts == attempt - 1
        store.commit(claim, [], [Unprocessed(claim.events[0].seq, f"boom {attempt}")], {}, T0, max_attempts=3)
    a1 = store.event("a1")
    assert (a1.status, a1.attempts, a1.error) == ("poison", 3, "boom 3")
    assert store.event("a2").attempts == 0
    claim = store.claim("h4", T0, LEASE)
    assert [e.id for e in claim.events] == ["a2"]
    store.commit(claim, done(claim), [], {}, T0)
    assert store.counts() == {"events_poison": 1, "events_done": 1}
    # requeue puts a poison event back, counting from zero; a non-poison event is not requeued
    assert store.requeue("a1") is True
    assert (store.event("a1").status, store.event("a1").attempts) == ("pending", 0)
    assert store.requeue("a1") is False and store.requeue("a2") is False and store.requeue("nope") is False
    claim = store.claim("h5", T0, LEASE)
    assert [e.id for e in claim.events] == ["a1"]


def test_clear_leases(store):
    store.enqueue([ev("a1", "A")], T0)
    store.claim("h1", T0, LEASE)
    assert store.clear_leases() == 1
    assert store.claim("h2", T0, LEASE) is not None


# ---- jobs ----------------------------------------------------------------------------------------

def test_a_job_is_not_claimed_while_an_event_claim_holds_its_order_and_vice_versa(store):
    add_jobs(store, [job_row("k1", "A")])
    store.enqueue([ev("a1", "A")], T0)
    events = store.claim("h1", T0, LEASE)
    assert store.claim_job("j1", T0, LEASE) is None
    store.commit(events, done(events), [], {("default", "A"): ('{"id": "A"}', None)}, T0)
    job = store.claim_job("j1", T0, LEASE)
    assert job.job.key == "k1" and job.order == '{"id": "A"}' and job.until == T0 + LEASE
    store.enqueue([ev("a2", "A")], T0)
    assert store.claim("h2", T0, LEASE) is None
    assert store.claim_job("j2", T0, LEASE) is None  # one job of an order at a time, too
    store.finish_job(job, JobFinish("done", detail='{"ok": true}'), T0 + 1)
    assert [e.id for e in store.claim("h2", T0 + 1, LEASE).events] == ["a2"]
    stored = store.job("k1")
    assert (stored.status, stored.attempts, stored.detail, stored.finished_at) == ("done", 1, '{"ok": true}', T0 + 1)


def test_claim_job_takes_a_free_order_past_busy_ones(store):
    """Due jobs of an order held by an event claim must not keep the jobs of other orders waiting."""
    add_jobs(store, [job_row(f"a{i:02}", "A", due_at=T0 - 100 + i) for i in range(25)] + [job_row("b", "B")])
    store.enqueue([ev("a1", "A")], T0)
    assert store.claim("h1", T0, LEASE) is not None
    got = store.claim_job("j1", T0, LEASE)
    assert got is not None and got.job.key == "b"


def test_jobs_are_claimed_by_due_time_and_a_retry_waits(store):
    add_jobs(store, [job_row("late", "A", due_at=T0 + 50), job_row("soon", "B", due_at=T0 + 10)])
    assert store.claim_job("j1", T0, LEASE) is None
    assert store.next_job_due() == T0 + 10
    claim = store.claim_job("j1", T0 + 60, LEASE)
    assert claim.job.key == "soon"
    store.finish_job(claim, JobFinish("pending", "503", due_at=T0 + 120), T0 + 61)
    stored = store.job("soon")
    assert (stored.status, stored.attempts, stored.due_at, stored.error, stored.finished_at) == (
        "pending", 1, T0 + 120, "503", None)
    claim = store.claim_job("j2", T0 + 60, LEASE)
    assert claim.job.key == "late"
    store.finish_job(claim, JobFinish("failed", "refused"), T0 + 60)
    assert store.claim_job("j3", T0 + 119, LEASE) is None
    claim = store.claim_job("j3", T0 + 120, LEASE)
    assert claim.job.key == "soon" and claim.job.attempts == 1
    store.finish_job(claim, JobFinish("done"), T0 + 121)
    assert store.claim_job("j4", T0 + 10_000, LEASE) is None
    assert store.counts() == {"events_done": 1, "jobs_done": 1, "jobs_failed": 1}
    assert store.next_job_due() is None
    assert store.job("late").error == "refused" and store.job("late").finished_at == T0 + 60


def test_a_job_lease_ends_and_another_runner_takes_the_job(store):
    add_jobs(store, [job_row("k1", "A")])
    late = store.claim_job("j1", T0, LEASE)
    assert store.claim_job("j2", T0 + 1, LEASE) is None
    again = store.claim_job("j2", T0 + LEASE + 1, LEASE)
    assert again.job.key == "k1"
    with pytest.raises(LeaseLost):
        store.finish_job(late, JobFinish("done", events=[ev("k1.1", "A", source="job")]), T0 + LEASE + 2)
    assert store.job("k1").status == "pending" and store.event("k1.1") is None
    store.finish_job(again, JobFinish("done"), T0 + LEASE + 2)
    assert store.job("k1").attempts == 1


def test_events_a_job_emits_enter_the_inbox_once(store):
    add_jobs(store, [job_row("k1", "A"), job_row("k2", "A")])
    claim = store.claim_job("j1", T0, LEASE)
    emitted = [ev(f"{claim.job.key}.1", "A", name="Note Added", source="job"),
               ev(f"{claim.job.key}.2", "A", name="Note Added", source="job")]
    assert store.finish_job(claim, JobFinish("done", events=emitted), T0) == [True, True]
    # the same events again (a job run again after a crash) are acknowledged, not stored again
    claim = store.claim_job("j2", T0, LEASE)
    assert store.finish_job(claim, JobFinish("failed", "x", events=emitted + [ev("new", "A")]), T0) == [
        False, False, True]
    pending = store.events(status="pending")
    assert [(e.id, e.source) for e in pending] == [("k1.1", "job"), ("k1.2", "job"), ("new", "api")]


# ---- tokens, rulesets, shipments, rejects, stores -------------------------------------------------

def test_tokens_are_stored_by_hash_only(store):
    token = store.create_token("shop", "write", T0, label="ci")
    other = store.create_token("shop", "read", T0)
    assert token != other and token.startswith("rd_") and len(token) > 40
    assert store.token(token) == Token("shop", "write", "ci")
    assert store.token(other) == Token("shop", "read", None)
    assert store.token(token + "x") is None and store.token("") is None
    with store._read() as tx:
        rows = tx.rows("SELECT hash, store, scope, label, created_at FROM tokens ORDER BY created_at, hash")
    assert {row[0] for row in rows} == {token_hash(token), token_hash(other)}
    assert not any(token in str(value) or other in str(value) for row in rows for value in row)
    with pytest.raises(ValueError):
        store.create_token("shop", "admin", T0)


def test_rulesets(store):
    assert store.last_ruleset() is None
    store.save_ruleset("v1", '{"a.rules": "x"}', T0)
    store.save_ruleset("v2", '{"a.rules": "y"}', T0 + 1)
    assert store.last_ruleset() == ("v2", '{"a.rules": "y"}')
    store.save_ruleset("v1", '{"a.rules": "x"}', T0 + 2)  # back to an earlier ruleset
    assert store.last_ruleset() == ("v1", '{"a.rules": "x"}')


def test_orders_in_folder_and_order_stores(store):
    store.enqueue([ev("e1", "3"), ev("e2", "1"), ev("e3", "2"), ev("e4", "9", store="other")], T0)
    claim = store.claim("h1", T0, LEASE)
    store.commit(claim, done(claim), [], {("default", "3"): ("{}", "Hold"), ("default", "1"): ("{}", "Hold"),
                                          ("default", "2"): ("{}", None), ("other", "9"): ("{}", "Hold")}, T0)
    assert store.orders_in_folder("default", "Hold") == ["1", "3"]
    assert store.orders_in_folder("other", "Hold") == ["9"]
    assert store.order_stores() == ["default", "other"]
    store.enqueue([ev("e5", "3")], T0)
    claim = store.claim("h2", T0, LEASE)
    store.commit(claim, done(claim), [], {("default", "3"): ('{"v": 2}', "Done")}, T0)
    assert store.orders_in_folder("default", "Hold") == ["1"]
    assert store.orders_in_folder("default", "Done") == ["3"]
    assert store.order("default", "3") == '{"v": 2}'


def test_shipments_are_kept_once(store):
    assert store.add_shipment("default", "1", "TRK1", "{}", T0, carrier="UPS") is True
    assert store.add_shipment("default", "1", "TRK1", '{"again": 1}', T0 + 1) is False
    assert store.add_shipment("default", "1", "TRK2", "{}", T0) is True
    assert store.add_shipment("default", "2", "TRK1", "{}", T0) is True


def test_rejects_are_kept_in_order(store):
    assert store.rejects() == []
    store.reject("stdin", "not json", "invalid JSON", T0)
    store.reject("file:x", "{}", "no event", T0)
    assert store.rejects() == [("stdin", "not json", "invalid JSON"), ("file:x", "{}", "no event")]


def test_sync_stores(store):
    store.sync_stores([("b", "11"), ("a", None)], T0)
    store.sync_stores([("b", "12")], T0 + 1)
    assert store.store_names() == ["a", "b"]
    with store._read() as tx:
        assert tx.rows("SELECT name, store_id FROM stores ORDER BY name") == [("a", None), ("b", "12")]


def test_url_for_display_hides_the_password(store):
    assert "secret" not in repr(store)
    if store.backend == "postgresql":
        store.url = "postgresql://user:secret@host:5432/db"
        assert store.url_for_display == "postgresql://user@host:5432/db"


# ---- concurrency ---------------------------------------------------------------------------------

@pytest.mark.parametrize("holders", [2, 3])
def test_concurrent_claims_never_share_an_order_nor_repeat_an_event(opener, store, holders):
    """Holders (threads; on PostgreSQL each with its own store object, like separate daemons)
    claim until the inbox is empty: every event is handled exactly once, the events of an order
    one at a time and in inbox order, and the order's stored state loses no update."""
    orders = [str(n) for n in range(8)]
    events = [ev(f"{o}-{i}", o) for i in range(12) for o in orders]
    for start in range(0, len(events), 25):
        store.enqueue(events[start:start + 25], T0)
    stores = [store] + [opener() if opener.backend == "postgresql" else store for _ in range(holders - 1)]
    lock = threading.Lock()
    active: dict[tuple[str, str], str] = {}
    handled: list[tuple[str, str, int]] = []  # (holder, order, seq) in processing order
    problems: list[str] = []

    def work(number: int) -> None:
        mine = stores[number]
        claims = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            holder = f"w{number}:{claims}"
            claims += 1
            claim = mine.claim(holder, time.time(), 60.0, limit=7, orders=3)
            if claim is None:
                if not mine.events(status="pending", limit=1):
                    return
                time.sleep(0.001)
                continue
            with lock:
                for ref in claim.orders:
                    if ref in active:
                        problems.append(f"{holder} got {ref} held by {active[ref]}")
                    active[ref] = holder
                handled.extend((holder, e.order_id, e.seq) for e in claim.events)
            new_state = {}
            for ref, data in claim.orders.items():
                seen = json.loads(data)["seen"] if data else []
                seen += [e.id for e in claim.events if (e.store, e.order_id) == ref]
                new_state[ref] = (json.dumps({"seen": seen}), None)
            with lock:
                for ref in claim.orders:
                    active.pop(ref, None)
            mine.commit(claim, done(claim), [], new_state, time.time())
        problems.append(f"w{number} did not finish")

    def guarded(number: int) -> None:
        try:
            work(number)
        except Exception as exc:  # e.g. a deadlock between claims: a failure, not a thread's silent end
            problems.append(f"w{number}: {type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(holders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert problems == []
    seqs = sorted(seq for _, _, seq in handled)
    assert seqs == sorted(e.seq for e in store.events())  # every event exactly once
    by_order = defaultdict(list)
    for _, order, seq in handled:
        by_order[order].append(seq)
    assert all(got == sorted(got) for got in by_order.values())
    for order in orders:
        assert json.loads(store.order("default", order))["seen"] == [f"{order}-{i}" for i in range(12)]
    assert store.counts() == {"events_done": len(events)}
    assert len({holder.split(":")[0] for holder, _, _ in handled}) >= 1
