"""Hot reload of ``ruledesk serve`` as a real process (SQLite): a broken rule file saved while events
stream in leaves the old ruleset serving (and says so in /metrics and /readyz), the fixed file
activates a new one, every decision names one of the two; a restart with broken files serves the
last good ruleset from the store, and with none the daemon refuses to start; ``ruledesk reload``
(SIGHUP) forces a reload with --static (no watching)."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from support import Serve, cli as _cli, create_token
from ruledesk.engine.lang.ruleset import load_ruleset
from ruledesk.engine.run.engine import default_actions, default_events
from ruledesk.engine.store import open_store

RULES_V1 = """\
rule "Tag new orders" {
    when "Order is Imported"
    then "Tag Order"(name: "v1")
}
"""

RULES_V2 = """\
rule "Tag new orders" {
    when "Order is Imported"
    then "Tag Order"(name: "v2")
}

rule "Remember the note" {
    when "Note Added"
    then "Set Order Metadata"(field: "last_note", value: "{{ event.note }}")
}
"""

BROKEN = """\
rule "Tag new orders" {
    when "Order is Imported"
    then "Tag Order"(name: "v1"
}
"""

SETTLE = 60.0  # seconds a reload or the work of a test may take


def version_of(rules: Path) -> str:
    """The ruleset hash the daemon computes for the files under ``rules`` now."""
    return load_ruleset([str(rules)], default_events(), default_actions()).version


def save(path: Path, text: str) -> None:
    """Write a rule file the way an editor saving it would: whole, at once (temp + rename)."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def eventually(condition: Callable[[], object], timeout: float = SETTLE, what: str = "the condition",
               daemon: Serve | None = None) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not hold within {timeout} s" + (f":\n{daemon.stderr()}" if daemon else ""))
        time.sleep(0.1)


def readyz(url: str) -> tuple[int, dict]:
    response = httpx.get(f"{url}/readyz", timeout=10)
    return response.status_code, response.json()


def metrics(url: str) -> str:
    return httpx.get(f"{url}/metrics", timeout=10).text


def metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        found = re.fullmatch(r"([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if line.startswith("#") or not found or found.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', found.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            return float(found.group(3))
    return None


class Stream:
    """Posts an "Order is Imported" for a new order every few milliseconds until stopped."""

    def __init__(self, url: str, token: str, prefix: str = "s") -> None:
        self.url, self.prefix = url, prefix
        self.headers = {"Authorization": f"Bearer {token}"}
        self.acked: list[str] = []
        self.error: BaseException | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True, name="stream")

    def run(self) -> None:
        try:
            with httpx.Client(timeout=20) as http:
                for n in itertools.count():
                    if self.stopping.wait(0.01):
                        return
                    order_id = f"{self.prefix}-{n}"
                    response = http.post(f"{self.url}/v1/events", headers=self.headers,
                                         json={"event": "Order is Imported", "order": {"id": order_id}, "id": order_id})
                    assert response.status_code == 202, response.text
                    self.acked.append(order_id)
        except BaseException as exc:  # re-raised by the test
            self.error = exc

    def start(self) -> "Stream":
        self.thread.start()
        return self

    def stop(self) -> list[str]:
        self.stopping.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "the stream is stuck"
        if self.error is not None:
            raise self.error
        return list(self.acked)


def post_and_decide(url: str, token: str, event: dict, timeout: float = SETTLE) -> list[dict]:
    """Post one event and wait for its decisions over the API (GET /v1/decisions)."""
    headers = {"Authorization": f"Bearer {token}"}
    response = httpx.post(f"{url}/v1/events", json=event, headers=headers, timeout=20)
    assert response.status_code == 202, response.text

    def decided() -> list[dict]:
        found = httpx.get(f"{url}/v1/decisions", params={"order_id": event["order"]["id"]}, headers=headers,
                          timeout=20).json()
        return [d for d in found if d["event_id"] == event["id"]]

    return eventually(decided, timeout, what=f"a decision for {event['id']}")


@pytest.fixture
def rules(tmp_path) -> Path:
    folder = tmp_path / "rules.d"
    folder.mkdir()
    (folder / "main.rules").write_text(RULES_V1, encoding="utf-8")
    return folder


