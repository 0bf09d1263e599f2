"""`ruledesk config check` (a summary, or every problem located, never a secret) and `ruledesk config schema`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ruamel.yaml import YAML


GOOD = """\
stores:
  - name: acme
    api_key: env:ACME_KEY
    podos:
      project: acme-prints
      token: env:PODOS_TOKEN
      url: http://127.0.0.1:8765
  - name: globex
email: {smtp: "smtp://127.0.0.1:8025", from: "orders@example.com"}
limits: {max_depth: 5}
"""
SECRET = "s3cret-t0ken-value"


@pytest.fixture
def write(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("ACME_KEY", "acme-key-value")
    monkeypatch.setenv("PODOS_TOKEN", SECRET)

    def write(text: str) -> str:
        path = tmp_path / "ruledesk.yaml"
        path.write_text(text, encoding="utf-8")
        return str(path)

    return write


def test_a_good_configuration_is_summed_up_in_one_line(cli, write):
    path = write(GOOD)
    result = cli("config", "check", path)
    assert result.exit_code == 0
    assert result.stdout == f"{path}: 2 stores (acme, globex), email configured\n"
    bare = cli("config", "check", write("stores: [{name: solo}]\n"))
    assert (bare.exit_code, bare.stdout.strip()) == (0, f"{path}: 1 store (solo), no email")


def test_a_misspelt_key_is_reported_at_its_line_with_a_suggestion(cli, write):
    path = write(GOOD.replace("    podos:", "    podoss:"))
    result = cli("config", "check", path)
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{path}:4:5: stores[0].podoss: unknown key 'podoss' (did you mean 'podos'?)", f"{path}: 1 problem"]


def test_a_missing_environment_variable_is_located_and_no_secret_is_printed(cli, write, monkeypatch):
    monkeypatch.delenv("ACME_KEY")
    path = write(GOOD)
    text = cli("config", "check", path)
    assert text.exit_code == 1
    assert f"{path}:3:5: stores[0].api_key: the environment variable ACME_KEY is not set" in text.stdout
    as_json = cli("config", "check", "--format", "json", path)
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert (report["file"], report["ok"], report["stores"]) == (path, False, [])
    assert report["problems"] == [text.stdout.splitlines()[0]]
    for result in (text, as_json):
        assert SECRET not in result.output


def test_json_of_a_good_configuration_lists_the_stores(cli, write):
    path = write(GOOD)
    result = cli("config", "check", "--format", "json", path)
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"file": path, "ok": True, "problems": [], "stores": ["acme", "globex"]}
    assert SECRET not in result.output


def test_an_unreadable_file_is_a_problem(cli, tmp_path):
    result = cli("config", "check", str(tmp_path / "absent.yaml"))
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{tmp_path / 'absent.yaml'}: cannot read the configuration")


def test_the_schema_describes_the_configuration(cli):
    result = cli("config", "schema")
    assert result.exit_code == 0
    schema = json.loads(result.stdout)
    assert schema["$schema"].startswith("https://json-schema.org/") and "ruledesk.yaml" in schema["title"]
    assert {"stores", "email", "limits"} <= set(schema["properties"])
    assert schema["additionalProperties"] is False
    defs = schema["$defs"]
    assert "from" in defs["EmailSettings"]["properties"]  # by alias, as written in the file
    token = defs["PodosSettings"]["properties"]["token"]
    assert token["type"] == "string" and "env:NAME or file:PATH" in token["description"]
    assert "env:NAME or file:PATH" in defs["StoreSettings"]["properties"]["api_key"]["description"]


def test_the_schema_validates_a_good_configuration_and_refuses_a_typo(cli):
    import jsonschema  # a test dependency: this test runs, never skips
    schema = json.loads(cli("config", "schema").stdout)
    good = YAML(typ="safe").load(GOOD)
    jsonschema.validate(good, schema)
    good["stores"][0]["api_kee"] = good["stores"][0].pop("api_key")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(good, schema)
    good["stores"][0]["api_key"] = good["stores"][0].pop("api_kee").replace("env:", "written-out-")
    with pytest.raises(jsonschema.ValidationError, match="does not match"):
        jsonschema.validate(good, schema)
