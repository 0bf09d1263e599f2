"""The demo mail sink (`ruledesk serve --mail-sink`): a real SMTP server on 127.0.0.1 that keeps and logs
what the rules send, and the configuration override that points email at it."""

from __future__ import annotations

import logging

from ruledesk.actions import builtin_handlers
from ruledesk.actions.mailsink import MailSink
from ruledesk.engine import Engine
from ruledesk.engine.cli.serve import _mail_override
from ruledesk.engine.jobs import MemoryRunner
from ruledesk.engine.model.config import parse_config

RULES = '''
rule "Tell the team" {
    when "Order is Imported"
    then "Send Email"(to: "team@example.test", subject: "Order {{ order.id }} arrived", body: "Order {{ order.id }}")
}
'''


def test_the_sink_receives_and_logs_what_a_rule_sends(caplog):
    sink = MailSink().start()
    try:
        config = _mail_override(sink.url)(parse_config("stores: [{name: shop}]\n"))
        assert config.email is not None and config.email.smtp == sink.url and config.email.sender == "ruledesk@localhost"
        engine = Engine.from_source(RULES, stores=config.stores, config=config)
        runner = MemoryRunner(engine, builtin_handlers())
        with caplog.at_level(logging.INFO, logger="ruledesk.mailsink"):
            runner.perform(engine.process({"id": "31"}))
        [message] = sink.messages
        assert message["Subject"].strip() == "Order 31 arrived" and message["To"] == "team@example.test"
        assert message.get_content().strip() == "Order 31"
        [record] = [r for r in caplog.records if r.name == "ruledesk.mailsink"]
        assert record.msg["msg"] == "mail received" and record.msg["subject"] == "Order 31 arrived"
        assert record.msg["to"] == ["team@example.test"] and record.msg["parts"] == ["text/plain"]
        assert [run.status for run in runner.runs] == ["done"]
    finally:
        sink.stop()


def test_the_override_keeps_from_and_templates_and_drops_tls_and_login(monkeypatch, tmp_path):
    monkeypatch.setenv("SMTP_PW", "pw")
    config = parse_config('email: {smtp: "smtp://mail.example.test:587", from: "shop@example.test", '
                          'templates: docs, starttls: true, username: shop, password: "env:SMTP_PW"}\n')
    email = _mail_override("smtp://127.0.0.1:2525")(config).email
    assert (email.smtp, email.sender, email.templates) == ("smtp://127.0.0.1:2525", "shop@example.test", "docs")
    assert (email.starttls, email.username, email.password) == (False, None, None)
    assert config.email.smtp == "smtp://mail.example.test:587"  # the loaded configuration is left alone
