"""Zones and decisions: from a pair's score to its final decision, and from decisions to links.

    scores -> zone_pairs -> review_table -> (judge) -> apply_verdicts -> pair_decisions -> write_links

**Zones.** A scored pair is ``match`` at or above ``thresholds.match``, ``review`` at or above
``thresholds.review``, else ``non_match`` (``zone_pairs``, into the TEMP table ``zoned_pairs``,
which holds only the pairs at or above the review threshold). ``review`` pairs go to the judge; a
verdict decides them (``decided_by = 'llm'``). Two steps keep the band to what a verdict can
change and what a night may spend: ``skip_redundant_review`` and ``cap_review_band``.

**Final decisions.** An analyst's decision beats the LLM's, which beats the model's
(``apply_verdicts``). Only pairs not left as the model's ``non_match`` are stored, in the state
table ``pair_decisions`` (``MODEL_NON_MATCH`` is what every other pair has); the view ``pairs``
joins them to every scored pair, as the review app and ``pairs.parquet`` see them.

**Links.** ``write_links`` turns decisions into the ``links`` clustering reads. A match is a
*strong* link, unless the model made it for a pair the judge never saw (cut by the budget or
skipped): without a verdict, a review pair is still linked when its probability reaches
``thresholds.fallback`` (it keeps ``decision = 'review'`` so analysts see it), and such links are
*weak*, which the cluster guard treats with suspicion (see ``dedupe.cluster``).
"""

from __future__ import annotations

import duckdb

from dedupe import cluster as clustering, compare, decisions, state
from dedupe.config import Config, Thresholds
from dedupe.judge.settings import CANONICAL_FIELDS as JUDGE_FIELDS


