"""Send Email against a real SMTP server (aiosmtpd on localhost): plain, HTML and multipart messages,
the document filters, Message-ID across retries, STARTTLS and AUTH, failures noted on the order,
dry run, check-time template errors, and the SMTP password kept out of everything."""

from __future__ import annotations

import email
import email.policy
import json
import logging
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from typer.testing import CliRunner

from ruledesk.actions import builtin_handlers
from ruledesk.actions.email import SendEmailParams, message_id
from ruledesk.engine import Engine
from ruledesk.engine.cli import app
from ruledesk.engine.jobs import MemoryRunner
from ruledesk.engine.lang.ruleset import RulesetError, load_ruleset
from ruledesk.engine.model.config import ConfigError, load_config, parse_config
from ruledesk.engine.run.decision import OrderRef
from ruledesk.engine.run.engine import default_actions, default_events

from support import VirtualTime

PASSWORD = "s3cret-smtp-pw"

ORDER = {
    "id": "1001", "email": "bob@example.test", "order_total": "1234.5", "date_added": "2026-11-23 23:30:00",
    "shipping": {"first_name": "Bob", "last_name": "<b>Builder</b>"},
    "order_items": [{"name": "Mug", "code": "MUG", "quantity": 2, "price": "9.5"}],
}

TEXT = """\
Hello {{ order.shipping.first_name }},
total {{ order.order_total|money }}, ordered {{ order.date_added|datetime }} ({{ order.date_added|date("long", locale="fr_FR") }})
{% for item in items %}- {{ item.name }} x{{ item.quantity }} at {{ item.price|money(locale="de_DE") }}
{% endfor %}{{ store.name }}
"""
HTML = "<p>Dear {{ order.shipping.first_name }} {{ order.shipping.last_name }}: {{ order.order_total|money }}</p>\n"


class Mailbox:
    """An aiosmtpd handler: keeps what it accepts; ``answers`` are the replies to the next DATA commands."""

    def __init__(self, answers: list[str] | None = None, refuse_rcpt: str | None = None) -> None:
        self.answers = list(answers or [])
        self.refuse_rcpt = refuse_rcpt
        self.accepted: list[tuple[object, email.message.EmailMessage]] = []
        self.refused: list[email.message.EmailMessage] = []
        self.sessions: list[tuple[bool, bool]] = []  # (over TLS, authenticated) of each accepted message

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse_rcpt is not None:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        message = email.message_from_bytes(envelope.content.replace(b"\r\n", b"\n"), policy=email.policy.default)
        answer = self.answers.pop(0) if self.answers else "250 OK"
        if answer.startswith("250"):
            self.accepted.append((envelope, message))
            self.sessions.append((session.ssl is not None, bool(session.authenticated)))
        else:
            self.refused.append(message)
        return answer


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def smtp():
    """Start an SMTP server on 127.0.0.1 (``smtp(mailbox, **aiosmtpd options) -> port``); stopped after the test."""
    started: list[Controller] = []

    def start(mailbox: Mailbox, **options) -> int:
        port = free_port()
        controller = Controller(mailbox, hostname="127.0.0.1", port=port, **options)
        controller.start()
        started.append(controller)
        return port

    yield start
    for controller in started:
        controller.stop()


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A shop folder with its email templates."""
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "shipped.txt").write_text(TEXT, encoding="utf-8")
    (templates / "shipped.html").write_text(HTML, encoding="utf-8")
    (templates / "receipt.html").write_text(HTML, encoding="utf-8")
    (templates / "broken.html").write_text("<p>\n{% if order.id %}never closed</p>\n", encoding="utf-8")
    (templates / "bad-total.txt").write_text("{{ order.email|money }}\n", encoding="utf-8")
    (templates / "escape.txt").write_text('{{ order.update({"id": "2002"}) }}\n', encoding="utf-8")
    return tmp_path


def config_file(folder: Path, port: int, email_extra: str = "") -> Path:
    path = folder / "ruledesk.yaml"
    path.write_text(f"""\
stores:
  - name: acme
    currency: EUR
    timezone: Europe/Paris
