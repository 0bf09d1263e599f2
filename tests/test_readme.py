"""The README's embedding example runs and prints what the README says it prints."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from support import ROOT


def test_the_embedding_example_prints_what_the_readme_shows() -> None:
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## Embedding", 1)[1]
    code, printed = re.findall(r"```(?:python)?\n(.*?)```", section, re.S)[:2]
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": ""})
    assert run.returncode == 0, run.stderr
    assert run.stdout == printed


def test_the_first_command_serves_the_examples_and_prints_their_decisions(tmp_path) -> None:
    """The README's first line, as a newcomer runs it, with --exit-when-idle (and a private
    database and port) so that it ends: every example event is decided and printed, the print
    orders go to the podOS simulator it started, and their shipments come back."""
    first = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[1]
    command = first.split("&& .venv/bin/ruledesk ", 1)[1].split()
    assert command[:3] == ["serve", "--follow", "examples/orders.jsonl"] and "--podos-simulator" in command
    assert "--mail-sink" in command
    run = subprocess.run([sys.executable, "-m", "ruledesk.engine.cli", *command, "--exit-when-idle", "--port", "0",
                          "--db", f"sqlite:///{tmp_path}/readme.db", "--pidfile", str(tmp_path / "pid")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    decisions = [json.loads(line) for line in run.stdout.splitlines()]
    lines = [line for line in (ROOT / "examples" / "orders.jsonl").read_text(encoding="utf-8").splitlines() if line]
    assert len({d["event_id"] for d in decisions if d["depth"] == 0  # not job-emitted, not handed on (split, copy)
                and not d["event_id"].startswith(("job-", "podos-ship-")) and not re.search(r"\.\d+$", d["event_id"])
                }) == len(lines)
    assert all(d["ruleset"].startswith("sha256:") for d in decisions)
    assert "ruledesk serving on http://127.0.0.1:" in run.stderr
    assert "podOS simulator on http://127.0.0.1:" in run.stderr
    by_event: dict[str, list[dict]] = {}
    for decision in decisions:
        by_event.setdefault(decision["event"], []).append(decision)
    submitted = {d["order_id"] for d in by_event["After Order Submitted to podOS"]}
    assert len(submitted) >= 5
    assert {d["order_id"] for d in by_event["Before Order Submitted to podOS"]} >= submitted
    assert {d["order_id"] for d in by_event["Order Not Submitted to podOS Because of Invalid SKU"]} == {"1014"}
    assert {d["order_id"] for d in by_event["Order Not Submitted to podOS Because No Products Available"]} == {"1011"}
    # every submitted order shipped (the simulator ships after a second), once, and moved to Shipped
    shipped = [d for d in by_event["Shipment is Added"] if d["order_id"] in submitted and any(
        s["tracking_number"].startswith("94001") for s in d["order"]["order_shipments"])]
    assert {d["order_id"] for d in shipped} == submitted
    # the rejected order emails the team: the mail sink received it, text and HTML
    [rejected] = by_event["Order Not Submitted to podOS Because of Invalid SKU"]
    [email] = [a for a in rejected["actions"] if a["action"] == "Send Email"]
    assert email["status"] == "scheduled" and email["params"]["template"] == "podos_rejected"
    assert "mail sink on smtp://127.0.0.1:" in run.stderr
    [mail] = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{") and '"mail received"' in line]
    assert mail["to"] == ["team@acme-prints.example"] and mail["subject"].startswith("podOS rejected order 1014")
    assert mail["parts"] == ["text/plain", "text/html"] and mail["message_id"] == f"<{email['job']['key']}@acme-prints.example>"
    # several stores: the partner's copy of 1016 shipped and its shipment came back to Acme's 1016; the
    # wholesale order 1017 moved out of Acme Prints and shipped in Acme Wholesale, passing nothing back
    final = {}
    for decision in decisions:
        final[(decision["store"], decision["order_id"])] = decision["order"]
    assert {"1016", "1017"} <= submitted
    copy, original = final[("Partner Prints", "1016")], final[("Acme Prints", "1016")]
    assert copy["order_metadata"]["copied_from_store"] == "Acme Prints"
    assert [s["tracking_number"] for s in original["order_shipments"]] == \
        [s["tracking_number"] for s in copy["order_shipments"]] != []
    assert original["folder"] == copy["folder"] == "Shipped"
    assert final[("Acme Prints", "1017")]["folder"] == "New"  # as it left (the store no longer holds it)
    assert final[("Acme Wholesale", "1017")]["folder"] == "Shipped"
    assert not any(d["store"] == "Acme Prints" and d["order_id"] == "1017" and d["event"] == "Shipment is Added"
                   for d in decisions)
    # the mixed order 1007 was split: its printed half was submitted, its stock half is picked by hand
    assert final[("Acme Prints", "1007-S1")]["folder"] == "Manual Fulfilment"
    assert "1007" in submitted
    for order_id in submitted:
        last = [d for d in decisions if d["order_id"] == order_id][-1]["order"]
        assert last["folder"] == "Shipped"
        assert len([s for s in last["order_shipments"] if s["tracking_number"].startswith("94001")]) == 1
