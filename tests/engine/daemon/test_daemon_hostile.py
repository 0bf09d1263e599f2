"""Hostile input against the daemon's HTTP API and follow intake (docs/daemon.md's contract):
every bad body is a 4xx with a JSON reason (never a 500, a hang, or a dead daemon thread),
nothing of a refused body is stored, and secrets appear in no answer, log or table."""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from ruledesk.engine.daemon.api import create_app
from ruledesk.engine.store import open_store

from .test_daemon_features import RULES, Clock, eventually, idle, make_daemon

MAX_BODY = 1_000_000
SECRET = "sk_live_SUPERSECRET_42"


@pytest.fixture
def env(tmp_path):
    folder = tmp_path / "rules.d"
    folder.mkdir()
    (folder / "hostile.rules").write_text(RULES + '\nrule "Slash" {\n    when button "A/B"\n'
                                          '    then "Set Order Metadata"(field: "ab", value: "yes")\n}\n',
                                          encoding="utf-8")
    store = open_store(f"sqlite:///{tmp_path / 'ruledesk.db'}")
    daemon = make_daemon(store, folder, Clock())
    daemon.start()
    client = TestClient(create_app(daemon, max_body=MAX_BODY), raise_server_exceptions=False)
    token = store.create_token("default", "write", 0.0)
    e = type("Env", (), {})()
    e.store, e.daemon, e.client, e.token, e.db = store, daemon, client, token, tmp_path / "ruledesk.db"
    e.auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    yield e
    client.close()
    daemon.stop()
    store.close()


def rows(env, table: str) -> list[tuple]:
    with sqlite3.connect(env.db) as db:
        return db.execute(f"SELECT * FROM {table}").fetchall()  # noqa: S608 (a table name of the test's)


def threads_alive(env) -> None:
    workers = [t for t in env.daemon._threads if t not in env.daemon.follows]  # a follow of a whole file ends
    assert workers and all(t.is_alive() for t in workers), [t.name for t in workers if not t.is_alive()]


def imported(order_id="1", **extra) -> dict:
    return {"event": "Order is Imported", "order": {"id": order_id}, **extra}


