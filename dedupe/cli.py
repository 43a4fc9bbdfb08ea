"""The ``dedupe`` command line: thin wrappers over the pipeline, evaluation and judge modules.

Exit codes: 0 done; 2 bad config or input (one line per problem, naming the file, row or field);
75 waiting on a Message Batch (the next run resumes it); 1 anything else, including a second run
refused because another holds the state database.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer

from dedupe.config import ConfigError, load_config

EXIT_BAD_INPUT = 2
EXIT_PENDING = 75

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Deduplicate and link contact records from several exports into golden records.\n\n"
         "Exit codes: 0 done, 2 bad config or input, 75 waiting on an LLM batch (run again later "
         "to resume), 1 anything else.",
)


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _load(config: Path, output_dir: Optional[Path] = None):
    try:
        return load_config(config, output_dir)
    except ConfigError as e:
        for problem in e.problems:
            typer.echo(f"error: {e.path}: {problem}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)


@app.command()
def run(
    config: Path = typer.Argument(..., help="The project's TOML config."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", "-o",
                                              help="Write outputs here instead of [project] output_dir."),
    full: bool = typer.Option(False, "--full", help="Recompute every stage instead of reusing what "
                              "unchanged records and pairs already have (same results, slower)."),
    retrain: bool = typer.Option(False, "--retrain", help="Fit the model again instead of reusing the "
                                 "stored one (scores move; golden ids stay stable)."),
    allow_deletions: bool = typer.Option(False, "--allow-deletions", help="Accept a source that lost "
                                         "more than [project] max_deleted_share of the records the last "
                                         "run published (refused by default: a truncated export would "
                                         "retire their golden ids)."),
) -> None:
    """Run the whole pipeline and write clusters, golden records, pairs and a run report.

    Nightly use: runs are incremental (only new and changed records are standardised and compared;
    the LLM judge only sees pairs it has not judged), golden-record ids are stable, and a run
    waiting on an LLM batch exits 75 and resumes on the next run."""
    from dedupe.ingest import InputError
    from dedupe.judge import JudgeBudgetError, JudgeError, JudgePending
    from dedupe.pipeline import StateLockedError, run as run_pipeline

    cfg = _load(config, output_dir)
    try:
        result = run_pipeline(cfg, full=full, retrain=retrain, allow_deletions=allow_deletions)
    except InputError as e:
        _fail(str(e), EXIT_BAD_INPUT)
    except JudgeBudgetError as e:
        _fail(str(e), EXIT_BAD_INPUT)
    except JudgePending as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(EXIT_PENDING)
    except (StateLockedError, JudgeError) as e:
        _fail(str(e), 1)
    typer.echo(result.summary)
    typer.echo(f"outputs:          {result.output_dir}")


@app.command()
def compact(
    config: Path = typer.Argument(..., help="The project's TOML config."),
) -> None:
    """Rewrite the state database without the space the nightly runs leave behind.

    Nights change the state's tables in place: the file grows and its scans slow down. Run this
    now and then, for example weekly. It is refused while a run is going on, and a compaction
    that is killed leaves the state as it was."""
    from dedupe.ingest import InputError
    from dedupe.pipeline import StateLockedError, compact_state
    from dedupe.state import CompactionError

    cfg = _load(config)
    try:
        before, after = compact_state(cfg)
    except InputError as e:
        _fail(str(e), EXIT_BAD_INPUT)
    except (StateLockedError, CompactionError) as e:
        _fail(str(e), 1)
    typer.echo(f"{cfg.state}: {before / 1e6:,.1f} MB -> {after / 1e6:,.1f} MB")


@app.command()
def evaluate(
    config: Path = typer.Argument(..., help="The project's TOML config (its output_dir is read)."),
    truth: Path = typer.Option(..., "--truth", help="CSV with columns source, record_id, entity_id."),
    output_dir: Optional[Path] = typer.Option(None, "--output-dir", "-o", help="Outputs to evaluate."),
    as_json: bool = typer.Option(False, "--json", help="Print the full JSON instead of the summary."),
) -> None:
    """Pairwise precision/recall/F1 (within and across sources), blocking recall, cluster counts and
    the worst false merges and misses of the last run; also written to evaluation.json."""
    from dedupe.evaluate import evaluate as run_evaluation, format_evaluation, write_evaluation
    from dedupe.ingest import InputError

    cfg = _load(config, output_dir)
    try:
        result = run_evaluation(cfg.output_dir, truth.resolve())
    except InputError as e:
        _fail(str(e), EXIT_BAD_INPUT)
    path = write_evaluation(cfg.output_dir, result)
    typer.echo(json.dumps(result, indent=2) if as_json else format_evaluation(result))
    typer.echo(f"written:          {path}")


@app.command()
def runs(
    config: Path = typer.Argument(..., help="The project's TOML config."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the run history recorded in the state database."""
    from dedupe.state import list_runs

    cfg = _load(config)
    history = list_runs(cfg.state)
    if as_json:
        typer.echo(json.dumps(history, indent=2, default=str))
        return
    if not history:
        typer.echo(f"no runs recorded in {cfg.state}")
        return
    typer.echo(f"{'run':>4}  {'started (UTC)':<19}  {'seconds':>8}  {'status':<8} {'exit':>4}  "
               f"{'mode':<11} {'gen':>4}  {'records':>9}  {'pairs':>10}  message")
    for r in history:
        counts = json.loads(r["counts"]) if r["counts"] else {}
        secs = (r["finished_at"] - r["started_at"]).total_seconds() if r["finished_at"] else None
        typer.echo(f"{r['run_id']:>4}  {str(r['started_at'])[:19]:<19}  "
                   f"{'' if secs is None else f'{secs:.1f}':>8}  {r['status']:<8} "
                   f"{'' if r['exit_code'] is None else r['exit_code']:>4}  {r['mode']:<11} "
                   f"{r['generation'] or '':>4}  {counts.get('records', ''):>9}  "
                   f"{counts.get('candidate_pairs', ''):>10}  {r['message'] or ''}")


