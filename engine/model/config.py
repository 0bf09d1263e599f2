"""The configuration file (``ruledesk.yaml``): stores and their settings, email, webhooks, limits; every error located at its file, line and key."""

from __future__ import annotations

import re
from email.utils import parseaddr
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import (BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator,
                      model_validator)
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from ruledesk.engine.model.settings import Secret, StoreSettings
from ruledesk.grammar.diagnostics import closest


class ConfigError(ValueError):
    """A configuration that cannot be used; ``problems`` are ``file:line:col: key: message`` lines."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class EmailSettings(BaseModel):
    """How Send Email sends (docs/email.md): the SMTP server, the From address, the templates folder."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, hide_input_in_errors=True)

    smtp: str = Field(description="the SMTP server, smtp://host:port or smtps://host:port (TLS from the start)")
    sender: str = Field(alias="from", description="the From address")
    templates: str = Field("templates", description="the folder of email templates, relative to this file")
    starttls: bool = Field(False, description="upgrade an smtp:// connection with STARTTLS before anything is sent")
    username: str | None = Field(None, description="the SMTP AUTH user name (needs starttls or smtps://)")
    password: Secret | None = Field(None, description="the SMTP AUTH password (a secret: env:NAME or file:PATH)")
    ca_file: str | None = Field(None, description="a PEM file of the certificate authorities to trust (a server "
                                                  "with a private certificate), relative to this file")
    timeout: float = Field(30.0, gt=0, description="seconds to wait for the SMTP server on one operation")
    attempts: int = Field(5, ge=1, le=20, description="how many times a message is tried before it is given up on")

    @field_validator("smtp")
    @classmethod
    def _smtp_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("expected smtp://host:port or smtps://host:port")
        if parts.username is not None or parts.password is not None:
            raise ValueError("write the user in username: and the password as a secret in password:, not in the URL")
        try:
            parts.port  # noqa: B018 -- raises for a port that is not a number
        except ValueError:
            raise ValueError("the port must be a number") from None
        return value

    @field_validator("sender")
    @classmethod
    def _address(cls, value: str) -> str:
        address = parseaddr(value)[1]
        if "@" not in address.strip("@"):
            raise ValueError("expected an email address: orders@example.com or Shop <orders@example.com>")
        return value

    @model_validator(mode="after")
    def _auth(self) -> "EmailSettings":
        if (self.username is None) != (self.password is None):
            raise ValueError("SMTP AUTH needs both username: and password:")
        if self.username is not None and not (self.starttls or self.smtp.startswith("smtps:")):
            raise ValueError("a password is never sent in clear: with username:, use starttls: true or an "
                             "smtps:// server")
        return self


class WebhookSettings(BaseModel):
    """How Post Order JSON delivers (docs/webhooks.md): Order Desk's 30 s timeout and 5 retries over 2 hours."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    timeout: float = Field(30.0, gt=0, le=600, description="seconds to wait for the receiver's answer to one post")
    retries: int = Field(5, ge=0, le=20, description="how many times a failed post is tried again")
    retry_window: float = Field(7200.0, gt=0, le=7 * 24 * 3600,
                                description="seconds the retries are spread over (each waits twice the one "
                                            "before; together they take about this long)")


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    max_depth: int = Field(10, ge=1, description="how deep a cascade of emitted events may go")
    max_firings: int = Field(100, ge=1, description="how many rules may fire for one incoming event")


class Config(BaseModel):
    """Everything ``ruledesk.yaml`` holds."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    stores: list[StoreSettings] = Field(default_factory=list, description="one entry per Order Desk store")
    default_store: str | None = Field(None, description="the store of an event or order that names none "
                                                         "(default: the only store, when there is one)")
    email: EmailSettings | None = Field(None, description="how Send Email sends")
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings, description="how Post Order JSON posts")
    limits: Limits = Field(default_factory=Limits, description="the cascade's limits")

    _path: Path | None = PrivateAttr(None)  # the file it was read from (load_config)

    def relative(self, path: str | Path) -> Path:
        """``path`` as the configuration means it: relative to the configuration file's folder."""
        path = Path(path).expanduser()
        if path.is_absolute() or self._path is None:
            return path
        return self._path.parent / path

    @field_validator("stores")
    @classmethod
    def _unique_names(cls, stores: list[StoreSettings]) -> list[StoreSettings]:
        names = [store.name for store in stores]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"store names must be unique: {', '.join(twice)} appear more than once")
        return stores

    @field_validator("default_store")
    @classmethod
    def _known_default(cls, default: str | None, info: ValidationInfo) -> str | None:
        if "stores" not in info.data:  # the stores have problems of their own, reported
            return default
        names = [store.name for store in info.data["stores"]]
        if default is not None and default not in names:
            near = closest(default, names)
            raise ValueError(f"{default!r} is not a configured store" + (f" (did you mean {near[0]!r}?)" if near else "")
                             + (f"; the stores are {', '.join(names)}" if names else "; no store is configured"))
        return default


def load_config(path: str | Path) -> Config:
    """Read and validate a configuration file; ConfigError with every problem located."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read the configuration: {exc.strerror or exc}"]) from None
    config = parse_config(text, str(path))
    config._path = path
    return config


def parse_config(text: str, name: str = "ruledesk.yaml") -> Config:
    try:
        data = YAML(typ="rt").load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"{name}:{mark.line + 1}:{mark.column + 1}" if mark else name
        problem = f"{where}: not valid YAML: {exc.problem}"
    else:
        problem = None
    if problem is not None:  # raised outside the handler: the YAML error (which quotes the line) is not chained
        raise ConfigError([problem])
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError([f"{name}:1:1: the configuration must be a mapping (stores:, email:, webhooks:, limits:)"])
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([_located(name, data, error) for error in exc.errors()]) from None


def _located(name: str, data: Any, error: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    line, col = _position(data, loc)
    key = ".".join(str(part) if isinstance(part, str) else f"[{part}]" for part in loc).replace(".[", "[")
    message = error["msg"].removeprefix("Value error, ")
    line = _line_within(data, loc, message, line)
    if error["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        near = closest(str(loc[-1]), _keys(model)) if model is not None else []
        message = f"unknown key {loc[-1]!r}" + (f" (did you mean {near[0]!r}?)" if near else "")
    return f"{name}:{line}:{col}: {key or '(top)'}: {message}"


def _position(data: Any, loc: tuple) -> tuple[int, int]:
    """The line and column (1-based) of the deepest part of ``loc`` found in the YAML."""
    line, col, node = 1, 1, data
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line, col = (n + 1 for n in node.lc.key(part))
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line, col = (n + 1 for n in node.lc.item(part))
            node = node[part]
        else:
            break
    return line, col


def _line_within(data: Any, loc: tuple, message: str, line: int) -> int:
    """A message about ``line N`` of a setting written one entry per line (a YAML list or a block
    string) is placed at that entry's line of the file."""
    found = re.match(r"line (\d+)\b", message)
    if not found:
        return line
    number, node = int(found.group(1)), data
    for part in loc:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return line
    if isinstance(node, CommentedSeq) and 0 < number <= len(node):
        return node.lc.item(number - 1)[0] + 1
    if isinstance(node, str) and "\n" in node:
        return line + number  # a block scalar starts on the line after its key
    return line


def _model_at(loc: tuple) -> type[BaseModel] | None:
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return None
        annotation = field.annotation
        inner = [a for a in getattr(annotation, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
        model = inner[0] if inner else annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _keys(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]
