"""What ruledesk sends podOS for an order (actions/podos/resolve.py): item resolution by podos_variant_id,
podos_gfn_variant_id or podos_gfn_product_id + variations, Shipping Class Match, Product Code Match and
Skip, and the settings errors a configuration gets for them.  The variants come from the real
catalogue.json (and, in one test, from the real simulator through the client)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from ruledesk.actions.podos import MAIL_CLASSES
from ruledesk.actions.podos.client import PodosClient
from ruledesk.actions.podos.handlers import variants_of as client_variants_of
from ruledesk.actions.podos.resolve import mail_class, match_variant, plan_submission
from ruledesk.actions.podos.simulator import Simulator
from ruledesk.engine.model.config import ConfigError, parse_config
from ruledesk.engine.model.settings import PodosSettings

import ruledesk.actions.podos as podos_package

CATALOGUE = json.loads((Path(podos_package.__file__).parent / "catalogue.json").read_text(encoding="utf-8"))
TOKEN = "resolution-token"


class Variants:
    """A ``variants_of`` over the real catalogue that records the products it was asked about."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, product_id: str) -> list[dict]:
        self.asked.append(product_id)
        return [copy.deepcopy(v) for v in CATALOGUE["variants"] if v["product_id"] == product_id]


def settings(**changes) -> PodosSettings:
    fields = {"project": "acme", "token": SecretStr(TOKEN), "url": "http://127.0.0.1:1"}
    fields.update(changes)
    return PodosSettings(**fields)


def item(id="1", code="CODE-1", quantity="1", metadata=None, variations=None, **more) -> dict:
    return {"id": id, "name": f"Item {id}", "code": code, "quantity": quantity, "price": "10.00",
            "metadata": metadata if metadata is not None else {},
            "variation_list": variations if variations is not None else {}, **more}


def order(*items, **fields) -> dict:
    data = {"id": "1001", "email": "ada@example.com", "shipping_method": "USPS First Class",
            "shipping": {"first_name": "Ada", "last_name": "Lovelace", "company": "", "address1": "1 Main St",
                         "address2": None, "city": "Springfield", "state": "IL", "postal_code": "62701",
                         "country": "US", "phone": "555-0100"},
            "order_items": list(items)}
    data.update(fields)
    return data


def plan(data: dict, podos: PodosSettings | None = None, variants: Variants | None = None):
    return plan_submission(data, podos or settings(), variants or Variants(), store_id="10001")


def tee(id="1", code="TEE", **variations) -> dict:
    return item(id, code, metadata={"podos_gfn_product_id": "gfn-prod-1180"}, variations=variations)


# ---- the three ways an item names its podOS product ------------------------------------------------------


def test_a_pre_designed_variant_id_is_sent_as_is():
    variants = Variants()
    p = plan(order(item("7", "POSTER", quantity="2", metadata={"podos_variant_id": "pv-55012"})), variants=variants)
    assert p.items == [{"line": "7", "sku": "POSTER", "variant_id": "pv-55012", "quantity": 2}]
    assert (p.unresolved, p.skipped, variants.asked) == ([], [], [])


def test_a_gfn_variant_id_is_sent_as_is_with_its_print_url():
    p = plan(order(item("3", "HOODIE-M", metadata={"podos_gfn_variant_id": "gfn-var-20931",
                                                  "print_url": "https://example.com/art/3.png"})))
    assert p.items == [{"line": "3", "sku": "HOODIE-M", "gfn_variant_id": "gfn-var-20931", "quantity": 1,
                        "print_url": "https://example.com/art/3.png"}]


def test_a_gfn_product_id_resolves_by_the_items_variations():
    variants = Variants()
    p = plan(order(tee("1", "TEE-L-BLK", Size="L", Color="Black"),
                   item("2", "MUG", metadata={"podos_gfn_product_id": "gfn-prod-3007"},
                        variations={"Size": "15oz", "Color": "White"})), variants=variants)
    assert [(i["sku"], i["gfn_variant_id"]) for i in p.items] == [("TEE-L-BLK", "gfn-var-20103"),
                                                                   ("MUG", "gfn-var-30073")]
    assert p.unresolved == [] and variants.asked == ["gfn-prod-1180", "gfn-prod-3007"]


