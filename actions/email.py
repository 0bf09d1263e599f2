"""Send Email: the action records an ``email.send`` job; its handler renders the message and sends it over SMTP (docs/email.md).

The action's ``to``, ``cc``, ``subject`` and ``body`` are rendered with the rule (rule templates);
a ``template`` names files under the configured templates folder, rendered when the job runs, with
the order as it is then: ``NAME.txt`` is the plain-text part, ``NAME.html`` the HTML part, and
both make a multipart/alternative message.  The ``Message-ID`` is derived from the job key, so
every attempt sends the same message; SMTP cannot deduplicate, so email is at least once.
"""

from __future__ import annotations

import copy
import re
import smtplib
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, replace
from email.message import EmailMessage
from email.headerregistry import HeaderRegistry
from email.utils import format_datetime, formataddr, parseaddr
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from jinja2 import TemplateNotFound, TemplateSyntaxError
from pydantic import AfterValidator, Field, model_validator

from ruledesk.engine.lang.templates import folder_environment, is_template
from ruledesk.engine.model.catalogue import ActionSpec, Catalogue, StaticCheck, action
from ruledesk.engine.model.config import Config, EmailSettings
from ruledesk.engine.model.context import ActionContext, Emitted
from ruledesk.engine.model.jobs import Done, Failed, Job, JobContext, Outcome, Retry, handler, preview
from ruledesk.engine.model.order import Note
from ruledesk.grammar.diagnostics import closest

from ruledesk.actions.order import ActionParams

SEND_EMAIL = "Send Email"
SEND = "email.send"  # the job kind
DEFAULT_TEMPLATES = Path("templates")  # without a configuration: templates/ in the current folder
PARTS = {".txt": "text", ".html": "html"}  # a template file's suffix -> the part of the message it is
RETRY_BASE = 5.0  # seconds: the first retry waits up to this (full jitter, doubling)
RETRY_CAP = 900.0
NOTE_ADDED = "Note Added"
# Headers a preview leaves out: set by the MIME machinery (a random boundary) or when sent (Date)
UNSHOWN = {"content-type", "mime-version", "content-transfer-encoding", "date"}


# ---- parameters --------------------------------------------------------------------------------

_HEADERS = HeaderRegistry()
_ADDRESS = re.compile(r"[^@\s<>,;:\"()\[\]\\]+@[^@\s<>,;:\"()\[\]\\]+")


def parse_addresses(value: str) -> list[tuple[str, str]]:
    """The (name, address) pairs of a comma-separated list (``a@x.com, "Smith, Bob" <bob@y.org>``);
    ValueError naming the entry that is not an address."""
    header = _HEADERS("To", value)
    pairs = [(address.display_name, address.addr_spec) for address in header.addresses]
    if not value.strip() or not pairs:
        raise ValueError("expected one or more email addresses, separated by commas")
    for _, address in pairs:
        if not _ADDRESS.fullmatch(address):
            raise ValueError(f"{address.strip(chr(34))!r} is not an email address")
    if header.defects:
        raise ValueError(f"{value.strip()!r} is not a list of email addresses ({header.defects[0]})")
    return pairs


def _addresses(value: str | None) -> str | None:
    if value is not None:
        parse_addresses(value)
    return value


def _one_line(value: str) -> str:
    """A header on one line: line breaks (from an order's data) become spaces, so no header is injected."""
    line = " ".join(part.strip() for part in value.splitlines() if part.strip())
    if not line:
        raise ValueError("must not be empty")
    return line


class SendEmailParams(ActionParams):
    to: Annotated[str, AfterValidator(_addresses)] = Field(description="the recipients: one address or several separated by commas")
    cc: Annotated[str | None, AfterValidator(_addresses)] = Field(None, description="copied recipients, separated by commas")
    subject: Annotated[str, AfterValidator(_one_line)] = Field(description="the subject line")
    template: str | None = Field(None, min_length=1, description="the template's name under the templates "
                                 "folder: NAME (NAME.txt and/or NAME.html), NAME.txt or NAME.html")
    body: str | None = Field(None, description="the plain-text body (instead of a template)")

    @model_validator(mode="after")
    def _template_or_body(self) -> "SendEmailParams":
        if (self.template is None) == (self.body is None):
            raise ValueError("give either template or body (exactly one)")
        return self


