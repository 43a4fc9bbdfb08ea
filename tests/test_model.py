import math

import duckdb
import numpy as np
import pyarrow as pa

from dedupe.compare import Comparison
from dedupe.config import ModelSettings
from dedupe.model import ModelParams, estimate_m, freeze_term_frequencies, score_sql

A = Comparison("a", "false", (("exact", "true"), ("close", "true")))
B = Comparison("b", "false", (("exact", "true"),))


def _simulated_levels(n_match: int, n_non: int, seed: int = 0) -> pa.Table:
    """Agreement patterns drawn from known m and u: a has 3 levels, b has 2."""
    rng = np.random.default_rng(seed)
    m_a, u_a = [0.05, 0.15, 0.80], [0.90, 0.08, 0.02]  # levels 0, 1, 2
    m_b, u_b = [0.10, 0.90], [0.95, 0.05]
    a = np.concatenate([rng.choice(3, n_match, p=m_a), rng.choice(3, n_non, p=u_a)])
    b = np.concatenate([rng.choice(2, n_match, p=m_b), rng.choice(2, n_non, p=u_b)])
    n = n_match + n_non
    return pa.table({"rid_l": np.arange(n), "rid_r": np.arange(n) + n, "a": a.astype(np.int8),
                     "b": b.astype(np.int8)})


def test_em_recovers_m_and_the_match_share_with_u_known():
    con = duckdb.connect()
    con.register("levels", _simulated_levels(2_000, 18_000))
    u = {"a": {0: 0.90, 1: 0.08, 2: 0.02}, "b": {0: 0.95, 1: 0.05}}
    m, prior, iterations = estimate_m(con, [A, B], "levels", u, ModelSettings())
    assert abs(prior - 0.10) < 0.02
    assert abs(m["a"][2] - 0.80) < 0.05
    assert abs(m["b"][1] - 0.90) < 0.05
    assert iterations > 1
    again = estimate_m(con, [A, B], "levels", u, ModelSettings())
    assert again == (m, prior, iterations)  # deterministic


def test_term_frequency_makes_a_shared_value_weaker_evidence_than_a_rare_one():
    con = duckdb.connect()
    # 10 records share one phone (an office line); two others share a rare one.
    con.execute("CREATE TABLE std AS SELECT range AS rid, CASE WHEN range < 10 THEN '+12125550100' "
                "WHEN range < 12 THEN '+12125559999' ELSE '+1212555' || (1000 + range) END AS phone "
                "FROM range(100)")
    con.execute("CREATE TABLE levels AS SELECT * FROM (VALUES (0, 1, 1), (10, 11, 1), (20, 21, 0)) t(rid_l, rid_r, phone)")
    phone = Comparison("phone", "false", (("exact", "true"),), tf_column="phone")
    params = ModelParams(prior=0.01, m={"phone": {1: 0.9, 0: 0.1}}, u={"phone": {1: 0.02, 0: 0.98}})
    freeze_term_frequencies(con, [phone])
    w = dict(con.execute(f"SELECT rid_l, match_weight FROM ({score_sql([phone], params, 'levels')})").fetchall())
    assert w[10] > w[0]  # the rare shared number says more than the office line
    no_tf_exact = math.log2(0.01 / 0.99) + math.log2(0.9 / 0.02)
    assert w[0] < no_tf_exact
    assert abs(w[20] - (math.log2(0.01 / 0.99) + math.log2(0.1 / 0.98))) < 1e-9


def test_term_frequencies_are_kept_with_the_model_so_an_unchanged_pair_keeps_its_score():
    con = duckdb.connect()
    con.execute("CREATE TABLE std AS SELECT range AS rid, CASE WHEN range < 10 THEN '+12125550100' "
                "ELSE '+1212555' || (1000 + range) END AS phone FROM range(100)")
    con.execute("CREATE TABLE levels AS SELECT * FROM (VALUES (0, 1, 1), (50, 51, 1)) t(rid_l, rid_r, phone)")
    phone = Comparison("phone", "false", (("exact", "true"),), tf_column="phone")
    params = ModelParams(prior=0.01, m={"phone": {1: 0.9, 0: 0.1}}, u={"phone": {1: 0.02, 0: 0.98}})
    freeze_term_frequencies(con, [phone])
    before = con.execute(f"SELECT * FROM ({score_sql([phone], params, 'levels')}) ORDER BY ALL").fetchall()
    # Thirty more colleagues join the office line: the shares move, the frozen ones do not.
    con.execute("INSERT INTO std SELECT range, '+12125550100' FROM range(100, 130)")
    after = con.execute(f"SELECT * FROM ({score_sql([phone], params, 'levels')}) ORDER BY ALL").fetchall()
    assert after == before
    # A value first seen after training gets no adjustment: the plain m/u weight.
    con.execute("UPDATE std SET phone = '+19998887777' WHERE rid IN (50, 51)")
    w = dict(con.execute(f"SELECT rid_l, match_weight FROM ({score_sql([phone], params, 'levels')})").fetchall())
    assert abs(w[50] - (math.log2(0.01 / 0.99) + math.log2(0.9 / 0.02))) < 1e-9


def test_scores_counted_with_other_term_frequencies_are_never_kept():
    # A retrain can give the very same weights while the frequencies it counts are new: every
    # stored score must then be computed again, not only the new pairs'.
    from types import SimpleNamespace

    from dedupe.model import recount_term_frequencies, score_pairs
    from dedupe.state import ensure_schema

    con = duckdb.connect()
    ensure_schema(con)
    con.execute("CREATE TABLE std AS SELECT range AS rid, CASE WHEN range < 10 THEN '+12125550100' "
                "ELSE '+1212555' || (1000 + range) END AS phone FROM range(100)")
    con.execute("CREATE TABLE comparisons AS SELECT * FROM (VALUES (0, 1, 0, 0, 1), (50, 51, 0, 0, 0)) "
                "t(rid_l, rid_r, key_l, key_r, phone)")
    phone = Comparison("phone", "false", (("exact", "true"),), tf_column="phone")
    params = ModelParams(prior=0.01, m={"phone": {1: 0.9, 0: 0.1}}, u={"phone": {1: 0.02, 0: 0.98}})
    config = SimpleNamespace(model=SimpleNamespace(tf_adjustment=True))
    recount_term_frequencies(con, config, [phone])
    assert score_pairs(con, config, [phone], params) == {"scored": 2, "kept": 0}
    assert score_pairs(con, config, [phone], params) == {"scored": 0, "kept": 2}
    before = con.execute("SELECT match_weight FROM comparisons WHERE rid_l = 0").fetchall()
    con.execute("INSERT INTO std SELECT range, '+12125550100' FROM range(100, 130)")  # the line grows
    recount_term_frequencies(con, config, [phone])
    assert score_pairs(con, config, [phone], params) == {"scored": 2, "kept": 0}
    assert con.execute("SELECT match_weight FROM comparisons WHERE rid_l = 0").fetchall() < before
