"""The pipeline: the only module that knows the order of the stages.

    config -> ingest -> standardise -> block -> compare -> model -> zones -> judge
           -> cluster -> golden -> outputs

The state DuckDB file (``[project] state``) holds what must outlive a run (see ``dedupe.state``)
and the working tables the review app reads; transient tables are TEMP. A lock file
(``state.RunLock``) refuses a second run on the same state with a clear message; a run is recorded
in the run history whatever its outcome. Runs are incremental by default (``run``).

Each stage lives in its own module (``dedupe.zones`` decides pairs from their scores and the
verdicts, and turns decisions into links); this one only wires them and publishes the outputs.
"""

from __future__ import annotations

import gc
import hashlib
import importlib
import json
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import duckdb

from dedupe import blocking, cluster as clustering, compare, golden, identity, model, state, zones
from dedupe.config import Config
from dedupe.ingest import InputError, ingest
from dedupe.judge import JudgeBudgetError, JudgePending, JudgeReport, may_call_api, run_judge
from dedupe.judge import dry_run as judge_dry_run
from dedupe.outputs import Publisher, foreign_owner, remove_stale_staging
from dedupe.state import StateLockedError



@dataclass
class RunResult:
    report: dict
    output_dir: Path
    summary: str


@dataclass
class _Timer:
    log: Callable[[str], None]
    timings: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        # One line per finished stage: a run that fails on bad input prints only its error line.
        start = time.perf_counter()
        yield
        self.timings[name] = round(time.perf_counter() - start, 3)
        self.log(f"{name} done in {self.timings[name]:.2f}s")
        state.crash_point(name)


DEFAULT_MEMORY_LIMIT = "4GB"


def default_log(message: str) -> None:
    stamp = datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp}] {message}", file=sys.stderr, flush=True)


def connect(config: Config, wait_s: float = 10.0) -> duckdb.DuckDBPyConnection:
    """Open the state DB; wait a little for a reader (the review app holds it for one request)."""
    config.state.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            con = duckdb.connect(str(config.state))
            break
        except duckdb.IOException as e:
            if "lock" not in str(e).lower():
                raise
            if time.monotonic() >= deadline:
                raise StateLockedError(f"{config.state}: another process holds this state database; "
                                       f"wait for it to finish") from None
            time.sleep(0.25)
    # Bounded by default: DuckDB would otherwise take 80% of RAM before spilling to disk.
    con.execute("SET memory_limit = ?", [config.memory_limit or DEFAULT_MEMORY_LIMIT])
    if config.temp_directory:
        config.temp_directory.mkdir(parents=True, exist_ok=True)
        con.execute("SET temp_directory = ?", [str(config.temp_directory)])
    if config.threads:
        con.execute(f"SET threads = {int(config.threads)}")
    # On a terminal, DuckDB draws a progress bar for long statements; logs (cron, CI) get plain
    # timestamped lines per stage instead.
    interactive = sys.stderr.isatty()
    con.execute(f"SET enable_progress_bar = {str(interactive).lower()}")
    con.execute(f"SET enable_progress_bar_print = {str(interactive).lower()}")
    return con


def _cluster_signature(con: duckdb.DuckDBPyConnection, config: Config) -> str:
    # What clustering depends on besides links and records: the guard's settings and the
    # standardisation rules (which derive the identifiers).
    return repr((config.cluster.identifiers, config.cluster.max_size,
                 state.get_meta(con, "standardise_signature")))


def _cluster_basis(con: duckdb.DuckDBPyConnection, config: Config, full: bool) -> clustering.Basis | None:
    """The last clustering, to re-cluster only what changed since (``cluster``'s docstring), or
    None: a full run, a first night, new guard settings or rules, or a state from older code."""
    if full or state.get_meta(con, "cluster_basis") != _cluster_signature(con, config):
        return None
    if not state.column_type(con, "cluster_ids", "content_hash"):
        return None
    con.execute("ALTER TABLE links RENAME TO links_basis")
    return clustering.Basis(links="links_basis",
                            clusters="SELECT rid, cluster_key, flags, content_hash FROM cluster_ids")


