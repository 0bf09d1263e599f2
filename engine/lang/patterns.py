"""The patterns of ``matches``: written in Python's ``re`` syntax, run by RE2 in time linear in the text.

Python's ``re`` backtracks: ``(a+)+$`` against 25 characters takes seconds, against an order's
50,000-character note forever.  RE2 (the ``google-re2`` package) never backtracks, so a search
costs time proportional to the text whatever the pattern.  What RE2 cannot run in linear time
(lookahead and lookbehind, backreferences, atomic groups and possessive quantifiers, ``\\Z``) is
refused at check time (E303), as is a pattern whose program would pass RE2's memory budget.
"""

from __future__ import annotations

import re

import re2
from re2 import _re2  # the compiled-program class under re2.compile, without its per-search Python work

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every refused pattern on standard error
_OPTIONS.never_capture = True  # `matches` only asks whether there is a match: no groups to record
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED


class PatternError(ValueError):
    """A pattern ``matches`` cannot use: ``message`` says why, ``pos`` where (or None)."""

    def __init__(self, message: str, pos: int | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.hint = hint


class LinearPattern:
    """A compiled ``matches`` pattern: ``search(text)`` is ``re.search(pattern, text) is not None``
    in time linear in ``text``.  Its repr is the pattern as the rule wrote it."""

    __slots__ = ("pattern", "_match")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        regexp = _re2.RE2(pattern.encode("utf-8", "surrogatepass"), _OPTIONS)
        if not regexp.ok():
            error = regexp.error()
            raise PatternError(error.decode("utf-8", "replace") if isinstance(error, bytes) else str(error))
        self._match = regexp.Match

    def search(self, text: str) -> bool:
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: RE2 sees its bytes, which match no character
            data = text.encode("utf-8", "surrogatepass")
        return self._match(_UNANCHORED, data, 0, len(data))[0][0] != -1

    def __repr__(self) -> str:
        return f'"{self.pattern}"'

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LinearPattern) and other.pattern == self.pattern

    def __hash__(self) -> int:
        return hash(("LinearPattern", self.pattern))


def compile_pattern(pattern: str) -> LinearPattern:
    """``pattern`` ready for ``rt_matches``; PatternError if Python's ``re`` syntax rejects it or RE2
    cannot run it in linear time."""
    try:
        re.compile(pattern)
    except re.error as exc:
        raise PatternError(f"bad regular expression: {exc.msg} at position {exc.pos}", exc.pos,
                           "this is a Python regular expression (re.search)") from None
    except (OverflowError, RecursionError, MemoryError) as exc:
        raise PatternError(f"bad regular expression: too large or too deeply nested ({type(exc).__name__})") from None
    try:
        return LinearPattern(pattern)
    except PatternError as exc:
        raise PatternError(f"matches runs in time linear in the text (RE2) and cannot run this pattern: {exc}",
                           None, "lookarounds, backreferences, atomic groups, possessive quantifiers and \\Z are "
                                 "not supported (write \\z for the very end), nor repetitions past {1000}") from None
