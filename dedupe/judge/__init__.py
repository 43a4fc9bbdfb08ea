"""LLM judge for the ambiguous band: one Message Batch of "same person?" requests.

Public surface (everything else is internal):

* ``JudgeSettings``, ``parse_judge_settings``: the ``[judge]`` config table.
* ``run_judge``: judge the pairs of a review table, resuming open batches.
* ``dry_run``: write the requests that would be sent as JSONL; send nothing.
* ``JudgeReport``: what happened, for run_report.json.
* ``JudgeError`` (API failure or missing key; state is saved),
  ``JudgePending`` (exit 75), ``JudgeBudgetError`` (exit 2, nothing sent).
  The three are unrelated classes, so catch order does not matter.

Both entry points leave ``judge_results`` in the state DB: one row per review
pair with a usable verdict, fresh or cached.  Cached verdicts apply even when
the judge is skipped (no key, backend "none", dry run): they are already paid
for and their inputs are unchanged by construction of the cache key.

Modules: prompt (what is sent), cache (verdicts, plan, judge_results), batches
(the journaled API conversation), cost (estimate and bill), settings.
"""

from __future__ import annotations

import json
import os
import pathlib
from dataclasses import dataclass, field
from typing import Any, Callable

import duckdb

from . import batches, cache, cost, prompt
from .batches import JudgeError, JudgePending
from .cost import JudgeBudgetError
from .settings import JudgeSettings, parse_judge_settings

__all__ = [
    "JudgeSettings",
    "parse_judge_settings",
    "run_judge",
    "may_call_api",
    "dry_run",
    "JudgeReport",
    "JudgeError",
    "JudgePending",
    "JudgeBudgetError",
]


def _zero_usage() -> dict[str, Any]:
    return cost.Usage().as_dict()


@dataclass
class JudgeReport:
    backend: str
    model: str
    skipped: bool = False
    skip_reason: str | None = None
    pairs_in_review: int = 0
    cache_hits: int = 0  # pairs whose verdict was already in the cache
    requests_sent: int = 0  # request items submitted by this call, resends included
    batches: list[str] = field(default_factory=list)  # ids created, adopted or collected by this call
    verdicts: dict[str, int] = field(default_factory=lambda: {"match": 0, "non_match": 0, "review": 0})
    failed: int = 0  # pairs left in review for good (terminal failure or attempts used up)
    failures: dict[str, int] = field(default_factory=dict)
    estimated: dict[str, Any] = field(default_factory=lambda: cost.Estimate().as_dict())
    actual: dict[str, Any] = field(default_factory=_zero_usage)

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.model,
            "skipped": self.skipped,
            "skip_reason": self.skip_reason,
            "pairs_in_review": self.pairs_in_review,
            "cache_hits": self.cache_hits,
            "requests_sent": self.requests_sent,
            "batches": list(self.batches),
            "verdicts": dict(self.verdicts),
            "failed": self.failed,
            "failures": dict(self.failures),
            "estimated": dict(self.estimated),
            "actual": dict(self.actual),
        }


def _prepare(con, review_table: str, settings: JudgeSettings) -> tuple[JudgeReport, list[batches.Todo], cost.Estimate]:
    batches.ensure_schema(con)
    plan = cache.build_plan(con, review_table, settings)
    report = JudgeReport(
        backend=settings.backend,
        model=settings.model,
        pairs_in_review=plan.pairs,
        cache_hits=plan.cache_hits,
    )
    todo = batches.pending(con, settings)
    est = cost.estimate((t.user_text for t in todo), settings, prompt.RUBRIC, prompt.shared_text(settings))
    report.estimated = est.as_dict()
    return report, todo, est


def _finish(con, settings: JudgeSettings, report: JudgeReport) -> None:
    report.verdicts = cache.write_results(con, settings)
    report.failures = batches.failures(con, settings)
    report.failed = sum(report.failures.values())


def _usd(x: float) -> str:
    return f"${x:.2f}" if x >= 0.01 or x == 0 else f"${x:.4f}"


def _skip_reason(settings: JudgeSettings) -> str | None:
    if settings.backend == "none":
        return 'judge.backend = "none"'
    if settings.backend == "auto" and not os.environ.get("ANTHROPIC_API_KEY"):
        return "no ANTHROPIC_API_KEY"
    return None


def may_call_api(settings: JudgeSettings) -> bool:
    """Whether a run with these settings may talk to the API (and so import the SDK)."""
    return _skip_reason(settings) is None


