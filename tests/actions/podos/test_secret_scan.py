"""Acceptance: "the podOS token never appears in any output, log, decision, error or stored row".

A distinctive token is given to the daemon as env:PODOS_SCAN_TOKEN and looked for (as itself, its base64,
its hex and a long piece of it) everywhere ruledesk writes: stdout and stderr of `ruledesk serve --log-level
debug` over every example order (each podOS outcome, General Errors included), every row of every table of its
SQLite database, the daemon's HTTP answers, `ruledesk config check`, `ruledesk run --dry-run` (its request
preview), `ruledesk podos products` (its error paths too), and the repr of the settings and of every error the
client raises.  All over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import subprocess
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from support import ROOT, Serve, cli, create_token

from ruledesk.actions.podos.client import PodosClient, PodosError
from ruledesk.actions.podos.simulator import Simulator
from ruledesk.engine.model.config import load_config

TOKEN = "tok-SCAN-7f3a9c-DO-NOT-LEAK"
ENV = "PODOS_SCAN_TOKEN"
STORE = "Acme Prints"
ORDERS = ROOT / "examples" / "orders.jsonl"


def forms(token: str = TOKEN) -> list[str]:
    raw = token.encode()
    found = [token, token[:14], token[-14:], repr(token), raw.hex(), base64.b64encode(raw).decode(),
             base64.urlsafe_b64encode(raw).decode().rstrip("="), base64.b64encode(b"Bearer " + raw).decode()[:24],
             base64.b64encode(raw).decode()[:20]]
    return found


def leaks(text: str | bytes, where: str) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return [f"{where}: {form!r} in ...{text[max(0, text.find(form) - 80):text.find(form) + 80]!r}..."
            for form in forms() if form in text]


def db_leaks(path: Path) -> tuple[list[str], int]:
    """Every row of every table of the SQLite file, scanned; (leaks, rows scanned)."""
    found, rows = [], 0
    with sqlite3.connect(path) as conn:
        tables = [name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                rows += 1
                for value in row:
                    if isinstance(value, (str, bytes)):
                        found += leaks(value, f"table {table}")
    return found, rows


def config(tmp_path: Path, url: str = "http://127.0.0.1:9", *, name: str = "ruledesk.yaml", retries: int = 0,
           extra: str = "") -> Path:
    text = (ROOT / "examples" / "ruledesk.yaml").read_text(encoding="utf-8")
    text = text.replace("token: file:examples/podos-demo-token", f"token: env:{ENV}")
    text = text.replace("templates: ../templates", f"templates: {ROOT / 'templates'}")  # relative to the file
    text = text.replace("file:examples/", f"file:{ROOT / 'examples'}/")  # the daemon may run elsewhere
    text = text.replace("url: http://127.0.0.1:8765", f"url: {url}\n      retries: {retries}\n      timeout: 3" + extra)
    assert f"env:{ENV}" in text and url in text
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def env(monkeypatch) -> dict[str, str]:
    monkeypatch.setenv(ENV, TOKEN)
    return {**os.environ, ENV: TOKEN}


def ruledesk(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*cli(), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def serve_once(tmp_path: Path, cfg: Path, env: dict[str, str], *extra: str, db: str = "scan.db"
               ) -> subprocess.CompletedProcess:
    run = ruledesk("serve", "--follow", str(ORDERS), "--config", str(cfg), *extra, "--exit-when-idle",
                   "--port", "0", "--db", f"sqlite:///{tmp_path}/{db}", "--pidfile", str(tmp_path / f"{db}.pid"),
                   "--log-level", "debug", env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def events_of(stdout: str) -> dict[str, set[str]]:
    by_event: dict[str, set[str]] = {}
    for line in stdout.splitlines():
        decision = json.loads(line)
        by_event.setdefault(decision["event"], set()).add(decision["order_id"])
    return by_event


def order_ids() -> list[str]:
    return [json.loads(line)["id"] for line in ORDERS.read_text(encoding="utf-8").splitlines() if line.strip()]


# ---- the daemon -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`ruledesk serve --podos-simulator --exit-when-idle` over the example orders (every outcome), then the
    same database served by a `ruledesk serve` whose HTTP API the tests read."""
    tmp_path = tmp_path_factory.mktemp("scan")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV, TOKEN)
        env = {**os.environ}
        cfg = config(tmp_path)
        run = serve_once(tmp_path, cfg, env, "--podos-simulator")
        serve = Serve(tmp_path, f"sqlite:///{tmp_path}/scan.db", ROOT / "rules.d", "--config", str(cfg),
                      "--log-level", "debug", name="scan-api").start()
        try:
            token = create_token(f"sqlite:///{tmp_path}/scan.db", store=STORE, scope="read", cwd=tmp_path)
            yield tmp_path, run, serve, {"Authorization": f"Bearer {token}"}
        finally:
            serve.stop()