def test_the_body_carries_the_order_the_address_and_the_store():
    p = plan(order(item(metadata={"podos_variant_id": "pv-30077"})), settings(callback_url="http://127.0.0.1:9/cb"))
    body = p.body
    assert (body["order_desk_order_id"], body["store_id"], body["mail_class"], body["callback_url"]) == (
        "1001", "10001", "Standard", "http://127.0.0.1:9/cb")
    assert body["ship_to"] == {"first_name": "Ada", "last_name": "Lovelace", "company": None,
                               "address1": "1 Main St", "address2": None, "city": "Springfield", "state": "IL",
                               "postal_code": "62701", "country": "US", "phone": "555-0100",
                               "email": "ada@example.com"}
    assert "callback_url" not in plan(order(item(metadata={"podos_variant_id": "pv-30077"}))).body


@pytest.mark.parametrize("metadata, expected", [
    ({"podos_variant_id": "pv-30077", "podos_gfn_variant_id": "gfn-var-30072",
      "podos_gfn_product_id": "gfn-prod-3007"}, {"variant_id": "pv-30077"}),
    ({"podos_gfn_variant_id": "gfn-var-30072", "podos_gfn_product_id": "gfn-prod-3007"},
     {"gfn_variant_id": "gfn-var-30072"}),
    ({"podos_variant_id": "  ", "podos_gfn_variant_id": "gfn-var-30072"}, {"gfn_variant_id": "gfn-var-30072"}),
], ids=["variant-beats-both", "gfn-variant-beats-product", "blank-variant-is-none"])
def test_priority_when_several_fields_are_present(metadata, expected):
    variants = Variants()
    p = plan(order(item("1", "MUG", metadata=metadata, variations={"Size": "15oz", "Color": "White"})),
             variants=variants)
    [sent] = p.items
    assert {k: v for k, v in sent.items() if k in ("variant_id", "gfn_variant_id")} == expected
    assert variants.asked == []  # a product id below a variant id is never looked up


def test_the_fields_may_be_in_the_variation_list_instead_of_the_metadata():
    p = plan(order(item("1", "A", variations={"podos_variant_id": "pv-10442"}),
                   item("2", "B", variations={"  PODOS_GFN_VARIANT_ID ": "gfn-var-30074"}),
                   item("3", "C", variations={"podos_gfn_product_id": "gfn-prod-2093", "Size": "M",
                                              "Color": "Forest Green"})))
    assert [(i["sku"], i.get("variant_id"), i.get("gfn_variant_id")) for i in p.items] == [
        ("A", "pv-10442", None), ("B", None, "gfn-var-30074"), ("C", None, "gfn-var-20931")]


def test_the_metadata_wins_over_the_variation_list():
    p = plan(order(item("1", "A", metadata={"podos_variant_id": "pv-41200"},
                        variations={"podos_variant_id": "pv-41288"})))
    assert p.items[0]["variant_id"] == "pv-41200"


# ---- matching a GFN variant by the item's variations -------------------------------------------------------


def variants_of_product(product_id: str) -> list[dict]:
    return Variants()(product_id)


@pytest.mark.parametrize("variations, expected", [
    ({"Size": "M", "Color": "Black"}, "gfn-var-20106"),
    ({"  size ": "m ", "COLOR": "black"}, "gfn-var-20106"),
    ({"size": " xxl", "color": "HEATHER GREY "}, "gfn-var-20124"),
    ({"Color": "Navy", "Size": "XS", "Print Side": "Front"}, "gfn-var-20113"),  # extra variations don't matter
])
def test_match_variant_ignores_case_and_surrounding_space(variations, expected):
    found = match_variant({"variation_list": variations}, variants_of_product("gfn-prod-1180"))
    assert found is not None and found["id"] == expected


@pytest.mark.parametrize("product, variations", [
    ("gfn-prod-4040", {"Size": "M", "Color": "Black"}),  # two variants are M / Black: not guessed
    ("gfn-prod-1180", {"Size": "XXXL", "Color": "Black"}),  # no such size
    ("gfn-prod-1180", {"Size": "M"}),  # the colour is not chosen
    ("gfn-prod-1180", {"Size": "M Black"}),
    ("gfn-prod-9999", {"Size": "M", "Color": "Black"}),  # podOS has no such product: no variants
], ids=["ambiguous", "missing", "partial", "mangled", "unknown-product"])
def test_match_variant_finds_nothing_when_not_exactly_one_matches(product, variations):
    assert match_variant({"variation_list": variations}, variants_of_product(product)) is None


def test_the_unambiguous_variants_of_the_ambiguous_product_still_match():
    found = match_variant({"variation_list": {"Size": "L", "Color": "Black"}}, variants_of_product("gfn-prod-4040"))
    assert found is not None and found["id"] == "gfn-var-40403"


