"""The ruledesk rule grammar (Lark, LALR) and the parser that turns rule text into the AST."""

from ruledesk.grammar.parser import grammar_text, parse

__all__ = ["parse", "grammar_text"]