def test_serve_with_the_simulator_shows_the_token_nowhere(served) -> None:
    tmp_path, run, serve, auth = served
    seen = events_of(run.stdout)
    for outcome in ("After Order Submitted to podOS", "Shipment is Added",
                    "Order Not Submitted to podOS Because of Invalid SKU",
                    "Order Not Submitted to podOS Because No Products Available"):
        assert seen.get(outcome), (outcome, sorted(seen))  # every outcome was reached, so scanned
    found = leaks(run.stdout, "stdout") + leaks(run.stderr, "stderr")
    in_db, rows = db_leaks(tmp_path / "scan.db")
    assert rows > 50
    answers = []
    for order_id in order_ids():
        for path, params in (("/v1/decisions", {"order_id": order_id, "explain": "true"}),
                             ("/v1/decisions", {"order_id": order_id}), (f"/v1/orders/{order_id}", {})):
            answer = httpx.get(serve.url + path, params=params, headers=auth, timeout=30)
            answers.append((f"GET {path} {params}", answer.text + str(answer.headers)))
    for path in ("/metrics", "/readyz", "/healthz", "/openapi.json", "/v1/orders/nope"):
        answer = httpx.get(serve.url + path, headers=auth, timeout=30)
        answers.append((f"GET {path}", answer.text + str(answer.headers)))
    assert any('"Shipment is Added"' in text for _, text in answers)
    found += in_db + [leak for where, text in answers for leak in leaks(text, where)]
    found += leaks("".join(serve.lines), "serve stderr")
    assert not found, found


def test_the_explained_decisions_of_podos_orders_are_served(served) -> None:
    """GET /v1/decisions?explain=true, the way to see why a podOS order went where it went."""
    _, _, serve, auth = served
    failed = {}
    for order_id in ("1001", "1011", "1014"):
        answer = httpx.get(serve.url + "/v1/decisions", params={"order_id": order_id, "explain": "true"},
                           headers=auth, timeout=30)
        if answer.status_code != 200 or not all("explain" in d for d in answer.json()):
            failed[order_id] = (answer.status_code, answer.text[:200])
    assert not failed, failed


def test_general_errors_in_the_daemon_show_the_token_nowhere(tmp_path, env) -> None:
    """podOS refusing the token (401), and podOS quoting the token back in a 503 (retried within the attempt)
    then a 400 whose error, message and skus all carry it: General Errors, warnings and stored job errors."""
    with Simulator(token="not-the-scan-token", port=0) as wrong, Simulator(token=TOKEN, port=0) as echo:
        echoed = {"error": f"bad_request {TOKEN}", "message": f"we got Authorization: Bearer {TOKEN}",
                  "skus": [TOKEN]}
        echo.add_fault(status=503, times=1, method="POST", path="/v1/orders", retry_after=0.1,
                       body={"error": "unavailable", "message": f"Bearer {TOKEN} later"})
        echo.add_fault(status=400, method="POST", path="/v1/orders", body=echoed)
        runs = []
        for name, sim in (("wrong", wrong), ("echo", echo)):
            cfg = config(tmp_path, sim.url, name=f"{name}.yaml", retries=1)
            runs.append((name, serve_once(tmp_path, cfg, env, db=f"{name}.db")))
        assert any(r["method"] == "POST" and r["path"] == "/v1/orders" for r in echo.requests())
    found = []
    for name, run in runs:
        seen = events_of(run.stdout)
        assert seen.get("Order Not Submitted to podOS Because of General Error"), (name, sorted(seen))
        found += leaks(run.stdout, f"{name} stdout") + leaks(run.stderr, f"{name} stderr")
        found += db_leaks(tmp_path / f"{name}.db")[0]
    assert "HTTP 401" in runs[0][1].stdout and "HTTP 400" in runs[1][1].stdout
    assert not found, found