def zone_pairs(con: duckdb.DuckDBPyConnection, config: Config,
               comparisons: list[compare.Comparison]) -> tuple[int, int]:
    """Write ``zoned_pairs``; return (review pairs not sent because their verdict cannot change a
    cluster, review pairs cut by the budget)."""
    t = config.thresholds
    by_name = {c.name: c for c in comparisons}
    # The name gate: colleagues share a company, an office line, a city and a country, and a model
    # that multiplies those as independent evidence can outvote two different names. A pair whose
    # first AND last names both disagree is never linked by the model (swaps have their own level)
    # unless a personal identifier agrees exactly: a personal email, a date of birth, an identifier
    # field (FEBRL's typos can hit both names of one person; its date of birth then still agrees).
    gate = "false"
    if {"first_name", "last_name"} <= set(by_name) and t.require_name_agreement:
        personal = ["email", "date_of_birth"] + [f.name for f in config.extra_fields if f.identifier]
        rescue = " OR ".join(f"{n} = {by_name[n].exact_level}" for n in personal if n in by_name)
        gate = "first_name = 0 AND last_name = 0" + (f" AND NOT ({rescue})" if rescue else "")
    # Only pairs at or above the review threshold can be anything but the model's non_match.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE zoned_pairs AS
        SELECT rid_l, rid_r, match_weight, match_probability,
               CASE WHEN {gate} THEN 'non_match'
                    WHEN match_probability >= {t.match} THEN 'match'
                    ELSE 'review' END AS decision,
               'model' AS decided_by, false AS over_budget, false AS judge_skipped
        FROM comparisons WHERE match_probability >= {t.review}""")
    skipped = skip_redundant_review(con, t)
    return skipped, cap_review_band(con, t)


def skip_redundant_review(con: duckdb.DuckDBPyConnection, t: Thresholds) -> int:
    """Keep review pairs whose verdict cannot change a cluster out of the batch; return how many.

    The model's matches (less the analysts' cannot-links, plus their must-links) already form
    tentative clusters. A review pair inside one of them is linked through the matches whatever
    its verdict, and of several review pairs between the same two tentative clusters, one "same
    person" joins the two: so only the strongest pair between two clusters is sent (on the 2 x 100k
    fixtures a fifth of the band is such repeats; the budget they free goes to pairs that can add a
    link). Between two clusters, only pairs below the fallback threshold are skipped: unjudged, a
    pair at or above it would link the two, so its own verdict matters. A skipped pair is decided
    as an unjudged review pair is, like one the budget cut (a weak link at or above the fallback,
    else ``non_match``; never sent; a verdict already paid for on an earlier night still counts),
    so a run without a judge gives the same clusters with or without this step.
    """
    con.execute("""CREATE OR REPLACE TEMP TABLE band AS
                   SELECT z.rid_l, z.rid_r, z.match_weight, z.match_probability FROM zoned_pairs z
                   ANTI JOIN analyst_pairs a ON a.rid_l = z.rid_l AND a.rid_r = z.rid_r
                   WHERE z.decision = 'review'""")
    # The model's matches, less those an analyst refused, plus the analysts' must-links.
    links = """SELECT z.rid_l AS a, z.rid_r AS b FROM zoned_pairs z
               ANTI JOIN analyst_pairs c ON c.rid_l = z.rid_l AND c.rid_r = z.rid_r AND c.kind = 'cannot_link'
               WHERE z.decision = 'match'
               UNION ALL SELECT rid_l, rid_r FROM analyst_pairs WHERE kind = 'must_link'"""
    clustering.connected_components(
        con, links, "tentative_clusters",
        nodes="SELECT rid_l AS node FROM band UNION SELECT rid_r FROM band")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE skipped_review AS
        SELECT rid_l, rid_r FROM (
            SELECT r.*, least(a.label, b.label) AS cluster_a, greatest(a.label, b.label) AS cluster_b
            FROM band r
            JOIN tentative_clusters a ON a.node = r.rid_l JOIN tentative_clusters b ON b.node = r.rid_r)
        QUALIFY cluster_a = cluster_b
             OR (match_probability < {t.fallback}
                 AND row_number() OVER (PARTITION BY cluster_a, cluster_b
                                        ORDER BY match_weight DESC, rid_l, rid_r) > 1)""")
    con.execute(f"""
        UPDATE zoned_pairs z
        SET decision = CASE WHEN z.match_probability >= {t.fallback} THEN 'match' ELSE 'non_match' END,
            judge_skipped = true
        FROM skipped_review s WHERE z.rid_l = s.rid_l AND z.rid_r = s.rid_r""")
    skipped = con.execute("SELECT count(*) FROM skipped_review").fetchall()[0][0]
    for table in ("skipped_review", "tentative_clusters", "band"):
        con.execute(f"DROP TABLE {table}")
    return skipped


def cap_review_band(con: duckdb.DuckDBPyConnection, t: Thresholds) -> int:
    """Hold the review band to ``review_budget`` pairs per 100 records; return how many were cut.

    The band is set by probabilities, but namesakes per name grow with the data, so the band does
    too. Over budget, the band's lower edge rises: the likeliest pairs stay, and the rest get what
    an unjudged review pair gets: a weak link at or above the fallback threshold (``over_budget``
    tells ``write_links`` it is weak), else none. The top of the band goes first to the judge because
    an unjudged pair there is linked, and one false link merges two whole clusters; an unjudged
    pair at the bottom only misses a link that was unlikely anyway. (2 x 100k fixtures, budget
    binding: F1 with every review pair judged correctly 0.9709 keeping the likeliest, 0.9705
    keeping those nearest p = 0.5.) Pairs an analyst decided never reach the judge, so they
    neither count against the budget nor get cut.
    """
    if t.review_budget is None:
        return 0
    records = con.execute("SELECT count(*) FROM std").fetchall()[0][0]
    cap = int(t.review_budget * records / 100)
    band = """SELECT z.rid_l, z.rid_r, z.match_probability FROM zoned_pairs z
              ANTI JOIN analyst_pairs a ON a.rid_l = z.rid_l AND a.rid_r = z.rid_r
              WHERE z.decision = 'review'"""
    in_band = con.execute(f"SELECT count(*) FROM ({band})").fetchall()[0][0]
    if in_band <= cap:
        return 0
    con.execute(f"""
        UPDATE zoned_pairs z
        SET decision = CASE WHEN z.match_probability >= {t.fallback} THEN 'match' ELSE 'non_match' END,
            over_budget = true
        FROM (SELECT rid_l, rid_r FROM ({band})
              ORDER BY match_probability DESC, rid_l, rid_r
              OFFSET {cap}) cut
        WHERE z.rid_l = cut.rid_l AND z.rid_r = cut.rid_r""")
    return in_band - cap