def test_ambiguous_and_missing_matches_are_unresolved_by_their_codes():
    p = plan(order(item("1", "TEE-5000-M-BLK", metadata={"podos_gfn_product_id": "gfn-prod-4040"},
                        variations={"Size": "M", "Color": "Black"}),
                   tee("2", "TEE-XXXL", Size="XXXL", Color="Black"),
                   tee("3", "TEE-OK", Size=" s", Color="white ")))
    assert p.unresolved == ["TEE-5000-M-BLK", "TEE-XXXL"]
    assert [(i["sku"], i["gfn_variant_id"]) for i in p.items] == [("TEE-OK", "gfn-var-20101")]


def test_items_with_none_of_the_fields_are_left_out():
    p = plan(order(item("1", "STOCK-PIN", variations={"Size": "M"}),
                   item("2", "POSTER", metadata={"podos_variant_id": "pv-55012"}),
                   item("3", "GIFT-WRAP", metadata={"note": "red"})))
    assert [i["sku"] for i in p.items] == ["POSTER"]
    assert p.unresolved == [] and p.skipped == []
    nothing = plan(order(item("1", "STOCK-PIN"), item("2", "GIFT-WRAP")))
    assert nothing.items == [] and nothing.unresolved == []


def test_an_item_is_named_by_its_code_else_its_name():
    p = plan(order({"id": "9", "name": "Nameless tee", "quantity": 1,
                    "metadata": {"podos_gfn_product_id": "gfn-prod-1180"}, "variation_list": {"Size": "XXXL"}}))
    assert p.unresolved == ["Nameless tee"]


# ---- Shipping Class Match ------------------------------------------------------------------------------


def test_shipping_class_match_is_by_exact_name_else_the_default_mail_class():
    podos = settings(default_mail_class="Economy",
                     shipping_class_match={"USPS Priority": "Priority", "UPS Next Day Air": "Overnight"})
    assert mail_class("USPS Priority", podos) == "Priority"
    assert mail_class("UPS Next Day Air", podos) == "Overnight"
    assert mail_class("usps priority", podos) == "Economy"  # exact name: another spelling is not matched
    assert mail_class("USPS Priority ", podos) == "Economy"
    assert mail_class("USPS First Class", podos) == "Economy"
    assert mail_class(None, podos) == "Economy"
    assert mail_class("", podos) == "Economy"
    assert mail_class("Whatever", settings()) == "Standard"  # the default Default Mail Class


def test_a_method_that_is_a_podos_mail_class_is_sent_as_is_unless_matched():
    podos = settings(default_mail_class="Economy", shipping_class_match={"Ground": "Express"})
    assert mail_class("Priority", podos) == "Priority"
    assert mail_class("Overnight", podos) == "Overnight"
    assert mail_class("Ground", podos) == "Express"  # the match wins over the name
    assert mail_class("priority", podos) == "Economy"


def test_the_body_carries_the_matched_mail_class():
    podos = settings(shipping_class_match={"Canada Post Expedited Parcel": "Express"})
    poster = item(metadata={"podos_variant_id": "pv-55012"})
    assert plan(order(poster, shipping_method="Canada Post Expedited Parcel"), podos).body["mail_class"] == "Express"
    assert plan(order(poster, shipping_method="Canada Post Regular"), podos).body["mail_class"] == "Standard"


# ---- Product Code Match and Skip ----------------------------------------------------------------------------


def test_product_code_match_sends_the_sku_instead_and_does_not_change_the_order():
    podos = settings(product_code_match="TEE-SUNRISE-L=3001C-BLK-L\nMUG-CAT = MUG-CATNAP-11\n")
    data = order(tee("1", "TEE-SUNRISE-L", Size="XXXL", Color="Plaid"),  # the match wins over resolution
                 item("2", "MUG-CAT", quantity="3", metadata={"print_url": "https://example.com/a.png"}))
    before = copy.deepcopy(data)
    variants = Variants()
    p = plan(data, podos, variants)
    assert p.items == [{"line": "1", "sku": "3001C-BLK-L", "quantity": 1},
                       {"line": "2", "sku": "MUG-CATNAP-11", "quantity": 3, "print_url": "https://example.com/a.png"}]
    assert p.unresolved == [] and variants.asked == []
    assert data == before