def run_judge(
    con: duckdb.DuckDBPyConnection,
    review_table: str,
    settings: JudgeSettings,
    *,
    log: Callable[[str], None] = print,
) -> JudgeReport:
    """Judge every review pair without a cached verdict; see the module docstring.

    Order matters: the plan and the budget check come before any network call,
    so a refused run sends nothing at all; journaled open batches are resumed
    before anything new is created.
    """
    report, todo, est = _prepare(con, review_table, settings)
    reason = _skip_reason(settings)
    if reason:
        n_pairs = sum(t.n_pairs for t in todo)
        log(f"judge skipped: {reason}; {n_pairs:,} review pairs would have been judged "
            f"(est. {_usd(est.cost_usd)})")
        report.skipped, report.skip_reason = True, reason
        _finish(con, settings, report)
        return report
    if not os.environ.get("ANTHROPIC_API_KEY"):
        raise JudgeError('judge: judge.backend = "anthropic" but ANTHROPIC_API_KEY is not set')

    if not todo and not batches.has_open_batches(con):
        # Everything cached or settled: no client, no network, no SDK import.
        _finish(con, settings, report)
        log(_summary(report))
        return report
    if todo:
        log(est.line())
        try:
            cost.check_budget(est, settings)
        except JudgeBudgetError:
            # Refuse the new requests, but first collect batches earlier runs left open: they are
            # paid for, and left alone for weeks their results would expire and be paid again.
            _collect_open_batches(con, settings, report, log)
            raise

    import anthropic  # here, not at module import: the CLI should start fast

    client = anthropic.Anthropic(max_retries=settings.max_retries)
    session = batches.Session(con, client, settings, log)
    try:
        session.run()
    except JudgePending as e:
        _collect_progress(report, session)
        _finish(con, settings, report)
        e.report = report
        raise
    except anthropic.APIError as e:
        _collect_progress(report, session)
        _finish(con, settings, report)
        raise JudgeError(f"judge: Anthropic API error: {e}; state saved, the next run resumes") from e
    _collect_progress(report, session)
    _finish(con, settings, report)
    log(_summary(report))
    return report


def _collect_open_batches(con, settings: JudgeSettings, report: JudgeReport, log: Callable[[str], None]) -> None:
    if not batches.has_open_batches(con):
        return
    import anthropic

    session = batches.Session(con, anthropic.Anthropic(max_retries=settings.max_retries), settings, log,
                              submit_new=False)
    try:
        session.run()
    except (JudgePending, anthropic.APIError) as e:
        log(f"judge: open batches not collected yet ({e}); the next run tries again")
    _collect_progress(report, session)
    _finish(con, settings, report)


def _summary(report: JudgeReport) -> str:
    v = report.verdicts
    return (f"judge: {v['match']:,} match, {v['non_match']:,} non_match, {v['review']:,} left for review "
            f"({report.cache_hits:,} pairs from the cache, {report.requests_sent:,} requests sent); "
            f"{report.failed:,} failed; cost ${report.actual['cost_usd']:.4f}")


def _collect_progress(report: JudgeReport, session: batches.Session) -> None:
    report.requests_sent = session.progress.requests_sent
    report.batches = list(dict.fromkeys(session.progress.batch_ids))
    report.actual = session.progress.usage.as_dict()


def dry_run(
    con: duckdb.DuckDBPyConnection,
    review_table: str,
    settings: JudgeSettings,
    out_path: pathlib.Path,
    *,
    log: Callable[[str], None] = print,
) -> JudgeReport:
    """Write exactly the batch requests a real run would send now, one JSON per
    line in submission order, and the cost estimate; send nothing, journal
    nothing (only the judge_ tables are created and judge_results refreshed)."""
    report, todo, est = _prepare(con, review_table, settings)
    out_path = pathlib.Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for part in batches.chunk(todo, settings):
            for t in part:
                item = {"custom_id": t.custom_id, "params": prompt.build_params(t.user_text, settings)}
                f.write(json.dumps(item, ensure_ascii=False) + "\n")
    tmp.replace(out_path)  # atomic: never a half-written file under the real name
    log(f"judge dry run: wrote {len(todo):,} requests to {out_path} (nothing sent)")
    log(est.line())
    try:
        cost.check_budget(est, settings)
    except JudgeBudgetError as e:
        log(f"note: a real run would refuse: {e}")
    report.skipped, report.skip_reason = True, "dry run"
    _finish(con, settings, report)
    return report
