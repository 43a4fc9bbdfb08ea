"""The state database between runs: schema, run history, the run lock, the record-id registry.

Everything a nightly job must remember lives in one DuckDB file (``[project] state``):

* ``runs``: one row per run (id, start/end, config hash, input fingerprints, counts, judge usage,
  status and exit code). A run that was killed stays ``running`` until the next run marks it
  ``killed``.
* ``record_registry``: a stable integer ``rid`` per ``(source, record_id)``, assigned once and never
  reused, so intermediate results (standardised rows, comparisons) can be reused by key across
  nights.
* ``golden_ids`` / ``golden_membership`` / ``id_history``: the golden-record id registry (see
  ``dedupe.identity``).
* ``meta``: small key/value facts (the trained model, the signature of the comparisons).

Work tables live here too: ``std``; the blocking (``blocking_keys``, ``blocking_capped``,
``blocking_parts``, ``blocking_records``); ``comparisons`` (each pair's levels and score) and
``pair_decisions`` (the pairs not left as the model's non_match), joined by the view ``pairs``;
the model's term frequencies (``tf_<comparison>``); ``links`` and ``cluster_ids`` (the next night's
clustering basis, written in one transaction); the ``golden`` view over ``golden_base`` /
``golden_delta`` / ``golden_dropped``. They are *caches keyed by content*: a killed run can leave
them from any run without harm, because a row is reused only when the content it was computed from
is unchanged (each stage's own record of what it was computed from says so, not the previous
stage's).

**The lock.** DuckDB already refuses a second writer, but with an unhelpful message and only while
the file is open. A lock file next to the state (``state.duckdb.lock``: pid, host, start time) makes
the refusal explicit for the whole run. A lock left by a process that no longer exists (killed,
machine rebooted) is stale and is taken over, with a log line.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import stat
import threading
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import duckdb

from dedupe.columns import sql_literal

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY,
    started_at TIMESTAMP,
    finished_at TIMESTAMP,
    status VARCHAR,            -- running | ok | pending | failed | killed
    exit_code INTEGER,
    mode VARCHAR,              -- incremental | full
    generation INTEGER,        -- the published output set this run produced (NULL if none)
    config_hash VARCHAR,
    inputs JSON,
    counts JSON,
    judge JSON,
    message VARCHAR
);
CREATE TABLE IF NOT EXISTS record_registry (
    source VARCHAR,
    record_id VARCHAR,
    rid BIGINT,
    PRIMARY KEY (source, record_id)
);
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
"""


class StateLockedError(Exception):
    """Another live process is running on this state."""


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(SCHEMA)


def state_id(con: duckdb.DuckDBPyConnection) -> str:
    """This state database's identity, made once: it names the owner of an output folder."""
    existing = get_meta(con, "state_id")
    if existing:
        return existing
    new = uuid.uuid4().hex
    set_meta(con, "state_id", new)
    return new


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, str]]:
    """(name, type) of each column of a persistent table of the state, in order; [] when there is
    no such table (a state written before the table, or before a column, existed)."""
    return con.execute(
        "SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? AND schema_name = 'main' "
        "AND database_name = current_database() ORDER BY column_index", [table]).fetchall()


def table_columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [name for name, _ in _columns(con, table)]


def column_type(con: duckdb.DuckDBPyConnection, table: str, column: str) -> str | None:
    """The SQL type of a column of a persistent table of the state, or None when it does not exist."""
    return dict(_columns(con, table)).get(column)


def has_table(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    return bool(table_columns(con, table))


def get_meta(con: duckdb.DuckDBPyConnection, key: str) -> str | None:
    rows = con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchall()
    return rows[0][0] if rows else None


def set_meta(con: duckdb.DuckDBPyConnection, key: str, value: str) -> None:
    con.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])