# ---- the CLI ----------------------------------------------------------------------------------------------


def test_config_check_shows_the_token_nowhere(tmp_path, env) -> None:
    cfg = config(tmp_path)
    for fmt in ("text", "json"):
        run = ruledesk("config", "check", str(cfg), "--format", fmt, env=env)
        assert run.returncode == 0, run.stderr
        assert not leaks(run.stdout + run.stderr, f"config check {fmt}")
    # a configuration with a problem next to the secret
    bad = config(tmp_path, name="bad.yaml", extra="\n      default_mail_class: Teleport")
    run = ruledesk("config", "check", str(bad), "--format", "json", env=env)
    assert run.returncode != 0
    assert not leaks(run.stdout + run.stderr, "config check of a bad file")


def test_the_dry_run_preview_shows_no_token(tmp_path, env) -> None:
    with Simulator(token=TOKEN, port=0) as sim, Simulator(token="other", port=0) as wrong:
        for name, url in (("live", sim.url), ("refused", wrong.url), ("down", "http://127.0.0.1:9")):
            cfg = config(tmp_path, url, name=f"{name}.yaml")
            run = ruledesk("run", "--dry-run", "--format", "json", "--config", str(cfg), str(ORDERS), env=env)
            assert run.returncode in (0, 3), run.stderr[-2000:]
            assert not leaks(run.stdout + run.stderr, f"run --dry-run ({name})")
            previews = [action["detail"]["preview"] for line in run.stdout.splitlines()
                        for action in json.loads(line)["actions"]
                        if isinstance(action.get("detail"), dict) and "preview" in action["detail"]]
            assert previews, name
            shown = [p["request"]["headers"]["Authorization"] for p in previews if "request" in p]
            if name == "live":
                assert shown
            assert all(TOKEN not in value and not value.endswith(("Bearer ", "Bearer")) for value in shown), shown


def test_podos_products_shows_the_token_nowhere(tmp_path, env) -> None:
    with Simulator(token=TOKEN, port=0) as sim, Simulator(token="other", port=0) as wrong:
        ok = ruledesk("podos", "products", "--config", str(config(tmp_path, sim.url, name="ok.yaml")), env=env)
        assert ok.returncode == 0 and "gfn-prod" in ok.stdout, ok.stderr
        refused = ruledesk("podos", "products", "--config", str(config(tmp_path, wrong.url, name="no.yaml")),
                           env=env)
        assert refused.returncode != 0 and "401" in refused.stderr, refused.stderr
        sim.add_fault(status=500, body={"error": f"boom {TOKEN}", "message": f"Authorization: Bearer {TOKEN}"})
        echoed = ruledesk("podos", "products", "--config", str(config(tmp_path, sim.url, name="ok2.yaml")),
                          "--format", "json", env=env)
        assert echoed.returncode != 0 and "500" in echoed.stderr, echoed.stderr
    down = ruledesk("podos", "products", "--config", str(config(tmp_path, name="down.yaml")), env=env)
    assert down.returncode != 0
    for name, run in (("ok", ok), ("401", refused), ("500 echo", echoed), ("down", down)):
        assert not leaks(run.stdout + run.stderr, f"podos products ({name})")
        assert "Traceback" not in run.stderr, run.stderr