email:
  smtp: "smtp://127.0.0.1:{port}"
  from: "Acme Shop <orders@acme.test>"
  templates: templates
  timeout: 5
{email_extra}""", encoding="utf-8")
    return path


def rules_for(*calls: str, event: str = "Order is Imported") -> str:
    return "".join(f'rule "Mail {n}" {{\n    when "{event}"\n    then {call}\n}}\n' for n, call in enumerate(calls, 1))


def engine_for(config_path: Path, rules: str) -> Engine:
    config = load_config(config_path)
    return Engine.from_source(rules, "mail.rules", stores=config.stores, config=config,
                              actions=default_actions(config))


def process_and_run(engine: Engine, order: dict | None = None):
    """Process an import of ``order`` and perform its jobs on a virtual clock: (result, runner, later results)."""
    clock = VirtualTime()
    runner = MemoryRunner(engine, builtin_handlers(), clock=clock, sleep=clock.sleep, max_wait=86400.0)
    result = engine.process(engine.event({"event": "Order is Imported", "store": "acme", "order": order or ORDER}))
    runner.submit(result)
    later = runner.run()
    return result, runner, later


# ---- messages --------------------------------------------------------------------------------------


def test_a_plain_body_goes_to_every_recipient_with_the_message_id_of_its_job(smtp, shop):
    mailbox = Mailbox()
    engine = engine_for(config_file(shop, smtp(mailbox)), rules_for(
        '"Send Email"(to: "ann@example.test, Bob Smith <bob@example.test>", cc: "desk@acme.test", '
        'subject: "Thanks", body: "Your order is on its way.")'))
    result, runner, _ = process_and_run(engine)

    assert result.decisions[0].actions[0].status == "scheduled"
    job = result.jobs[0]
    assert [run.status for run in runner.runs] == ["done"]
    (envelope, message), = mailbox.accepted
    assert envelope.mail_from == "orders@acme.test"
    assert envelope.rcpt_tos == ["ann@example.test", "bob@example.test", "desk@acme.test"]
    assert message["From"] == "Acme Shop <orders@acme.test>"
    assert message["To"] == "ann@example.test, Bob Smith <bob@example.test>"
    assert message["Cc"] == "desk@acme.test"
    assert message["Subject"] == "Thanks"
    assert message["Message-ID"] == f"<{job.key}@acme.test>" == message_id(job.key, "orders@acme.test")
    assert message["Auto-Submitted"] == "auto-generated"
    assert message.get_content_type() == "text/plain"
    assert message.get_content() == "Your order is on its way.\n"
    assert runner.runs[0].outcome.detail["message_id"] == message["Message-ID"]


def test_an_html_template_alone_makes_an_html_message_with_the_order_escaped(smtp, shop):
    mailbox = Mailbox()
    engine = engine_for(config_file(shop, smtp(mailbox)), rules_for(
        '"Send Email"(to: "{{ order.email }}", subject: "Receipt", template: "receipt.html")'))
    process_and_run(engine)

    (envelope, message), = mailbox.accepted
    assert envelope.rcpt_tos == ["bob@example.test"]
    assert message.get_content_type() == "text/html"
    assert message.get_content() == "<p>Dear Bob &lt;b&gt;Builder&lt;/b&gt;: €1,234.50</p>\n"


def test_a_template_with_both_kinds_makes_a_multipart_message_in_the_store_currency_and_timezone(smtp, shop):
    mailbox = Mailbox()
    engine = engine_for(config_file(shop, smtp(mailbox)), rules_for(
        '"Send Email"(to: "{{ order.email }}", subject: "Order {{ order.id }}: {{ order.order_total|money }} '
        'on {{ order.date_added|date }}", template: "shipped")'))
    result, _, _ = process_and_run(engine)

    assert result.decisions[0].actions[0].params["subject"] == "Order 1001: €1,234.50 on 2026-11-24"
    (_, message), = mailbox.accepted
    assert message["Subject"] == "Order 1001: €1,234.50 on 2026-11-24"
    assert message.get_content_type() == "multipart/alternative"
    text, html = message.iter_parts()
    assert text.get_content_type() == "text/plain" and html.get_content_type() == "text/html"
    # 23:30 UTC is 00:30 the next day in Paris; euros for the store, a German price where asked
    assert text.get_content() == ("Hello Bob,\ntotal €1,234.50, ordered 2026-11-24 00:30 (24 novembre 2026)\n"
                                  "- Mug x2 at 9,50\xa0€\nacme\n")
    assert "Dear Bob &lt;b&gt;Builder&lt;/b&gt;: €1,234.50" in html.get_content()


def test_a_subject_is_one_line_whatever_the_order_holds(smtp, shop):
    mailbox = Mailbox()
    engine = engine_for(config_file(shop, smtp(mailbox)), rules_for(
        '"Send Email"(to: "ann@example.test", subject: "Hi {{ order.shipping.first_name }}", body: "x")'))
    order = {**ORDER, "shipping": {"first_name": "Bob\r\nBcc: mallory@example.test"}}
    process_and_run(engine, order)

    (envelope, message), = mailbox.accepted
    assert message["Subject"] == "Hi Bob Bcc: mallory@example.test"
    assert message["Bcc"] is None and envelope.rcpt_tos == ["ann@example.test"]


# ---- retries and failures ------------------------------------------------------------------------------


def test_a_retry_sends_the_same_message_id(smtp, shop):
    mailbox = Mailbox(answers=["451 4.3.0 try again later"])
    engine = engine_for(config_file(shop, smtp(mailbox)), rules_for(
        '"Send Email"(to: "ann@example.test", subject: "Thanks", template: "shipped")'))
    result, runner, _ = process_and_run(engine)

    assert [run.status for run in runner.runs] == ["retry", "done"]
    assert "451" in runner.runs[0].outcome.error
    assert runner.runs[1].at >= runner.runs[0].outcome.at  # the retry waited for its time
    (_, sent), = mailbox.accepted
    (first,) = mailbox.refused
    assert first["Message-ID"] == sent["Message-ID"] == f"<{result.jobs[0].key}@acme.test>"


def test_a_server_that_keeps_refusing_is_retried_then_the_failure_is_noted_on_the_order(smtp, shop):
    mailbox = Mailbox(answers=["451 4.3.0 try again later"] * 10)
    rules = rules_for('"Send Email"(to: "ann@example.test", subject: "Thanks", body: "x")') + rules_for(
        '"Tag Order"(name: "email-failed")', event="Note Added").replace('Mail 1', 'Flag')
    engine = engine_for(config_file(shop, smtp(mailbox), "  attempts: 3\n"), rules.replace(
        'when "Note Added"', 'when "Note Added"\n    if event.note contains "was not sent"'))
    _, runner, later = process_and_run(engine)

    assert [run.status for run in runner.runs] == ["retry", "retry", "failed"]
    assert len(mailbox.refused) == 3 and not mailbox.accepted
    error = runner.runs[-1].outcome.error
    assert "451 4.3.0 try again later" in error and "after 3 attempts" in error
    note = runner.orders[OrderRef("acme", "1001")]["order_notes"][-1]
    assert note["content"] == f'Email "Thanks" to ann@example.test was not sent: {error}'
    assert note["username"] == "ruledesk"
    (decision,) = [d for r in later for d in r.decisions]
    assert decision.event == "Note Added" and decision.fired == ["Flag"]
    assert decision.order["order_notes"][-1]["content"] == note["content"]
    assert decision.order["tag_name"] == "email-failed"


def test_a_closed_port_is_retried_then_failed(shop):
    engine = engine_for(config_file(shop, free_port(), "  attempts: 2\n"), rules_for(
        '"Send Email"(to: "ann@example.test", subject: "Thanks", body: "x")'))
    _, runner, later = process_and_run(engine)

    assert [run.status for run in runner.runs] == ["retry", "failed"]
    assert "cannot reach the SMTP server 127.0.0.1" in runner.runs[-1].outcome.error
    assert [d.event for r in later for d in r.decisions] == ["Note Added"]


@pytest.mark.parametrize("call, refuse_rcpt, expected", [
    ('"Send Email"(to: "nobody@example.test", subject: "S", body: "x")', "550 5.1.1 no such user",
     "refused every recipient: nobody@example.test (550 5.1.1 no such user)"),
    ('"Send Email"(to: "ann@example.test", subject: "S", template: "bad-total")', None,
     "the email template bad-total.txt failed: ValueError: money: 'bob@example.test' is not an amount"),
    ('"Send Email"(to: "ann@example.test", subject: "S", template: "escape")', None,
     "the email template escape.txt failed: SecurityError: access to attribute 'update' of 'dict' object is unsafe"),
])
def test_a_failure_that_a_retry_cannot_mend_is_noted_at_once(smtp, shop, call, refuse_rcpt, expected):
    mailbox = Mailbox(refuse_rcpt=refuse_rcpt)
    engine = engine_for(config_file(shop, smtp(mailbox)), rules_for(call))
    _, runner, later = process_and_run(engine)

    assert [run.status for run in runner.runs] == ["failed"]
    assert expected in runner.runs[0].outcome.error
    assert not mailbox.accepted
    assert expected in runner.orders[OrderRef("acme", "1001")]["order_notes"][-1]["content"]
    assert [d.event for r in later for d in r.decisions] == ["Note Added"]


def test_email_without_an_email_configuration_fails_with_a_note(tmp_path):
    path = tmp_path / "ruledesk.yaml"
    path.write_text("stores: [{name: acme}]\n", encoding="utf-8")
    engine = engine_for(path, rules_for('"Send Email"(to: "ann@example.test", subject: "S", body: "x")'))
    _, runner, _ = process_and_run(engine)

    assert runner.runs[0].outcome.error == "email is not configured: add email: (smtp, from) to ruledesk.yaml"
    assert "email is not configured" in runner.orders[OrderRef("acme", "1001")]["order_notes"][-1]["content"]


# ---- STARTTLS, AUTH and the password ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl), and its key."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def tls_server(smtp, certificate, mailbox: Mailbox, logins: list) -> int:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)

    def authenticate(server, session, envelope, mechanism, auth_data):
        logins.append(auth_data.login)
        return AuthResult(success=(auth_data.login, auth_data.password) == (b"shop", PASSWORD.encode()),
                          handled=False)  # aiosmtpd answers 535 itself

    # PLAIN only, so that one attempt is one login (after a refused PLAIN, smtplib would try LOGIN)
    return smtp(mailbox, tls_context=context, require_starttls=True, authenticator=authenticate,
                auth_require_tls=True, auth_exclude_mechanism=["LOGIN"])


def test_starttls_and_auth_when_configured(smtp, shop, certificate, monkeypatch):
    monkeypatch.setenv("SMTP_PASSWORD", PASSWORD)
    (shop / "ca.pem").write_bytes(certificate[0].read_bytes())
    mailbox, logins = Mailbox(), []
    port = tls_server(smtp, certificate, mailbox, logins)
    engine = engine_for(config_file(shop, port, "  starttls: true\n  username: shop\n  password: env:SMTP_PASSWORD\n"
                                                "  ca_file: ca.pem\n"),
                        rules_for('"Send Email"(to: "ann@example.test", subject: "Secure", body: "x")'))
    _, runner, _ = process_and_run(engine)

    assert [run.status for run in runner.runs] == ["done"]
    assert logins == [b"shop"]
    assert mailbox.sessions == [(True, True)]  # over TLS, logged in


def test_an_untrusted_certificate_is_a_failure_a_retry_cannot_mend(smtp, shop, certificate):
    mailbox = Mailbox()
    port = tls_server(smtp, certificate, mailbox, [])
    engine = engine_for(config_file(shop, port, "  starttls: true\n"),
                        rules_for('"Send Email"(to: "ann@example.test", subject: "S", body: "x")'))
    _, runner, _ = process_and_run(engine)

    assert [run.status for run in runner.runs] == ["failed"]
    assert "certificate is not trusted" in runner.runs[0].outcome.error
    assert not mailbox.accepted


def test_the_smtp_password_is_never_shown(smtp, shop, certificate, monkeypatch, caplog):
    monkeypatch.setenv("SMTP_PASSWORD", "not-" + PASSWORD)  # refused by the server: 535
    (shop / "ca.pem").write_bytes(certificate[0].read_bytes())
    mailbox, logins = Mailbox(), []
    port = tls_server(smtp, certificate, mailbox, logins)
    path = config_file(shop, port, "  starttls: true\n  username: shop\n  password: env:SMTP_PASSWORD\n"
                                   "  ca_file: ca.pem\n")
    engine = engine_for(path, rules_for('"Send Email"(to: "ann@example.test", subject: "S", body: "x")'))
    caplog.set_level(logging.DEBUG)
    result, runner, later = process_and_run(engine)

    assert logins == [b"shop"] and not mailbox.accepted
    assert [run.status for run in runner.runs] == ["failed"]
    assert "535" in runner.runs[0].outcome.error
    shown = [repr(load_config(path)), repr(runner.runs), caplog.text, *(d.to_json_text() for d in result.decisions),
             *(d.to_json_text() for r in later for d in r.decisions), json.dumps(list(runner.orders.values()), default=str)]
    with pytest.raises(ConfigError) as refused:  # written out instead of referenced: refused, not repeated
        parse_config(f'email: {{smtp: "smtps://127.0.0.1", from: a@example.test, username: shop, '
                     f'password: "{PASSWORD}"}}')
    shown.append(str(refused.value))
    assert all(PASSWORD not in text for text in shown)
    assert any("535" in text for text in shown[1:])  # the failure itself is shown


# ---- parameters and check-time errors ---------------------------------------------------------------------------


def test_template_or_body_exactly_one():
    with pytest.raises(ValueError, match="either template or body"):
        SendEmailParams(to="a@example.test", subject="S")
    with pytest.raises(ValueError, match="either template or body"):
        SendEmailParams(to="a@example.test", subject="S", body="x", template="t")
    with pytest.raises(ValueError, match="'bob' is not an email address"):
        SendEmailParams(to="a@example.test, bob", subject="S", body="x")
    with pytest.raises(ValueError, match="'x@example.test y@example.test' is not a list of email addresses"):
        SendEmailParams(to="x@example.test y@example.test", subject="S", body="x")
    assert SendEmailParams(to='"Smith, Ann" <a@example.test>, b@example.test', subject="S", body="x")
    assert SendEmailParams(to="Ann <a@example.test>", subject="S\nT", body="x").subject == "S T"


def test_parameters_known_only_when_the_rule_runs_fail_the_action(tmp_path):
    path = tmp_path / "ruledesk.yaml"
    path.write_text("stores: [{name: acme}]\n", encoding="utf-8")
    engine = engine_for(path, rules_for('"Send Email"(to: "{{ order.shipping.first_name }}", subject: "S", body: "x")',
                                        '"Send Email"(to: "a@example.test", subject: "S")'))
    result = engine.process(engine.event({"event": "Order is Imported", "store": "acme", "order": ORDER}))

    first, second = (d for d in result.decisions[0].actions)
    assert first.status == "failed" and "'Bob' is not an email address" in first.error
    assert second.status == "failed" and "either template or body" in second.error
    assert not result.jobs


def test_a_literal_template_that_is_missing_or_does_not_parse_is_a_check_error(shop):
    path = config_file(shop, 25)
    rules = shop / "mail.rules"
    rules.write_text(rules_for(
        '"Send Email"(to: "a@example.test", subject: "S", template: "shiped")',
        '"Send Email"(to: "a@example.test", subject: "S", template: "broken")',
        '"Send Email"(to: "a@example.test", subject: "S", template: "shipped.txt", body: "x")',
        '"Send Email"(to: "not an address", subject: "S", template: "{{ order.id }}")',
        '"Send Email"(to: "a@example.test", subject: "S", template: "shipped")'), encoding="utf-8")
    with pytest.raises(RulesetError) as raised:
        load_ruleset([rules], default_events(), default_actions(load_config(path)))

    text, lines = str(raised.value), rules.read_text(encoding="utf-8").splitlines()

    def at(line: int, literal: str) -> str:
        return f"{rules}:{line}:{lines[line - 1].index(literal) + 1}: E208: "

    assert at(3, '"shiped"') + f"no email template shiped.txt or shiped.html in {shop / 'templates'}" in text
    assert 'hint: did you mean "shipped"?' in text
    assert at(7, '"broken"') + "the email template broken.html:2 does not parse: Unexpected end of template" in text
    assert at(11, '"x"') + "give either template or body, not both" in text
    assert at(15, '"not an address"') + "bad value for parameter 'to'" in text
    assert "'not an address' is not an email address" in text
    assert len([d for d in raised.value.diagnostics if d.is_error]) == 4  # the last rule is right


def test_without_a_configuration_templates_are_looked_for_in_the_current_folder(shop, tmp_path, monkeypatch):
    rules = tmp_path / "mail.rules"
    rules.write_text(rules_for('"Send Email"(to: "a@example.test", subject: "S", template: "shipped")'),
                     encoding="utf-8")
    runner = CliRunner()
    monkeypatch.chdir(shop)
    assert runner.invoke(app, ["check", str(rules)]).exit_code == 0
    for part in ("txt", "html"):
        (shop / "templates" / f"shipped.{part}").rename(shop / "templates" / f"sent.{part}")
    checked = runner.invoke(app, ["check", str(rules)])
    assert checked.exit_code == 1 and "no email template shipped.txt or shipped.html in templates" in checked.output
    # no templates/ here and no configuration saying where they are: checked when the message is made
    monkeypatch.chdir(shop / "templates")
    assert runner.invoke(app, ["check", str(rules)]).exit_code == 0


def test_a_configured_templates_folder_that_does_not_exist_is_a_check_error(shop, tmp_path):
    rules = tmp_path / "mail.rules"
    rules.write_text(rules_for('"Send Email"(to: "a@example.test", subject: "S", template: "shipped")'),
                     encoding="utf-8")
    config = tmp_path / "ruledesk.yaml"
    config.write_text('email: {smtp: "smtp://127.0.0.1:8025", from: "a@example.test", templates: nowhere}\n',
                      encoding="utf-8")
    checked = CliRunner().invoke(app, ["check", str(rules), "--config", str(config)])
    assert checked.exit_code == 1
    assert f"the email templates folder {tmp_path / 'nowhere'} does not exist" in checked.output


# ---- dry run ---------------------------------------------------------------------------------------------------


def test_a_dry_run_shows_the_whole_message_and_sends_nothing(smtp, shop):
    mailbox = Mailbox()
    path = config_file(shop, smtp(mailbox))
    rules = shop / "mail.rules"
    rules.write_text(rules_for(
        '"Send Email"(to: "{{ order.email }}", cc: "desk@acme.test", subject: "Order {{ order.id }}", '
        'template: "shipped")'), encoding="utf-8")
    orders = shop / "orders.jsonl"
    orders.write_text(json.dumps({"event": "Order is Imported", "store": "acme", "order": ORDER}) + "\n",
                      encoding="utf-8")
    ran = CliRunner().invoke(app, ["run", "--dry-run", "--config", str(path), "--rules", str(rules), "--format",
                                   "json", str(orders)], catch_exceptions=False)

    assert ran.exit_code == 0, ran.output
    decision = json.loads(ran.stdout.splitlines()[0])
    (record,) = decision["actions"]
    assert record["status"] == "dry-run"
    preview = record["detail"]["preview"]
    key = record["job"]["key"]
    assert preview["headers"] == {"From": "Acme Shop <orders@acme.test>", "To": "bob@example.test",
                                  "Cc": "desk@acme.test", "Subject": "Order 1001",
                                  "Message-ID": f"<{key}@acme.test>", "Auto-Submitted": "auto-generated"}
    assert preview["recipients"] == ["bob@example.test", "desk@acme.test"]
    assert preview["content_type"] == "multipart/alternative"
    assert preview["text"].startswith("Hello Bob,\ntotal €1,234.50")
    assert preview["html"] == "<p>Dear Bob &lt;b&gt;Builder&lt;/b&gt;: €1,234.50</p>\n"
    assert not mailbox.accepted and not mailbox.refused


# ---- durably, as the daemon runs it ---------------------------------------------------------------------------


def test_the_daemon_runner_retries_then_notes_the_failure_on_the_stored_order(smtp, shop):
    from ruledesk.engine.daemon.worker import Worker
    from ruledesk.engine.jobs.durable import DurableRunner
    from ruledesk.engine.store import open_store
    from ruledesk.engine.store.base import Inbound

    mailbox = Mailbox(answers=["451 4.3.0 try again later", "554 5.7.1 message rejected"])
    rules = rules_for('"Send Email"(to: "{{ order.email }}", subject: "Thanks", template: "shipped")') + \
        'rule "Flag" {\n    when "Note Added"\n    then "Tag Order"(name: "email-failed")\n}\n'
    engine = engine_for(config_file(shop, smtp(mailbox)), rules)
    store = open_store(f"sqlite:///{shop}/ruledesk.db")
    clock = VirtualTime()
    worker = Worker(store, lambda: engine, name="w", wall=lambda: clock().timestamp())
    runner = DurableRunner(store, lambda: engine, builtin_handlers(), name="j", clock=clock)
    try:
        body = {"event": "Order is Imported", "order": ORDER, "store": "acme", "id": "e1"}
        store.enqueue([Inbound("e1", "acme", "1001", "Order is Imported", json.dumps(body))], clock().timestamp())
        assert worker.run_once() == 1
        [job] = store.jobs()

        assert runner.run_once() is True  # 451: retried later
        stored = store.job(job.key)
        assert (stored.status, stored.attempts) == ("pending", 1) and "451" in stored.error
        clock.sleep(stored.due_at - clock().timestamp())
        assert runner.run_once() is True  # 554: given up on, noted on the order
        stored = store.job(job.key)
        assert (stored.status, stored.attempts) == ("failed", 2)
        assert "554 5.7.1 message rejected" in stored.error

        assert worker.run_once() == 1  # the "Note Added" the failure emitted
        order = json.loads(store.order("acme", "1001"))
        assert order["order_notes"][-1]["content"] == f'Email "Thanks" to bob@example.test was not sent: {stored.error}'
        assert order["tag_name"] == "email-failed"
        first, second = mailbox.refused
        assert first["Message-ID"] == second["Message-ID"] == f"<{job.key}@acme.test>"
    finally:
        store.close()
