"""The judgment cache, the per-run plan, and the `judge_results` table.

Never pay twice: a verdict is stored once, keyed by what was sent (the
serialised pair), the model, prompt_version and the rubric fingerprint (see
prompt.py).  A re-run on unchanged data finds every verdict here and sends
nothing; a pair whose *sent* fields did not change keeps its verdict across
nights even if unsent fields (say, street) changed.  Failed judgments are not
cached here; they live with the batch items (batches.py).

The plan is a TEMP table (`judge_plan`, one row per review pair) holding each
pair's user text, cache key and custom_id.  Everything else (what is cached,
what is in flight, what to send) is a SQL join against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pyarrow as pa

from . import prompt
from .settings import JudgeSettings

MEMO_DDL = """
CREATE TABLE IF NOT EXISTS judge_plan_memo (
    signature VARCHAR, pair_key VARCHAR, key_l VARCHAR, key_r VARCHAR,
    user_text VARCHAR, cache_key VARCHAR, custom_id VARCHAR, request_bytes BIGINT)
"""

DDL = """
CREATE TABLE IF NOT EXISTS judge_cache (
    cache_key      VARCHAR PRIMARY KEY,  -- prompt.RequestIds.cache_key
    model          VARCHAR NOT NULL,
    prompt_version VARCHAR NOT NULL,
    same_person    BOOLEAN NOT NULL,
    confidence     DOUBLE NOT NULL,
    reason         VARCHAR,
    batch_id       VARCHAR,               -- provenance: where it was paid for
    custom_id      VARCHAR,
    judged_at      TIMESTAMP NOT NULL
)
"""

RESULTS_COLUMNS = (
    "pair_key",
    "judge_model",
    "judge_batch_id",
    "judge_custom_id",
    "llm_same_person",
    "llm_confidence",
    "llm_reason",
    "decision",
)


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


@dataclass
class PlanSummary:
    pairs: int
    cache_hits: int


def build_plan(con: duckdb.DuckDBPyConnection, review_table: str, settings: JudgeSettings) -> PlanSummary:
    """Serialise every review pair and store the plan in TEMP table judge_plan.

    When the review table carries ``key_l``/``key_r`` (each record's content key), serialised
    pairs are remembered in ``judge_plan_memo`` and a later run serialises only pairs it has not
    seen with those keys: on a nightly run, the few that are new or changed.
    """
    cols = ", ".join(f'"l_{f}", "r_{f}"' for f in settings.fields)
    review_columns = {r[0] for r in con.execute(f"DESCRIBE {review_table}").fetchall()}
    keyed = {"key_l", "key_r"} <= review_columns
    ids = prompt.RequestIds(settings)
    signature = ids.plan_signature()
    if keyed:
        con.execute(MEMO_DDL)
        source = (f"(SELECT r.* FROM {review_table} r ANTI JOIN judge_plan_memo m "
                  f"ON m.signature = '{signature}' AND m.pair_key = r.pair_key "
                  f"AND m.key_l = r.key_l AND m.key_r = r.key_r) AS unseen")
        key_cols = ", key_l, key_r"
    else:
        source, key_cols = review_table, ""
    cur = con.cursor()  # own cursor: never leave a half-read result on `con`
    cur.execute(f'SELECT pair_key{key_cols}, {cols} FROM {source} ORDER BY pair_key')
    first = 3 if keyed else 1
    columns: dict[str, list] = {n: [] for n in ("pair_key", "key_l", "key_r", "user_text", "cache_key",
                                                 "custom_id", "request_bytes")}
    while rows := cur.fetchmany(10_000):
        for row in rows:
            left = {f: row[first + 2 * i] for i, f in enumerate(settings.fields)}
            right = {f: row[first + 1 + 2 * i] for i, f in enumerate(settings.fields)}
            text = prompt.serialise_pair(left, right, settings.fields)
            columns["pair_key"].append(row[0])
            if keyed:
                columns["key_l"].append(row[1])
                columns["key_r"].append(row[2])
            columns["user_text"].append(text)
            columns["cache_key"].append(ids.cache_key(text))
            columns["custom_id"].append(ids.custom_id(text))
            columns["request_bytes"].append(ids.request_bytes(text))
    cur.close()
    if not keyed:
        del columns["key_l"], columns["key_r"]
    types = {"request_bytes": pa.int64()}
    fresh = pa.table({n: pa.array(v, types.get(n, pa.string())) for n, v in columns.items()})
    con.register("judge_plan_arrow", fresh)
    try:
        if keyed:
            con.execute(f"INSERT INTO judge_plan_memo SELECT '{signature}', * FROM judge_plan_arrow")
            # Forget what is no longer asked, so the memo stays the size of one night's band.
            con.execute(f"""
                DELETE FROM judge_plan_memo m WHERE m.signature <> '{signature}' OR NOT EXISTS (
                    SELECT 1 FROM {review_table} r WHERE r.pair_key = m.pair_key
                       AND r.key_l = m.key_l AND r.key_r = m.key_r)""")
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE judge_plan AS
                SELECT m.pair_key, m.user_text, m.cache_key, m.custom_id, m.request_bytes
                FROM judge_plan_memo m SEMI JOIN {review_table} r
                  ON r.pair_key = m.pair_key AND r.key_l = m.key_l AND r.key_r = m.key_r
                ORDER BY m.pair_key""")
        else:
            con.execute("CREATE OR REPLACE TEMP TABLE judge_plan AS SELECT * FROM judge_plan_arrow")
    finally:
        con.unregister("judge_plan_arrow")
    pairs, hits = con.execute(
        "SELECT count(*), count(c.cache_key) FROM judge_plan p LEFT JOIN judge_cache c USING (cache_key)"
    ).fetchall()[0]
    return PlanSummary(pairs=pairs, cache_hits=hits)


def store_verdicts(con: duckdb.DuckDBPyConnection, relation: str) -> None:
    """Insert verdicts from `relation` (cache_key, model, prompt_version,
    same_person, confidence, reason, batch_id, custom_id).  First verdict wins:
    a verdict is never overwritten, so a late duplicate cannot flip a decision.
    Called inside the caller's transaction."""
    con.execute(
        f"""
        INSERT INTO judge_cache
        SELECT DISTINCT ON (cache_key) cache_key, model, prompt_version, same_person,
               confidence, reason, batch_id, custom_id, now()::TIMESTAMP
        FROM {relation}
        ON CONFLICT DO NOTHING
        """
    )


def write_results(con: duckdb.DuckDBPyConnection, settings: JudgeSettings) -> dict[str, int]:
    """(Re)create judge_results from the plan and the cache; return decision counts.

    min_confidence applies in both directions: a confident "different" becomes
    non_match, a confident "same" becomes match, anything less stays review.
    """
    con.execute(
        """
        CREATE OR REPLACE TABLE judge_results AS
        SELECT p.pair_key,
               c.model       AS judge_model,
               c.batch_id    AS judge_batch_id,
               c.custom_id   AS judge_custom_id,
               c.same_person AS llm_same_person,
               c.confidence  AS llm_confidence,
               c.reason      AS llm_reason,
               CASE WHEN c.confidence < $min THEN 'review'
                    WHEN c.same_person THEN 'match'
                    ELSE 'non_match' END AS decision
        FROM judge_plan p JOIN judge_cache c USING (cache_key)
        ORDER BY p.pair_key
        """,
        {"min": settings.min_confidence},
    )
    counts = {"match": 0, "non_match": 0, "review": 0}
    for decision, n in con.execute("SELECT decision, count(*) FROM judge_results GROUP BY ALL").fetchall():
        counts[decision] = n
    return counts
