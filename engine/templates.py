"""User templates in action parameters: always Jinja2's sandbox, compiled once at check time."""

from __future__ import annotations

import datetime as _dt
import functools
from typing import Any

from jinja2 import ChainableUndefined, Template
from jinja2.sandbox import ImmutableSandboxedEnvironment


def is_template(text: str) -> bool:
    """A string parameter is a template when it contains ``{{`` or ``{%``."""
    return "{{" in text or "{%" in text


@functools.lru_cache(maxsize=1)
def template_environment() -> ImmutableSandboxedEnvironment:
    """The one sandbox every user template renders in: no attribute escapes, no mutation of the order."""
    return ImmutableSandboxedEnvironment(undefined=ChainableUndefined, autoescape=False, keep_trailing_newline=True,
                                         finalize=_finalize)


def _finalize(value: Any) -> Any:
    """How a value prints: null as nothing (like an undefined name), dates as Order Desk writes them."""
    if value is None:
        return ""
    if isinstance(value, _dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value


@functools.lru_cache(maxsize=4096)
def compile_template(text: str) -> Template:
    return template_environment().from_string(text)


def render(template: Template, context: dict[str, Any]) -> str:
    return template.render(context)
