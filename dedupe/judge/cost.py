"""Token and dollar arithmetic: the estimate before submitting, the bill after.

Prices are Message Batches prices (50% of standard on every line item), USD per
million tokens, from the pricing pages as of Nov 2026; re-check them before
quoting.  The prompt-caching multipliers stack with the batch discount: a 1 h
cache write costs 2x the input price, a 5 min write 1.25x, a read 0.1x (0.05x
on Sonnet/Opus 5.5).

Estimating without the network
------------------------------
The estimate must work in a dry run and when the judge is skipped, so it does
not call ``count_tokens``.  It counts one token per ``CHARS_PER_TOKEN`` UTF-8
bytes.  3.0 is deliberately pessimistic: English is ~4 bytes per token on
older tokenizers and Haiku 5.5's tokenizer yields ~30% more tokens, i.e. ~3.1.
The actual usage reported by the API is recorded after the results arrive.

Two figures are produced:

* expected: output is a typical verdict (``EXPECTED_OUTPUT_TOKENS``); where the
  rubric is long enough to be cached, half the requests read it from the cache
  and half write it (batch cache hits are best-effort; the docs report 30-98%).
* max: every request writes the 1 h cache (when cacheable) and every answer
  runs to ``max_tokens``.  The budget check uses this figure, so
  ``max_cost_usd`` is a ceiling, not a hope.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

from .settings import JudgeSettings

CHARS_PER_TOKEN = 3.0
#: {"same_person": true, "confidence": 0.93, "reason": "<~20 words>"} is ~45
#: tokens; 60 leaves a margin.
EXPECTED_OUTPUT_TOKENS = 60
#: Role markers and message framing per request.
FRAMING_TOKENS = 20
EXPECTED_CACHE_HIT_RATE = 0.5


@dataclass(frozen=True)
class ModelPrices:
    """Batch prices in USD per million tokens, and the shortest cacheable prefix."""

    input: float
    output: float
    cache_write_5m: float
    cache_write_1h: float
    cache_read: float
    min_cacheable_tokens: int


def _derived(inp: float, out: float, read_mult: float, min_cache: int) -> ModelPrices:
    return ModelPrices(inp, out, inp * 1.25, inp * 2.0, inp * read_mult, min_cache)


# Haiku 5.5 is billed at a higher band when a prompt exceeds 100k tokens; judge
# prompts are ~1k tokens, so only the <=100k band is listed.  Its minimum
# cacheable prefix is unpublished: assume Haiku 4.5's 4,096 (so the ~1k-token
# rubric is assumed not to cache, which is the cheaper and likelier case).
PRICES: dict[str, ModelPrices] = {
    "claude-haiku-5-5": _derived(0.05, 0.25, 0.1, 4096),
    "claude-haiku-4-5": _derived(0.50, 2.50, 0.1, 4096),
    "claude-sonnet-4-5": _derived(1.50, 7.50, 0.1, 1024),
    "claude-sonnet-5-5": _derived(1.00, 5.00, 0.05, 1024),
    "claude-opus-5-5": _derived(2.00, 10.00, 0.05, 512),
}
_ALIASES = {
    "claude-haiku-4-5-20251001": "claude-haiku-4-5",
    "claude-sonnet-4-5-20250929": "claude-sonnet-4-5",
}


def prices_for(settings: JudgeSettings) -> ModelPrices | None:
    """Built-in prices, or the user's override; None when neither is known."""
    if settings.batch_input_usd_per_mtok is not None and settings.batch_output_usd_per_mtok is not None:
        return _derived(settings.batch_input_usd_per_mtok, settings.batch_output_usd_per_mtok, 0.1, 1024)
    return PRICES.get(_ALIASES.get(settings.model, settings.model))


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / CHARS_PER_TOKEN)


@dataclass
class Estimate:
    requests: int = 0
    input_tokens: int = 0  # all input tokens, cached or not
    output_tokens: int = 0  # expected
    cost_usd: float = 0.0  # expected
    max_output_tokens: int = 0
    max_cost_usd: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 6),
            "max_output_tokens": self.max_output_tokens,
            "max_cost_usd": round(self.max_cost_usd, 6),
        }

    def line(self) -> str:
        return (
            f"judge estimate: {self.requests:,} requests, ~{self.input_tokens:,} input + "
            f"~{self.output_tokens:,} output tokens, expected ${self.cost_usd:.4f}, "
            f"at most ${self.max_cost_usd:.4f} (batch prices)"
        )


