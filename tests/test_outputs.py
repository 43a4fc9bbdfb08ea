"""Publication with files written in the background (``Publisher.copy_query_in_background``)."""

from __future__ import annotations

import duckdb
import pytest

from dedupe.outputs import Publisher


def _con(tmp_path):
    con = duckdb.connect(str(tmp_path / "state.duckdb"))
    con.execute("CREATE TABLE t AS SELECT range AS i, 'v' || range AS s FROM range(50000)")
    return con


def test_a_file_written_in_the_background_is_complete_when_published(tmp_path):
    con = _con(tmp_path)
    out = tmp_path / "out"
    pub = Publisher(out, 1)
    pub.copy_query_in_background(con, "SELECT * FROM t ORDER BY i DESC", "t.parquet")
    pub.copy_query(con, "SELECT count(*) AS n FROM t", "n.csv")
    pub.publish()
    rows = con.execute(f"SELECT i FROM '{out / 't.parquet'}'").fetchall()
    assert [r[0] for r in rows] == list(range(49999, -1, -1))
    assert (out / "n.csv").read_text().splitlines() == ["n", "50000"]


def test_a_failed_background_file_fails_the_publication_and_leaves_the_previous_outputs(tmp_path):
    con = _con(tmp_path)
    out = tmp_path / "out"
    first = Publisher(out, 1)
    first.copy_query(con, "SELECT 1 AS night", "night.csv")
    first.publish()
    pub = Publisher(out, 2)
    pub.copy_query_in_background(con, "SELECT * FROM no_such_table", "t.parquet")
    pub.copy_query(con, "SELECT 2 AS night", "night.csv")
    with pytest.raises(duckdb.CatalogException):
        try:
            pub.publish()
        except BaseException:
            pub.discard()
            raise
    assert (out / "night.csv").read_text().splitlines() == ["night", "1"]
    assert not list(out.glob(".staging-*")) and not (out / "runs" / "2").exists()


def test_discarding_stops_and_waits_for_background_files(tmp_path):
    con = _con(tmp_path)
    out = tmp_path / "out"
    pub = Publisher(out, 1)
    pub.copy_query_in_background(con, "SELECT a.i, b.s FROM t a, t b ORDER BY a.i, b.s", "big.parquet")
    pub.discard()
    assert not list(out.glob(".staging-*"))
    con.execute("SELECT 1").fetchall()  # the connection is usable again
