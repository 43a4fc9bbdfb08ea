"""parse_judge_settings: defaults, unknown keys, types, values, cross-field rules."""

from dedupe.judge import JudgeSettings, parse_judge_settings
from dedupe.judge.settings import DEFAULT_FIELDS


def test_empty_table_gives_defaults():
    settings, errors = parse_judge_settings({})
    assert errors == []
    assert settings == JudgeSettings()
    assert settings.backend == "auto"
    assert settings.model == "claude-haiku-5-5"
    assert settings.fields == DEFAULT_FIELDS
    assert "street" not in settings.fields and "date_of_birth" not in settings.fields


def test_valid_table_is_parsed():
    settings, errors = parse_judge_settings(
        {"backend": "anthropic", "model": "claude-sonnet-4-5", "max_tokens": 300,
         "fields": ["email", "last_name", "first_name"], "poll_interval_s": 5, "max_wait_s": 60,
         "max_requests": 10, "max_cost_usd": 1, "prompt_version": "v2", "output_mode": "tool",
         "min_confidence": 0.9, "max_batch_requests": 500, "max_batch_bytes": 10_000_000}
    )
    assert errors == []
    assert settings.fields == ("first_name", "last_name", "email")  # canonical order
    assert settings.poll_interval_s == 5.0 and isinstance(settings.poll_interval_s, float)
    assert settings.output_mode == "tool"


def test_unknown_key_suggests_closest():
    _, errors = parse_judge_settings({"max_cost": 3, "modle": "x", "zzz": 1})
    assert "judge.max_cost: unknown key (did you mean 'max_cost_usd'?)" in errors
    assert "judge.modle: unknown key (did you mean 'model'?)" in errors
    assert "judge.zzz: unknown key" in errors


def test_wrong_types_and_values_are_one_line_each():
    _, errors = parse_judge_settings(
        {"backend": "openai", "max_tokens": "100", "max_attempts": True, "min_confidence": 1.5,
         "fields": ["email", "emial"], "prompt_version": "v 1", "max_batch_requests": 200_000,
         "poll_interval_s": -1, "output_mode": "xml"}
    )
    assert all(e.startswith("judge.") and "\n" not in e for e in errors)
    keys = {e.split(":")[0] for e in errors}
    assert keys == {"judge.backend", "judge.max_tokens", "judge.max_attempts", "judge.min_confidence",
                    "judge.fields", "judge.prompt_version", "judge.max_batch_requests",
                    "judge.poll_interval_s", "judge.output_mode"}
    assert any("did you mean 'email'" in e for e in errors)


def test_fields_rules():
    assert parse_judge_settings({"fields": []})[1] == ["judge.fields: must name at least one field"]
    assert "listed twice" in parse_judge_settings({"fields": ["email", "email"]})[1][0]
    assert "list of field names" in parse_judge_settings({"fields": "email"})[1][0]


def test_tool_mode_needs_thinking_disabled():
    _, errors = parse_judge_settings({"output_mode": "tool", "thinking": "omit"})
    assert len(errors) == 1 and errors[0].startswith("judge.output_mode:")


def test_unknown_model_needs_prices():
    _, errors = parse_judge_settings({"model": "claude-future-9"})
    assert errors and errors[0].startswith("judge.model: no built-in batch prices")
    _, errors = parse_judge_settings({"model": "claude-future-9", "batch_input_usd_per_mtok": 1,
                                      "batch_output_usd_per_mtok": 5})
    assert errors == []


def test_not_a_table():
    _, errors = parse_judge_settings(["x"])  # type: ignore[arg-type]
    assert errors == ["judge: expected a table, got list"]