def estimate(user_texts: Iterable[str], settings: JudgeSettings, prefix_text: str, template_text: str) -> Estimate:
    """Estimate the cost of sending one request per user text.

    prefix_text: the cacheable shared prefix (the rubric).
    template_text: all shared request text (rubric plus schema or tool JSON).
    """
    prices = prices_for(settings)
    if prices is None:  # parse_judge_settings refuses this; be defensive
        raise ValueError(f"no prices for model {settings.model!r}")
    shared = estimate_tokens(template_text) + FRAMING_TOKENS
    prefix = estimate_tokens(prefix_text)
    cacheable = prefix >= prices.min_cacheable_tokens
    out_expected = min(EXPECTED_OUTPUT_TOKENS, settings.max_tokens)

    est = Estimate()
    for text in user_texts:
        est.requests += 1
        est.input_tokens += shared + estimate_tokens(text)
    n = est.requests
    est.output_tokens = n * out_expected
    est.max_output_tokens = n * settings.max_tokens

    uncached_in = est.input_tokens - (n * prefix if cacheable else 0)
    base = uncached_in * prices.input
    if cacheable:
        h = EXPECTED_CACHE_HIT_RATE
        prefix_expected = n * prefix * (h * prices.cache_read + (1 - h) * prices.cache_write_1h)
        prefix_max = n * prefix * prices.cache_write_1h
    else:
        prefix_expected = prefix_max = 0.0
    est.cost_usd = (base + prefix_expected + est.output_tokens * prices.output) / 1e6
    est.max_cost_usd = (base + prefix_max + est.max_output_tokens * prices.output) / 1e6
    return est


@dataclass
class Usage:
    """Actual usage summed over results, and what it cost at batch prices."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, other: "Usage") -> None:
        self.input_tokens += other.input_tokens
        self.output_tokens += other.output_tokens
        self.cache_creation_input_tokens += other.cache_creation_input_tokens
        self.cache_read_input_tokens += other.cache_read_input_tokens
        self.cost_usd += other.cost_usd

    def as_dict(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
            "cost_usd": round(self.cost_usd, 6),
        }


def usage_cost(usage: Any, prices: ModelPrices) -> Usage:
    """Price one result's `usage` (an SDK `Usage` object)."""
    inp = usage.input_tokens or 0
    out = usage.output_tokens or 0
    write = usage.cache_creation_input_tokens or 0
    read = usage.cache_read_input_tokens or 0
    breakdown = getattr(usage, "cache_creation", None)
    if breakdown is not None and (breakdown.ephemeral_5m_input_tokens or breakdown.ephemeral_1h_input_tokens):
        w5 = breakdown.ephemeral_5m_input_tokens or 0
        w1 = breakdown.ephemeral_1h_input_tokens or 0
    else:
        w5, w1 = 0, write  # we only ever ask for the 1 h TTL
    cost = (
        inp * prices.input
        + out * prices.output
        + w5 * prices.cache_write_5m
        + w1 * prices.cache_write_1h
        + read * prices.cache_read
    ) / 1e6
    return Usage(inp, out, write, read, cost)


class JudgeBudgetError(Exception):
    """Raised before anything is sent when a run would exceed its budget."""


def check_budget(est: Estimate, settings: JudgeSettings) -> None:
    if est.requests > settings.max_requests:
        raise JudgeBudgetError(
            f"judge: refusing to submit {est.requests:,} requests: more than "
            f"judge.max_requests = {settings.max_requests:,}; nothing was sent"
        )
    if est.max_cost_usd > settings.max_cost_usd:
        raise JudgeBudgetError(
            f"judge: refusing to submit {est.requests:,} requests: they could cost up to "
            f"${est.max_cost_usd:.2f} (expected ${est.cost_usd:.2f}), more than "
            f"judge.max_cost_usd = ${settings.max_cost_usd:.2f}; nothing was sent"
        )
