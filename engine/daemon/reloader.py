"""Watch rule, template and config files and rebuild on change: debounced, off the caller's thread, all or nothing.

What is watched.  Each path is a *target*: the target itself and, for a directory, everything under it
(recursively).  For every target the reloader watches its parent directory (not recursively), which sees the
target being created, deleted or renamed onto, e.g. an editor's write-to-temp-then-rename onto a config file;
and, while the target is a directory, the target itself recursively.  Only events on a target or under it
count, and not those that cannot matter: editor swap, backup and lock files (``.*.sw?``, ``*~``, ``.#*``,
vim's ``4913`` probe), anything in ``__pycache__`` or ``.git``, and events that change nothing (opening or
reading a file, attribute changes, a directory's own "modified" event, which only echoes a change inside it).

A watched directory that is deleted, or renamed away, and then comes back (``git checkout`` of a branch without
it, then back) is watched again: the watch is re-scheduled when a deletion or rename of the directory is seen,
when the directory's inode changes, or when watchdog's emitter for it has died; the watches are checked
whenever an event arrives and at least every ``POLL_INTERVAL`` seconds, so even a re-creation that no event
reported (the parent deleted with it) is picked up.  Re-scheduling counts as a change: whatever was written
before the new watch existed is in the next build.

A build starts once no change has been seen for ``debounce`` seconds, and no later than ``max_delay`` after the
first change of a burst.  Builds run one at a time on one builder thread.  A change seen while a build runs
discards that build (neither callback is told) and a new build follows, so a checkout or an editor writing many
files one at a time activates a complete set of files, never a half-written one.  Starting does not build:
the owner builds the first ruleset itself.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Generic, TypeVar

from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from ruledesk.engine.lang.ruleset import Ruleset, load_ruleset
from ruledesk.engine.model.catalogue import ActionSpec, Catalogue, EventSpec

T = TypeVar("T")

log = logging.getLogger("ruledesk.reload")

POLL_INTERVAL = 1.0  # seconds between checks that every watched directory still has a live watch

IGNORED_NAMES = (".*.sw?", "*~", ".#*", "4913")
IGNORED_DIRS = frozenset({"__pycache__", ".git"})
CHANGING_EVENTS = frozenset({EVENT_TYPE_CREATED, EVENT_TYPE_DELETED, EVENT_TYPE_MODIFIED, EVENT_TYPE_MOVED,
                             EVENT_TYPE_CLOSED})


def _ignored(relative: str) -> bool:
    """A path inside a watched directory whose changes cannot matter to a build."""
    parts = relative.split(os.sep)
    return any(part in IGNORED_DIRS for part in parts) or any(fnmatch.fnmatch(parts[-1], p) for p in IGNORED_NAMES)


class _Targets:
    """The watched paths (absolute), and which event paths count as a change to one of them."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]]) -> None:
        self.paths = sorted({os.path.abspath(os.fspath(path)) for path in paths})
        if not self.paths:
            raise ValueError("the reloader needs at least one path to watch")

    def matters(self, path: str) -> bool:
        for target in self.paths:
            if path == target:
                return True
            if path.startswith(target + os.sep) and not _ignored(path[len(target) + 1:]):
                return True
        return False

    def wanted_watches(self) -> list[tuple[str, bool]]:
        """(directory, recursive) for every watch the targets need now."""
        wanted = {(os.path.dirname(target), False) for target in self.paths}
        wanted.update((target, True) for target in self.paths if os.path.isdir(target))
        return sorted(wanted)


