"""The README's embedding example runs and prints what the README says it prints."""

from __future__ import annotations

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
