"""A hand-written recursive-descent parser for well-formed rule files: the fast path of ``parse``.

Lark's LALR parser (grammar/ruledesk.lark) stays the definition of the language and the source of
every syntax error message.  This parser follows the same grammar and builds the AST through the
same ``ASTBuilder`` methods (so literals, locations and their diagnostics are the transformer's),
about three times faster; at the first token it does not expect it gives up (``Bail``) and the
caller parses the file again with Lark, which then accepts it or reports the error in its words.
So it must never accept text that Lark rejects or read it differently; tests/grammar compares both
parsers on every rule file of the test suite and on mutated ones.

Lark's contextual lexer decides per parser state whether a word is a keyword.  Here a word is a
keyword exactly where the grammar can take that keyword and not a name (``not``/``any``/``all``
where an operand of ``and``/``or``/``not`` starts; ``count``/``sum``/``true``/``false``/``null``
where any value starts); anywhere else an unexpected word is a reason to give up, never a guess.
"""

from __future__ import annotations

import re

from lark import Token

from ruledesk.grammar import ast

# Each match is the blanks before a token, then the token (kinds as named groups).
_TOKEN = re.compile(r"""[ \t\f\r\n]*(?:
 (?P<COMMENT>\#[^\r\n]*)
|(?P<STRING>"(?:[^"\\\n]|\\[^\n])*")
|(?P<DURATION>[0-9]+[smhdw](?![A-Za-z0-9_.]))
|(?P<BAD_NUMBER>[0-9]+\.[0-9]+[A-Za-z_][A-Za-z0-9_]*|[0-9]+(?![smhdw](?![A-Za-z0-9_.]))[A-Za-z_][A-Za-z0-9_]*)
|(?P<NUMBER>[0-9]+(?:\.[0-9]+)?(?![A-Za-z0-9_]))
|(?P<WORD>[A-Za-z_][A-Za-z0-9_]*)
|(?P<COMP_OP>==|!=|<=|>=|<|>)
|(?P<P>[-+*/%.,:=(){}\[\]])
|(?P<END>\Z)
|(?P<ERR>[\s\S])
)""", re.VERBOSE)

# Punctuation -> Lark's terminal name (only the kept ones reach the builder).
_PUNCT = {"+": "PLUS", "-": "MINUS", "*": "STAR", "/": "SLASH", "%": "PERCENT", "(": "LPAR", ")": "RPAR",
          "[": "LSQB", "]": "RSQB", "}": "RBRACE", "{": "LBRACE", ".": "DOT", ",": "COMMA", ":": "COLON",
          "=": "EQUAL"}
_VALUE_WORDS = {"count": "COUNT", "sum": "SUM", "true": "TRUE", "false": "FALSE", "null": "NULL"}
_END = ("$END", "", 0, 0, 0)
# Token(...) goes through an argument-shuffling __new__; Lark's own lexer calls this directly.
_new_token = getattr(Token, "_future_new", Token)


class Bail(Exception):
    """The fast parser does not take this text; parse it with Lark."""


def tokenize(text: str) -> tuple[list[tuple[str, str, int, int, int]], list[ast.Comment]]:
    """(kind, text, offset, line, column) of every token but blanks, and the comments; kinds are
    WORD (a name or a keyword: the parser decides), P (punctuation, its text), STRING, NUMBER,
    DURATION, BAD_NUMBER, COMP_OP."""
    tokens = []
    comments = []
    append = tokens.append
    count, rfind = text.count, text.rfind
    line, line_start, previous = 1, 0, 0
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        start = m.start(kind)
        if start > previous:  # blanks before the token
            breaks = count("\n", previous, start)
            if breaks:
                line += breaks
                line_start = rfind("\n", previous, start) + 1
        value = m.group(kind)
        previous = start + len(value)
        if kind == "COMMENT":
            comments.append(ast.Comment(line, start - line_start + 1, value))
            continue
        if kind == "END":
            break
        if kind == "ERR":
            raise Bail
        append((kind, value, start, line, start - line_start + 1))
    append(_END)
    return tokens, comments


