"""Adversarial tests of the effects-and-jobs contract of Engine.process: no I/O, secrets out of reach,
deterministic ids and keys, a bad emission failing only its action, one store per order."""

from __future__ import annotations

import copy
import json
import traceback

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from ruledesk.engine import ActionSpec, Engine, EventError, default_actions, default_events
from ruledesk.engine.model.catalogue import NoParams
from ruledesk.engine.model.config import ConfigError, parse_config
from ruledesk.engine.model.settings import PodosSettings, StoreSettings
from support import fixed_clock

TOKEN = "tok-SECRET-podos-789"
API_KEY = "key-SECRET-store-012"


class PingParams(BaseModel):
    target: str


class StoreParams(BaseModel):
    store: str
    tag: str = ""


def copy_to(ctx, params: StoreParams) -> None:
    duplicate = copy.deepcopy(ctx.order)
    duplicate["id"] = f"{ctx.order['id']}-C"
    duplicate["tag_name"] = params.tag
    ctx.emit("Order is Duplicated", {"source_order_id": ctx.order["id"]}, order=duplicate, store=params.store)


def catalogue():
    actions = default_actions()
    actions.register(ActionSpec("Ping", PingParams, job="ping"))
    actions.register(ActionSpec("Copy To", StoreParams, copy_to, emits=("Order is Duplicated",)))
    actions.register(ActionSpec(
        "Note In Store", StoreParams, lambda ctx, p: ctx.emit("Note Added", {"note": "x"}, store=p.store),
        emits=("Note Added",)))
    actions.register(ActionSpec(
        "Copy To Mapping", NoParams,
        lambda ctx, p: ctx.emit("Note Added", {"note": "x"}, order={"id": "9"}, store={"name": ""}),
        emits=("Note Added",)))
    return actions


ALPHA, BETA = StoreSettings(name="alpha"), StoreSettings(name="beta")


def engine_of(text: str, **options) -> Engine:
    options.setdefault("clock", fixed_clock)
    return Engine.from_source(text, actions=catalogue(), events=default_events(), **options)


# ---- secrets ------------------------------------------------------------------------------------


def test_an_events_inline_store_cannot_read_the_environment_or_files(monkeypatch, tmp_path) -> None:
    """process does no I/O, and an incoming event is untrusted input: an inline store naming
    env:/file: references must not make the engine read the daemon's environment or disk (and hand
    the secret to the handler of a job sent to a URL the event chose)."""
    monkeypatch.setenv("RD_ADV_TOKEN", TOKEN)
    secret_file = tmp_path / "key"
    secret_file.write_text(API_KEY)
    engine = engine_of('rule "A" { when "Order is Imported" then "Ping"(target: "x") }')
    for store in ({"name": "evil", "api_key": "env:RD_ADV_TOKEN"},
                  {"name": "evil", "api_key": f"file:{secret_file}"},
                  {"name": "evil", "podos": {"project": "p", "url": "http://attacker.example",
                                             "token": "env:RD_ADV_TOKEN"}}):
        with pytest.raises(EventError, match="secret") as error:
            engine.process({"event": "Order is Imported", "order": {"id": "1"}, "store": store})
        assert TOKEN not in str(error.value) and API_KEY not in str(error.value)
    # an inline store without secrets is still fine (tests, small embeddings)
    result = engine.process({"event": "Order is Imported", "order": {"id": "1"},
                             "store": {"name": "shop", "settings": {"a": 1}}})
    assert result.jobs[0].store == "shop"


def test_an_inline_store_cannot_shadow_the_configured_stores() -> None:
    """With stores configured an event names one; settings given inline would replace a configured
    store's settings (its podOS url, ...) for the event's rules and jobs."""
    engine = engine_of('rule "A" { when "Order is Imported" then "Ping"(target: "{{ store.settings.url }}") }',
                       stores=[ALPHA])
    with pytest.raises(EventError, match="configured"):
        engine.process({"event": "Order is Imported", "order": {"id": "1"},
                        "store": {"name": "alpha", "settings": {"url": "http://attacker.example"}}})


