"""User templates, in action parameters and in template files (email): always Jinja2's sandbox, with the document filters."""

from __future__ import annotations

import datetime as _dt
import functools
from pathlib import Path
from typing import Any

from jinja2 import ChainableUndefined, FileSystemLoader, Template, select_autoescape
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ruledesk.engine.lang.filters import FILTERS


def is_template(text: str) -> bool:
    """A string parameter is a template when it contains ``{{`` or ``{%``."""
    return "{{" in text or "{%" in text


@functools.lru_cache(maxsize=1)
def template_environment() -> ImmutableSandboxedEnvironment:
    """The one sandbox every user template renders in: no attribute escapes, no mutation of the order."""
    environment = ImmutableSandboxedEnvironment(undefined=ChainableUndefined, autoescape=False,
                                                keep_trailing_newline=True, finalize=_finalize)
    environment.filters.update(FILTERS)
    return environment


@functools.lru_cache(maxsize=16)
def folder_environment(folder: Path) -> ImmutableSandboxedEnvironment:
    """The sandbox for the template files under ``folder`` (Send Email's documents): the same policy,
    filters and printing as rule templates; ``.html`` files autoescaped.  A file is read again when it
    changes; a name cannot leave the folder (``..`` is not found)."""
    environment = ImmutableSandboxedEnvironment(loader=FileSystemLoader(folder), undefined=ChainableUndefined,
                                                autoescape=select_autoescape(("html", "htm")),
                                                keep_trailing_newline=True, finalize=_finalize)
    environment.filters.update(FILTERS)
    return environment


def _finalize(value: Any) -> Any:
    """How a value prints: null as nothing (like an undefined name), dates as Order Desk writes them."""
    if value is None:
        return ""
    if isinstance(value, _dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value


class UserTemplate:
    """A rule author's template, compiled in the sandbox, with the text it was written as."""

    __slots__ = ("source", "template")

    def __init__(self, source: str) -> None:
        self.source = source
        self.template: Template = template_environment().from_string(source)

    def render(self, context: dict[str, Any]) -> str:
        return self.template.render(context)

    def __repr__(self) -> str:
        return f"UserTemplate({self.source!r})"


@functools.lru_cache(maxsize=4096)
def compile_template(text: str) -> UserTemplate:
    return UserTemplate(text)
