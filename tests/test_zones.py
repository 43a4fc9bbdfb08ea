"""dedupe.zones: the review budget, the skipped repeats of the band, and which links are strong."""

from __future__ import annotations

import math

import duckdb

from dedupe.config import Thresholds
from dedupe.zones import cap_review_band, skip_redundant_review, write_links


class _Config:  # write_links reads only the thresholds
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


def test_over_budget_the_likeliest_pairs_stay_and_the_rest_fall_back():
    # 200 records at 1 pair per 100: room for two review pairs out of five.
    con = _band([(1, 2, 0.52), (3, 4, 0.97), (5, 6, 0.45), (7, 8, 0.25), (9, 10, 0.60)], 200)
    cut = cap_review_band(con, Thresholds(review_budget=1))
    assert cut == 3
    rows = dict(((a, b), (d, o)) for a, b, d, o in con.execute(
        "SELECT rid_l, rid_r, decision, over_budget FROM zoned_pairs").fetchall())
    # Unjudged, the 0.97 pair would be linked: it is the one a wrong link would cost most.
    assert rows[(3, 4)] == ("review", False) and rows[(9, 10)] == ("review", False)
    assert rows[(1, 2)] == rows[(5, 6)] == rows[(7, 8)] == ("non_match", True)


def test_a_cut_pair_at_or_above_the_fallback_is_linked_weakly():
    con = _band([(1, 2, 0.99), (3, 4, 0.98), (5, 6, 0.96)], 100)
    assert cap_review_band(con, Thresholds(review_budget=1)) == 2
    rows = dict(((a, b), (d, o)) for a, b, d, o in con.execute(
        "SELECT rid_l, rid_r, decision, over_budget FROM zoned_pairs").fetchall())
    assert rows == {(1, 2): ("review", False), (3, 4): ("match", True), (5, 6): ("match", True)}


def _zoned(pairs: list[tuple[int, int, float, str]], analyst: list[tuple[int, int]] = (),
           kind: str = "cannot_link"):
    con = duckdb.connect()
    con.execute("CREATE TABLE zoned_pairs (rid_l BIGINT, rid_r BIGINT, match_probability DOUBLE, "
                "match_weight DOUBLE, decision VARCHAR, judge_skipped BOOLEAN)")
    for a, b, p, decision in pairs:
        con.execute("INSERT INTO zoned_pairs VALUES (?, ?, ?, ?, ?, false)",
                    [a, b, p, math.log2(p / (1 - p)), decision])
    con.execute("CREATE TABLE analyst_pairs (rid_l BIGINT, rid_r BIGINT, kind VARCHAR)")
    for a, b in analyst:
        con.execute("INSERT INTO analyst_pairs VALUES (?, ?, ?)", [a, b, kind])
    return con


def _sent(con) -> set[tuple[int, int]]:
    return set(con.execute("SELECT rid_l, rid_r FROM zoned_pairs WHERE decision = 'review'").fetchall())


def test_the_judge_is_asked_once_per_pair_of_clusters():
    # Clusters {1, 2} and {3, 4} by the model's matches; three review pairs between them.
    con = _zoned([(1, 2, 0.999, "match"), (3, 4, 0.999, "match"),
                  (1, 3, 0.40, "review"), (2, 4, 0.70, "review"), (1, 4, 0.30, "review"),
                  (5, 6, 0.30, "review")])
    assert skip_redundant_review(con, Thresholds()) == 2
    assert _sent(con) == {(2, 4), (5, 6)}  # the strongest between the two clusters, and a lone pair
    skipped = con.execute("SELECT rid_l, rid_r, decision FROM zoned_pairs WHERE judge_skipped").fetchall()
    assert sorted(skipped) == [(1, 3, "non_match"), (1, 4, "non_match")]


