"""Estimate and bill arithmetic, the budget guard, and the figure quoted in docs/judge.md."""

import dataclasses
import pathlib
from types import SimpleNamespace as NS

import pytest

from dedupe.judge import JudgeBudgetError, JudgeSettings, cost, prompt
from tests.judge.driver import DEMO_PAIRS

S = JudgeSettings()
DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "judge.md"


def _estimate(n, settings=S, text="x" * 300):
    return cost.estimate([text] * n, settings, prompt.RUBRIC, prompt.shared_text(settings))


def test_default_model_prices_are_half_of_standard():
    p = cost.prices_for(S)
    assert (p.input, p.output) == (0.05, 0.25)  # Haiku 5.5 standard is 0.10 / 0.50
    assert p.cache_write_1h == pytest.approx(0.10) and p.cache_read == pytest.approx(0.005)


def test_estimate_arithmetic_without_caching():
    est = _estimate(1000)
    per_request = cost.estimate_tokens(prompt.shared_text(S)) + cost.FRAMING_TOKENS + 100
    assert est.input_tokens == 1000 * per_request
    assert est.output_tokens == 1000 * cost.EXPECTED_OUTPUT_TOKENS
    assert est.cost_usd == pytest.approx((est.input_tokens * 0.05 + est.output_tokens * 0.25) / 1e6)
    assert est.max_cost_usd == pytest.approx((est.input_tokens * 0.05 + 1000 * S.max_tokens * 0.25) / 1e6)


def test_estimate_with_a_cacheable_prefix():
    s = dataclasses.replace(S, model="claude-opus-5-5")  # min cacheable prefix 512 tokens
    p = cost.prices_for(s)
    est = _estimate(10, s)
    prefix = cost.estimate_tokens(prompt.RUBRIC)
    rest = est.input_tokens - 10 * prefix
    expected_prefix = 10 * prefix * (0.5 * p.cache_read + 0.5 * p.cache_write_1h)
    assert est.cost_usd == pytest.approx((rest * p.input + expected_prefix + est.output_tokens * p.output) / 1e6)
    assert est.max_cost_usd == pytest.approx(
        (rest * p.input + 10 * prefix * p.cache_write_1h + est.max_output_tokens * p.output) / 1e6)


def test_usage_cost_prices_every_line_item():
    usage = NS(input_tokens=1000, output_tokens=100, cache_creation_input_tokens=2000, cache_read_input_tokens=3000,
               cache_creation=NS(ephemeral_5m_input_tokens=500, ephemeral_1h_input_tokens=1500))
    p = cost.prices_for(S)
    u = cost.usage_cost(usage, p)
    assert u.cost_usd == pytest.approx(
        (1000 * 0.05 + 100 * 0.25 + 500 * p.cache_write_5m + 1500 * p.cache_write_1h + 3000 * p.cache_read) / 1e6)
    no_breakdown = cost.usage_cost(NS(input_tokens=0, output_tokens=0, cache_creation_input_tokens=1000,
                                      cache_read_input_tokens=None, cache_creation=None), p)
    assert no_breakdown.cost_usd == pytest.approx(1000 * p.cache_write_1h / 1e6)  # we only ask for 1 h


def test_budget_guard_messages():
    est = _estimate(11)
    with pytest.raises(JudgeBudgetError, match=r"more than judge.max_requests = 10; nothing was sent"):
        cost.check_budget(est, dataclasses.replace(S, max_requests=10))
    with pytest.raises(JudgeBudgetError, match=r"could cost up to \$.* judge.max_cost_usd = \$0.00"):
        cost.check_budget(est, dataclasses.replace(S, max_cost_usd=0.0))
    cost.check_budget(est, S)  # within the defaults


def test_doc_quotes_the_estimate_for_10k_pairs():
    """docs/judge.md quotes the cost of 10,000 pairs like the issue's example; keep it true."""
    text = prompt.serialise_pair(DEMO_PAIRS[0][1], DEMO_PAIRS[0][2], S.fields)
    est = cost.estimate([text] * 10_000, S, prompt.RUBRIC, prompt.shared_text(S))
    doc = DOC.read_text()
    assert f"${est.cost_usd:.2f}" in doc
    assert f"${est.max_cost_usd:.2f}" in doc
    assert f"{est.input_tokens:,}" in doc
