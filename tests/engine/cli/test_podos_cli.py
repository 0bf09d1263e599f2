"""`ruledesk podos products|variants|designs` against a running simulator (tables, JSON, which store, errors,
never the token) and `ruledesk podos simulate` as a process."""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from ruledesk.actions.podos.simulator import Simulator
from ruledesk.engine.cli import app
from support import cli as ruledesk_command

SECRET = "s3cr3t-TOKEN-xyz"
PROJECT = "acme-prints"


@pytest.fixture
def sim():
    with Simulator(token=SECRET, port=0) as simulator:
        yield simulator


@pytest.fixture
def config(tmp_path: Path, monkeypatch, sim):
    """A ruledesk.yaml with one podOS store (its token env:PODOS_TEST_TOKEN) and one without."""
    monkeypatch.setenv("PODOS_TEST_TOKEN", SECRET)

    def write(text: str | None = None) -> str:
        path = tmp_path / "ruledesk.yaml"
        path.write_text(text if text is not None else f"""\
stores:
  - name: plain
  - name: acme
    podos: {{project: {PROJECT}, token: env:PODOS_TEST_TOKEN, url: "{sim.url}"}}
""", encoding="utf-8")
        return str(path)

    return write


def run(*args: str):
    result = CliRunner().invoke(app, ["podos", *args], catch_exceptions=False)
    assert SECRET not in result.stdout and SECRET not in result.stderr
    return result


def table_rows(text: str) -> list[list[str]]:
    """The body rows of a rich table as lists of cell texts."""
    return [[cell.strip() for cell in line.strip("│┃ ").split("│")] for line in text.splitlines()
            if line.startswith("│")]


def test_products_as_a_table_and_filtered_by_style_code(config):
    path = config()
    result = run("products", "--config", path)
    assert result.exit_code == 0, result.stderr
    rows = table_rows(result.stdout)
    assert ["gfn-prod-1180", "3001C", "Unisex Jersey Tee", "Bella+Canvas", "Size, Color"] in rows
    header = next(line for line in result.stdout.splitlines() if line.startswith("┃"))
    assert [h.strip() for h in header.strip("┃ ").split("┃")] == ["id", "style code", "name", "brand", "options"]
    only = run("products", "--style-code", "3001c", "--config", path)
    assert table_rows(only.stdout) == [["gfn-prod-1180", "3001C", "Unisex Jersey Tee", "Bella+Canvas", "Size, Color"]]
    assert only.stdout.splitlines()[0].strip() == "1 base product"


def test_variants_show_options_as_name_value_pairs_and_json_is_an_array(config):
    path = config()
    result = run("variants", "--product-id", "gfn-prod-1180", "--config", path, "--store", "acme")
    assert result.exit_code == 0, result.stderr
    rows = table_rows(result.stdout)
    assert ["gfn-var-20101", "gfn-prod-1180", "3001C-WHT-S", "Size: S, Color: White"] in rows
    assert {row[1] for row in rows} == {"gfn-prod-1180"}
    as_json = run("variants", "--product-id", "gfn-prod-1180", "--config", path, "--format", "json")
    variants = json.loads(as_json.stdout)
    assert isinstance(variants, list) and len(variants) == len(rows)
    assert {"id": "gfn-var-20101", "product_id": "gfn-prod-1180", "sku": "3001C-WHT-S",
            "options": {"Size": "S", "Color": "White"}} in variants


def test_designs(config):
    result = run("designs", "--config", config(), "--format", "json")
    assert result.exit_code == 0, result.stderr
    designs = json.loads(result.stdout)
    assert "pv-55012" in {d["id"] for d in designs}
    table = run("designs", "--config", config())
    assert any(row[0] == "pv-55012" and row[1] == "POSTER-SUNRISE-18X24" for row in table_rows(table.stdout))


def test_which_store_no_store_with_podos_or_an_unknown_one_exits_2(config, sim):
    path = config()
    unknown = run("products", "--config", path, "--store", "globex")
    assert (unknown.exit_code, unknown.stdout) == (2, "")
    assert unknown.stderr.startswith("error: no store named 'globex'")
    plain = run("products", "--config", path, "--store", "plain")
    assert plain.exit_code == 2 and "store 'plain' has no podos: settings" in plain.stderr
    none = run("products", "--config", config("stores: [{name: plain}]\n"))
    assert none.exit_code == 2 and none.stderr.startswith("error: no store in ") and "podos:" in none.stderr
    podos = f"{{project: p, token: env:PODOS_TEST_TOKEN, url: '{sim.url}'}}"
    two = run("designs", "--config", config(f"stores: [{{name: a, podos: {podos}}}, {{name: b, podos: {podos}}}]\n"))
    assert two.exit_code == 2 and "choose one with --store" in two.stderr
    chosen = run("designs", "--config", config(f"stores: [{{name: a, podos: {podos}}}, {{name: b, podos: {podos}}}]\n"
                                               "default_store: b\n"), "--format", "json")
    assert chosen.exit_code == 0, chosen.stderr  # the configuration's default store
    assert "pv-55012" in {d["id"] for d in json.loads(chosen.stdout)}
    assert run("designs", "--config", path + ".missing").exit_code == 2


def test_a_podos_error_is_one_line_on_stderr_and_exit_1(config, sim, tmp_path, monkeypatch):
    monkeypatch.setenv("PODOS_WRONG_TOKEN", SECRET + "-wrong")
    wrong = config(f"stores: [{{name: acme, podos: {{project: p, token: env:PODOS_WRONG_TOKEN, url: '{sim.url}'}}}}]\n")
    refused = run("products", "--config", wrong)
    assert (refused.exit_code, refused.stdout) == (1, "")
    assert re.fullmatch(r"error: podOS at http://127\.0\.0\.1:\d+: HTTP 401 unauthorized: .+\n", refused.stderr)
    sim.add_fault(status=503)  # every request, through the retry
    failing = run("designs", "--config", config())
    assert failing.exit_code == 1 and "HTTP 503" in failing.stderr and failing.stderr.count("\n") == 1


def test_simulate_serves_the_api_until_terminated(tmp_path):
    env = {**os.environ, "PODOS_SIM_TEST_TOKEN": SECRET}
    proc = subprocess.Popen([*ruledesk_command(), "podos", "simulate", "--port", "0", "--token",
                             "env:PODOS_SIM_TEST_TOKEN"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        timer = threading.Timer(30, proc.kill)  # never hang the suite on a simulator that says nothing
        timer.start()
        first = proc.stdout.readline()
        timer.cancel()
        found = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert found, first
        url = found.group(0)
        headers = {"X-Podos-Project": PROJECT}
        answer = httpx.get(f"{url}/v1/shipping-methods", headers={**headers, "Authorization": f"Bearer {SECRET}"})
        assert answer.status_code == 200 and "Standard" in answer.json()["mail_classes"]
        refused = httpx.get(f"{url}/v1/shipping-methods", headers={**headers, "Authorization": "Bearer sim-token"})
        assert refused.status_code == 401
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=15)
    assert SECRET not in first + out + err