class _Watches:
    """The watchdog watches of the targets, kept alive across deletion and re-creation of the directories."""

    def __init__(self, observer: BaseObserver, handler: FileSystemEventHandler, targets: _Targets) -> None:
        self._observer = observer
        self._handler = handler
        self._targets = targets
        self._scheduled: dict[tuple[str, bool], tuple[ObservedWatch, tuple[int, int]]] = {}

    def sync(self, gone: set[str]) -> bool:
        """Schedule the watches that are missing, drop those of directories that are gone (``gone`` names
        the directories seen deleted or renamed away); True if a watch was (re-)scheduled."""
        wanted = self._targets.wanted_watches()
        live = {emitter.watch for emitter in self._observer.emitters if emitter.is_alive()}
        for key, (watch, identity) in list(self._scheduled.items()):
            if key not in wanted or key[0] in gone or watch not in live or _identity(key[0]) != identity:
                del self._scheduled[key]
                self._observer.unschedule(watch)
        added = False
        for key in wanted:
            if key not in self._scheduled:
                added |= self._schedule(*key)
        return added

    def _schedule(self, directory: str, recursive: bool) -> bool:
        identity = _identity(directory)
        if identity is None:
            return False
        try:
            watch = self._observer.schedule(self._handler, directory, recursive=recursive)
        except OSError as exc:  # gone again already, or out of inotify watches: retried at the next check
            log.warning("cannot watch %s: %s", directory, exc)
            return False
        self._scheduled[(directory, recursive)] = (watch, identity)
        return True