def review_table(con: duckdb.DuckDBPyConnection) -> None:
    """The review pairs with both records' display values, as the judge's contract wants them.

    Pairs the review budget cut come too, with ``send = false``: a verdict already paid for on an
    earlier night still decides them (the judge answers them from its cache, never sends them)."""
    cols = []
    for f in JUDGE_FIELDS:  # every field the judge may send; [judge] fields picks among them
        for side in ("l", "r"):
            cols.append(f"CAST({side}.{f} AS VARCHAR) AS {side}_{f}")
    # Within the run only (a resumed run rebuilds it): a temp table, which skips the compression
    # a stored one costs. States from before keep a stored copy; it goes.
    # (Qualified by the database: an unqualified name would reach the temp table first.)
    database = con.execute("SELECT current_database()").fetchall()[0][0]
    con.execute(f'DROP TABLE IF EXISTS "{database}".main.review_pairs')
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE review_pairs AS
        SELECT l.source || ':' || l.record_id || '~' || r.source || ':' || r.record_id AS pair_key,
               p.rid_l, p.rid_r, p.match_probability, NOT (p.over_budget OR p.judge_skipped) AS send,
               {', '.join(cols)}
        FROM zoned_pairs p JOIN std l ON l.rid = p.rid_l JOIN std r ON r.rid = p.rid_r
        ANTI JOIN analyst_pairs a ON a.rid_l = p.rid_l AND a.rid_r = p.rid_r
        WHERE p.decision = 'review' OR p.over_budget OR p.judge_skipped""")


def analyst_pairs(con: duckdb.DuckDBPyConnection) -> int:
    """The analysts' decisions in force, on this run's rids (records that still exist)."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE analyst_pairs AS
        SELECT least(l.rid, r.rid) AS rid_l, greatest(l.rid, r.rid) AS rid_r, d.kind
        FROM ({decisions.active_sql(con)}) d
        JOIN std l ON l.source = d.source_l AND l.record_id = d.record_id_l
        JOIN std r ON r.source = d.source_r AND r.record_id = d.record_id_r
        WHERE l.rid <> r.rid""")
    return con.execute("SELECT count(*) FROM analyst_pairs").fetchall()[0][0]


def apply_verdicts(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, int], int]:
    """Final decisions: an analyst's beats the LLM's, which beats the model's. Return the LLM's
    decisions by kind, and how many stored pairs changed decision."""
    # The overrides: the analysts' decisions and the judge's verdicts, one row per pair.
    con.execute("""
        CREATE OR REPLACE TEMP TABLE pair_overrides AS
        SELECT coalesce(a.rid_l, rp.rid_l) AS rid_l, coalesce(a.rid_r, rp.rid_r) AS rid_r,
               CASE WHEN a.kind = 'must_link' THEN 'match' WHEN a.kind = 'cannot_link' THEN 'non_match'
                    ELSE v.decision END AS decision,
               CASE WHEN a.kind IS NOT NULL THEN 'analyst' WHEN v.decision IS NOT NULL THEN 'llm' END AS decided_by,
               v.judge_model, v.judge_batch_id, v.judge_custom_id,
               v.llm_same_person, v.llm_confidence, v.llm_reason
        FROM (review_pairs rp JOIN judge_results v ON v.pair_key = rp.pair_key)
        FULL JOIN analyst_pairs a ON a.rid_l = rp.rid_l AND a.rid_r = rp.rid_r""")
    judge_cols = "judge_model, judge_batch_id, judge_custom_id, llm_same_person, llm_confidence, llm_reason"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE final_decisions AS
        SELECT z.rid_l, z.rid_r, coalesce(o.decision, z.decision) AS decision,
               coalesce(o.decided_by, z.decided_by) AS decided_by, z.over_budget, z.judge_skipped,
               {', '.join(f'o.{c}' for c in judge_cols.split(', '))}
        FROM zoned_pairs z LEFT JOIN pair_overrides o ON o.rid_l = z.rid_l AND o.rid_r = z.rid_r
        UNION ALL  -- an analyst's decision on a pair below the review band
        SELECT o.rid_l, o.rid_r, o.decision, o.decided_by, false, false, {judge_cols}
        FROM pair_overrides o
        SEMI JOIN comparisons c ON c.rid_l = o.rid_l AND c.rid_r = o.rid_r
        ANTI JOIN zoned_pairs z ON z.rid_l = o.rid_l AND z.rid_r = o.rid_r""")
    by_llm = dict(con.execute("SELECT decision, count(*) FROM final_decisions WHERE decided_by = 'llm' "
                              "GROUP BY 1").fetchall())
    return by_llm, _store_decisions(con)


