"""Problems found in rule files: a stable code, a location, a message, a suggestion; formatted like a compiler's."""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field

from ruledesk.grammar.ast import Loc

ERROR = "error"
WARNING = "warning"

# Stable codes.  Tests and users match on them; never renumber.
CODES = {
    "E100": "syntax error",
    "E101": "unclosed string",
    "E102": "unclosed block",
    "E103": "missing then",
    "E104": "comparisons do not chain",
    "E105": "bad number or duration",
    "E110": "file cannot be read",
    "E201": "unknown event",
    "E202": "unknown action",
    "E203": "unknown parameter",
    "E204": "missing parameter",
    "E205": "unknown field",
    "E206": "unknown name",
    "E207": "unknown function",
    "E208": "bad parameter value",
    "E301": "type mismatch",
    "E302": "wrong number of arguments",
    "E303": "bad regular expression",
    "E304": "bad template",
    "E305": "not a list",
    "E401": "recursive let",
    "E402": "duplicate name",
    "E403": "reserved name",
    "E404": "bad rule option",
    "E406": "nested too deeply",
    "E407": "too large once lets are expanded",
    "E900": "formatter bug (its output would not mean the same rules; nothing was written)",
    "W501": "empty then",
    "W502": "empty for block",
}


@dataclass(frozen=True, order=True)
class Diagnostic:
    loc: Loc
    code: str
    message: str
    suggestion: str | None = field(default=None, compare=False)
    severity: str = field(default=ERROR, compare=False)
    length: int = field(default=1, compare=False)

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR

    def headline(self) -> str:
        return f"{self.loc.file}:{self.loc.line}:{self.loc.col}: {self.code}: {self.message}"

    def format(self, source: str | None = None) -> str:
        """``path:line:col: code: message``, then the source line with a caret, then the hint."""
        lines = [self.headline()]
        if source is not None and self.loc.line > 0:
            text_lines = source.splitlines()
            if self.loc.line <= len(text_lines):
                text = text_lines[self.loc.line - 1].rstrip("\n").expandtabs(1)
                lines.append(f"    {text}")
                lines.append("    " + " " * (self.loc.col - 1) + "^" * max(1, min(self.length, len(text) - self.loc.col + 1)))
        if self.suggestion:
            lines.append(f"  hint: {self.suggestion}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["file"], data["line"], data["col"] = self.loc.file, self.loc.line, self.loc.col
        del data["loc"]
        return data


MAX_SUGGESTED = 200


def closest(word: str, candidates: list[str], n: int = 3) -> list[str]:
    """Candidates that look like ``word`` (case-insensitive), best first: only those about as close
    as the best one, so a near-exact match is offered alone.  Words longer than ``MAX_SUGGESTED``
    get no suggestion (the comparison is quadratic in the length: a megabyte-long name would stall)."""
    if len(word) > MAX_SUGGESTED:
        return []
    folded = {c.casefold(): c for c in candidates if len(c) <= MAX_SUGGESTED}
    target = word.casefold()
    scored = sorted(((difflib.SequenceMatcher(None, target, k).ratio(), k) for k in folded), reverse=True)
    scored = [(score, k) for score, k in scored if score >= 0.6]
    if scored:
        best = scored[0][0]
        return [folded[k] for score, k in scored[:n] if score >= best - 0.08]
    if len(target) < 3:
        return []
    return [folded[k] for k in folded if target in k or k in target][:n]


def did_you_mean(names: list[str], quote: bool = True) -> str | None:
    if not names:
        return None
    shown = [f'"{n}"' if quote else n for n in names]
    return "did you mean " + (shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]) + "?"


class Diagnostics:
    """A collector: every stage adds to one list, reported sorted, all at once."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []
        self._seen: set[tuple[Loc, str, str]] = set()

    def add(self, loc: Loc, code: str, message: str, suggestion: str | None = None,
            severity: str = ERROR, length: int = 1) -> None:
        key = (loc, code, message)
        if key in self._seen:
            return
        self._seen.add(key)
        self.items.append(Diagnostic(loc, code, message, suggestion, severity, length))

    def error(self, loc: Loc, code: str, message: str, suggestion: str | None = None, length: int | None = None) -> None:
        self.add(loc, code, message, suggestion, ERROR, length if length is not None else _span(loc))

    def warning(self, loc: Loc, code: str, message: str, suggestion: str | None = None, length: int | None = None) -> None:
        self.add(loc, code, message, suggestion, WARNING, length if length is not None else _span(loc))

    def seen(self, d: Diagnostic) -> bool:
        return (d.loc, d.code, d.message) in self._seen

    @property
    def errors(self) -> list[Diagnostic]:
        return sorted(d for d in self.items if d.is_error)

    @property
    def warnings(self) -> list[Diagnostic]:
        return sorted(d for d in self.items if not d.is_error)

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.items)

    def __bool__(self) -> bool:
        return any(d.is_error for d in self.items)


def _span(loc: Loc) -> int:
    if loc.end_line == loc.line and loc.end_col > loc.col:
        return loc.end_col - loc.col
    return 1