def _identity(directory: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(directory)
    except OSError:
        return None
    return (stat.st_dev, stat.st_ino) if os.path.isdir(directory) else None


class _EventHandler(FileSystemEventHandler):
    """Tells ``observed`` whether an event matters to a build, and which directory it removed, if any."""

    def __init__(self, targets: _Targets, observed: Callable[[bool, str | None], None]) -> None:
        self._targets = targets
        self._observed = observed

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in CHANGING_EVENTS or (event.is_directory and event.event_type == EVENT_TYPE_MODIFIED):
            return
        paths = [os.fsdecode(event.src_path)]
        if event.event_type == EVENT_TYPE_MOVED and event.dest_path:
            paths.append(os.fsdecode(event.dest_path))
        gone = paths[0] if event.event_type in (EVENT_TYPE_DELETED, EVENT_TYPE_MOVED) and event.is_directory else None
        self._observed(any(self._targets.matters(path) for path in paths), gone)


class Reloader(Generic[T]):
    """Rebuilds with ``build`` when the files under ``paths`` change and reports each complete build.

    ``on_success(result, seconds)`` and ``on_failure(exception, seconds)`` run on the builder thread;
    ``seconds`` is the time from the first change not yet reflected in a reported build to the end of
    this build.  An exception from a callback is logged ("ruledesk.reload") and the reloader carries on."""

    def __init__(self, paths: Iterable[str | os.PathLike[str]], build: Callable[[], T], *,
                 on_success: Callable[[T, float], None], on_failure: Callable[[BaseException, float], None],
                 debounce: float = 0.2, max_delay: float = 1.0,
                 observer_factory: Callable[[], BaseObserver] | None = None) -> None:
        self._targets = _Targets(paths)
        self._build = build
        self._on_success = on_success
        self._on_failure = on_failure
        self._debounce = debounce
        self._max_delay = max_delay
        self._observer = (observer_factory or Observer)()
        self._watches = _Watches(self._observer, _EventHandler(self._targets, self._observed), self._targets)
        self._thread = threading.Thread(target=self._run, name="ruledesk-reloader", daemon=True)
        self._changed = threading.Condition()
        # guarded by _changed:
        self._burst_start: float | None = None  # first change since the last build started
        self._last_change = 0.0
        self._unreported_since: float | None = None  # first change no reported build has reflected yet
        self._forced = False
        self._building = False
        self._changed_while_building = False
        self._gone: set[str] = set()
        self._stopping = False
        # held while the watches change, so that none is scheduled once stop() has stopped the observer
        self._watching = threading.Lock()
        self.builds = 0

    def start(self) -> None:
        with self._watching:
            self._watches.sync(set())
        self._observer.start()
        self._thread.start()

    def request(self) -> None:
        """Build now, changed files or not; a build already running is discarded (it may predate the request)."""
        with self._changed:
            self._note_change(time.monotonic())
            self._forced = True
            self._changed.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop watching and building; waits at most ``timeout`` seconds for the threads (a build still
        running then finishes on its own, and its result is discarded)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        with self._watching:
            self._observer.stop()
        for thread in (self._observer, self._thread):
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def wait_idle(self, timeout: float) -> bool:
        """True once no change is pending and no build is running (changes the watcher has not delivered
        yet are not known here); False if that did not happen within ``timeout`` seconds."""
        with self._changed:
            return self._changed.wait_for(lambda: self._burst_start is None and not self._building, timeout)

    # --- the watcher's side (observer thread) -------------------------------------------------------

    def _observed(self, matters: bool, gone: str | None) -> None:
        with self._changed:
            if gone is not None:
                self._gone.add(gone)
            if matters:
                self._note_change(time.monotonic())
            if matters or gone is not None:
                self._changed.notify_all()

    def _note_change(self, now: float) -> None:
        if self._building:
            self._changed_while_building = True
        if self._burst_start is None:
            self._burst_start = now
        if self._unreported_since is None:
            self._unreported_since = now
        self._last_change = now

    # --- the builder thread -------------------------------------------------------------------------

    def _run(self) -> None:
        while self._next_build():
            started = time.monotonic()
            try:
                result, error = self._build(), None
            except BaseException as exc:  # noqa: BLE001 - any failure of the build is reported, never raised here
                result, error = None, exc
            with self._changed:
                discarded = self._changed_while_building or self._stopping
                elapsed = time.monotonic() - (self._unreported_since or started)
                if not discarded:
                    self._unreported_since = None
            if not discarded:
                self._report(result, error, elapsed)
            with self._changed:
                self._building = False
                self._changed.notify_all()

    def _next_build(self) -> bool:
        """Wait until a build is due, keeping the watches alive meanwhile; False once stopping."""
        while True:
            with self._changed:
                gone, self._gone = self._gone, set()
            with self._watching:
                if self._stopping:
                    return False
                try:
                    rescheduled = self._watches.sync(gone)
                except Exception:  # noqa: BLE001 - watching goes on with the watches that work; retried later
                    log.exception("checking the watches failed")
                    rescheduled = False
                if rescheduled:
                    with self._changed:
                        self._note_change(time.monotonic())
            with self._changed:
                if self._stopping:
                    return False
                now = time.monotonic()
                due = self._due()
                if due is not None and due <= now:
                    self._burst_start = None
                    self._forced = False
                    self._building = True
                    self._changed_while_building = False
                    self.builds += 1
                    return True
                if not self._gone:
                    self._changed.wait(POLL_INTERVAL if due is None else min(due - now, POLL_INTERVAL))

    def _due(self) -> float | None:
        if self._burst_start is None:
            return None
        if self._forced:
            return self._burst_start
        return min(self._last_change + self._debounce, self._burst_start + self._max_delay)

    def _report(self, result: object, error: BaseException | None, elapsed: float) -> None:
        try:
            if error is None:
                self._on_success(result, elapsed)
            else:
                self._on_failure(error, elapsed)
        except BaseException:  # noqa: BLE001 - a broken callback must not end the reloading
            log.exception("the reload %s callback raised", "success" if error is None else "failure")


def ruledesk_ruleset_builder(paths: Iterable[str | os.PathLike[str]], events: Catalogue[EventSpec],
                             actions: Catalogue[ActionSpec]) -> Callable[[], Ruleset]:
    """A ``build`` for a Reloader: the rule files under ``paths`` as a warmed Ruleset.  Raises RulesetError
    (with located diagnostics) when a file has errors, and when there is no rule file at all (error E110:
    a folder with no rule files is a failed reload, never an empty ruleset)."""
    paths = [Path(path) for path in paths]

    def build() -> Ruleset:
        return load_ruleset(paths, events, actions).warm()

    return build
