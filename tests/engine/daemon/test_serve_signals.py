"""`ruledesk serve` stops cleanly (exit 0) on SIGTERM, also when a second one arrives while it drains."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest

from support import ROOT


@pytest.mark.parametrize("signals", [1, 2])
def test_sigterm_stops_with_exit_0(tmp_path, signals):
    process = subprocess.Popen([sys.executable, "-m", "ruledesk.engine.cli", "serve", "--rules", str(ROOT / "rules.d"),
                                "--db", f"sqlite:///{tmp_path}/d.db", "--port", "0", "--static", "--quiet",
                                "--pidfile", str(tmp_path / "pid")], stderr=subprocess.PIPE, text=True)
    for line in process.stderr:
        if re.search(r"serving on http://", line):
            break
    started = time.monotonic()
    for _ in range(signals):
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
    rest = process.stderr.read()
    assert process.wait(timeout=15) == 0, rest
    assert time.monotonic() - started < 10
    assert "ruledesk stopped" in rest
    assert not (tmp_path / "pid").exists()  # the pidfile goes with the daemon
