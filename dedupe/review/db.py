"""Short-lived connections to the state database.

A pipeline run holds DuckDB's exclusive file lock for its whole duration, and any connection the
app keeps open would make that run fail. So the app opens a connection per request (read-only for
pages, read-write only while a decision is written) and closes it before rendering. A request that
finds the file locked gets ``Busy``, which the app turns into a clear "a run is using the state
database" page instead of waiting.

Within this process, requests take turns on one lock: DuckDB refuses to open the same file twice
with different settings (read-only and read-write) in one process, and a local review tool has one
or two users, so serialising its database work costs nothing noticeable.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import duckdb

from dedupe import decisions

_lock = threading.Lock()

PIPELINE_TABLES = ("std", "cluster_ids", "pairs", "golden", "links")


class Busy(Exception):
    """Another process (a ``dedupe run``) holds the state database."""


class NoState(Exception):
    """There is no state database, or it has no finished run in it yet."""


def run_in_progress(state: Path) -> bool:
    """Whether a live ``dedupe run`` holds the run lock file beside the state database.

    A run takes that lock just before it opens DuckDB: checking it first keeps the app from opening
    the database in that moment, which would make the run's own connection fail. A stale lock (its
    process is gone) does not count."""
    lock = state.with_name(state.name + ".lock")
    try:
        holder = json.loads(lock.read_text())
    except FileNotFoundError:
        return False
    except (OSError, ValueError):
        return True  # being written right now
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True
    return True


@contextmanager
def connect(state: Path, write: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection for one request; ``write`` also makes sure the decisions table exists."""
    if not state.is_file():
        raise NoState(f"{state} does not exist yet: run `dedupe run` on this config first")
    if run_in_progress(state):
        raise Busy(f"{state} is in use by a `dedupe run`")
    with _lock:
        try:
            con = duckdb.connect(str(state), read_only=not write)
        except duckdb.IOException as e:
            if "lock" in str(e).lower():
                raise Busy(f"{state} is in use by another process (most likely a `dedupe run`)") from None
            raise
        try:
            if write:
                decisions.ensure_schema(con)
            yield con
        finally:
            con.close()


def missing_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    have = {r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE schema_name = 'main' "
                                      "UNION SELECT view_name FROM duckdb_views() "
                                      "WHERE schema_name = 'main' AND NOT internal").fetchall()}
    return [t for t in PIPELINE_TABLES if t not in have]


__all__ = ["connect", "run_in_progress", "Busy", "NoState", "missing_tables"]
