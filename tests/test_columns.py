"""Python values handed to DuckDB without pyarrow (dedupe.columns), and a run that never pays for
importing pandas."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import duckdb
import numpy as np

from dedupe.columns import registered
from tests.e2e.test_demo import ROOT, _config
from tests.judge.fake_batches import FakeBatchesServer


def test_registered_columns_keep_text_nulls_lists_and_numbers():
    con = duckdb.connect()
    columns = {
        "text": ["Zoë", None, "O'Brien"],
        "flag": [True, None, False],
        # equal-length lists must stay one list per row, not become a 2-D array
        "family": [["bob", "robert"], None, ["ann", "anne"]],
        "n": np.array([1, 2, 3], dtype=np.int64),
    }
    with registered(con, "t", columns):
        rows = con.execute("SELECT CAST(text AS VARCHAR), CAST(flag AS BOOLEAN), CAST(family AS VARCHAR[]), n "
                           "FROM t").fetchall()
    assert rows == [("Zoë", True, ["bob", "robert"], 1), (None, None, None, 2), ("O'Brien", False, ["ann", "anne"], 3)]
    assert not con.execute("SELECT * FROM duckdb_views() WHERE view_name = 't'").fetchall()  # gone afterwards


def test_empty_and_all_null_columns_still_take_their_type():
    con = duckdb.connect()
    with registered(con, "t", {"a": [], "b": []}):
        con.execute("CREATE TABLE e AS SELECT CAST(a AS VARCHAR) AS a, CAST(b AS BOOLEAN) AS b FROM t")
    with registered(con, "t", {"a": [None, None]}):
        con.execute("CREATE TABLE n AS SELECT CAST(a AS VARCHAR[]) AS a FROM t")
    assert con.execute("SELECT column_name, data_type FROM information_schema.columns "
                       "WHERE table_name IN ('e', 'n') ORDER BY table_name, column_name").fetchall() == [
        ("a", "VARCHAR"), ("b", "BOOLEAN"), ("a", "VARCHAR[]")]
    assert con.execute("SELECT count(*) FROM e").fetchall() == [(0,)]
    assert con.execute("SELECT count(*), count(a) FROM n").fetchall() == [(2, 0)]


def test_registered_with_types_casts_every_column_even_empty_or_all_null_ones():
    con = duckdb.connect()
    types = {"a": "VARCHAR", "b": "BIGINT", "c": "VARCHAR[]"}
    with registered(con, "t", {"a": [], "b": [], "c": []}, types):
        con.execute("CREATE TABLE e AS SELECT * FROM t")
    with registered(con, "t", {"a": [None, "x"], "b": [None, None], "c": [None, ["y"]]}, types):
        con.execute("CREATE TABLE n AS SELECT * FROM t")
    assert con.execute("SELECT table_name, column_name, data_type FROM information_schema.columns "
                       "WHERE table_name IN ('e', 'n') ORDER BY table_name, ordinal_position").fetchall() == [
        (t, c, ty) for t in ("e", "n") for c, ty in types.items()]
    assert con.execute("SELECT * FROM n").fetchall() == [(None, None, None), ("x", None, ["y"])]
    assert not con.execute("SELECT * FROM duckdb_views() WHERE NOT internal AND view_name IN ('t', 't__values')").fetchall()  # gone afterwards


def test_a_run_with_the_judge_never_imports_pandas(tmp_path):
    # pyarrow imports pandas (~0.3 s of CPU) on its first conversion from Python objects; every
    # hand-over to DuckDB avoids it. A whole run, judge and all, must not pay for it.
    config = _config(tmp_path, "[judge]\nbackend = \"auto\"\npoll_interval_s = 0.01\nmax_wait_s = 60\n")
    script = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from dedupe.config import load_config
        from dedupe import pipeline
        result = pipeline.run(load_config(Path({str(config)!r})), log=lambda m: None)
        print("judged", result.report["judge"]["requests_sent"])
        print("pandas imported", "pandas" in sys.modules)
    """)
    with FakeBatchesServer() as fake:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")},
               "ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake.url}
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                              cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "pandas imported False" in done.stdout
    assert int(done.stdout.split("judged ")[1].split()[0]) > 0  # the judge's hand-overs ran too
