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

A review table may mark pairs ``send = false`` (those the review budget cut):
they are answered from the cache when a verdict is already paid for, and never
sent.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from dedupe.columns import registered

from . import prompt
from .settings import JudgeSettings

MEMO_DDL = """
CREATE TABLE IF NOT EXISTS judge_plan_memo (
    input_key VARCHAR, user_text VARCHAR, cache_key VARCHAR, custom_id VARCHAR, request_bytes BIGINT)
"""

DDL = """
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

    A pair's text, ids and size depend only on the values it sends and the settings, so they are
    remembered in ``judge_plan_memo`` under a digest of both (``input_key``): a nightly run
    serialises only the review pairs whose sent values it has not seen, and the memo keeps only
    tonight's inputs.
    """
    ids = prompt.RequestIds(settings)
    cols = ", ".join(f'"l_{f}", "r_{f}"' for f in settings.fields)
    sent = ", ".join(f'coalesce("{side}_{f}", chr(0))' for f in settings.fields for side in "lr")
    con.execute(MEMO_DDL)
    has_send = "send" in {r[0] for r in con.execute(f"DESCRIBE {review_table}").fetchall()}
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE judge_inputs AS
        SELECT pair_key, md5(concat_ws(chr(31), '{ids.plan_signature()}', {sent})) AS input_key,
               {'send' if has_send else 'true'} AS send, {cols}
        FROM {review_table}""")
    # Read whole (every text is held for the Arrow hand-over anyway): no half-read result on `con`.
    unseen = con.execute(f"""SELECT DISTINCT ON (input_key) input_key, {cols}
                             FROM judge_inputs ANTI JOIN judge_plan_memo USING (input_key)
                             ORDER BY input_key""").fetchall()
    columns: dict[str, list] = {n: [] for n in ("input_key", "user_text", "cache_key", "custom_id", "request_bytes")}
    for row in unseen:
        left = {f: row[1 + 2 * i] for i, f in enumerate(settings.fields)}
        right = {f: row[2 + 2 * i] for i, f in enumerate(settings.fields)}
        text = prompt.serialise_pair(left, right, settings.fields)
        columns["input_key"].append(row[0])
        columns["user_text"].append(text)
        columns["cache_key"].append(ids.cache_key(text))
        columns["custom_id"].append(ids.custom_id(text))
        columns["request_bytes"].append(ids.request_bytes(text))
    types = {"input_key": "VARCHAR", "user_text": "VARCHAR", "cache_key": "VARCHAR", "custom_id": "VARCHAR",
             "request_bytes": "BIGINT"}
    with registered(con, "judge_plan_new", columns, types):
        con.execute("INSERT INTO judge_plan_memo SELECT * FROM judge_plan_new")
    # Forget inputs no longer asked (and those of other settings): the memo stays one night's band.
    con.execute("DELETE FROM judge_plan_memo WHERE input_key NOT IN (SELECT input_key FROM judge_inputs)")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE judge_plan AS
        SELECT i.pair_key, m.user_text, m.cache_key, m.custom_id, m.request_bytes, i.send
        FROM judge_inputs i JOIN judge_plan_memo m USING (input_key)
        ORDER BY i.pair_key""")
    con.execute("DROP TABLE judge_inputs")
    pairs, hits = con.execute(
        "SELECT count(*) FILTER (WHERE p.send OR c.cache_key IS NOT NULL), count(c.cache_key) "
        "FROM judge_plan p LEFT JOIN judge_cache c USING (cache_key)"
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
