"""The glue between scoring and clustering: the review budget and which links are strong."""

from __future__ import annotations

import math

import duckdb

from dedupe.config import Thresholds
from dedupe.pipeline import _cap_review_band, _links


class _Config:  # _links reads only the thresholds
    thresholds = Thresholds()


def _band(pairs: list[tuple[int, int, float]], records: int, analyst: list[tuple[int, int]] = ()):
    con = duckdb.connect()
    con.execute(f"CREATE TABLE std AS SELECT range AS rid FROM range({records})")
    con.execute("CREATE TABLE zoned_pairs (rid_l BIGINT, rid_r BIGINT, match_probability DOUBLE, "
                "match_weight DOUBLE, decision VARCHAR, decided_by VARCHAR, over_budget BOOLEAN)")
    for a, b, p in pairs:
        con.execute("INSERT INTO zoned_pairs VALUES (?, ?, ?, ?, 'review', 'model', false)",
                    [a, b, p, math.log2(p / (1 - p))])
    con.execute("CREATE TABLE analyst_pairs (rid_l BIGINT, rid_r BIGINT, kind VARCHAR)")
    for a, b in analyst:
        con.execute("INSERT INTO analyst_pairs VALUES (?, ?, 'cannot_link')", [a, b])
    return con


def test_over_budget_the_pairs_nearest_even_odds_stay_and_the_rest_fall_back():
    # 200 records at 1 pair per 100: room for two review pairs out of five.
    con = _band([(1, 2, 0.52), (3, 4, 0.97), (5, 6, 0.45), (7, 8, 0.25), (9, 10, 0.60)], 200)
    cut = _cap_review_band(con, Thresholds(review_budget=1))
    assert cut == 3
    rows = dict(((a, b), (d, o)) for a, b, d, o in con.execute(
        "SELECT rid_l, rid_r, decision, over_budget FROM zoned_pairs").fetchall())
    assert rows[(1, 2)] == ("review", False) and rows[(5, 6)] == ("review", False)
    assert rows[(3, 4)] == ("match", True)  # at or above the fallback threshold (0.95)
    assert rows[(7, 8)] == ("non_match", True) and rows[(9, 10)] == ("non_match", True)


def test_pairs_an_analyst_decided_do_not_use_up_the_budget():
    con = _band([(1, 2, 0.52), (3, 4, 0.50), (5, 6, 0.40)], 200, analyst=[(3, 4)])
    assert _cap_review_band(con, Thresholds(review_budget=1)) == 0  # two left for the judge: fits


def test_a_link_the_budget_made_is_weak_so_the_guard_can_refuse_it():
    con = duckdb.connect()
    con.execute("CREATE TABLE analyst_pairs (rid_l BIGINT, rid_r BIGINT, kind VARCHAR)")
    con.execute("""CREATE TABLE pairs AS SELECT * FROM (VALUES
        (1, 2, 0.999, 'match', 'model', false),
        (3, 4, 0.970, 'match', 'model', true),
        (5, 6, 0.970, 'match', 'analyst', true)) t(rid_l, rid_r, match_probability, decision, decided_by, over_budget)""")
    _links(con, _Config())
    strong = dict(((a, b), s) for a, b, s in con.execute("SELECT rid_l, rid_r, strong FROM links").fetchall())
    assert strong == {(1, 2): True, (3, 4): False, (5, 6): True}