# ---- a broken file while events stream in, then a fix; then a restart with a broken file ----------------
def test_hot_reload_under_load_and_restart_on_broken_files(rules, tmp_path, serves):
    db = f"sqlite:///{tmp_path / 'ruledesk.db'}"
    token = create_token(db, cwd=tmp_path)
    rule_file = rules / "main.rules"
    v1 = version_of(rules)
    daemon = serves(tmp_path, db, rules, watch=True)
    url = daemon.url
    assert readyz(url)[1]["ruleset"]["version"] == v1
    stream = Stream(url, token).start()
    eventually(lambda: len(stream.acked) >= 20, what="the stream under way", daemon=daemon)

    # 1. a syntax error: the reload fails, v1 keeps serving, and the daemon says so
    save(rule_file, BROKEN)
    eventually(lambda: metric(metrics(url), "ruledesk_config_last_reload_successful") == 0.0,
               what="the failed reload reported in /metrics", daemon=daemon)
    page = metrics(url)
    assert metric(page, "ruledesk_config_reloads_total", result="failure") >= 1.0
    assert metric(page, "ruledesk_ruleset_active", version=v1, source="files") == 1.0
    status, report = readyz(url)
    assert status == 200, report
    assert report["ruleset"]["version"] == v1 and "warning" in report, report
    assert "main.rules" in report.get("problems", ""), report
    [decision] = post_and_decide(url, token, {"event": "Order is Imported", "order": {"id": "while-broken"},
                                              "id": "while-broken"})
    assert decision["ruleset"] == v1 and decision["fired"] == ["Tag new orders"]
    assert decision["actions"][0]["params"]["name"] == "v1"

    # 2. the fix, with a real change: the new ruleset activates
    save(rule_file, RULES_V2)
    v2 = version_of(rules)
    assert v2 != v1
    eventually(lambda: readyz(url)[1]["ruleset"]["version"] == v2, what="the new ruleset active", daemon=daemon)
    page = metrics(url)
    assert metric(page, "ruledesk_config_last_reload_successful") == 1.0
    assert metric(page, "ruledesk_ruleset_active", version=v2, source="files") == 1.0
    assert metric(page, "ruledesk_ruleset_active", version=v1) is None  # only the active one is 1
    status, report = readyz(url)
    assert status == 200 and "warning" not in report, report
    [decision] = post_and_decide(url, token, {"event": "Order is Imported", "order": {"id": "after-fix"},
                                              "id": "after-fix"})
    assert decision["ruleset"] == v2 and decision["actions"][0]["params"]["name"] == "v2"
    eventually(lambda: len(stream.acked) >= 40, what="more of the stream", daemon=daemon)
    acked = stream.stop()

    # every decision names one of the two rulesets; the stream's last events ran on the new one
    with open_store(db) as store:
        eventually(lambda: not store.counts().get("events_pending"), what="the stream processed", daemon=daemon)
        seen = []
        for order_id in acked:
            [made] = [json.loads(t) for t in store.decisions("default", order_id)]
            assert made["ruleset"] in (v1, v2), made["ruleset"]
            seen.append(made["ruleset"])
        assert seen[-1] == v2
        # once the new ruleset took over, the old one never came back (swapped once, atomically)
        assert seen == sorted(seen, key=lambda v: v == v2), seen
    assert daemon.stop() == 0, daemon.stderr()

    # 3. a restart with a broken file: the last good ruleset (v2) serves from the store, loudly
    save(rule_file, BROKEN)
    daemon.start()
    url = daemon.url
    assert "WARNING" in daemon.stderr() and v2 in daemon.stderr(), daemon.stderr()
    status, report = readyz(url)
    assert status == 200, report
    assert report["ruleset"] == {"version": v2, "rules": 2, "source": "store"}, report
    assert "warning" in report, report
    assert metric(metrics(url), "ruledesk_ruleset_active", version=v2, source="store") == 1.0
    assert metric(metrics(url), "ruledesk_config_last_reload_successful") == 0.0
    [decision] = post_and_decide(url, token, {"event": "Note Added", "order": {"id": "after-fix"},
                                              "payload": {"note": "restarted"}, "id": "after-restart"})
    assert decision["ruleset"] == v2 and decision["fired"] == ["Remember the note"]
    assert daemon.stop() == 0, daemon.stderr()


def test_broken_files_and_no_earlier_ruleset_refuse_to_start(rules, tmp_path):
    (rules / "main.rules").write_text(BROKEN, encoding="utf-8")
    done = subprocess.run([*_cli(), "serve", "--db", f"sqlite:///{tmp_path / 'ruledesk.db'}", "--rules", str(rules),
                           "--port", "0", "--quiet", "--pidfile", str(tmp_path / "serve.pid"), "--static"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "main.rules" in done.stderr and "no earlier ruleset" in done.stderr, done.stderr
    assert "serving on" not in done.stderr
    # an empty folder is no ruleset either
    (rules / "main.rules").unlink()
    done = subprocess.run([*_cli(), "serve", "--db", f"sqlite:///{tmp_path / 'ruledesk.db'}", "--rules", str(rules),
                           "--port", "0", "--quiet", "--pidfile", str(tmp_path / "serve.pid"), "--static"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, (done.returncode, done.stderr)


# ---- ruledesk reload (SIGHUP) ------------------------------------------------------------------------------
def test_ruledesk_reload_forces_a_reload_with_watching_off(rules, tmp_path, serves):
    db = f"sqlite:///{tmp_path / 'ruledesk.db'}"
    v1 = version_of(rules)
    daemon = serves(tmp_path, db, rules, "--static")
    assert readyz(daemon.url)[1]["ruleset"]["version"] == v1
    save(rules / "main.rules", RULES_V2)
    v2 = version_of(rules)
    time.sleep(1.5)  # longer than the debounce: with watching off nothing happens by itself
    assert readyz(daemon.url)[1]["ruleset"]["version"] == v1
    done = subprocess.run([*_cli(), "reload", "--pidfile", str(daemon.pidfile)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert str(daemon.proc.pid) in done.stdout
    eventually(lambda: readyz(daemon.url)[1]["ruleset"]["version"] == v2, what="the reload by SIGHUP",
               daemon=daemon)
    assert metric(metrics(daemon.url), "ruledesk_config_reloads_total", result="success") == 1.0
    # a forced reload of broken files fails like a watched one
    save(rules / "main.rules", BROKEN)
    done = subprocess.run([*_cli(), "reload", "--pidfile", str(daemon.pidfile)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    eventually(lambda: metric(metrics(daemon.url), "ruledesk_config_last_reload_successful") == 0.0,
               what="the failed forced reload", daemon=daemon)
    status, report = readyz(daemon.url)
    assert status == 200 and report["ruleset"]["version"] == v2 and "warning" in report, report
    assert daemon.stop() == 0, daemon.stderr()
    assert not daemon.pidfile.exists()
    # no daemon: reload says so
    done = subprocess.run([*_cli(), "reload", "--pidfile", str(daemon.pidfile)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert done.returncode != 0