# --------------------------------------------------------------------------------------------
# lock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """An exclusive lock file beside the state DB; ``with RunLock(path, log):``."""

    def __init__(self, state_path: Path, log: Callable[[str], None]):
        self.path = state_path.with_name(state_path.name + ".lock")
        self.log = log
        self.held = False

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(),
              "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        for _attempt in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._read()
                if holder and holder.get("host") == me["host"] and _alive(int(holder.get("pid", -1))):
                    raise StateLockedError(
                        f"{self.path}: another dedupe run (pid {holder['pid']}, started "
                        f"{holder.get('started_at')}) is using this state; not starting a second one")
                if holder and holder.get("host") != me["host"]:
                    raise StateLockedError(
                        f"{self.path}: locked by host {holder.get('host')} (pid {holder.get('pid')}); "
                        f"remove the lock file if that run is gone")
                self.log(f"taking over a stale lock from pid {holder.get('pid') if holder else '?'} "
                         f"(that process is gone)")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise StateLockedError(f"{self.path}: could not take the lock")

    def _read(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def __exit__(self, *exc) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


# --------------------------------------------------------------------------------------------
# run history


def begin_run(con: duckdb.DuckDBPyConnection, mode: str, config_hash: str, inputs: dict) -> int:
    """Record a new run; mark runs left ``running`` by a dead process as ``killed``."""
    con.execute("UPDATE runs SET status = 'killed', message = 'process ended without finishing' "
                "WHERE status = 'running'")
    run_id = con.execute("SELECT coalesce(max(run_id), 0) + 1 FROM runs").fetchall()[0][0]
    con.execute("INSERT INTO runs (run_id, started_at, status, mode, config_hash, inputs) "
                "VALUES (?, now(), 'running', ?, ?, ?)", [run_id, mode, config_hash, json.dumps(inputs)])
    return run_id


def finish_run(con: duckdb.DuckDBPyConnection, run_id: int, status: str, exit_code: int,
               generation: int | None = None, counts: dict | None = None, judge: dict | None = None,
               message: str | None = None) -> None:
    con.execute("""UPDATE runs SET finished_at = now(), status = ?, exit_code = ?, generation = ?,
                   counts = ?, judge = ?, message = ? WHERE run_id = ?""",
                [status, exit_code, generation, json.dumps(counts) if counts is not None else None,
                 json.dumps(judge, default=str) if judge is not None else None, message, run_id])


def last_generation(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute("SELECT coalesce(max(generation), 0) FROM runs WHERE status = 'ok'").fetchall()[0][0]


def list_runs(state_path: Path) -> list[dict]:
    if not state_path.is_file():
        return []
    con = duckdb.connect(str(state_path), read_only=True)
    try:
        if not has_table(con, "runs"):
            return []
        cur = con.execute("SELECT run_id, started_at, finished_at, status, exit_code, mode, generation, "
                          "config_hash, counts, judge, message FROM runs ORDER BY run_id")
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]
    finally:
        con.close()


def input_fingerprints(paths: list[Path]) -> dict:
    """Size and modification time of each input file (cheap; the content hash is per record)."""
    out = {}
    for p in paths:
        try:
            st = p.stat()
            out[str(p)] = {"bytes": st.st_size, "mtime": datetime.fromtimestamp(st.st_mtime, timezone.utc)
                           .isoformat(timespec="seconds")}
        except OSError:
            out[str(p)] = None
    return out


def unchanged_inputs(con: duckdb.DuckDBPyConnection, inputs: dict) -> dict[str, int]:
    """Input files whose size and modification time equal those of the last successful run, with
    that run's id. On a nightly schedule this usually means the upstream export did not refresh."""
    rows = con.execute("SELECT run_id, inputs FROM runs WHERE status = 'ok' ORDER BY run_id DESC LIMIT 1").fetchall()
    if not rows or not rows[0][1]:
        return {}
    run_id, previous = rows[0][0], json.loads(rows[0][1])
    return {path: run_id for path, fp in inputs.items() if fp is not None and previous.get(path) == fp}


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """All statements inside commit together or not at all (a crash rolls them back)."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


class BackgroundCheckpoint(threading.Thread):
    """DuckDB's checkpoint of the night's write-ahead log, on a cursor of its own in a thread
    that starts at once, after ``after()`` returns (the caller's wait for a conflicting read).

    What DuckDB's own checkpoint (at a commit that takes the log past 16 MB) has not done, closing
    the connection would otherwise do on one core at the very end of the run: up to 0.25 s of
    night two at 2 x 100k. Started once the night's tables are written, this runs while the output
    files are (those statements only read), and what is left for ``close()`` is the run's final
    transaction. DuckDB lets reads go on during a checkpoint and makes writers wait for it; it
    refuses to start one while a transaction older than the last commit is open. Such a refusal,
    or any checkpoint error, only means ``close()`` does the work as before: the WAL keeps
    everything committed either way, so nothing here can lose or corrupt state.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, after: Callable[[], None] | None = None):
        super().__init__(name="dedupe-checkpoint", daemon=True)
        self.cursor = con.cursor()
        self.after = after
        self.start()

    def run(self) -> None:
        try:
            if self.after is not None:
                self.after()
            self.cursor.execute("CHECKPOINT")
        except Exception:  # see the class docstring: close() checkpoints instead
            return
        finally:
            self.cursor.close()
        crash_point("checkpointed")


class CompactionError(Exception):
    """A compaction failed; the state was left as it was."""


def compact(con: duckdb.DuckDBPyConnection, path: Path) -> None:
    """Rewrite the state file at ``path`` (open on ``con``) without the space the nights left.

    Nights change tables in place, so their row groups fill with holes and the file with free
    blocks: over 20 simulated nights at 2 x 100k the file grew from 156 to 267 MB and a night slowed
    from 3.6 to 4.2 s (167 MB and 3.9 s once compacted). DuckDB's ``COPY FROM DATABASE`` writes a
    packed copy (tables, constraints, views) with the file's mode and owner, which then replaces
    the file with one rename. The caller holds the run lock. ``con`` keeps DuckDB's own lock on the
    old file until after the rename, so a reader such as the review app cannot write to the file
    being replaced. A failure removes the copy (a full disk is when people compact); a crash before
    the rename leaves the state as it was and a ``.compact`` file that the next compaction removes.
    """
    copy = path.with_name(path.name + ".compact")
    leftovers = (copy, copy.with_name(copy.name + ".wal"))
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    # The log of a killed run goes into the file first: the copy must hold it, and a stale
    # state.duckdb.wal must not be replayed onto the new file.
    con.execute("CHECKPOINT")
    source = con.execute("SELECT current_database()").fetchall()[0][0]
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND NOT temporary ORDER BY table_name").fetchall()]
    alias = f"dedupe_compact_{uuid.uuid4().hex}"  # DuckDB names the state's catalog after its file
    try:
        con.execute(f"ATTACH {sql_literal(copy)} AS {alias}")
        try:
            con.execute(f'COPY FROM DATABASE "{source}" TO {alias}')
            for table in tables:
                before, after = con.execute(
                    f'SELECT (SELECT count(*) FROM "{source}".main."{table}"), '
                    f'(SELECT count(*) FROM {alias}.main."{table}")').fetchall()[0]
                if before != after:
                    raise CompactionError(f"{path}: compacting copied {after:,} of the {before:,} rows "
                                          f"of {table}; the state was left as it was")
        finally:
            con.execute(f"DETACH {alias}")  # writes the rest of the copy, and may fail doing so
        old = path.stat()
        os.chmod(copy, stat.S_IMODE(old.st_mode))  # contact data: not more readable than it was
        with contextlib.suppress(PermissionError):
            os.chown(copy, old.st_uid, old.st_gid)
        with open(copy, "rb+") as f:  # on disk before it takes the state's name
            os.fsync(f.fileno())
    except BaseException as e:
        with contextlib.suppress(duckdb.Error):
            con.execute(f"DETACH DATABASE IF EXISTS {alias}")
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
        if isinstance(e, (duckdb.Error, OSError)):
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CompactionError(f"{path}: compacting failed ({first}); the state was left as it was") from e
        raise
    crash_point("compacted")
    os.replace(copy, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def crash_point(name: str) -> None:
    """Fault injection for the crash-safety tests: DEDUPE_CRASH_AFTER=<name> SIGKILLs this process
    there (after a stage, after publishing with ``published``, or inside a stage at the points
    that name themselves), as a power cut would."""
    if os.environ.get("DEDUPE_CRASH_AFTER") == name:
        os.kill(os.getpid(), signal.SIGKILL)


__all__ = ["column_type", "ensure_schema", "state_id", "RunLock", "StateLockedError", "begin_run", "finish_run", "list_runs",
           "last_generation", "get_meta", "set_meta", "input_fingerprints", "unchanged_inputs", "crash_point", "transaction",
           "BackgroundCheckpoint", "compact", "CompactionError"]