# A pair's decision columns, as a pair below the review band has them: the model's non_match,
# no verdict from anyone. Only pairs decided otherwise are stored (``pair_decisions``).
MODEL_NON_MATCH = {"decision": "'non_match'", "decided_by": "'model'", "over_budget": "false",
                   "judge_skipped": "false", "judge_model": "NULL::VARCHAR", "judge_batch_id": "NULL::VARCHAR",
                   "judge_custom_id": "NULL::VARCHAR", "llm_same_person": "NULL::BOOLEAN",
                   "llm_confidence": "NULL::DOUBLE", "llm_reason": "NULL::VARCHAR"}
DECISION_COLUMNS = tuple(MODEL_NON_MATCH)


def _store_decisions(con: duckdb.DuckDBPyConnection) -> int:
    """Bring ``pair_decisions`` (the pairs not left as the model's non_match: matches, the review
    band, verdicts; a tenth of the pairs) to ``final_decisions``, deleting and adding only the rows
    that differ; return how many pairs changed decision. A killed run's rows are repaired the
    same way, since every row not as wanted is found again."""
    cols = ", ".join(DECISION_COLUMNS)
    ensure_pair_decisions(con)
    not_default = " OR ".join(f"{c} IS DISTINCT FROM {v}" for c, v in MODEL_NON_MATCH.items())
    differs = " OR ".join(f"w.{c} IS DISTINCT FROM p.{c}" for c in DECISION_COLUMNS)
    # One pass over both: a stored row not wanted as it is, a wanted row not stored as it is.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE decision_changes AS
        WITH wanted AS (SELECT rid_l, rid_r, {cols} FROM final_decisions WHERE {not_default})
        SELECT coalesce(w.rid_l, p.rid_l) AS rid_l, coalesce(w.rid_r, p.rid_r) AS rid_r,
               p.rid_l IS NOT NULL AS stored, w.rid_l IS NOT NULL AS wanted,
               {', '.join(f'w.{c}' for c in DECISION_COLUMNS)}
        FROM wanted w FULL JOIN pair_decisions p ON p.rid_l = w.rid_l AND p.rid_r = w.rid_r
        WHERE w.rid_l IS NULL OR p.rid_l IS NULL OR {differs}""")
    with state.transaction(con):
        con.execute("""DELETE FROM pair_decisions p USING decision_changes s
                       WHERE s.stored AND p.rid_l = s.rid_l AND p.rid_r = s.rid_r""")
        con.execute(f"INSERT INTO pair_decisions SELECT rid_l, rid_r, {cols} FROM decision_changes WHERE wanted")
    changed = con.execute("SELECT count(*) FROM decision_changes").fetchall()[0][0]
    for t in ("final_decisions", "decision_changes"):
        con.execute(f"DROP TABLE {t}")
    return changed


def count_decisions(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, int]:
    """Scored pairs per decision (``match``, ``review``, ``non_match``), given ``table``: the
    ``zoned_pairs`` or the ``pair_decisions`` of the scored pairs. A pair not in it is the model's
    non_match, so only the table's matches and review pairs are counted: no join with the 800k
    scored pairs."""
    counted = dict(con.execute(f"SELECT decision, count(*) FROM {table} "
                               "WHERE decision IN ('match', 'review') GROUP BY 1").fetchall())
    scored = con.execute("SELECT count(*) FROM comparisons").fetchall()[0][0]
    match, review = counted.get("match", 0), counted.get("review", 0)
    return {"match": match, "review": review, "non_match": scored - match - review}


def ensure_pair_decisions(con: duckdb.DuckDBPyConnection) -> None:
    defaults = ", ".join(f"{v} AS {c}" for c, v in MODEL_NON_MATCH.items())
    con.execute(f"CREATE TABLE IF NOT EXISTS pair_decisions AS "
                f"SELECT NULL::BIGINT AS rid_l, NULL::BIGINT AS rid_r, {defaults} WHERE false")


def pairs_view(con: duckdb.DuckDBPyConnection, comparisons: list[compare.Comparison]) -> None:
    """``pairs``: every scored pair with its decision, as the review app and pairs.parquet see them."""
    if con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'pairs' "
                   "AND schema_name = 'main' AND NOT temporary").fetchall()[0][0]:
        con.execute("DROP TABLE pairs")  # a state from before pairs were a view
    ensure_pair_decisions(con)
    decided = ", ".join(f"coalesce(d.{c}, {v}) AS {c}" for c, v in MODEL_NON_MATCH.items())
    con.execute(f"""
        CREATE OR REPLACE VIEW pairs AS
        SELECT c.rid_l, c.rid_r, {', '.join(f'c.{k.name}' for k in comparisons)}, c.match_weight,
               c.match_probability, {decided}
        FROM comparisons c LEFT JOIN pair_decisions d ON d.rid_l = c.rid_l AND d.rid_r = c.rid_r""")


def write_links(con: duckdb.DuckDBPyConnection, config: Config) -> None:
    # Must-links hold even for pairs blocking never produced; they go first when the guard re-clusters.
    con.execute(f"""
        CREATE OR REPLACE TABLE links AS
        SELECT d.rid_l, d.rid_r, c.match_probability,
               d.decision = 'match' AND NOT ((d.over_budget OR d.judge_skipped) AND d.decided_by = 'model') AS strong,
               d.decision = 'match' AND d.decided_by = 'analyst' AS must
        FROM pair_decisions d JOIN comparisons c ON c.rid_l = d.rid_l AND c.rid_r = d.rid_r
        WHERE d.decision = 'match'
           OR (d.decision = 'review' AND c.match_probability >= {config.thresholds.fallback})
        UNION ALL
        SELECT a.rid_l, a.rid_r, 2.0, true, true FROM analyst_pairs a
        ANTI JOIN comparisons p ON p.rid_l = a.rid_l AND p.rid_r = a.rid_r
        WHERE a.kind = 'must_link'""")


__all__ = ["zone_pairs", "skip_redundant_review", "cap_review_band", "review_table", "analyst_pairs",
           "apply_verdicts", "count_decisions", "ensure_pair_decisions", "pairs_view", "write_links",
           "MODEL_NON_MATCH", "DECISION_COLUMNS"]
