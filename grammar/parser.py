"""Rule text -> AST with Lark's LALR parser, and syntax errors in human words."""


from __future__ import annotations

import re
import threading
from importlib import resources

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from ruledesk.grammar import ast
from ruledesk.grammar.diagnostics import Diagnostics

from ruledesk.grammar.fastparse import Bail, FastParser
from ruledesk.grammar.transformer import ASTBuilder

_GRAMMAR = resources.files(__package__).joinpath("ruledesk.lark").read_text(encoding="utf-8")
_local = threading.local()

# How a terminal is named in an error message.
_TERMINAL_WORDS = {
    "NAME": "a name", "STRING": "a string", "NUMBER": "a number", "DURATION": "a duration",
    "BAD_NUMBER": "a number", "COMP_OP": "a comparison", "LBRACE": '"{"', "RBRACE": '"}"',
    "LPAR": '"("', "RPAR": '")"', "LSQB": '"["', "RSQB": '"]"', "COMMA": '","', "COLON": '":"',
    "EQUAL": '"="', "DOT": '"."', "PLUS": '"+"', "MINUS": '"-"', "STAR": '"*"', "SLASH": '"/"',
    "PERCENT": '"%"', "$END": "the end of the file", "ANY": '"any"', "ALL": '"all"',
}
_COMPARISONS = {"COMP_OP", "IN", "CONTAINS", "STARTS", "ENDS", "MATCHES", "IS"}
_KEYWORDS_AS_VALUES = {"then", "if", "when", "and", "or", "where", "rule", "let", "in", "is"}
_ORDER = ["RBRACE", "THEN", "IF", "WHEN", "STRING", "NAME", "RPAR", "COMMA", "RSQB", "LBRACE", "COLON", "EQUAL"]


def _new_parser() -> tuple[Lark, ASTBuilder]:
    builder = ASTBuilder()
    # cache=True keeps the analysed LALR tables in the temp directory, keyed by the grammar's hash.
    lark = Lark(_GRAMMAR, parser="lalr", lexer="contextual", strict=True, maybe_placeholders=True,
                transformer=builder, lexer_callbacks={"COMMENT": _collect_comment}, cache=True)
    return lark, builder


def _collect_comment(token: Token) -> Token:
    _local.comments.append(ast.Comment(token.line, token.column, str(token)))
    return token


def _parser() -> tuple[Lark, ASTBuilder]:
    if not hasattr(_local, "parser"):
        _local.parser = _new_parser()
    return _local.parser


def grammar_text() -> str:
    return _GRAMMAR


def parse(text: str, path: str = "<string>", diagnostics: Diagnostics | None = None) -> ast.Module:
    """Parse one rule file.  Problems go to ``diagnostics``; a syntax error yields an empty module."""
    diagnostics = diagnostics if diagnostics is not None else Diagnostics()
    lark, builder = _parser()
    builder.path = path
    # The fast parser first (see fastparse): its diagnostics count only when it takes the whole text.
    builder.diagnostics = found = Diagnostics()
    try:
        items, comments = FastParser(builder).parse(text)
    except (Bail, RecursionError):  # deep nesting too: Lark's parser keeps its stack in a list
        pass
    else:
        for d in found.items:
            diagnostics.add(d.loc, d.code, d.message, d.suggestion, d.severity, d.length)
        return ast.Module(path, tuple(items), tuple(comments), text)
    return parse_with_lark(text, path, diagnostics)


def parse_with_lark(text: str, path: str = "<string>", diagnostics: Diagnostics | None = None) -> ast.Module:
    """``parse`` by Lark alone: the language's definition and its syntax errors."""
    diagnostics = diagnostics if diagnostics is not None else Diagnostics()
    lark, builder = _parser()
    builder.path = path
    builder.diagnostics = diagnostics
    _local.comments = []
    try:
        items = lark.parse(text)
    except UnexpectedInput as exc:
        _report_syntax_error(exc, text, path, diagnostics)
        items = []
    comments = tuple(_local.comments)
    return ast.Module(path, tuple(items), comments, text)


# ---- syntax errors ----------------------------------------------------------------------