class FastParser:
    def __init__(self, builder) -> None:
        self.b = builder

    def parse(self, text: str) -> tuple[list, list[ast.Comment]]:
        self.tokens, comments = tokenize(text)
        self.i = 0
        items = []
        b = self.b
        while True:
            kind, value = self.tokens[self.i][:2]
            if kind == "$END":
                break
            if kind != "WORD":
                raise Bail
            if value == "rule":
                items.append(self.rule())
            elif value == "let":
                items.append(self.let())
            else:
                raise Bail
        return b.start(items), comments

    # ---- tokens ---------------------------------------------------------------------------
    def tok(self, type_: str) -> Token:
        """The current token as a Lark token of type ``type_``; moves on."""
        kind, value, start, line, col = self.tokens[self.i]
        self.i += 1
        size = len(value)
        return _new_token(type_, value, start, line, col, line, col + size, start + size)

    def peek(self) -> tuple[str, str]:
        t = self.tokens[self.i]
        return t[0], t[1]

    def at_word(self, word: str) -> bool:
        t = self.tokens[self.i]
        return t[0] == "WORD" and t[1] == word

    def at_p(self, char: str) -> bool:
        t = self.tokens[self.i]
        return t[0] == "P" and t[1] == char

    def word(self, word: str) -> None:
        t = self.tokens[self.i]
        if t[0] != "WORD" or t[1] != word:
            raise Bail
        self.i += 1

    def p(self, char: str) -> None:
        t = self.tokens[self.i]
        if t[0] != "P" or t[1] != char:
            raise Bail
        self.i += 1

    def name(self) -> Token:
        if self.tokens[self.i][0] != "WORD":
            raise Bail
        return self.tok("NAME")

    def string(self) -> Token:
        if self.tokens[self.i][0] != "STRING":
            raise Bail
        return self.tok("STRING")

    def punct(self, char: str) -> Token:
        if not self.at_p(char):
            raise Bail
        return self.tok(_PUNCT[char])

    # ---- top level ----------------------------------------------------------------------
    def let(self) -> object:
        self.i += 1  # let
        name = self.name()
        if self.at_p("="):
            self.i += 1
            return self.b.let_value([name, self.expr()])
        self.p("(")
        params = []
        if not self.at_p(")"):
            params.append(self.name())
            while self.at_p(","):
                self.i += 1
                if self.at_p(")"):
                    break
                params.append(self.name())
        self.p(")")
        self.p("=")
        return self.b.let_func([name, *params, self.expr()])

    def rule(self) -> object:
        b = self.b
        self.i += 1  # rule
        children = [self.string()]
        while True:
            if self.at_word("priority"):
                self.i += 1
                children.append(b.priority([self.signed_int()]))
            elif self.at_word("disabled"):
                children.append(b.disabled([self.tok("DISABLED")]))
            else:
                break
        self.p("{")
        children.append(self.trigger())
        if self.at_word("if"):
            self.i += 1
            children.append(b.condition([self.expr()]))
        if not self.at_word("then"):
            raise Bail
        then = [self.tok("THEN")]
        then.extend(self.statements())
        children.append(b.then(then))
        children.append(self.punct("}"))
        return b.rule(children)

    def signed_int(self) -> object:
        children = []
        if self.at_p("-"):
            children.append(self.tok("MINUS"))
        elif self.at_p("+"):
            children.append(self.tok("PLUS"))
        if self.tokens[self.i][0] != "NUMBER":
            raise Bail
        children.append(self.tok("NUMBER"))
        return self.b.signed_int(children)

    def trigger(self) -> object:
        if not self.at_word("when"):
            raise Bail
        when = self.tok("WHEN")
        kind = self.tokens[self.i][0]
        if kind == "STRING":
            names = [self.string()]
            while self.at_p(","):
                self.i += 1
                names.append(self.string())
            return self.b.when_events([when, *names])
        if self.at_word("every"):
            self.i += 1
            kind = self.tokens[self.i][0]
            if kind not in ("DURATION", "BAD_NUMBER"):
                raise Bail
            every = self.tok(kind)
            self.word("in")
            self.word("folder")
            return self.b.when_every([when, every, self.string()])
        if self.at_word("button"):
            self.i += 1
            return self.b.when_button([when, self.string()])
        raise Bail

    def statements(self) -> list:
        out = []
        while True:
            kind, value = self.peek()
            if kind == "STRING":
                out.append(self.action_call())
            elif kind == "WORD" and value == "for":
                out.append(self.for_block())
            else:
                return out

    def action_call(self) -> object:
        b = self.b
        children = [self.string()]
        if self.at_p("("):
            self.i += 1
            while not self.at_p(")"):
                name = self.name()
                self.p(":")
                children.append(b.arg([name, self.expr()]))
                if self.at_p(","):
                    self.i += 1
                elif not self.at_p(")"):
                    raise Bail
            children.append(self.tok("RPAR"))
        return b.action_call(children)

    def for_block(self) -> object:
        keyword = self.tok("FOR")
        var = self.name()
        self.word("in")
        iterable = self.arith()
        cond = None
        if self.at_word("where"):
            self.i += 1
            cond = self.expr()
        self.p("{")
        body = self.statements()
        return self.b.for_block([keyword, var, iterable, cond, *body, self.punct("}")])

    # ---- expressions --------------------------------------------------------------------
    def expr(self) -> object:
        left = self.and_()
        while self.at_word("or"):
            self.i += 1
            left = self.b.or_([left, self.and_()])
        return left

    def and_(self) -> object:
        left = self.not_()
        while self.at_word("and"):
            self.i += 1
            left = self.b.and_([left, self.not_()])
        return left

    def not_(self) -> object:
        t = self.tokens[self.i]
        if t[0] == "WORD":
            if t[1] == "not":
                keyword = self.tok("NOT")
                return self.b.not_([keyword, self.not_()])
            if t[1] == "any" or t[1] == "all":
                kind = self.tok(t[1].upper())
                var = self.name()
                self.word("in")
                iterable = self.arith()
                self.word("where")
                return self.b.quantifier([kind, var, iterable, self.expr()])
        return self.comparison()

    def comparison(self) -> object:
        b = self.b
        left = self.arith()
        kind, value = self.peek()
        if kind == "COMP_OP":
            op = self.tok("COMP_OP")
            return b.compare([left, op, self.arith()])
        if kind != "WORD":
            return left
        if value == "in":
            self.i += 1
            return b.in_([left, self.arith()])
        if value == "not":
            self.i += 1
            self.word("in")
            return b.not_in([left, self.arith()])
        if value == "contains":
            self.i += 1
            return b.contains([left, self.arith()])
        if value == "starts":
            self.i += 1
            self.word("with")
            return b.starts_with([left, self.arith()])
        if value == "ends":
            self.i += 1
            self.word("with")
            return b.ends_with([left, self.arith()])
        if value == "matches":
            self.i += 1
            return b.matches([left, self.arith()])
        if value == "is":
            self.i += 1
            negated = self.at_word("not")
            if negated:
                self.i += 1
            if self.at_word("set"):
                last = self.tok("SET")
                return (b.is_not_set if negated else b.is_set)([left, last])
            if self.at_word("empty"):
                last = self.tok("EMPTY")
                return (b.is_not_empty if negated else b.is_empty)([left, last])
            raise Bail
        return left

    def arith(self) -> object:
        left = self.term()
        while True:
            t = self.tokens[self.i]
            if t[0] == "P" and (t[1] == "+" or t[1] == "-"):
                op = self.tok(_PUNCT[t[1]])
                left = self.b.binop([left, op, self.term()])
            else:
                return left

    def term(self) -> object:
        left = self.factor()
        while True:
            t = self.tokens[self.i]
            if t[0] == "P" and (t[1] == "*" or t[1] == "/" or t[1] == "%"):
                op = self.tok(_PUNCT[t[1]])
                left = self.b.binop([left, op, self.factor()])
            else:
                return left

    def factor(self) -> object:
        if self.at_p("-"):
            sign = self.tok("MINUS")
            return self.b.neg([sign, self.factor()])
        return self.postfix()

    def postfix(self) -> object:
        b = self.b
        node = self.atom()
        while True:
            t = self.tokens[self.i]
            if t[0] != "P":
                return node
            if t[1] == ".":
                self.i += 1
                node = b.attr([node, self.name()])
            elif t[1] == "[":
                self.i += 1
                key = self.expr()
                node = b.index([node, key, self.punct("]")])
            else:
                return node

    def atom(self) -> object:
        b = self.b
        kind, value = self.peek()
        if kind == "WORD":
            keyword = _VALUE_WORDS.get(value)
            if keyword is None:
                name = self.tok("NAME")
                if not self.at_p("("):
                    return b.name([name])
                self.i += 1
                return b.call([name, *self.items(")"), self.tok("RPAR")])
            token = self.tok(keyword)
            if keyword == "TRUE":
                return b.true([token])
            if keyword == "FALSE":
                return b.false([token])
            if keyword == "NULL":
                return b.null([token])
            self.p("(")
            body = self.expr()
            if keyword == "COUNT":
                cond = None
                if self.at_word("where"):
                    self.i += 1
                    cond = self.expr()
                return b.count([token, body, cond, self.punct(")")])
            var = iterable = cond = None
            if self.at_word("for"):
                self.i += 1
                var = self.name()
                self.word("in")
                iterable = self.arith()
                if self.at_word("where"):
                    self.i += 1
                    cond = self.expr()
            return b.sum([token, body, var, iterable, cond, self.punct(")")])
        if kind == "STRING":
            return b.string([self.tok("STRING")])
        if kind == "NUMBER":
            return b.number([self.tok("NUMBER")])
        if kind == "DURATION":
            return b.duration([self.tok("DURATION")])
        if kind == "BAD_NUMBER":
            return b.bad_number([self.tok("BAD_NUMBER")])
        if kind == "P":
            if value == "[":
                open_ = self.tok("LSQB")
                return b.list([open_, *self.items("]"), self.tok("RSQB")])
            if value == "(":
                open_ = self.tok("LPAR")
                inner = self.expr()
                return b.group([open_, inner, self.punct(")")])
        raise Bail

    def items(self, close: str) -> list:
        """``[expr ("," expr)* [","]]`` up to (not taking) ``close``."""
        out = []
        while not self.at_p(close):
            out.append(self.expr())
            if self.at_p(","):
                self.i += 1
            elif not self.at_p(close):
                raise Bail
        return out