# ---- templates ---------------------------------------------------------------------------------


class EmailProblem(Exception):
    """A message that cannot be made (email not configured, a template missing or failing): retrying
    would not help."""


def templates_folder(config: Config | None) -> Path:
    """Where Send Email's templates are: ``email.templates`` of the configuration (relative to its
    file), else ``templates/`` in the current folder."""
    if config is None or config.email is None:
        return DEFAULT_TEMPLATES
    return config.relative(config.email.templates)


def template_files(folder: Path, name: str) -> dict[str, str]:
    """The files a template name stands for, by part (``{"text": "x.txt", "html": "x.html"}``), each
    compiled (EmailProblem if the folder or a named file is missing, or a file does not parse).

    ``NAME`` is ``NAME.txt`` and/or ``NAME.html`` (at least one); ``NAME.txt`` or ``NAME.html`` is
    that file, and its sibling of the other kind when there is one."""
    if not folder.is_dir():
        raise EmailProblem(f"the email templates folder {folder} does not exist")
    environment = folder_environment(folder.absolute())
    stem, suffix = name, ""
    for known in PARTS:
        if name.endswith(known):
            stem, suffix = name[: -len(known)], known
    files: dict[str, str] = {}
    for part_suffix, part in PARTS.items():
        file = stem + part_suffix
        try:
            environment.get_template(file)
        except TemplateNotFound:
            continue
        except TemplateSyntaxError as exc:
            raise EmailProblem(f"the email template {file}:{exc.lineno} does not parse: {exc.message}") from None
        files[part] = file
    if (suffix and PARTS[suffix] not in files) or not files:
        wanted = name if suffix else f"{stem}.txt or {stem}.html"
        raise EmailProblem(f"no email template {wanted} in {folder}")
    return files


def _template_names(folder: Path) -> list[str]:
    try:
        return sorted({name.rsplit(".", 1)[0] for name in folder_environment(folder.absolute()).list_templates()
                       if name.endswith(tuple(PARTS))})
    except OSError:
        return []


def template_check(folder: Path, required: bool = True) -> StaticCheck:
    """Send Email's check-time check: a literal template name must name files that exist under
    ``folder`` and parse (with a suggestion for a misspelt name).  A folder that is not
    ``required`` (no email configuration says where templates are: the default, templates/ in the
    current folder) is only looked in when it exists; otherwise the name is checked when it is sent."""

    def check(literals: dict[str, Any]) -> list[tuple[str, str, str | None]]:
        problems: list[tuple[str, str, str | None]] = []
        if "template" in literals and "body" in literals:
            problems.append(("body", "give either template or body, not both", None))
        name = literals.get("template")
        if not isinstance(name, str) or not name or is_template(name):
            return problems
        if not required and not folder.is_dir():
            return problems
        try:
            template_files(folder, name)
        except EmailProblem as exc:
            near = closest(name, _template_names(folder)) if "no email template" in str(exc) else []
            problems.append(("template", str(exc), near[0] if near else None))
        return problems

    return check


def with_templates(actions: Catalogue[ActionSpec], folder: Path, required: bool = True) -> None:
    """Make ``actions``' Send Email check its literal template names against ``folder``."""
    spec = actions.get(SEND_EMAIL)
    if spec is not None:
        actions.register(replace(spec, static_check=template_check(folder, required)), replace=True)


# ---- the action --------------------------------------------------------------------------------


@action(SEND_EMAIL, SendEmailParams, job=SEND, mutates_order=False, touches=(),
        static_check=template_check(DEFAULT_TEMPLATES, required=False))
def send_email(ctx: ActionContext, params: SendEmailParams) -> None:
    """Send an email (to, cc?, subject, and template or body) over SMTP, once the decision is committed."""
    return None


# ---- the message -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Composed:
    """A message ready to send: the MIME message, the envelope's sender and recipients."""

    message: EmailMessage
    sender: str
    recipients: list[str]
    text: str | None
    html: str | None