def _report_syntax_error(exc: UnexpectedInput, text: str, path: str, diagnostics: Diagnostics) -> None:
    line, col = max(exc.line, 1), max(exc.column, 1)
    if isinstance(exc, UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        if char == '"':
            rest = text[exc.pos_in_stream:].split("\n", 1)[0]
            diagnostics.error(ast.Loc(path, line, col), "E101", "unclosed string: it runs to the end of the line",
                              'add the closing " on the same line (write \\n for a line break)', length=len(rest))
            return
        hint = ('strings are written in double quotes, "like this"' if char == "'"
                else _expected_hint(exc.allowed or set()))
        shown = '"\'"' if char == "'" else repr(char)
        diagnostics.error(ast.Loc(path, line, col), "E100", f"unexpected character {shown}", hint)
        return
    token = exc.token if isinstance(exc, UnexpectedToken) else None
    expected = set(getattr(exc, "expected", None) or getattr(exc, "accepts", None) or [])
    if isinstance(exc, UnexpectedToken):
        expected = set(exc.accepts or exc.expected)
    at_end = token is None or token.type == "$END" or isinstance(exc, UnexpectedEOF)
    if at_end:
        line, col = _end_position(text)
    loc = ast.Loc(path, line, col, line, col + (len(str(token)) if token is not None and not at_end else 1))
    open_rule = _enclosing_rule(text, _offset(text, line, col))

    previous = (getattr(exc, "token_history", None) or [None])[-1]
    if previous is not None and previous.type == "NAME" and previous in _KEYWORDS_AS_VALUES:
        # The contextual lexer read a keyword as a name where a value was due: `if a == then`.
        where = ast.Loc(path, previous.line, previous.column, previous.end_line, previous.end_column)
        diagnostics.error(where, "E100", f'expected a value before "{previous}"',
                          f'complete the expression before "{previous}"')
        return
    if "THEN" in expected and token is not None and token.type in ("STRING", "RBRACE", "FOR"):
        where = f' of rule "{open_rule}"' if open_rule else ""
        diagnostics.error(loc, "E103", f"missing then{where}: the actions must follow then",
                          f"write then before {_describe(token)}")
        return
    if "RBRACE" in expected and (at_end or token.type in ("RULE", "LET")):
        what = f'rule "{open_rule}"' if open_rule else "the block"
        found = "the end of the file" if at_end else f'"{token}"'
        diagnostics.error(loc, "E102", f'unclosed "{{" of {what}: found {found}',
                          f'add "}}" to close {what}')
        return
    if token is not None and token.type == "EQUAL" and "EQUAL" not in expected:
        diagnostics.error(loc, "E100", 'unexpected "="', "write == to compare")
        return
    if token is not None and token.type in _COMPARISONS and not (_COMPARISONS & expected):
        diagnostics.error(loc, "E104", "comparisons do not chain",
                          "write a < b and b < c, or group with parentheses")
        return
    if token is not None and token.type == "$END" or at_end:
        diagnostics.error(loc, "E100", "unexpected end of file", _expected_hint(expected))
        return
    diagnostics.error(loc, "E100", f"unexpected {_describe(token)}", _expected_hint(expected))


def _describe(token: Token) -> str:
    if token.type in ("STRING", "NAME", "NUMBER", "DURATION"):
        return f"{_TERMINAL_WORDS[token.type][2:]} {token}" if token.type != "STRING" else f"string {token}"
    if token.type == "$END":
        return "end of file"
    text = str(token)
    return f'"{text}"' if text else token.type.lower()


def _expected_hint(expected: set[str]) -> str | None:
    words = []
    for name in sorted(expected, key=lambda n: (_ORDER.index(n) if n in _ORDER else len(_ORDER), n)):
        if name in ("BAD_NUMBER", "__ANON_0"):
            continue
        word = _TERMINAL_WORDS.get(name, f'"{name.lower()}"' if name.isalpha() else None)
        if word and word not in words:
            words.append(word)
    if not words:
        return None
    if len(words) > 6:
        words = words[:6] + ["..."]
    return "expected " + ", ".join(words)


def _end_position(text: str) -> tuple[int, int]:
    stripped = text.rstrip()
    lines = stripped.splitlines() or [""]
    return len(lines), len(lines[-1]) + 1


def _offset(text: str, line: int, col: int) -> int:
    lines = text.splitlines(keepends=True)
    return sum(len(l) for l in lines[: line - 1]) + col - 1


_RULE_HEADER = re.compile(r'^\s*rule\s+("(?:[^"\\\n]|\\.)*")', re.MULTILINE)


def _enclosing_rule(text: str, offset: int) -> str | None:
    """Name of the last rule header before ``offset`` (the rule being parsed when the error hit)."""
    name = None
    for m in _RULE_HEADER.finditer(text, 0, offset):
        name = m.group(1)[1:-1]
    return name
