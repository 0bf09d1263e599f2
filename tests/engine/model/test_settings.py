"""Typed store settings: validation, secret references, and that no rule, template or output reaches a secret."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr, ValidationError

from ruledesk.engine import Engine, RulesetError
from ruledesk.engine.model.settings import STORE_TYPE, PodosSettings, StoreSettings, resolve_secret, store_settings
from support import fixed_clock

TOKEN = "tok-SECRET-podos-123"
API_KEY = "key-SECRET-store-456"


@pytest.fixture
def acme(monkeypatch: pytest.MonkeyPatch, tmp_path) -> StoreSettings:
    monkeypatch.setenv("ACME_PODOS_TOKEN", TOKEN)
    key_file = tmp_path / "acme.key"
    key_file.write_text(API_KEY + "\n")
    return StoreSettings.model_validate({
        "name": "acme", "id": "10001", "api_key": f"file:{key_file}", "settings": {"region": "EU", "rate": 1.5},
        "podos": {"project": "acme-prints", "token": "env:ACME_PODOS_TOKEN", "url": "http://127.0.0.1:8765",
                  "default_mail_class": "Standard", "shipping_class_match": {"UPS Ground": "Ground"}}})


def test_secret_references_resolve_and_never_show(acme: StoreSettings) -> None:
    assert acme.podos.token.get_secret_value() == TOKEN
    assert acme.api_key.get_secret_value() == API_KEY
    for shown in (repr(acme), str(acme), acme.model_dump_json(), json.dumps(acme.view(), default=str)):
        assert TOKEN not in shown and API_KEY not in shown


def test_a_secret_written_out_or_unresolvable_is_refused_without_echoing_it(monkeypatch) -> None:
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    with pytest.raises(ValidationError) as written:
        PodosSettings(project="p", token="plain-secret-in-config", url="http://x")
    assert "env:NAME or file:PATH" in str(written.value)
    for error in written.value.errors():
        assert "plain-secret-in-config" not in error["msg"]
    with pytest.raises(ValueError, match="NOPE_TOKEN is not set"):
        resolve_secret("env:NOPE_TOKEN")
    with pytest.raises(ValueError, match="cannot read the secret file"):
        resolve_secret("file:/nonexistent/secret")
    assert resolve_secret(SecretStr("x")).get_secret_value() == "x"


def test_unknown_settings_are_errors() -> None:
    with pytest.raises(ValidationError, match="podos_tokn"):
        StoreSettings.model_validate({"name": "a", "podos_tokn": "x"})


def test_rules_see_the_settings_but_no_secret(acme: StoreSettings) -> None:
    view = acme.view()
    assert view["podos"]["project"] == "acme-prints" and view["id"] == "10001"
    assert "api_key" not in view and "token" not in view["podos"]
    assert "api_key" not in STORE_TYPE.fields and "token" not in STORE_TYPE.fields["podos"].fields
    assert STORE_TYPE.fields["podos"].fields["default_mail_class"].name == "string"


@pytest.mark.parametrize("path", ["store.api_key", "store.podos.token"])
def test_a_rule_reading_a_secret_is_a_check_error(path: str) -> None:
    text = f'rule "Leak" {{ when "Order is Imported" if {path} is set then "Add Note"(text: "x") }}'
    with pytest.raises(RulesetError) as error:
        Engine.from_source(text)
    [diagnostic] = error.value.diagnostics
    assert diagnostic.code == "E205" and path.rsplit(".", 1)[1] in diagnostic.message


def test_a_typo_in_a_store_setting_gets_a_suggestion() -> None:
    text = 'rule "R" { when "Order is Imported" if store.podos.defualt_mail_class == "x" then "Add Note"(text: "x") }'
    with pytest.raises(RulesetError) as error:
        Engine.from_source(text)
    [diagnostic] = error.value.diagnostics
    assert diagnostic.code == "E205" and "default_mail_class" in (diagnostic.suggestion or "")


def test_no_template_or_output_reaches_a_secret(acme: StoreSettings) -> None:
    leaks = " | ".join([
        "{{ store.api_key }}", "{{ store.podos.token }}", "{{ store['api_key'] }}", "{{ store }}",
        "{{ store.podos }}", "{{ store.podos.items() | list }}", "{{ store.__class__ }}",
    ])
    text = f'''rule "Try" {{
        when "Order is Imported"
        then
            "Add Note"(text: "{leaks}")
            "Set Order Metadata"(field: "mail", value: "{{{{ store.podos.default_mail_class }}}} for {{{{ store.name }}}}")
    }}'''
    engine = Engine.from_source(text, stores=[acme], clock=fixed_clock)
    result = engine.process({"event": "Order is Imported", "order": {"id": "1"}, "store": "acme"})
    assert result.order["order_metadata"] == {"mail": "Standard for acme"}
    everything = json.dumps([d.to_json(explain=True) for d in result.decisions]) + repr(result) + str(result.jobs)
    assert TOKEN not in everything and API_KEY not in everything
    assert "acme-prints" in everything  # the note rendered the podOS settings, only without the token


def test_events_name_configured_stores(acme: StoreSettings) -> None:
    engine = Engine.from_source('rule "R" { when "Order is Imported" if store.name == "acme" then "Tag Order"(name: "A") }',
                                stores=[acme])
    assert engine.process({"event": "Order is Imported", "order": {"id": "1"}, "store": "acme"}).decisions[0].fired
    from ruledesk.engine import EventError
    with pytest.raises(EventError, match="unknown store 'acm' \\(did you mean 'acme'\\?\\)"):
        engine.process({"event": "Order is Imported", "order": {"id": "1"}, "store": "acm"})


def test_store_settings_from_a_name_a_mapping_or_nothing() -> None:
    assert store_settings("shop").name == "shop"
    assert store_settings({"settings": {"a": 1}}).settings == {"a": 1}
    assert store_settings(None).name == "default"


def test_the_view_is_built_once_and_equality_ignores_it() -> None:
    store = StoreSettings(name="shop", settings={"a": 1})
    assert store.view() is store.view()
    assert store == StoreSettings(name="shop", settings={"a": 1}) and store != StoreSettings(name="other")
    assert store_settings("shop") is store_settings("shop")