def _pairs_query(comparisons: list[compare.Comparison]) -> str:
    # Unsorted: rows come in the order the pairs are stored (the same inputs and history give the
    # same file). Sorting 800k wide rows was a quarter of this file's CPU (0.25 s at 2 x 100k),
    # on the nightly path, for an order no reader relies on.
    levels = ", ".join(f"p.{c.name} AS {c.name}_level" for c in comparisons)
    return f"""
        SELECT l.source AS source_l, l.record_id AS record_id_l,
               r.source AS source_r, r.record_id AS record_id_r,
               p.match_probability, p.match_weight, {levels}, p.decision, p.decided_by, p.over_budget,
               p.judge_skipped,
               p.judge_model, p.judge_batch_id, p.judge_custom_id,
               p.llm_same_person, p.llm_confidence, p.llm_reason
        FROM pairs p JOIN std l ON l.rid = p.rid_l JOIN std r ON r.rid = p.rid_r"""


def _golden_query(config: Config) -> str:
    fields = golden.golden_fields(config)
    cols = ["cluster_id", "record_count", "sources"]
    for f in fields:
        cols += [f, f"{f}_source", f"{f}_record_id"]
    cols += ["updated_at", "flags"]
    return f"SELECT {', '.join(cols)} FROM golden ORDER BY cluster_id"


# --------------------------------------------------------------------------------------------


@dataclass
class _Scored:
    ingest: object
    blocking: blocking.BlockingReport
    comparisons: list[compare.Comparison]
    params: model.ModelParams
    reuse: dict
    review_cut: int = 0
    review_skipped: int = 0


def _score_stages(con: duckdb.DuckDBPyConnection, config: Config, timer: _Timer,
                  log: Callable[[str], None], full: bool = True, retrain: bool = False,
                  allow_deletions: bool = False) -> _Scored:
    """ingest -> standardise -> block -> compare -> model -> score -> zones, and the review table."""
    reuse: dict = {}
    with timer.stage("ingest"):
        ingest_report = ingest(con, config, allow_deletions=allow_deletions)
    from dedupe.standardise import standardise  # imported in the background by ``run``
    with timer.stage("standardise"):
        reuse["standardise"] = standardise(con, config, full=full,
                                           progress=lambda step: log(f"standardise: {step}"))
    with timer.stage("block"):
        block_report = blocking.block(con, config.blocking.rules, config.blocking.max_block_size, full=full)
    for capped in block_report.capped[:10]:
        log(f"warning: block {capped}")
    comparisons = compare.comparisons_for(config)
    with timer.stage("compare"):
        reuse["compare"] = compare.compare_candidates(con, comparisons, block_report, full=full)
    with timer.stage("train"):
        params, trained = model.stored_or_trained(con, config, comparisons, retrain)
        reuse["model"] = "trained" if trained else "reused"
    with timer.stage("score"):
        reuse["scores"] = model.score_pairs(con, config, comparisons, params)
        zones.pairs_view(con, comparisons)
        reuse["analyst_decisions"] = zones.analyst_pairs(con)
        review_skipped, review_cut = zones.zone_pairs(con, config, comparisons)
        zones.review_table(con)
    if review_cut:
        log(f"review band over budget ({config.thresholds.review_budget} per 100 records): "
            f"{review_cut:,} least likely pairs decided by the model")
    return _Scored(ingest_report, block_report, comparisons, params, reuse, review_cut, review_skipped)


def dry_run_judge(config: Config, out_path: Path, log: Callable[[str], None] = default_log) -> dict:
    """Score, then write the judge's would-be requests to ``out_path`` without sending anything."""
    with state.RunLock(config.state, log), _cycle_collector_paused():
        con = connect(config)
        try:
            state.ensure_schema(con)
            # Nothing is published and no golden id retired, so the deletion guard has nothing to protect.
            _score_stages(con, config, _Timer(log), log, full=False, allow_deletions=True)
            out_path.parent.mkdir(parents=True, exist_ok=True)
            return judge_dry_run(con, "review_pairs", config.judge, out_path).as_dict()
        finally:
            con.close()