def test_a_product_code_match_bundle_sends_every_sku_with_the_items_quantity():
    podos = settings(product_code_match=["GIFT-SET=MUG-11-WHITE, STK-HOLO-3IN,3001C-NVY-M", "OTHER=MUG-15-BLACK"])
    data = order(item("4", "GIFT-SET", quantity="2"), item("5", "PLAIN"))
    before = copy.deepcopy(data)
    p = plan(data, podos)
    assert p.items == [{"line": "4", "sku": "MUG-11-WHITE", "quantity": 2},
                       {"line": "4", "sku": "STK-HOLO-3IN", "quantity": 2},
                       {"line": "4", "sku": "3001C-NVY-M", "quantity": 2}]
    assert data == before and len(data["order_items"]) == 2


def test_product_code_skip_leaves_items_out_even_podos_ones():
    podos = settings(product_code_skip="PIN-SET-3\n# a comment\n  POSTER  \n",
                     product_code_match="PIN-SET-3=STK-HOLO-3IN")
    p = plan(order(item("1", "PIN-SET-3", metadata={"podos_variant_id": "pv-10442"}),
                   item("2", "POSTER", metadata={"podos_variant_id": "pv-55012"}),
                   item("3", "MUG", metadata={"podos_variant_id": "pv-30077"})), podos)
    assert [i["sku"] for i in p.items] == ["MUG"]
    assert p.skipped == ["PIN-SET-3", "POSTER"]


def test_a_skipped_unresolvable_item_is_not_unresolved():
    p = plan(order(tee("1", "TEE-XXXL", Size="XXXL", Color="Black")), settings(product_code_skip=["TEE-XXXL"]))
    assert (p.items, p.unresolved, p.skipped) == ([], [], ["TEE-XXXL"])


# ---- settings errors: located at the key and the line of ruledesk.yaml ------------------------------------


def config_text(podos_lines: str) -> str:
    return ("stores:\n"                       # 1
            "  - name: Acme Prints\n"         # 2
            "    id: '10001'\n"               # 3
            "    podos:\n"                    # 4
            "      project: acme\n"           # 5
            "      token: env:RESOLUTION_PODOS_TOKEN\n"  # 6
            "      url: http://127.0.0.1:8765\n"         # 7
            + podos_lines)                    # 8...


@pytest.fixture
def token_env(monkeypatch):
    monkeypatch.setenv("RESOLUTION_PODOS_TOKEN", TOKEN)


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, "ruledesk.yaml")
    return raised.value.problems


def test_a_good_podos_configuration_parses(token_env):
    config = parse_config(config_text("      default_mail_class: Ground\n"
                                      "      shipping_class_match:\n"
                                      "        USPS Priority: Priority\n"
                                      "      product_code_match: |\n"
                                      "        GIFT=MUG-11-WHITE,STK-HOLO-3IN\n"
                                      "      product_code_skip: |\n"
                                      "        PIN-SET-3\n"))
    podos = config.stores[0].podos
    assert podos.default_mail_class == "Ground"
    assert podos.shipping_class_match == {"USPS Priority": "Priority"}
    assert podos.product_code_match == {"GIFT": ["MUG-11-WHITE", "STK-HOLO-3IN"]}
    assert podos.product_code_skip == ["PIN-SET-3"]
    assert podos.token.get_secret_value() == TOKEN


def test_a_bad_product_code_match_line_names_the_key_and_its_line(token_env):
    problems = problems_of(config_text("      product_code_match: |\n"   # 8
                                       "        GOOD=MUG-11-WHITE\n"      # 9
                                       "        NO-EQUALS-SIGN\n"))       # 10
    assert len(problems) == 1
    assert problems[0].startswith("ruledesk.yaml:10:"), problems
    assert "stores[0].podos.product_code_match" in problems[0]
    assert "NO-EQUALS-SIGN" in problems[0] and "CODE=SKU" in problems[0]


def test_an_empty_sku_in_a_bundle_names_its_line(token_env):
    problems = problems_of(config_text("      product_code_match:\n"      # 8
                                       "        - A=MUG-11-WHITE\n"       # 9
                                       "        - B=MUG-11-WHITE,,X\n"))  # 10
    assert len(problems) == 1 and problems[0].startswith("ruledesk.yaml:10:"), problems
    assert "product_code_match" in problems[0]


def test_an_unknown_default_mail_class_names_the_key_and_its_line(token_env):
    problems = problems_of(config_text("      after_import_folder: Sent\n"  # 8
                                       "      default_mail_class: standard\n"))  # 9
    assert len(problems) == 1
    assert problems[0].startswith("ruledesk.yaml:9:"), problems
    assert "stores[0].podos.default_mail_class" in problems[0]
    assert "'standard' is not a podOS mail class" in problems[0] and "did you mean 'Standard'" in problems[0]


