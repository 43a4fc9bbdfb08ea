"""``state.compact``: the state file rewritten without the space the nights leave, or left alone."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import duckdb
import pytest

from dedupe import state


def _holey_state(path: Path) -> list[tuple]:
    """A state-like file with a keyed table that lost most of its rows in place; returns the rows left."""
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("INSERT INTO meta SELECT 'k' || i, repeat('v', 100) FROM range(60000) t(i)")
    con.execute("DELETE FROM meta WHERE NOT key LIKE 'k1%'")
    con.close()
    return _rows(path)


def _rows(path: Path) -> list[tuple]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.execute("SELECT * FROM meta ORDER BY key").fetchall()
    finally:
        con.close()


def test_compact_keeps_rows_keys_and_mode_even_when_the_state_is_named_like_its_copy(tmp_path):
    # DuckDB names a file's catalog after it: a state called compacted.duckdb must not clash with
    # the name the copy is attached under.
    path = tmp_path / "compacted.duckdb"
    rows = _holey_state(path)
    path.chmod(0o600)  # contact data: the copy must not come out more readable
    size = path.stat().st_size
    con = duckdb.connect(str(path))
    state.compact(con, path)
    con.close()
    assert _rows(path) == rows
    assert path.stat().st_size < size
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["compacted.duckdb"]
    con = duckdb.connect(str(path))
    with pytest.raises(duckdb.ConstraintException):  # the key came along
        con.execute("INSERT INTO meta VALUES ('k1', 'again')")
    con.close()


def test_a_failed_compaction_removes_its_copy_and_leaves_the_state_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "state.duckdb"
    rows = _holey_state(path)
    before = path.read_bytes()

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    con = duckdb.connect(str(path))
    monkeypatch.setattr(state.os, "fsync", disk_full)
    with pytest.raises(state.CompactionError) as failed:
        state.compact(con, path)
    monkeypatch.undo()
    message = str(failed.value)
    assert "\n" not in message and str(path) in message and "No space left on device" in message
    assert "the state was left as it was" in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.duckdb"]  # the copy went too
    assert con.execute("SELECT count(*) FROM meta").fetchall()[0][0] == len(rows)  # still usable
    con.close()
    assert path.read_bytes() == before