def compact_state(config: Config, log: Callable[[str], None] = default_log) -> tuple[int, int]:
    """Rewrite the state file without the free space and holes the nights leave
    (``state.compact``); returns its size in bytes before and after. It takes the run lock, so it
    is refused while a run is going on, as a second run would be."""
    if not config.state.is_file():
        raise InputError(f"{config.state}: no state database yet; run `dedupe run` first")
    with state.RunLock(config.state, log):
        before = config.state.stat().st_size
        con = connect(config)
        try:
            state.compact(con, config.state)
        finally:
            con.close()
        return before, config.state.stat().st_size


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Python's cycle collector off for the length of a run, as it was afterwards.

    A run's own Python objects are short-lived and almost never in reference cycles (the data lives
    in DuckDB), so reference counting frees them. The collector would still walk every tracked
    object again and again, above all the ~200k the imports leave (the Anthropic SDK's pydantic
    models), holding the GIL. Measured at 2 x 100k: 2.1 s of collection on a first night (15 full
    passes) and 0.2 s on a second, to free under 1,200 objects per night; pausing it took the
    first night from 21.7 to 19.4 s. What cycles a run does make are freed once it is back on."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _import_in_background(modules: list[tuple[str, str | None]]) -> None:
    """Import slow modules (the Anthropic SDK builds hundreds of pydantic models: ~1 s of CPU) in a
    thread, overlapping with stages that run inside DuckDB with the GIL released, calling each
    one's function ``then`` if given. One thread, one module after the other: imports hold the
    GIL, so threads importing side by side only slow each other and delay the first one needed.
    A stage that needs a module finds it imported, or waits on Python's import lock for it."""
    def load() -> None:
        for module, then in modules:
            loaded = importlib.import_module(module)
            if then:
                getattr(loaded, then)()
    threading.Thread(target=load, name="background-imports", daemon=True).start()


def _deletions_allowed(con: duckdb.DuckDBPyConnection, inputs: dict, allowed_now: bool,
                       log: Callable[[str], None]) -> bool:
    """``--allow-deletions`` holds until a run publishes: a run that waits on the judge (exit 75)
    is resumed by a plain scheduled run, which must not then refuse the deletions it allowed.
    The allowance is tied to the input files as they were (size and modification time): a new
    export is checked afresh."""
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]
    if allowed_now:
        state.set_meta(con, "deletions_allowed_for_inputs", key)
        return True
    if state.get_meta(con, "deletions_allowed_for_inputs") == key:
        log("deletions allowed by an earlier run on these same input files (--allow-deletions)")
        return True
    return False


def run(config: Config, log: Callable[[str], None] = default_log, full: bool = False,
        retrain: bool = False, allow_deletions: bool = False) -> RunResult:
    """Run the pipeline and publish outputs; one run at a time per state DB.

    Incremental by default: unchanged records keep their standardised rows and unchanged pairs
    their comparison levels (both keyed by content), the model is reused, the judge's cache answers
    pairs it has seen. ``full=True`` recomputes every stage from the inputs (same results).
    Raises InputError, StateLockedError, JudgePending, JudgeBudgetError; each is recorded in the
    run history with its exit code.
    """
    with state.RunLock(config.state, log), _cycle_collector_paused():
        # In the order they are needed: the standardisation rules, then the Anthropic SDK for the
        # judge. (pandas is never imported: see dedupe.columns.)
        _import_in_background([("dedupe.standardise", "warm_up")]
                              + ([("anthropic", None)] if may_call_api(config.judge) else []))
        con = connect(config)
        state.ensure_schema(con)
        inputs = state.input_fingerprints([s.path for s in config.sources])
        unchanged = state.unchanged_inputs(con, inputs)
        for path, previous_run in unchanged.items():
            log(f"warning: {path} has the same size and modification time as at run {previous_run}: "
                f"has its export been refreshed?")
        run_id = state.begin_run(con, "full" if full else "incremental", config.fingerprint(), inputs)
        allow_deletions = _deletions_allowed(con, inputs, allow_deletions, log)
        try:
            result = _run(con, config, log, run_id, full, retrain, allow_deletions, sorted(unchanged))
        except InputError as e:
            state.finish_run(con, run_id, "failed", 2, message=str(e))
            raise
        except JudgePending as e:
            state.finish_run(con, run_id, "pending", 75, message=str(e))
            raise
        except JudgeBudgetError as e:
            state.finish_run(con, run_id, "failed", 2, message=str(e))
            raise
        except BaseException as e:
            state.finish_run(con, run_id, "failed", 1, message=f"{type(e).__name__}: {e}"[:500])
            raise
        finally:
            con.close()
        return result