def test_an_unknown_mail_class_in_shipping_class_match_names_the_key_and_its_line(token_env):
    problems = problems_of(config_text("      shipping_class_match:\n"         # 8
                                       "        USPS Priority: Priority\n"     # 9
                                       "        UPS Next Day Air: Teleport\n"))  # 10
    assert len(problems) == 1
    assert problems[0].startswith("ruledesk.yaml:10:"), problems
    assert "shipping_class_match" in problems[0] and "UPS Next Day Air" in problems[0]
    assert "'Teleport' is not a podOS mail class" in problems[0]
    assert all(name in problems[0] for name in MAIL_CLASSES)


# ---- resolution through the real simulator -------------------------------------------------------------------


def test_resolution_through_the_client_is_what_the_simulator_accepts():
    """Variants read from the simulator by the client; the planned body is accepted as it is, and podOS
    stores the ids the items resolved to."""
    with Simulator(token=TOKEN, port=0) as sim:
        podos = settings(url=sim.url, retries=0, timeout=5, shipping_class_match={"UPS Next Day Air": "Overnight"},
                         product_code_match="GIFT=MUG-11-BLACK,STK-HOLO-3IN")
        data = order(tee("1", "TEE-M-BLK", **{"  size ": "m ", "COLOR": "black"}),
                     item("2", "POSTER", metadata={"podos_variant_id": "pv-55012"}),
                     item("3", "HOODIE", metadata={"podos_gfn_variant_id": "gfn-var-20931"}),
                     item("4", "GIFT", quantity="2"),
                     item("5", "STOCK-PIN"),
                     shipping_method="UPS Next Day Air")
        with PodosClient.from_settings(podos) as client:
            p = plan_submission(data, podos, client_variants_of(client), store_id="10001")
            assert p.unresolved == []
            asked = [r for r in sim.requests() if r["path"].startswith("/v1/variants")]
            assert [r["path"] for r in asked] == ["/v1/variants?product_id=gfn-prod-1180"]
            submission = client.submit(p.body, "resolution-1")
        assert submission.created
        [stored] = sim.orders()
        assert stored["mail_class"] == "Overnight"
        assert [(i["sku"], i.get("variant_id"), i.get("gfn_variant_id"), i["quantity"]) for i in stored["items"]] == [
            ("TEE-M-BLK", None, "gfn-var-20106", 1), ("POSTER", "pv-55012", None, 1),
            ("HOODIE", None, "gfn-var-20931", 1), ("MUG-11-BLACK", None, "gfn-var-30072", 2),
            ("STK-HOLO-3IN", "pv-10442", None, 2)]
        # an ambiguous product resolves to nothing through the simulator too
        with PodosClient.from_settings(podos) as client:
            ambiguous = plan_submission(order(item("1", "AMB", metadata={"podos_gfn_product_id": "gfn-prod-4040"},
                                                   variations={"Size": "M", "Color": "Black"})),
                                        podos, client_variants_of(client))
        assert ambiguous.unresolved == ["AMB"] and ambiguous.items == []


@pytest.mark.parametrize("quantity", ["0", "-1", "1.5"])
def test_a_product_code_match_item_without_a_whole_positive_quantity_is_not_sent(quantity):
    """As for a resolved item (quantity < 1 or a fraction: skipped), never a quantity podOS refuses with 400
    (which would sink the whole order)."""
    podos = settings(product_code_match="GIFT=MUG-11-WHITE")
    p = plan(order(item("1", "POSTER", metadata={"podos_variant_id": "pv-55012"}),
                   item("2", "GIFT", quantity=quantity)), podos)
    assert all(i["quantity"] >= 1 for i in p.items), p.items
    assert [i["sku"] for i in p.items] == ["POSTER"] and p.skipped == ["GIFT"]


def test_a_resolved_item_without_a_whole_positive_quantity_is_skipped():
    p = plan(order(item("1", "POSTER", quantity="0", metadata={"podos_variant_id": "pv-55012"}),
                   item("2", "MUG", quantity="2.5", metadata={"podos_variant_id": "pv-30077"}),
                   item("3", "STK", quantity="2.0", metadata={"podos_variant_id": "pv-10442"})))
    assert [(i["sku"], i["quantity"]) for i in p.items] == [("STK", 2)]
    assert p.skipped == ["POSTER", "MUG"]