def test_a_refused_secret_is_not_echoed_by_the_validation_error() -> None:
    """pydantic's ValidationError repeats the input (input_value=...) in its text."""
    with pytest.raises(ValidationError) as written:
        StoreSettings.model_validate({"name": "x", "api_key": API_KEY})
    assert API_KEY not in str(written.value) and API_KEY not in repr(written.value)
    with pytest.raises(ValidationError) as nested:
        StoreSettings.model_validate({"name": "x", "podos": {"project": "p", "url": "u", "token": TOKEN}})
    assert TOKEN not in str(nested.value)


@pytest.mark.parametrize("text", [
    f"stores:\n  - name: a\n    api_key: {API_KEY}\n",
    f"stores:\n  - name: a\n    podos: {{project: p, url: u, token: {TOKEN}}}\n",
    f"stores:\n  - name: a\n    api_key: [{API_KEY}]\n",
    f"stores:\n  - name: a\n    podos: {TOKEN}\n",
    f'stores:\n  - name: a\n    api_key: "{API_KEY}\n',  # not valid YAML: the YAML error quotes the line
])
def test_a_config_error_never_carries_the_secret_even_in_its_context(text: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(text)
    chained = "".join(traceback.format_exception(error.value)) + str(error.value.__context__ or "")
    assert API_KEY not in chained and TOKEN not in chained


TEMPLATE_TRICKS = [
    "{{ store|attr('podos')|attr('token') }}", "{{ store.podos|attr('token') }}", "{{ self.__dict__ }}",
    "{{ cycler.__init__.__globals__ }}", "{{ namespace.__init__.__globals__ }}", "{{ joiner.__init__.__globals__ }}",
    "{{ lipsum.__globals__ }}", "{{ order.__class__.__mro__ }}", "{{ self._TemplateReference__context }}",
    "{% for x in order.order_items %}{{ loop.__class__.__init__.__globals__ }}{% endfor %}",
    "{{ store.items()|list }}", "{{ store.podos.values()|list }}", "{{ dict.__base__.__subclasses__() }}",
    "{{ event }}", "{{ namespace(a=store).a }}", "{% set n = namespace() %}{{ n.__class__ }}",
]


@pytest.mark.parametrize("template", TEMPLATE_TRICKS)
def test_no_template_trick_reaches_a_secret(template: str) -> None:
    acme = StoreSettings(name="acme", api_key=SecretStr(API_KEY),
                         podos=PodosSettings(project="p", token=SecretStr(TOKEN), url="http://x"))
    engine = engine_of(f'rule "A" {{ when "Order is Imported" then "Ping"(target: "{template}") '
                       f'"Tag Order"(name: "{template}") }}', stores=[acme])
    for dry in (False, True):
        result = engine.process({"event": "Order is Imported", "order": {"id": "1", "order_items": [{"id": "i"}]},
                                 "store": "acme"}, dry_run=dry)
        everything = (json.dumps([d.to_json(explain=True) for d in result.decisions], default=str) + repr(result)
                      + repr(result.jobs) + repr(result.decisions) + str([a.error for a in result.decisions[0].actions]))
        assert TOKEN not in everything and API_KEY not in everything


# ---- emitted events ----------------------------------------------------------------------------


def test_an_event_for_another_store_needs_its_order() -> None:
    """ctx.emit(store=...) is the store of another order; without the order, the emitting order
    would be put in a second store (Result.orders holds the same dict under two refs)."""
    engine = engine_of('''
        rule "A" { when "Order is Imported" then "Note In Store"(store: "beta") "Tag Order"(name: "after") }
    ''', stores=[ALPHA, BETA])
    result = engine.process({"event": "Order is Imported", "id": "e", "order": {"id": "1"}, "store": "alpha"})
    [decision] = result.decisions
    assert [(a.action, a.status) for a in decision.actions] == [("Note In Store", "failed"), ("Tag Order", "done")]
    assert list(result.orders) == [("alpha", "1")] and result.events == []


@pytest.mark.parametrize("stores", [[], [ALPHA]])
def test_an_emission_for_an_invalid_store_fails_its_action_not_the_call(stores) -> None:
    engine = engine_of('''
        rule "A" { when "Order is Imported" then "Copy To Mapping" "Copy To"(store: "") "Tag Order"(name: "kept") }
    ''', stores=stores)
    result = engine.process({"event": "Order is Imported", "id": "e", "order": {"id": "1"},
                             "store": "alpha" if stores else None})
    [decision] = result.decisions
    assert [(a.action, a.status) for a in decision.actions] == [
        ("Copy To Mapping", "failed"), ("Copy To", "failed"), ("Tag Order", "done")]
    assert result.order["tag_name"] == "kept"


def test_events_cut_off_by_the_firing_limit_are_not_marked_processed() -> None:
    engine = engine_of('''
        rule "A" { when "Order is Imported" then "Move to Folder"(folder: "X") "Add Note"(text: "n") }
        rule "B" { when "Folder is Changed", "Note Added" then "Tag Order"(name: "t") }
    ''', max_firings=1)
    result = engine.process({"event": "Order is Imported", "id": "e", "order": {"id": "1"}})
    processed = {d.event_id for d in result.decisions}
    assert [(e.id, e.processed) for e in result.events] == [("e.1", True), ("e.2", False)]
    assert all(e.processed == (e.id in processed) for e in result.events)


def test_result_orders_agree_with_the_last_decision_of_each_order() -> None:
    """The same copy emitted twice: Result.orders must hold the state the last decision on it shows."""
    engine = engine_of('''
        rule "Copy" { when "Order is Imported" then "Copy To"(store: "beta", tag: "one") "Copy To"(store: "beta", tag: "two") }
        rule "Seen" { when "Order is Duplicated" then "Set Order Metadata"(field: "seen", value: "{{ order.tag_name }}") }
    ''', stores=[ALPHA, BETA])
    result = engine.process({"event": "Order is Imported", "id": "e", "order": {"id": "7"}, "store": "alpha"})
    last = {}
    for decision in result.decisions:
        last[(decision.store, decision.order_id)] = decision.order
    from ruledesk.engine.model.order import dump_order
    assert {ref: dump_order(order) for ref, order in result.orders.items()} == last
    assert result.orders[("beta", "7-C")]["order_metadata"] == {"seen": "two"}


# ---- deterministic ids and keys -----------------------------------------------------------------

RULES = '''
rule "A" {
    when "Order is Imported"
    if order.id == "1"
    then
        "Ping"(target: "a")
        "Ping"(target: "a")
        "Move to Folder"(folder: "X")
        for item in order.order_items { "Ping"(target: "{{ item.id }}") "Add Note"(text: "{{ item.id }}") }
}
rule "B" { when "Order is Imported", "Folder is Changed" if order.folder == "X" then "Ping"(target: "a") }
rule "C" { when "Note Added" then "Ping"(target: "{{ event.note }}") }
'''


def test_ids_and_keys_do_not_depend_on_explain_level_or_dry_run() -> None:
    engine = engine_of(RULES, explain="full")
    event = {"event": "Order is Imported", "id": "e",
             "order": {"id": "1", "order_items": [{"id": "i1"}, {"id": "i2"}]}}
    seen = set()
    for explain in ("off", "deciding", "full"):
        for dry in (False, True):
            result = engine.process(copy.deepcopy(event), explain=explain, dry_run=dry)
            seen.add(json.dumps([[j.to_json() for j in result.jobs], [e.to_json() for e in result.events],
                                 [d.fired for d in result.decisions]], default=str))
    assert len(seen) == 1
    result = engine.process(copy.deepcopy(event))
    keys = [j.key for j in result.jobs]
    assert len(keys) == len(set(keys)) == 8  # two identical Pings, a for block, three events' rules
    assert [e.id for e in result.events] == ["e.1", "e.2", "e.3"]


def test_a_shared_period_id_gives_each_order_its_own_job_keys_and_event_ids() -> None:
    engine = engine_of('''
        rule "Nightly" { when every 1d in folder "Waiting" then "Ping"(target: "x") "Move to Folder"(folder: "Done") }
    ''')
    first = engine.run_schedule("Nightly", {"id": "1", "folder": "Waiting"}, event_id="Nightly@2026-11-23")
    second = engine.run_schedule("Nightly", {"id": "2", "folder": "Waiting"}, event_id="Nightly@2026-11-23")
    assert first.jobs[0].key != second.jobs[0].key
    assert first.events[0].id != second.events[0].id