def test_podos_products_against_a_podos_quoting_the_token_in_plain_text(tmp_path, env) -> None:
    """A non-JSON error page that quotes the request: whatever the length of the page before the token, the
    CLI's error shows no piece of it."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Quote(BaseHTTPRequestHandler):
        padding = 0

        def do_GET(self) -> None:
            text = ("." * Quote.padding + f" {self.headers.get('Authorization')} is not welcome").encode()
            self.send_response(502)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            self.wfile.write(text)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Quote)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        cfg = config(tmp_path, f"http://127.0.0.1:{server.server_address[1]}")
        found = []
        for padding in (0, 170):  # 170: the token (at 178) straddles the 200-character snippet of the message
            Quote.padding = padding
            run = ruledesk("podos", "products", "--config", str(cfg), env=env)
            assert run.returncode != 0 and "502" in run.stderr, run.stderr
            found += leaks(run.stdout + run.stderr, f"padding {padding}")
    finally:
        server.shutdown()
        server.server_close()
    assert not found, found


# ---- Python-level -----------------------------------------------------------------------------------------


def test_the_settings_and_the_client_errors_never_show_the_token(tmp_path, env) -> None:
    cfg = load_config(config(tmp_path))
    store = next(s for s in cfg.stores if s.podos is not None)
    assert store.podos.token.get_secret_value() == TOKEN
    shown = [repr(cfg), str(cfg), repr(store), str(store), repr(store.podos), str(store.podos),
             cfg.model_dump_json(), store.model_dump_json(), json.dumps(store.view(), default=str),
             repr(store.model_dump()), repr(PodosClient.from_settings(store.podos))]
    errors: list[PodosError] = []
    with Simulator(token="other", port=0) as wrong, Simulator(token=TOKEN, port=0) as sim:
        sim.add_fault(status=503, body={"error": "unavailable", "message": f"token {TOKEN}"}, path="/v1/designs")
        sim.add_fault(drop=True, path="/v1/variants")
        sim.add_fault(status=422, body={"error": "invalid_sku", "message": TOKEN, "skus": [TOKEN]}, path="/v1/orders")
        sim.add_fault(hang=True, path="/v1/products")
        for url, call in ((wrong.url, lambda c: c.products()), (sim.url, lambda c: c.designs()),
                          (sim.url, lambda c: c.variants()), (sim.url, lambda c: c.submit({"x": 1}, "k")),
                          (sim.url, lambda c: c.products()), ("http://127.0.0.1:9", lambda c: c.designs())):
            try:
                with PodosClient(url, "demo-prints", SecretStr(TOKEN), timeout=0.5, retries=0) as podos:
                    call(podos)
            except PodosError as exc:
                errors.append(exc)
            except Exception as exc:  # noqa: BLE001 - anything but a PodosError is reported with its text
                errors.append(exc)  # type: ignore[arg-type]
    assert len(errors) == 6
    import traceback
    for exc in errors:
        shown += [repr(exc), str(exc), repr(exc.args), "".join(traceback.format_exception(exc))]
        if isinstance(exc, PodosError):
            shown += [exc.message, exc.code, repr(exc.skus)]
    assert all(isinstance(exc, PodosError) for exc in errors), [type(e).__name__ for e in errors]
    found = [leak for text in shown for leak in leaks(text, "python")]
    assert not found, found


def test_a_podos_url_the_client_cannot_use_is_refused_by_the_configuration(tmp_path, env) -> None:
    """url: http://[::1 passes the settings' pattern, then every podOS job raises httpx.InvalidURL out of its
    handler (not a PodosError: no General Error event, no rule runs).  Refuse it when the configuration loads."""
    cfg = config(tmp_path, "http://[::1")
    run = ruledesk("config", "check", str(cfg), env=env)
    assert run.returncode != 0, run.stdout
    assert not leaks(run.stdout + run.stderr, "config check")