def test_a_review_pair_the_matches_already_join_is_not_sent():
    # Unjudged, the 0.97 pair stays what it was: a weak link (inside the cluster, it changes nothing).
    con = _zoned([(1, 2, 0.999, "match"), (2, 3, 0.999, "match"), (1, 3, 0.30, "review"),
                  (2, 4, 0.999, "match"), (3, 4, 0.97, "review")])
    assert skip_redundant_review(con, Thresholds()) == 2
    assert _sent(con) == set()
    decided = dict(((a, b), d) for a, b, d in con.execute(
        "SELECT rid_l, rid_r, decision FROM zoned_pairs WHERE judge_skipped").fetchall())
    assert decided == {(1, 3): "non_match", (3, 4): "match"}


def test_pairs_the_fallback_would_link_are_always_sent():
    # Unjudged, a pair at or above the fallback is linked: its own verdict matters.
    con = _zoned([(1, 2, 0.999, "match"), (3, 4, 0.999, "match"), (1, 3, 0.97, "review"),
                  (2, 4, 0.96, "review"), (2, 3, 0.50, "review"), (5, 6, 0.999, "match"), (5, 7, 0.98, "review")])
    assert skip_redundant_review(con, Thresholds()) == 1
    assert _sent(con) == {(1, 3), (2, 4), (5, 7)}


def test_pairs_an_analyst_decided_are_left_to_the_analyst():
    con = _zoned([(1, 2, 0.999, "match"), (3, 4, 0.999, "match"), (1, 3, 0.60, "review"),
                  (2, 4, 0.40, "review")], analyst=[(1, 3)])
    assert skip_redundant_review(con, Thresholds()) == 0  # (2, 4) is the strongest the judge may see
    assert _sent(con) == {(1, 3), (2, 4)}


def test_pairs_an_analyst_decided_do_not_use_up_the_budget():
    con = _band([(1, 2, 0.52), (3, 4, 0.50), (5, 6, 0.40)], 200, analyst=[(3, 4)])
    assert cap_review_band(con, Thresholds(review_budget=1)) == 0  # two left for the judge: fits


def test_a_link_the_budget_or_the_skip_made_is_weak_so_the_guard_can_refuse_it():
    con = duckdb.connect()
    con.execute("CREATE TABLE analyst_pairs (rid_l BIGINT, rid_r BIGINT, kind VARCHAR)")
    con.execute("""CREATE TEMP TABLE given AS SELECT * FROM (VALUES
        (1, 2, 0.999, 'match', 'model', false, false),
        (3, 4, 0.970, 'match', 'model', true, false),
        (5, 6, 0.970, 'match', 'analyst', true, false),
        (7, 8, 0.970, 'match', 'model', false, true))
        t(rid_l, rid_r, match_probability, decision, decided_by, over_budget, judge_skipped)""")
    # stored as the pipeline stores them: scores with the pairs, decisions beside them
    con.execute("CREATE TABLE comparisons AS SELECT rid_l, rid_r, match_probability FROM given")
    con.execute("CREATE TABLE pair_decisions AS SELECT * EXCLUDE (match_probability) FROM given")
    write_links(con, _Config())
    strong = dict(((a, b), s) for a, b, s in con.execute("SELECT rid_l, rid_r, strong FROM links").fetchall())
    assert strong == {(1, 2): True, (3, 4): False, (5, 6): True, (7, 8): False}


def test_a_match_an_analyst_refused_does_not_make_a_cluster():
    # 1-2 is cannot-linked, so 1 and 2 end apart: 2-3 may be the only way 3 joins 2.
    con = _zoned([(1, 2, 0.998, "match"), (1, 3, 0.80, "review"), (2, 3, 0.67, "review")], analyst=[(1, 2)])
    assert skip_redundant_review(con, Thresholds()) == 0
    assert _sent(con) == {(1, 3), (2, 3)}


def test_an_analysts_must_link_makes_a_cluster():
    con = _zoned([(1, 3, 0.80, "review"), (2, 3, 0.67, "review")], analyst=[(1, 2)], kind="must_link")
    assert skip_redundant_review(con, Thresholds()) == 1
    assert _sent(con) == {(1, 3)}
