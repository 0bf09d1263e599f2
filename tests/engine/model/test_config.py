"""ruledesk.yaml: stores with typed settings and secret references, and errors located at file:line:col with the key."""

from __future__ import annotations

import pytest

from ruledesk.engine.model.config import ConfigError, load_config, parse_config

GOOD = """\
stores:
  - name: acme
    id: "10001"
    api_key: env:ACME_KEY
    podos:
      project: acme-prints
      token: env:PODOS_TOKEN
      url: http://127.0.0.1:8765
      after_import_folder: Submitted
      default_mail_class: Standard
      shipping_class_match: {"UPS Ground": "Ground", "Express": "Express"}
  - name: beta
email: {smtp: "smtp://127.0.0.1:8025", from: "orders@example.com", templates: templates/}
limits: {max_depth: 5, max_firings: 50}
"""


def test_a_good_configuration_loads(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("ACME_KEY", "k-1")
    monkeypatch.setenv("PODOS_TOKEN", "t-1")
    path = tmp_path / "ruledesk.yaml"
    path.write_text(GOOD)
    config = load_config(path)
    acme, beta = config.stores
    assert acme.podos.token.get_secret_value() == "t-1" and acme.podos.shipping_class_match["UPS Ground"] == "Ground"
    assert beta.podos is None and config.email.sender == "orders@example.com" and config.limits.max_firings == 50


def test_a_misspelt_key_is_located_with_a_suggestion(monkeypatch) -> None:
    monkeypatch.setenv("ACME_KEY", "k")
    monkeypatch.setenv("PODOS_TOKEN", "t")
    with pytest.raises(ConfigError) as error:
        parse_config(GOOD.replace("default_mail_class", "default_mail_clas"), "cfg.yaml")
    assert error.value.problems == ["cfg.yaml:10:7: stores[0].podos.default_mail_clas: unknown key "
                                    "'default_mail_clas' (did you mean 'default_mail_class'?)"]


def test_a_secret_written_out_is_refused_at_its_line_without_echoing_it(monkeypatch) -> None:
    monkeypatch.setenv("ACME_KEY", "k")
    with pytest.raises(ConfigError) as error:
        parse_config(GOOD.replace("env:PODOS_TOKEN", "hunter2-secret"), "cfg.yaml")
    [problem] = error.value.problems
    assert problem.startswith("cfg.yaml:7:7: stores[0].podos.token: write a secret as env:NAME or file:PATH")
    assert "hunter2" not in problem


def test_every_problem_at_once_and_bad_yaml(monkeypatch) -> None:
    monkeypatch.delenv("ACME_KEY", raising=False)
    monkeypatch.setenv("PODOS_TOKEN", "t")
    with pytest.raises(ConfigError) as error:
        parse_config(GOOD.replace("max_depth: 5", "max_depth: 0").replace("- name: beta", "- name: acme"), "c.yaml")
    assert len(error.value.problems) == 2
    assert any(p.startswith("c.yaml:4:5: stores[0].api_key: the environment variable ACME_KEY is not set")
               for p in error.value.problems)
    assert any(p.startswith("c.yaml:14:") and "limits.max_depth" in p for p in error.value.problems)
    with pytest.raises(ConfigError, match=r"c.yaml:3:1: not valid YAML"):
        parse_config("stores: [\n  {name: a,\n", "c.yaml")
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_config("/nonexistent/ruledesk.yaml")


def test_default_store_is_where_events_naming_no_store_go() -> None:
    from ruledesk.engine import Engine

    config = parse_config("stores: [{name: Acme}, {name: Wholesale}]\ndefault_store: Wholesale\n")
    engine = Engine.from_source('rule "r" { when "Order is Imported" then "Tag Order"(name: "{{ store.name }}") }',
                                stores=config.stores, config=config)
    assert engine.process({"id": "1"}).decisions[0].store == "Wholesale"
    assert engine.process({"event": "Order is Imported", "order": {"id": "2"}, "store": "Acme"}).decisions[0].store == "Acme"
    without = parse_config("stores: [{name: Acme}, {name: Wholesale}]\n")
    other = Engine.from_source('rule "r" { when "Order is Imported" then "Remove Tag" }', stores=without.stores,
                               config=without)
    with pytest.raises(Exception, match="stores are configured: an event names one of them"):
        other.process({"id": "3"})


def test_default_store_must_be_a_configured_store_at_its_line() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("stores:\n  - name: Acme\n  - name: Wholesale\ndefault_store: acme\n")
    assert caught.value.problems == [
        "ruledesk.yaml:4:1: default_store: 'acme' is not a configured store (did you mean 'Acme'?); "
        "the stores are Acme, Wholesale"]


def test_default_store_is_not_blamed_for_a_store_with_problems(monkeypatch) -> None:
    monkeypatch.delenv("NO_SUCH_KEY", raising=False)
    with pytest.raises(ConfigError) as caught:
        parse_config("default_store: Acme\nstores:\n  - name: Acme\n    api_key: env:NO_SUCH_KEY\n")
    assert caught.value.problems == [
        "ruledesk.yaml:4:5: stores[0].api_key: the environment variable NO_SUCH_KEY is not set"]
