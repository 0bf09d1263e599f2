"""The hot reloader over real files and the real watchdog observer: one build per burst of changes, builds
overtaken by a change are discarded, ignored files trigger nothing, a watched folder survives deletion,
and the ruleset builder fails (never builds an empty ruleset) on broken or missing rule files."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ruledesk.engine import RulesetError, default_actions, default_events
from ruledesk.engine.daemon.reloader import Reloader, ruledesk_ruleset_builder
from support import ROOT

DEBOUNCE = 0.2
QUIET = 1.0  # long enough, even on a loaded machine, for a change that would trigger a build to have done so


def eventually(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold within the timeout"
        time.sleep(0.02)


class Reports:
    """What a Reloader reported, in order."""

    def __init__(self) -> None:
        self.successes: list[object] = []
        self.failures: list[BaseException] = []
        self.seconds: list[float] = []

    def success(self, result: object, seconds: float) -> None:
        self.successes.append(result)
        self.seconds.append(seconds)

    def failure(self, error: BaseException, seconds: float) -> None:
        self.failures.append(error)
        self.seconds.append(seconds)


def read_rules(folder: Path) -> Callable[[], dict[str, str]]:
    """A build that reads every ``*.rules`` file of ``folder`` but hidden ones (a file saying "broken" fails it)."""
    def build() -> dict[str, str]:
        files = {path.name: path.read_text() for path in sorted(folder.glob("[!.]*.rules"))}
        if not folder.is_dir():
            raise FileNotFoundError(folder)
        if any("broken" in text for text in files.values()):
            raise ValueError("a broken rule file")
        return files
    return build


@pytest.fixture
def watch():
    """Starts Reloaders that report into a Reports, and stops them after the test."""
    started: list[Reloader] = []

    def start(paths, build, **options) -> tuple[Reloader, Reports]:
        reports = Reports()
        reloader = Reloader(paths, build, on_success=reports.success, on_failure=reports.failure,
                            **{"debounce": DEBOUNCE, "max_delay": 2.0, **options})
        reloader.start()
        started.append(reloader)
        return reloader, reports

    yield start
    for reloader in started:
        reloader.stop()


def settle(reloader: Reloader) -> None:
    time.sleep(QUIET)
    assert reloader.wait_idle(10.0)


@pytest.fixture
def rules(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    return folder


def test_a_save_builds_once(watch, rules):
    reloader, reports = watch([rules], read_rules(rules))
    (rules / "a.rules").write_text("one")
    eventually(lambda: reports.successes)
    settle(reloader)
    assert reports.successes == [{"a.rules": "one"}] and reports.failures == []
    assert reloader.builds == 1 and reports.seconds[0] >= DEBOUNCE


def test_files_written_one_at_a_time_make_one_build_that_sees_them_all(watch, rules):
    reloader, reports = watch([rules], read_rules(rules), debounce=1.0, max_delay=60.0)
    for i in range(20):
        (rules / f"r{i:02}.rules").write_text(str(i))
        time.sleep(0.02)
    eventually(lambda: reports.successes)
    settle(reloader)
    assert len(reports.successes) == 1 and len(reports.successes[0]) == 20
    assert reloader.builds == 1


def test_a_steady_trickle_of_changes_cannot_postpone_the_build_past_max_delay(watch, rules):
    reloader, reports = watch([rules], read_rules(rules), debounce=0.5, max_delay=1.0)
    stop = time.monotonic() + 8.0
    while not reports.successes and time.monotonic() < stop:
        (rules / "a.rules").write_text(str(time.monotonic()))
        time.sleep(0.05)
    assert reports.successes


def test_a_change_during_a_build_discards_it_and_the_next_build_sees_the_latest_files(watch, rules):
    read = read_rules(rules)
    first_read = threading.Event()

    def slow_build() -> dict[str, str]:
        files = read()
        if not first_read.is_set():
            first_read.set()
            time.sleep(1.5)  # the change below arrives meanwhile
        return files

    reloader, reports = watch([rules], slow_build)
    (rules / "a.rules").write_text("old")
    assert first_read.wait(10.0)
    (rules / "a.rules").write_text("new")
    eventually(lambda: reports.successes)
    settle(reloader)
    assert reports.successes == [{"a.rules": "new"}] and reports.failures == []
    assert reloader.builds == 2


def test_a_failed_build_is_reported_and_a_fixed_file_then_succeeds(watch, rules):
    reloader, reports = watch([rules], read_rules(rules))
    (rules / "a.rules").write_text("broken")
    eventually(lambda: reports.failures)
    assert isinstance(reports.failures[0], ValueError) and reports.successes == []
    (rules / "a.rules").write_text("fixed")
    eventually(lambda: reports.successes)
    assert reports.successes == [{"a.rules": "fixed"}] and len(reports.failures) == 1


def test_request_builds_without_a_file_change(watch, rules):
    (rules / "a.rules").write_text("one")
    reloader, reports = watch([rules], read_rules(rules))
    reloader.request()
    eventually(lambda: reports.successes)
    assert reports.successes == [{"a.rules": "one"}] and reloader.builds == 1


def test_swap_files_caches_git_internals_and_reading_trigger_nothing(watch, rules):
    (rules / "a.rules").write_text("one")
    reloader, reports = watch([rules], read_rules(rules))
    (rules / ".git").mkdir()
    (rules / ".git" / "HEAD").write_text("ref: refs/heads/main")
    (rules / "__pycache__").mkdir()
    (rules / "__pycache__" / "x.pyc").write_bytes(b"\0")
    for name in (".a.rules.swp", "a.rules~", ".#a.rules", "4913"):
        (rules / name).write_text("editor")
    (rules / "4913").unlink()
    assert (rules / "a.rules").read_text() == "one"
    settle(reloader)
    assert reloader.builds == 0
    (rules / "b.rules").write_text("two")  # the control: the watch is alive
    eventually(lambda: reports.successes)
    assert reports.successes == [{"a.rules": "one", "b.rules": "two"}]


def test_a_single_file_is_watched_alone_and_a_rename_onto_it_counts(watch, tmp_path):
    folder = tmp_path / "conf"
    folder.mkdir()
    config = folder / "ruledesk.yaml"
    config.write_text("version: 1")
    reloader, reports = watch([config], config.read_text)
    (folder / "other.yaml").write_text("not watched")
    (folder / "sub").mkdir()
    settle(reloader)
    assert reloader.builds == 0
    temporary = folder / ".ruledesk.yaml.tmp"
    temporary.write_text("version: 2")
    os.replace(temporary, config)
    eventually(lambda: reports.successes)
    assert reports.successes == ["version: 2"]
    config.write_text("version: 3")
    eventually(lambda: len(reports.successes) == 2)
    assert reports.successes[-1] == "version: 3"


def _remove_and_recreate(rules: Path) -> None:
    shutil.rmtree(rules)
    rules.mkdir()
    (rules / "a.rules").write_text("v2")


def _replace_by_rename(rules: Path) -> None:
    replacement = rules.with_name("rules.new")
    replacement.mkdir()
    (replacement / "a.rules").write_text("v2")
    os.rename(rules, rules.with_name("rules.old"))
    os.rename(replacement, rules)


def _recreate_with_its_parent(rules: Path) -> None:
    shutil.rmtree(rules.parent)  # the parent's watch goes too: only the periodic check can see it back
    rules.mkdir(parents=True)
    (rules / "a.rules").write_text("v2")


@pytest.mark.parametrize("replace", [_remove_and_recreate, _replace_by_rename, _recreate_with_its_parent],
                         ids=["rmtree-mkdir", "rename", "parent-too"])
def test_a_watched_folder_that_is_deleted_and_comes_back_is_watched_again(watch, tmp_path, replace):
    rules = tmp_path / "deep" / "rules"
    rules.mkdir(parents=True)
    (rules / "a.rules").write_text("v1")
    reloader, reports = watch([rules], read_rules(rules))
    replace(rules)
    eventually(lambda: {"a.rules": "v2"} in reports.successes)
    (rules / "b.rules").write_text("more")  # seen by the new watch of the folder, not only its parent's
    eventually(lambda: reports.successes[-1] == {"a.rules": "v2", "b.rules": "more"})


def test_stop_is_prompt_even_during_a_build_whose_result_is_then_dropped(watch, rules):
    started, release = threading.Event(), threading.Event()

    def stuck_build() -> str:
        started.set()
        release.wait(10.0)
        return "late"

    reloader, reports = watch([rules], stuck_build)
    reloader.request()
    assert started.wait(10.0)
    began = time.monotonic()
    reloader.stop(timeout=0.5)
    assert time.monotonic() - began < 4.0
    release.set()
    eventually(lambda: not any(t.name == "ruledesk-reloader" and t.is_alive() for t in threading.enumerate()))
    assert reports.successes == [] and reports.failures == []


def test_an_idle_reloader_stops_promptly(watch, rules):
    reloader, _ = watch([rules], read_rules(rules))
    began = time.monotonic()
    reloader.stop(timeout=5.0)
    assert time.monotonic() - began < 4.0
    assert reloader.wait_idle(0)


def test_a_raising_callback_is_logged_and_reloading_goes_on(rules, caplog):
    seen: list[object] = []

    def on_success(result, seconds):
        seen.append(result)
        if len(seen) == 1:
            raise RuntimeError("the callback broke")

    reloader = Reloader([rules], read_rules(rules), on_success=on_success, on_failure=lambda e, s: None,
                        debounce=DEBOUNCE)
    reloader.start()
    try:
        with caplog.at_level(logging.ERROR, logger="ruledesk.reload"):
            (rules / "a.rules").write_text("one")
            eventually(lambda: any(r.name == "ruledesk.reload" and r.exc_info for r in caplog.records))
            (rules / "a.rules").write_text("two")
            eventually(lambda: len(seen) == 2)
    finally:
        reloader.stop()
    assert seen[-1] == {"a.rules": "two"}


# --- the ruleset builder ----------------------------------------------------------------------------


@pytest.fixture
def shipping(rules: Path) -> Path:
    shutil.copy(ROOT / "rules.d" / "shipping.rules", rules / "shipping.rules")
    return rules


def test_the_ruleset_builder_builds_a_warm_ruleset(shipping):
    ruleset = ruledesk_ruleset_builder([shipping], default_events(), default_actions())()
    assert ruleset.files == (str(shipping / "shipping.rules"),) and ruleset.rules


def test_the_ruleset_builder_fails_with_a_located_diagnostic_on_a_broken_file(shipping):
    (shipping / "broken.rules").write_text('# broken\nrule "x" { when "No Such Event" then "Add Note"(text: "x") }\n')
    with pytest.raises(RulesetError) as raised:
        ruledesk_ruleset_builder([shipping], default_events(), default_actions())()
    [error] = [d for d in raised.value.diagnostics if d.is_error]
    assert error.loc.file.endswith("broken.rules") and error.loc.line == 2
    assert "broken.rules:2:" in str(raised.value)


def test_the_ruleset_builder_fails_on_a_folder_without_rule_files(rules):
    (rules / "notes.txt").write_text("no rules here")
    with pytest.raises(RulesetError) as raised:
        ruledesk_ruleset_builder([rules], default_events(), default_actions())()
    assert [d.code for d in raised.value.diagnostics] == ["E110"]


def test_reloading_a_ruleset_keeps_reporting_the_latest_good_one(watch, shipping):
    build = ruledesk_ruleset_builder([shipping], default_events(), default_actions())
    reloader, reports = watch([shipping], build)
    before = len(build().rules)
    with (shipping / "shipping.rules").open("a") as file:
        file.write('\nrule "One more" { when "Order Confirmed" then "Add Note"(text: "more") }\n')
    eventually(lambda: reports.successes)
    assert len(reports.successes[-1].rules) == before + 1
    (shipping / "shipping.rules").write_text("rule {")
    eventually(lambda: reports.failures)
    assert isinstance(reports.failures[-1], RulesetError)