def _run(con: duckdb.DuckDBPyConnection, config: Config, log: Callable[[str], None], run_id: int,
         full: bool, retrain: bool, allow_deletions: bool, unchanged_inputs: list[str]) -> RunResult:
    started = datetime.now(timezone.utc)
    timer = _Timer(log)
    owner = {"state_id": state.state_id(con), "state_path": str(config.state.resolve())}
    problem = foreign_owner(config.output_dir, owner)
    if problem:
        raise InputError(problem)
    remove_stale_staging(config.output_dir)
    generation = state.last_generation(con) + 1
    scored = _score_stages(con, config, timer, log, full=full, retrain=retrain,
                           allow_deletions=allow_deletions)
    ingest_report, block_report = scored.ingest, scored.blocking
    comparisons, params = scored.comparisons, scored.params
    zones_before = zones.count_decisions(con, "zoned_pairs")
    with timer.stage("judge"):
        judge_report: JudgeReport = run_judge(con, "review_pairs", config.judge, log=log)
        verdicts, scored.reuse["decisions_changed"] = zones.apply_verdicts(con)
    pub = Publisher(config.output_dir, generation, owner=owner)
    checkpoint = None
    try:
        # The pairs are final once the verdicts are in: DuckDB writes pairs.parquet on a cursor of
        # its own (its writer runs mostly on one thread) while clustering and golden records run;
        # neither changes ``pairs`` or ``std``.
        pairs_job = pub.copy_query_in_background(con, _pairs_query(comparisons), "pairs.parquet")
        with timer.stage("cluster"), state.transaction(con):
            # One transaction: the links and the clusters made from them are the next night's
            # basis, so they change together or not at all.
            basis = _cluster_basis(con, config, full)
            zones.write_links(con, config)
            cluster_report = clustering.cluster(con, "links", config.cluster.identifiers,
                                                config.cluster.max_size,
                                                cannot_links="SELECT rid_l, rid_r FROM analyst_pairs "
                                                             "WHERE kind = 'cannot_link'",
                                                basis=basis)
            # Outside the re-clustered region, clusters are the basis's: the published ones when
            # the basis is the last published run's (not a killed run's).
            published_basis = basis is not None and state.get_meta(con, "cluster_basis_generation") == str(generation - 1)
            id_counts = identity.assign(con, generation, changed="SELECT rid FROM reclustered" if published_basis else None)
            con.execute("DROP TABLE IF EXISTS links_basis")
            state.set_meta(con, "cluster_basis", _cluster_signature(con, config))
            state.set_meta(con, "cluster_basis_generation", str(generation))
        scored.reuse["cluster"] = {"reclustered": cluster_report.reclustered,
                                   "kept": sum(ingest_report.records.values()) - cluster_report.reclustered}
        with timer.stage("golden"):
            scored.reuse["golden"] = golden.build_golden(
                con, config, full=full, touched="SELECT cluster_id FROM id_touched" if published_basis else None)

        decided = zones.count_decisions(con, "pair_decisions")
        records_total = sum(ingest_report.records.values())
        report = {
            "project": config.name,
            "run_id": run_id,
            "generation": generation,
            "mode": "full" if full else "incremental",
            "config": str(config.path),
            "config_hash": config.fingerprint(),
            "started_at": started.isoformat(timespec="seconds"),
            "records": ingest_report.records,
            "records_total": records_total,
            "unchanged_inputs": unchanged_inputs,
            "unparsed_values": ingest_report.unparsed,
            "reuse": scored.reuse,
            "blocking": {
                "candidate_pairs": block_report.candidate_pairs,
                "pairs_per_rule": block_report.pairs_per_rule,
                "capped_blocks": block_report.capped_total,
                "capped_examples": [str(c) for c in block_report.capped[:20]],
                "skipped_rules": block_report.skipped_rules,
            },
            "zones_before_judge": zones_before,
            "zones": decided,
            "review_per_100_records": round(100 * zones_before["review"] / max(records_total, 1), 3),
            "review_cut_by_budget": scored.review_cut,
            "review_skipped_same_clusters": scored.review_skipped,
            "judge": judge_report.as_dict() | {"applied": verdicts},
            "clusters": {
                "clusters": cluster_report.clusters, "singletons": cluster_report.singletons,
                "largest": cluster_report.largest,
                "weak_link_splits": cluster_report.weak_link_splits,
                "identifier_conflict_splits": cluster_report.conflict_splits,
                "size_cap_splits": cluster_report.size_cap_splits,
                "flagged": cluster_report.flagged,
                "ids": id_counts,
            },
            "model": {"prior": params.prior, "em_iterations": params.em_iterations},
            "timings_s": timer.timings,
        }
        # Every table of the night is written: checkpoint them while the files are. Not before
        # pairs.parquet is done, whose read began before clustering committed (DuckDB would refuse).
        checkpoint = state.BackgroundCheckpoint(con, after=pairs_job.join)
        with timer.stage("outputs"):
            # The crosswalk on a cursor of its own: DuckDB reads the golden rows on one thread
            # (they fit in one row group), which leaves the other core free meanwhile.
            pub.copy_query_in_background(con, "SELECT source, record_id, cluster_id FROM cluster_ids "
                                              "ORDER BY source, record_id", "clusters.csv")
            # Smaller row groups: DuckDB writes them in parallel (0.51 -> 0.34 s at 120k golden rows).
            pub.copy_query(con, _golden_query(config), "golden_records.parquet", row_group_size=30_000)
            # The CSV from that file, while the rest is written: reading it back costs less CPU
            # than reading and sorting the golden rows again (0.74 vs 0.87 s for both at 120k rows).
            pub.copy_parquet_in_background(con, "golden_records.parquet", "golden_records.csv")
            pub.copy_query(con, identity.history_query(), "id_history.csv")
            pub.write_text("model.json", params.to_json())
            report["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            report["timings_s"]["total"] = round(sum(timer.timings.values()), 3)
            pub.write_json("run_report.json", report)
            pub.publish()
    except BaseException:
        pub.discard()
        raise
    finally:
        if checkpoint is not None:  # its cursor must be closed before the connection is
            checkpoint.join()
    state.crash_point("published")
    # Published: now make it the state's truth, in one transaction. A crash before this line
    # leaves the registry as it was, and the rerun publishes the same generation again.
    con.execute("BEGIN TRANSACTION")
    identity.commit(con, generation)
    state.set_meta(con, "deletions_allowed_for_inputs", "")  # published: the allowance is used up
    state.finish_run(con, run_id, "ok", 0, generation=generation,
                     counts={"records": records_total, "candidate_pairs": block_report.candidate_pairs,
                             "zones": report["zones"], "clusters": cluster_report.clusters,
                             "timings_s": timer.timings, "reuse": scored.reuse},
                     judge=judge_report.as_dict())
    con.execute("COMMIT")
    return RunResult(report=report, output_dir=config.output_dir, summary=summarise(report))


def summarise(report: dict) -> str:
    records = ", ".join(f"{k} {v:,}" for k, v in report["records"].items())
    z = report["zones"]
    zb = report["zones_before_judge"]
    c = report["clusters"]
    t = report["timings_s"]
    judge = report["judge"]
    lines = [
        f"records:          {report['records_total']:,} ({records})",
        f"candidate pairs:  {report['blocking']['candidate_pairs']:,}"
        + (f" ({report['blocking']['capped_blocks']:,} oversized blocks capped)"
           if report["blocking"]["capped_blocks"] else ""),
        f"model zones:      match {zb['match']:,}, review {zb['review']:,}, non_match {zb['non_match']:,}"
        f" ({report['review_per_100_records']} review pairs per 100 records)",
    ]
    if judge.get("skipped"):
        lines.append(f"judge:            skipped ({judge.get('skip_reason', '')})")
    else:
        lines.append(f"judge:            {judge.get('requests_sent', 0):,} requests sent, "
                     f"{judge.get('cache_hits', 0):,} cached; after: match {z['match']:,}, "
                     f"review {z['review']:,}, non_match {z['non_match']:,}")
    lines += [
        f"clusters:         {c['clusters']:,} ({c['singletons']:,} singletons, largest {c['largest']})",
        "time per stage:   " + ", ".join(f"{k} {v:.2f}s" for k, v in t.items() if k != "total")
        + f"; total {t.get('total', 0):.2f}s",
    ]
    return "\n".join(lines)


__all__ = ["run", "RunResult", "summarise", "connect", "compact_state", "StateLockedError", "InputError"]
