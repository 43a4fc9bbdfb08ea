"""The `[judge]` config table: a frozen settings dataclass and its validation.

Validation is done here, not in the config loader, so the judge owns the meaning
of its own keys; the loader just hands over the raw TOML table.  Every problem
is reported as a one-line ``judge.<key>: <problem>`` message, all at once, so a
user fixes the whole table in one edit rather than one key per run.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from dataclasses import dataclass
from typing import Any

#: Every canonical field the pipeline can hand to the judge, in the fixed order
#: used for serialisation (the order never depends on the config).
CANONICAL_FIELDS: tuple[str, ...] = (
    "first_name",
    "middle_name",
    "last_name",
    "email",
    "phone",
    "company",
    "title",
    "street",
    "city",
    "postcode",
    "region",
    "country",
    "date_of_birth",
)

#: Sent by default: enough to tell namesakes apart.  Street, postcode and date of
#: birth are left out (PII minimisation); a user who needs them opts in.
DEFAULT_FIELDS: tuple[str, ...] = (
    "first_name",
    "middle_name",
    "last_name",
    "email",
    "phone",
    "company",
    "title",
    "city",
    "region",
    "country",
)

BACKENDS = ("auto", "anthropic", "none")
OUTPUT_MODES = ("json_schema", "tool")
THINKING_MODES = ("disabled", "omit")

#: API limits for one batch (Message Batches docs): 100,000 requests, 256 MB.
API_MAX_BATCH_REQUESTS = 100_000
API_MAX_BATCH_BYTES = 256 * 1024 * 1024


@dataclass(frozen=True)
class JudgeSettings:
    """Everything the judge needs; defaults are safe for a nightly run.

    backend: "auto" judges when ANTHROPIC_API_KEY is set and skips otherwise;
        "anthropic" insists on the key; "none" never sends anything.
    model: a current Haiku-class model: the judge answers a narrow yes/no
        question about two short records, which does not need a larger model.
    max_tokens: the verdict is ~50 tokens of JSON; 256 leaves room for the
        reason without letting a runaway answer cost much.
    fields: the only canonical fields ever serialised (PII minimisation).
    min_confidence: a verdict becomes match / non_match only at or above this
        confidence; below it the pair stays in review for an analyst.  0.8 is
        deliberately conservative: the model's self-reported confidence is not
        calibrated, and a wrong automatic merge costs more than an analyst look.
    max_attempts: how many times a request that failed without being billed
        (errored, expired, canceled) is sent in all before the pair is left in
        review.
    output_mode: "json_schema" (structured outputs via output_config.format,
        works with thinking on or off) or "tool" (forced tool use, a fallback
        for models without structured outputs; needs thinking disabled).
    thinking: "disabled" sends {"type": "disabled"} so the verdict is cheap and
        bounded by max_tokens; "omit" leaves the model's default (needed for
        models that cannot turn thinking off).
    max_retries: SDK retries for retrieve/list/results/cancel, and our own retry
        budget for create (which we retry ourselves, see batches.py).
    batch_input_usd_per_mtok / batch_output_usd_per_mtok: batch prices for a
        model the built-in price table does not know (cost.py).
    """

    backend: str = "auto"
    model: str = "claude-haiku-5-5"
    max_tokens: int = 256
    fields: tuple[str, ...] = DEFAULT_FIELDS
    poll_interval_s: float = 30.0
    max_wait_s: float = 3600.0
    max_requests: int = 100_000
    max_cost_usd: float = 10.0
    prompt_version: str = "v1"
    max_attempts: int = 3
    min_confidence: float = 0.8
    max_batch_requests: int = API_MAX_BATCH_REQUESTS
    # 250,000,000 rather than 256 MiB: it is under the limit whether the docs'
    # "256 MB" means 10^6 or 2^20, and our size estimate is only an estimate.
    max_batch_bytes: int = 250_000_000
    output_mode: str = "json_schema"
    thinking: str = "disabled"
    max_retries: int = 4
    batch_input_usd_per_mtok: float | None = None
    batch_output_usd_per_mtok: float | None = None


_PROMPT_VERSION_RE = re.compile(r"^[A-Za-z0-9._-]{1,32}$")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _closest(key: str, known: list[str]) -> str:
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def parse_judge_settings(raw: dict) -> tuple[JudgeSettings, list[str]]:
    """Validate the raw ``[judge]`` TOML table.

    Returns the settings (defaults where a key is absent or invalid) and a list
    of one-line errors; the caller refuses to run when the list is not empty.
    """
    from . import cost  # local import: cost imports settings for the type only

    errors: list[str] = []
    known = [f.name for f in dataclasses.fields(JudgeSettings)]
    values: dict[str, Any] = {}

    if not isinstance(raw, dict):
        return JudgeSettings(), [f"judge: expected a table, got {type(raw).__name__}"]

    for key, value in raw.items():
        if key not in known:
            errors.append(f"judge.{key}: unknown key{_closest(key, known)}")
            continue
        problem, parsed = _check(key, value)
        if problem:
            errors.append(f"judge.{key}: {problem}")
        else:
            values[key] = parsed

    settings = JudgeSettings(**values)

    # Cross-field rules, checked only when the fields involved were valid.
    if settings.output_mode == "tool" and settings.thinking != "disabled":
        errors.append(
            'judge.output_mode: "tool" needs judge.thinking = "disabled" '
            "(forced tool use is rejected when thinking is on)"
        )
    if cost.prices_for(settings) is None:
        errors.append(
            f"judge.model: no built-in batch prices for {settings.model!r}; set "
            "judge.batch_input_usd_per_mtok and judge.batch_output_usd_per_mtok"
        )
    return settings, errors


def _check(key: str, v: Any) -> tuple[str | None, Any]:
    """Return (problem, parsed value) for one key."""
    if key == "backend":
        if not isinstance(v, str) or v not in BACKENDS:
            return f"must be one of {', '.join(map(repr, BACKENDS))}, got {v!r}", None
        return None, v
    if key == "output_mode":
        if not isinstance(v, str) or v not in OUTPUT_MODES:
            return f"must be one of {', '.join(map(repr, OUTPUT_MODES))}, got {v!r}", None
        return None, v
    if key == "thinking":
        if not isinstance(v, str) or v not in THINKING_MODES:
            return f"must be one of {', '.join(map(repr, THINKING_MODES))}, got {v!r}", None
        return None, v
    if key == "model":
        if not isinstance(v, str) or not v.strip():
            return "must be a non-empty string (a model id such as 'claude-haiku-5-5')", None
        return None, v.strip()
    if key == "prompt_version":
        if not isinstance(v, str) or not _PROMPT_VERSION_RE.match(v):
            return "must be 1-32 characters of letters, digits, '.', '_' or '-'", None
        return None, v
    if key == "fields":
        return _check_fields(v)
    int_ranges = {
        "max_tokens": (1, 64_000),
        "max_requests": (0, 10_000_000),
        "max_attempts": (1, 20),
        "max_batch_requests": (1, API_MAX_BATCH_REQUESTS),
        "max_batch_bytes": (1024, API_MAX_BATCH_BYTES),
        "max_retries": (0, 20),
    }
    if key in int_ranges:
        lo, hi = int_ranges[key]
        if not _is_int(v):
            return f"must be an integer, got {type(v).__name__}", None
        if not lo <= v <= hi:
            return f"must be between {lo:,} and {hi:,}, got {v:,}", None
        return None, v
    float_ranges = {
        "poll_interval_s": (0.0, 86_400.0),
        "max_wait_s": (0.0, 7 * 86_400.0),
        "max_cost_usd": (0.0, 1_000_000.0),
        "min_confidence": (0.0, 1.0),
        "batch_input_usd_per_mtok": (0.0, 1_000.0),
        "batch_output_usd_per_mtok": (0.0, 1_000.0),
    }
    lo, hi = float_ranges[key]
    if not _is_number(v):
        return f"must be a number, got {type(v).__name__}", None
    if not lo <= v <= hi:
        return f"must be between {lo:g} and {hi:g}, got {v:g}", None
    return None, float(v)


def _check_fields(v: Any) -> tuple[str | None, Any]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        return "must be a list of field names", None
    if not v:
        return "must name at least one field", None
    unknown = [x for x in v if x not in CANONICAL_FIELDS]
    if unknown:
        hint = _closest(unknown[0], list(CANONICAL_FIELDS))
        return (
            f"unknown field {unknown[0]!r}{hint}; allowed: {', '.join(CANONICAL_FIELDS)}",
            None,
        )
    dupes = sorted({x for x in v if v.count(x) > 1})
    if dupes:
        return f"field {dupes[0]!r} listed twice", None
    # Stored in canonical order: the serialised pair must not depend on the
    # order a user happened to type the list in (that would defeat the cache).
    return None, tuple(f for f in CANONICAL_FIELDS if f in v)