BIG = str(10 ** 400).encode()
HOSTILE = {
    # name: (body, status)
    "invalid utf-8": (b'{"event":"Order is Imported","order":{"id":"\xff\xfe"}}', 400),
    "lone surrogate in the event id": (b'{"event":"Order is Imported","order":{"id":"1"},"id":"\\ud800"}', 422),
    "lone surrogate in an order field": (b'{"event":"Order is Imported","order":{"id":"1","email":"\\udfff"}}', 422),
    "lone surrogate as a key": (b'{"event":"Order is Imported","order":{"id":"1","\\ud800":1}}', 422),
    "100k levels of nesting": (b"[" * 100_000 + b"]" * 100_000, 400),
    "100k levels of nesting in an object": (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, 400),
    "300 levels inside the order": (b'{"event":"Order is Imported","order":{"id":"1","x":' + b"[" * 300 + b"]" * 300
                                    + b"}}", 422),
    "1e999 as the total": (b'{"event":"Order is Imported","order":{"id":"1","total":1e999}}', 422),
    "1e999 in an unknown field": (b'{"event":"Order is Imported","order":{"id":"1","zz":1e999}}', 422),
    "10**400 in an unknown field": (b'{"event":"Order is Imported","order":{"id":"1","zz":' + BIG + b"}}", 422),
    "10**400 as the order id": (b'{"event":"Order is Imported","order":{"id":' + BIG + b"}}", 422),
    "10**400 in a payload": (b'{"event":"Note Added","order":{"id":"1"},"payload":{"note":' + BIG + b"}}", 422),
    "NaN": (b'{"event":"Order is Imported","order":{"id":"1","total":NaN}}', 400),
    "Infinity as the order id": (b'{"event":"Order is Imported","order":{"id":Infinity}}', 400),
    "-Infinity as the event id": (b'{"event":"Order is Imported","order":{"id":"1"},"id":-Infinity}', 400),
    "id an object": (json.dumps(imported(id={"a": 1})).encode(), 422),
    "id an array": (json.dumps(imported(id=[1])).encode(), 422),
    "id a boolean": (json.dumps(imported(id=True)).encode(), 422),
    "id a float": (json.dumps(imported(id=1.5)).encode(), 422),
    "id empty": (json.dumps(imported(id="")).encode(), 422),
    "event a number": (json.dumps({"event": 5, "order": {"id": "1"}}).encode(), 422),
    "event null": (json.dumps({"event": None, "order": {"id": "1"}}).encode(), 422),
    "event an object": (json.dumps({"event": {"name": "x"}, "order": {"id": "1"}}).encode(), 422),
    "payload an array": (json.dumps({"event": "Note Added", "order": {"id": "1"}, "payload": [1]}).encode(), 422),
    "payload a string": (json.dumps({"event": "Note Added", "order": {"id": "1"}, "payload": "x"}).encode(), 422),
    "order null": (json.dumps({"event": "Order is Imported", "order": None}).encode(), 422),
    "order id an object": (json.dumps(imported({"a": 1})).encode(), 422),
    "order id a boolean": (json.dumps(imported(True)).encode(), 422),
    "no order id": (b"{}", 422),
    "store with an api_key": (json.dumps(imported(store={"name": "default", "api_key": SECRET})).encode(), 403),
    "a string": (b'"x"', 400),
    "null": (b"null", 400),
    "an empty array": (b"[]", 400),
    "whitespace": (b" \n\t ", 400),
    "one bad event in an array": (json.dumps([imported("ok-1", id="ok-1"), imported(True)]).encode(), 422),
    "truncated": (b'{"event":"Order is Imported","order":{"id":"1"', 400),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_a_hostile_body_is_a_4xx_with_a_reason_and_nothing_is_stored(env, name):
    body, status = HOSTILE[name]
    response = env.client.post("/v1/events", content=body, headers=env.auth)
    assert response.status_code == status, response.text
    answer = response.json()
    assert isinstance(answer.get("error"), str) and answer["error"]
    assert SECRET not in response.text
    assert rows(env, "events") == []
    threads_alive(env)


def test_invalid_utf8_says_where(env):
    response = env.client.post("/v1/events", content=b'{"event":"Order is Imported",\n"order":{"id":"\xff"}}',
                               headers=env.auth)
    assert response.status_code == 400 and response.json()["at"] == "line 2, column 16"


def test_a_number_in_one_event_of_an_array_is_placed(env):
    body = b'[{"event":"Order is Imported","order":{"id":"a"}},{"event":"Order is Imported","order":{"id":"b","zz":' \
           + BIG + b"}}]"
    response = env.client.post("/v1/events", content=body, headers=env.auth)
    assert response.status_code == 422 and response.json()["at"] == "[1]"
    assert rows(env, "events") == []


def test_taken_oddities_are_pinned(env):
    """What is taken on purpose: a UTF-8 BOM, an integer id (its digits), a huge integer id, the last
    of duplicate keys, an array repeating an id (the second acknowledged as a duplicate)."""
    post = lambda body: env.client.post("/v1/events", content=body, headers=env.auth)  # noqa: E731
    assert post(b"\xef\xbb\xbf" + json.dumps(imported(id="bom")).encode()).json() == {"ids": ["bom"], "duplicates": []}
    assert post(json.dumps(imported(id=5)).encode()).json()["ids"] == ["5"]
    assert post(b'{"event":"Order is Imported","order":{"id":"1"},"id":' + BIG + b"}").json()["ids"] == [BIG.decode()]
    assert post(b'{"event":"Order is Imported","order":{"id":"x"},"order":{"id":"y"},"id":"dup-key"}').status_code == 202
    assert post(json.dumps([imported("p", id="same"), imported("q", id="same")]).encode()).json() == {
        "ids": ["same", "same"], "duplicates": ["same"]}
    idle(env.daemon)
    assert env.store.order("default", "y") is not None and env.store.order("default", "x") is None
    assert env.store.order("default", "q") is None  # the repeated id's event was not taken
    threads_alive(env)


def test_ten_thousand_events_in_one_body(env):
    body = json.dumps([imported(f"o{i}", id=f"e{i}") for i in range(10_000)]).encode()
    big = TestClient(create_app(env.daemon, max_body=len(body)), raise_server_exceptions=False)
    started = time.monotonic()
    response = big.post("/v1/events", content=body, headers=env.auth)
    assert response.status_code == 202 and len(response.json()["ids"]) == 10_000
    assert time.monotonic() - started < 10
    assert len(rows(env, "events")) == 10_000


def test_max_body_exactly_and_one_byte_over(env):
    body = json.dumps(imported(id="edge")).encode()
    tight = TestClient(create_app(env.daemon, max_body=len(body)), raise_server_exceptions=False)
    over = tight.post("/v1/events", content=body + b" ", headers=env.auth)
    assert over.status_code == 413 and "larger than" in over.json()["error"]

    def chunks(data: bytes):  # no Content-Length: the limit is counted as the body arrives
        yield data[:7]
        yield data[7:]

    chunked_over = tight.post("/v1/events", content=chunks(body + b" "), headers=env.auth)
    assert chunked_over.status_code == 413
    lying = tight.post("/v1/events", content=body + b" ", headers={**env.auth, "Content-Length": str(len(body))})
    assert lying.status_code in (400, 413)
    assert rows(env, "events") == []
    assert tight.post("/v1/events", content=chunks(body), headers=env.auth).status_code == 202
    assert tight.post("/v1/events", content=body, headers=env.auth).json() == {"ids": ["edge"], "duplicates": ["edge"]}


@pytest.mark.parametrize("header, status", [
    ("bearer {t}", 202), ("BEARER {t}", 202), ("Bearer  {t}", 202), ("Bearer {t}  ", 202),
    ("Bearer", 401), ("Bearer ", 401), ("Basic {t}", 401), ("{t}", 401), ("Bearer {t}x", 401),
    ("Bearer t\u00f6k\u00e9n", 401), ("Bearer \u00e2\u0082\u00ac", 401), ("Bearer\t{t}", 401),
])
def test_authorization_variants(env, header, status):
    value = header.format(t=env.token).encode("latin-1")
    response = env.client.post("/v1/events", content=json.dumps(imported()).encode(),
                               headers={"Authorization": value, "Content-Type": "application/json"})
    assert response.status_code == status, response.text
    read = env.client.get("/v1/decisions?order_id=1", headers={"Authorization": value})
    assert read.status_code == (200 if status == 202 else 401)
    if status == 401:
        assert response.json()["error"] and response.headers["www-authenticate"] == "Bearer"


def test_authorization_with_a_non_latin1_token_over_raw_asgi(env):
    """A UTF-8 token (bytes past latin-1 in the header) is 401, not a crash."""
    response = env.client.post("/v1/events", content=b"{}", headers={
        "Authorization": "Bearer \u65e5\u672c".encode("utf-8")})
    assert response.status_code == 401


WEIRD_IDS = ["a/b", "a/b/c/", "\u00fc-\u00df-\u65e5\u672c", "%2F..%2F", "a?b#c&d=e", " sp ", "x" * 3000]


def test_orders_with_weird_ids_are_readable(env):
    for number, order_id in enumerate(WEIRD_IDS):
        response = env.client.post("/v1/events", json=imported(order_id, id=f"w{number}"), headers=env.auth)
        assert response.status_code == 202, response.text
    idle(env.daemon)
    read = {"Authorization": env.auth["Authorization"]}
    for order_id in WEIRD_IDS:
        quoted = quote(order_id, safe="")
        decisions = env.client.get(f"/v1/decisions?order_id={quoted}&explain=true", headers=read)
        assert decisions.status_code == 200 and decisions.json()[0]["order_id"] == order_id
        if "%" in order_id:  # the TestClient decodes a path twice (httpx's url.path, then unquote): not testable here
            continue
        order = env.client.get(f"/v1/orders/{quoted}", headers=read)
        assert order.status_code == 200, (order_id, order.text)
        assert order.json()["id"] == order_id
    for raw in ["/v1/orders/%ff", "/v1/orders/%ED%A0%80", "/v1/decisions?order_id=%ff%fe",
                "/v1/decisions?order_id=%ED%A0%80"]:
        response = env.client.get(raw, headers=read)
        assert response.status_code in (200, 404) and response.headers["content-type"] == "application/json"


def test_framework_refusals_have_the_contract_shape(env):
    read = {"Authorization": env.auth["Authorization"]}
    missing = env.client.get("/v1/decisions", headers=read)
    assert missing.status_code == 422 and missing.json() == {"error": "Field required", "at": "query.order_id"}
    bad = env.client.get("/v1/decisions?order_id=1&explain=maybe", headers=read)
    assert bad.status_code == 422 and "error" in bad.json()
    unknown = env.client.get("/v1/nowhere", headers=read)
    assert unknown.status_code == 404 and "error" in unknown.json()


def test_buttons_with_slashes_in_the_order_id_and_the_label(env):
    env.client.post("/v1/events", json=imported("a/b", id="imp-ab"), headers=env.auth)
    idle(env.daemon)
    press = lambda order_id, label: env.client.post(  # noqa: E731
        f"/v1/orders/{quote(order_id, safe='')}/buttons/{quote(label, safe='')}", headers=env.auth)
    assert press("a/b", "Approve").status_code == 202
    assert press("a/b", "A/B").status_code == 202
    for label in ["%2F", "Approve%2F", "\u00e9", "x" * 3000]:
        response = press("a/b", label)
        assert response.status_code == 422 and response.json()["error"].startswith("no enabled rule")
    assert press("nope/1", "Approve").status_code == 404
    idle(env.daemon)
    order = env.client.get("/v1/orders/a%2Fb", headers=env.auth).json()
    assert order["order_metadata"]["approved"] == "yes" and order["order_metadata"]["ab"] == "yes"


def test_replay_of_a_replayed_event(env):
    env.client.post("/v1/events", json=imported("r1", id="r"), headers=env.auth)
    idle(env.daemon)
    first = env.client.post("/v1/events/r/replay", headers=env.auth)
    assert first.json()["ids"] == ["r/replay/1"]
    again = env.client.post(f"/v1/events/{quote('r/replay/1', safe='')}/replay", headers=env.auth)
    assert again.status_code == 202 and again.json()["ids"] == ["r/replay/1/replay/1"]
    unquoted = env.client.post("/v1/events/r/replay/1/replay", headers=env.auth)
    assert unquoted.status_code == 202 and unquoted.json()["ids"] == ["r/replay/1/replay/2"]
    missing = env.client.post("/v1/events/a%2Fb/replay", headers=env.auth)
    assert missing.status_code == 404 and "no event" in missing.json()["error"]
    idle(env.daemon)
    assert len(env.store.decisions("default", "r1")) >= 4


def test_secrets_never_reach_answers_logs_or_tables(env, caplog):
    caplog.set_level(logging.DEBUG)
    body = imported(store={"name": "default", "api_key": SECRET, "podos": {"token": SECRET}}, id="s1")
    for payload in (body, [body], imported(store={"api_key": SECRET})):
        response = env.client.post("/v1/events", json=payload, headers=env.auth)
        assert response.status_code == 403 and SECRET not in response.text
    assert SECRET not in caplog.text
    assert all(SECRET not in str(row) for table in ("events", "orders", "rejects") for row in rows(env, table))


def test_follow_survives_hostile_lines(env, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    lines = [
        b'{"event":"Order is Imported","order":{"id":"\xff"},"id":"L1"}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"event":"Order is Imported","order":{"id":"L3","zz":' + BIG + b'},"id":"L3"}',
        b'{"event":"Order is Imported","order":{"id":"L4"},"id":"\\ud800"}',
        b'{"event":"Order is Imported","order":{"id":"L5"},"store":{"name":"default","api_key":"' + SECRET.encode()
        + b'"},"id":"L5"}',
        b'{"event":"Order is Imported","order":{"id":"L6","zz":NaN},"id":"L6"}',
        b'\xef\xbb\xbf{"event":"Order is Imported","order":{"id":"L7"},"id":"L7"}',
        b'{"event":"Order is Imported","order":{"id":"L8","note":"' + b"a" * (10 * 1024 * 1024) + b'"},"id":"L8"}',
        b'{"event":"Order is Imported","order":{"id":"L9"},"id":"L9"}',
    ]
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    thread = env.daemon.follow(str(source), keep_following=False)
    thread.join(30)
    assert not thread.is_alive()
    with sqlite3.connect(env.db) as db:
        ids = sorted(r[0] for r in db.execute("SELECT id FROM events"))
        rejects = db.execute("SELECT source, body, reason FROM rejects ORDER BY seq").fetchall()
    assert ids == ["L7", "L9"], ids  # L8 (10 MB) is over the follow cap, the HTTP body limit
    assert [r[0] for r in rejects] == [f"{source}:{n}" for n in (1, 2, 3, 4, 5, 6, 8)]
    assert all(r[2] for r in rejects)
    assert all(SECRET not in r[1] for r in rejects)  # the refused line is kept without its secret
    assert SECRET not in caplog.text
    eventually(lambda: env.store.order("default", "L9") is not None)
    threads_alive(env)