def message_id(key: str, sender: str) -> str:
    """The Message-ID of a job's message: its key at the From address's domain (the same on every attempt)."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "ruledesk.local"
    return f"<{key}@{domain}>"


def settings_of(ctx: JobContext) -> EmailSettings:
    config = ctx.config
    if config is None or config.email is None:
        raise EmailProblem("email is not configured: add email: (smtp, from) to ruledesk.yaml")
    return config.email


def compose(job: Job, ctx: JobContext) -> Composed:
    """The message of an ``email.send`` job for the order as it is now (EmailProblem if it cannot be made)."""
    settings = settings_of(ctx)
    params = job.params
    try:
        to = parse_addresses(str(params.get("to") or ""))
        cc = parse_addresses(params["cc"]) if params.get("cc") else []
    except ValueError as exc:
        raise EmailProblem(str(exc)) from None
    text, html = params.get("body"), None
    if params.get("template"):
        text, html = _render(templates_folder(ctx.config), params["template"], ctx)
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = ", ".join(formataddr(pair) for pair in to)
    if cc:
        message["Cc"] = ", ".join(formataddr(pair) for pair in cc)
    message["Subject"] = str(params.get("subject") or "")
    message["Date"] = format_datetime(ctx.now())
    message["Message-ID"] = message_id(job.key, settings.sender)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to a robot
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    else:
        message.set_content(html or "", subtype="html")
    return Composed(message, parseaddr(settings.sender)[1], [address for _, address in to + cc], text, html)


def _render(folder: Path, name: str, ctx: JobContext) -> tuple[str | None, str | None]:
    files = template_files(folder, name)
    environment = folder_environment(folder.absolute())
    order = ctx.order
    context = {"order": order, "items": order.get("order_items") or [], "store": ctx.store.view()}
    rendered: dict[str, str] = {}
    for part, file in files.items():
        try:
            rendered[part] = environment.get_template(file).render(context)
        except Exception as exc:  # a template failing on this order (a filter's refusal, the sandbox's)
            raise EmailProblem(f"the email template {file} failed: {type(exc).__name__}: {exc}") from None
    return rendered.get("text"), rendered.get("html")


# ---- sending -----------------------------------------------------------------------------------


class SmtpFailure(Exception):
    """Sending failed; ``transient`` says whether a later attempt may succeed."""

    def __init__(self, message: str, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def deliver(settings: EmailSettings, ca_file: Path | None, composed: Composed) -> dict[str, str]:
    """Send ``composed`` over SMTP (STARTTLS and AUTH when configured); the recipients the server
    refused while accepting others.  SmtpFailure when nothing was sent."""
    url = urlsplit(settings.smtp)
    host, port = url.hostname or "", url.port or (465 if url.scheme == "smtps" else 25)
    try:
        with _connected(settings, host, port, ca_file) as client:
            refused = client.send_message(composed.message, from_addr=composed.sender, to_addrs=composed.recipients)
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _ in exc.recipients.values()]
        listed = ", ".join(f"{address} ({code} {_text(reply)})" for address, (code, reply) in exc.recipients.items())
        raise SmtpFailure(f"the SMTP server refused every recipient: {listed}", all(400 <= c < 500 for c in codes)
                          ) from None
    except smtplib.SMTPNotSupportedError as exc:
        raise SmtpFailure(f"the SMTP server does not support what the configuration asks: {exc}", False) from None
    except smtplib.SMTPResponseException as exc:
        raise SmtpFailure(f"the SMTP server answered {exc.smtp_code} {_text(exc.smtp_error)}",
                          exc.smtp_code < 500) from None
    except ssl.SSLCertVerificationError as exc:
        raise SmtpFailure(f"the SMTP server's certificate is not trusted: {exc.verify_message}", False) from None
    except (socket.timeout, TimeoutError):
        raise SmtpFailure(f"the SMTP server {host}:{port} did not answer within {settings.timeout:g} s", True) from None
    except smtplib.SMTPException as exc:  # the server hung up, or answered what smtplib did not expect
        raise SmtpFailure(f"the SMTP session with {host}:{port} failed: {exc}", True) from None
    except OSError as exc:
        raise SmtpFailure(f"cannot reach the SMTP server {host}:{port}: {exc.strerror or exc}", True) from None
    return {address: f"{code} {_text(reply)}" for address, (code, reply) in refused.items()}


class _connected:
    """An SMTP session, secured and logged in as configured; closed without letting a failing QUIT
    (after the message was accepted) look like a failure to send."""

    def __init__(self, settings: EmailSettings, host: str, port: int, ca_file: Path | None) -> None:
        self.settings, self.host, self.port = settings, host, port
        self.context = ssl.create_default_context(cafile=str(ca_file) if ca_file is not None else None)
        self.client: smtplib.SMTP | None = None

    def __enter__(self) -> smtplib.SMTP:
        settings = self.settings
        if settings.smtp.startswith("smtps:"):
            client = smtplib.SMTP_SSL(self.host, self.port, timeout=settings.timeout, context=self.context)
        else:
            client = smtplib.SMTP(self.host, self.port, timeout=settings.timeout)
        self.client = client
        try:
            if settings.starttls:
                client.starttls(context=self.context)
            if settings.username is not None and settings.password is not None:
                client.login(settings.username, settings.password.get_secret_value())
        except BaseException:
            self.__exit__()
            raise
        return client

    def __exit__(self, *exc_info: object) -> None:
        assert self.client is not None
        try:
            self.client.quit()
        except (smtplib.SMTPException, OSError):
            self.client.close()


def _text(reply: bytes | str) -> str:
    return (reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)).replace("\n", " ")


# ---- the job -----------------------------------------------------------------------------------


def _attempts(config: Config | None) -> int:
    email = config.email if config is not None else None
    return email.attempts if email is not None else EmailSettings.model_fields["attempts"].default


@handler(SEND, attempts=_attempts)
def send(job: Job, ctx: JobContext) -> Outcome:
    """Compose and send the message; a transient failure is retried with backoff, and the last
    failure is recorded on the order as a note ("Note Added")."""
    try:
        composed = compose(job, ctx)
        settings = settings_of(ctx)
        ca_file = ctx.config.relative(settings.ca_file) if settings.ca_file is not None else None
        refused = deliver(settings, ca_file, composed)
    except EmailProblem as exc:
        return _failed(job, ctx, str(exc))
    except SmtpFailure as exc:
        error = _without_password(str(exc), ctx)
        if exc.transient and not ctx.final:
            return Retry(ctx.backoff(RETRY_BASE, RETRY_CAP), error)
        return _failed(job, ctx, f"{error} (after {ctx.attempt} attempts)" if exc.transient else error)
    detail: dict[str, Any] = {"message_id": composed.message["Message-ID"], "recipients": composed.recipients}
    if refused:
        detail["refused"] = refused
    return Done(detail=detail)


def _without_password(text: str, ctx: JobContext) -> str:
    email = ctx.config.email if ctx.config is not None else None
    password = email.password.get_secret_value() if email is not None and email.password is not None else ""
    return text.replace(password, "**********") if password else text


def _failed(job: Job, ctx: JobContext, error: str) -> Failed:
    """The job's end when the message will never be sent: a note on the order says so."""
    note = f"Email \"{job.params.get('subject', '')}\" to {job.params.get('to', '')} was not sent: {error}"
    order = copy.deepcopy(ctx.order)
    order.setdefault("order_notes", []).append(Note(content=note, username="ruledesk",
                                                    date_added=ctx.now()).model_dump())
    return Failed(error, events=(Emitted(NOTE_ADDED, {"note": note}),), order=order)


@preview(SEND)
def message_preview(job: Job, ctx: JobContext) -> dict[str, Any]:
    """The whole message the job would send now (headers, text and HTML parts); nothing is sent."""
    try:
        composed = compose(job, ctx)
    except EmailProblem as exc:
        return {"error": str(exc)}
    message = composed.message
    return {"smtp": settings_of(ctx).smtp, "recipients": composed.recipients,
            "headers": dict(_shown_headers(message)), "content_type": message.get_content_type(),
            "text": composed.text, "html": composed.html}


def _shown_headers(message: EmailMessage) -> Iterator[tuple[str, str]]:
    for name, value in message.items():
        if name.lower() not in UNSHOWN:
            yield name, str(value)
