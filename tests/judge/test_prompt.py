"""The request we build: serialisation, ids, the SDK request type, verdict parsing."""

import dataclasses
import json
import re
from types import SimpleNamespace as NS

from dedupe.judge import JudgeSettings, prompt
from tests.judge.fake_batches import validate_params, validate_request_item

S = JudgeSettings()
L = {"first_name": "John", "last_name": "Smith", "email": "jsmith@acme.com", "street": "1 Main St",
     "date_of_birth": "1970-01-01"}
R = {"last_name": "Smith", "first_name": "Jonathan", "email": "j.smith@acmecorp.com"}


def test_serialisation_is_fixed_order_allowed_fields_only():
    text = prompt.serialise_pair(L, R, S.fields)
    assert "street" not in text and "1 Main St" not in text  # not in the default fields
    assert "date_of_birth" not in text
    a_line = next(line for line in text.splitlines() if "John\"" in line)
    keys = list(json.loads(a_line.split(": ", 1)[1]))
    assert keys == ["first_name", "last_name", "email"]  # canonical order


def test_serialisation_is_symmetric_and_normalises_whitespace():
    assert prompt.serialise_pair(L, R, S.fields) == prompt.serialise_pair(R, L, S.fields)
    messy = dict(L, first_name="  John \n")
    assert prompt.serialise_pair(messy, R, S.fields) == prompt.serialise_pair(L, R, S.fields)


def test_missing_values_are_left_out():
    text = prompt.serialise_pair({"first_name": "A", "email": None, "phone": float("nan")}, {"first_name": "B"},
                                 S.fields)
    assert "email" not in text and "phone" not in text and "null" not in text


def test_custom_id_shape_stability_and_sensitivity():
    ids = prompt.RequestIds(S)
    text = prompt.serialise_pair(L, R, S.fields)
    cid = ids.custom_id(text)
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", cid)
    assert cid == prompt.RequestIds(JudgeSettings()).custom_id(text)  # stable
    assert cid != ids.custom_id(text + "x")
    # Any change to the request changes the id; the cache key ignores max_tokens.
    other = prompt.RequestIds(dataclasses.replace(S, max_tokens=300))
    assert other.custom_id(text) != cid
    assert other.cache_key(text) == ids.cache_key(text)
    assert prompt.RequestIds(dataclasses.replace(S, prompt_version="v2")).cache_key(text) != ids.cache_key(text)
    assert prompt.RequestIds(dataclasses.replace(S, model="claude-haiku-4-5")).cache_key(text) != ids.cache_key(text)


def test_request_params_and_sdk_type():
    text = prompt.serialise_pair(L, R, S.fields)
    req = prompt.build_request(text, S)
    assert validate_request_item(req) is None
    p = req["params"]
    assert "temperature" not in p and "top_p" not in p and "top_k" not in p
    assert p["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert p["system"][0]["text"] == prompt.RUBRIC
    assert p["output_config"]["format"]["schema"]["required"] == ["same_person", "confidence", "reason"]
    assert p["thinking"] == {"type": "disabled"}
    assert p["messages"] == [{"role": "user", "content": text}]
    # identical system prompt across requests (prompt caching needs that)
    other = prompt.build_request(prompt.serialise_pair(R, {"first_name": "X"}, S.fields), S)["params"]
    assert other["system"] == p["system"]


def test_tool_mode_params():
    p = prompt.build_params("x", dataclasses.replace(S, output_mode="tool"))
    assert "output_config" not in p
    assert p["tool_choice"] == {"type": "tool", "name": prompt.TOOL_NAME, "disable_parallel_tool_use": True}
    assert p["tools"][0]["input_schema"] == prompt.VERDICT_SCHEMA
    assert validate_params(p) is None


def test_validate_params_catches_temperature():
    p = prompt.build_params("x", S)
    assert "temperature" in validate_params(dict(p, temperature=0.0))
    assert validate_params(dict(p, max_tokens="many")) is not None
    assert validate_request_item({"custom_id": "x" * 65, "params": p}) is not None
    assert validate_request_item({"custom_id": "ok", "params": dict(p, messages=[{"role": "bot"}])})


def test_schema_has_no_unsupported_keywords():
    blob = json.dumps(prompt.VERDICT_SCHEMA)
    for kw in ("minimum", "maximum", "minLength", "maxLength", "multipleOf"):
        assert kw not in blob
    assert prompt.VERDICT_SCHEMA["additionalProperties"] is False


def _msg(content, stop="end_turn", details=None):
    return NS(stop_reason=stop, stop_details=details, content=content)


def _text(s):
    return NS(type="text", text=s)


def test_parse_verdict_json_and_tool():
    v, fail, _ = prompt.parse_verdict(_msg([_text('{"same_person": true, "confidence": 0.9, "reason": "x"}')]))
    assert fail is None and v == prompt.Verdict(True, 0.9, "x")
    tool = NS(type="tool_use", name=prompt.TOOL_NAME, input={"same_person": False, "confidence": 1, "reason": "y"})
    v, fail, _ = prompt.parse_verdict(_msg([NS(type="thinking"), tool], stop="tool_use"))
    assert v == prompt.Verdict(False, 1.0, "y")


def test_parse_verdict_failures():
    assert prompt.parse_verdict(_msg([], stop="refusal", details=NS(category="cyber")))[1] == "refusal"
    assert prompt.parse_verdict(_msg([_text('{"same_person": tr')], stop="max_tokens"))[1] == "max_tokens"
    assert prompt.parse_verdict(_msg([_text("yes")]))[1] == "unparsable"
    assert prompt.parse_verdict(_msg([]))[1] == "unparsable"
    for bad in ('{"same_person": "yes", "confidence": 0.9, "reason": "x"}',
                '{"same_person": true, "confidence": 1.5, "reason": "x"}',
                '{"same_person": true, "confidence": true, "reason": "x"}',
                '{"same_person": true, "confidence": 0.9}', "[1]"):
        assert prompt.parse_verdict(_msg([_text(bad)]))[1] == "unparsable", bad


def test_doc_quotes_the_rubric_verbatim():
    import pathlib

    doc = (pathlib.Path(__file__).resolve().parents[2] / "docs" / "judge.md").read_text()
    assert f"```text\n{prompt.RUBRIC}```" in doc