@app.command()
def review(
    config: Path = typer.Argument(..., help="The project's TOML config."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (another address needs --token)."),
    port: int = typer.Option(8765, "--port"),
    token: Optional[str] = typer.Option(None, "--token", envvar="DEDUPE_REVIEW_TOKEN",
                                        help="Required to bind beyond 127.0.0.1; reviewers open the app with it."),
) -> None:
    """Serve the analyst review app over the state database (queue, clusters, decisions)."""
    from dedupe.review import ReviewError, serve

    _load(config)
    try:
        serve(config, host=host, port=port, token=token, log=typer.echo)
    except ReviewError as e:
        _fail(str(e), EXIT_BAD_INPUT)


decisions_app = typer.Typer(help="Analyst decisions as CSV, for review in a spreadsheet.",
                            no_args_is_help=True)
app.add_typer(decisions_app, name="decisions")


@decisions_app.command("export")
def decisions_export(
    config: Path = typer.Argument(..., help="The project's TOML config."),
    output: Optional[Path] = typer.Option(None, "--output", help="Default: OUTPUT_DIR/analyst_decisions.csv."),
) -> None:
    """Write every analyst decision (undone ones too) as CSV."""
    import duckdb

    from dedupe import decisions

    cfg = _load(config)
    target = output or cfg.output_dir / "analyst_decisions.csv"
    if not cfg.state.is_file():
        _fail(f"{cfg.state}: no state database yet; run `dedupe run` first", EXIT_BAD_INPUT)
    con = duckdb.connect(str(cfg.state), read_only=True)
    try:
        n = decisions.export_csv(con, target)
    finally:
        con.close()
    typer.echo(f"{n} decision rows written to {target}")


@decisions_app.command("import")
def decisions_import(
    config: Path = typer.Argument(..., help="The project's TOML config."),
    file: Path = typer.Argument(..., help="CSV as written by `dedupe decisions export`."),
) -> None:
    """Add decisions from a CSV (idempotent: rows already present are not added twice)."""
    from dedupe import decisions
    from dedupe.pipeline import StateLockedError, connect

    cfg = _load(config)
    try:
        con = connect(cfg)
    except StateLockedError as e:
        _fail(str(e), 1)
    try:
        decisions.ensure_schema(con)
        counts = decisions.import_csv(con, file)
    except decisions.DecisionsError as e:
        for problem in e.problems:
            typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    finally:
        con.close()
    typer.echo(f"{counts.inserted} added ({counts.actions} actions), {counts.unchanged} unchanged, "
               f"{counts.undone} undone, {counts.rows} rows")


@app.command()
def judge(
    config: Path = typer.Argument(..., help="The project's TOML config."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="Write the batch requests as JSONL and the cost estimate; send nothing."),
    output: Optional[Path] = typer.Option(None, "--output", help="JSONL path (default: OUTPUT_DIR/judge_requests.jsonl)."),
) -> None:
    """Show exactly what the LLM judge would send (``--dry-run``). A normal ``dedupe run`` judges."""
    from dedupe.ingest import InputError
    from dedupe.pipeline import StateLockedError, dry_run_judge

    if not dry_run:
        _fail("only --dry-run is supported here; `dedupe run` submits the judge's batches", EXIT_BAD_INPUT)
    cfg = _load(config)
    target = output or cfg.output_dir / "judge_requests.jsonl"
    try:
        report = dry_run_judge(cfg, target)
    except InputError as e:
        _fail(str(e), EXIT_BAD_INPUT)
    except StateLockedError as e:
        _fail(str(e), 1)
    typer.echo(json.dumps(report, indent=2, default=str))
    typer.echo(f"requests written to {target}")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


def entry() -> None:
    """The installed ``dedupe`` command: ``main``, then a fast exit.

    By the time a command returns, everything it wrote is closed (the state database, published
    files, the lock). Tearing down the interpreter would still take about half a second (the
    Anthropic SDK's pydantic models, pyarrow) for nothing, on every nightly run, so the
    process flushes its streams and ends at once. Tracebacks still take the normal path."""
    try:
        main()
        code = 0
    except SystemExit as e:
        if e.code is not None and not isinstance(e.code, int):
            raise  # a message to print: let Python do it
        code = e.code or 0
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
