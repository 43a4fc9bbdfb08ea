"""Stable golden-record ids from night to night.

Downstream systems key on ``cluster_id``, so an id must survive as long as its cluster stays the
same person, and never be reused for another. Each run compares its clusters with the membership
the last published run recorded (``golden_membership``):

* **Kept.** Every previous id picks the new cluster holding most of its previous members (ties:
  the smaller cluster). A new cluster picked by one previous id keeps that id.
* **Merged.** A new cluster picked by several previous ids keeps the id of the *largest* previous
  cluster (older on ties: the earlier generation, then the smaller id); the others are retired
  with ``merged_into``.
* **Split.** The part of a previous cluster holding most of its members keeps the id (it is the
  part the id picks); every other part is a new cluster with ``split_from``.
* **New and retired.** A cluster no previous id picks gets a new id; an id none of whose members
  remain is ``retired``.

New ids are opaque and deterministic: ``G`` + 15 hex digits of md5 of the cluster's smallest
member key, with a counter appended on the rare collision with any id ever issued (so a killed
run, rerun, issues the same ids, and an id is never reused). Every change is written to
``id_history`` with the generation that made it.

The assignment is computed into staging tables; ``commit`` applies it to the registry in the same
transaction that records the run as finished, after the outputs are published.

**Incremental.** When clustering re-clustered only a region (``cluster.Basis``) and the clusters
outside it are the published ones, only the region's clusters and the previous ids holding region
or deleted records are compared: a cluster outside the region is exactly a published cluster, whose
id stays (every previous cluster touching the region lies inside the region or was deleted).
"""

from __future__ import annotations

import hashlib

import duckdb

from dedupe.columns import registered
from dedupe.state import get_meta, set_meta

# No PRIMARY KEYs: DuckDB maintains an ART index per key, and rewriting 10^5-10^6 membership rows
# each night through one cost seconds at commit. Uniqueness holds by construction (ids are checked
# against every id ever issued; membership is rebuilt from cluster_ids).
SCHEMA = """
CREATE TABLE IF NOT EXISTS golden_ids (
    cluster_id VARCHAR, created_generation INTEGER, retired_generation INTEGER);
CREATE TABLE IF NOT EXISTS golden_membership (
    source VARCHAR, record_id VARCHAR, cluster_id VARCHAR);
CREATE TABLE IF NOT EXISTS id_history (
    generation INTEGER, cluster_id VARCHAR, event VARCHAR, other_id VARCHAR);
"""


# ``id_history`` is stored in the order of its output: a run appends its events sorted, after every
# earlier generation's, and DuckDB keeps a table's insertion order through SELECT, WHERE, UNION ALL
# and COPY (its documented order preservation). So the nightly id_history.csv is written without
# sorting a history that only grows (0.05 s at 122k events, growing every night).
HISTORY_ORDER = "generation, event, cluster_id"


def _keep_history_sorted(con: duckdb.DuckDBPyConnection) -> None:
    """Sort a history stored before it was kept in order, once."""
    if get_meta(con, "id_history_order") != HISTORY_ORDER:
        con.execute(f"CREATE OR REPLACE TABLE id_history AS SELECT * FROM id_history ORDER BY {HISTORY_ORDER}")
        set_meta(con, "id_history_order", HISTORY_ORDER)


def _new_id(anchor: str, attempt: int) -> str:
    suffix = f"#{attempt}" if attempt else ""
    return "G" + hashlib.md5(f"{anchor}{suffix}".encode()).hexdigest()[:15]


def _fresh_ids(con: duckdb.DuckDBPyConnection, collisions: list[tuple[int, str]]) -> dict[int, str]:
    """For each colliding (cluster_key, anchor), the first of its anchor's later ids never issued.
    Only the candidates are looked up (not every issued id: 0.1 s at 120k golden records)."""
    attempts = 8
    while True:
        candidates = {key: [_new_id(anchor, a) for a in range(1, attempts + 1)] for key, anchor in collisions}
        taken = {r[0] for r in con.execute(
            "SELECT cluster_id FROM golden_ids WHERE cluster_id IN (SELECT unnest($ids)) "
            "UNION SELECT cluster_id FROM id_new WHERE cluster_id IN (SELECT unnest($ids))",
            {"ids": [c for ids in candidates.values() for c in ids]}).fetchall()}
        fresh: dict[int, str] = {}
        for key, _ in collisions:
            free = next((c for c in candidates[key] if c not in taken), None)
            if free is None:
                break  # every candidate taken: look further
            taken.add(free)
            fresh[key] = free
        else:
            return fresh
        attempts *= 4


def assign(con: duckdb.DuckDBPyConnection, generation: int, changed: str | None = None) -> dict[str, int]:
    """Write ``cluster_ids`` and the staging tables ``id_events`` / ``id_new``; return counts.

    ``changed``: SQL yielding the ``rid`` of every record re-clustered this run, when every other
    record's cluster is exactly as published (module docstring); None compares everything. With
    ``changed``, the temp table ``id_touched`` lists the clusters (ids before and after) those
    records left or joined."""
    con.execute(SCHEMA)
    _keep_history_sorted(con)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE current_members AS
        SELECT c.cluster_key, c.flags, s.rid, s.source, s.record_id, s.content_hash
        FROM clusters c JOIN std s USING (rid) {f"WHERE rid IN ({changed})" if changed else ""}""")
    # The previous membership that can change: the published rows of these records and of
    # records that are gone.
    # (Incremental, ``cluster_ids`` still holds the published clusters here: the same rows as
    # golden_membership, found by rid.)
    previous = "SELECT * FROM golden_membership" if not changed else """
        SELECT source, record_id, cluster_id FROM cluster_ids SEMI JOIN current_members USING (rid)
        UNION ALL SELECT source, record_id, cluster_id FROM cluster_ids ANTI JOIN std USING (rid)"""
    con.execute(f"CREATE OR REPLACE TEMP TABLE previous_members AS {previous}")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE id_overlap AS
        WITH sizes AS (SELECT cluster_key, count(*) AS size FROM current_members GROUP BY 1)
        SELECT m.cluster_key, p.cluster_id, count(*) AS n, any_value(s.size) AS cluster_size
        FROM current_members m JOIN previous_members p USING (source, record_id)
        JOIN sizes s USING (cluster_key)
        GROUP BY m.cluster_key, p.cluster_id""")
    # Each previous id picks the new cluster with most of its members; on a tie, the smaller one
    # (where its members weigh more: in {a1, b1, b2} + {a2}, a's id goes with a2, not to b's people).
    con.execute("""
        CREATE OR REPLACE TEMP TABLE id_claims AS
        WITH picks AS (
            SELECT cluster_id,
                   arg_max(cluster_key, struct_pack(n := n, s := -cluster_size, k := -cluster_key)) AS cluster_key
            FROM id_overlap GROUP BY cluster_id
        ), previous AS (SELECT cluster_id, count(*) AS size FROM previous_members GROUP BY 1)
        SELECT p.cluster_key, p.cluster_id, v.size, coalesce(g.created_generation, 0) AS created
        FROM picks p JOIN previous v USING (cluster_id) LEFT JOIN golden_ids g USING (cluster_id)""")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE id_kept AS
        SELECT cluster_key,
               arg_min(cluster_id, struct_pack(s := -size, c := created, i := cluster_id)) AS cluster_id
        FROM id_claims GROUP BY cluster_key""")
    # Clusters no previous id picked need a new id: md5 of the anchor, unless that id was ever issued.
    con.execute("""
        CREATE OR REPLACE TEMP TABLE id_new AS
        SELECT cluster_key, 'G' || substr(md5(anchor), 1, 15) AS cluster_id, anchor
        FROM (SELECT m.cluster_key, min(m.source || ':' || m.record_id) AS anchor  -- only where needed
              FROM current_members m ANTI JOIN id_kept k USING (cluster_key) GROUP BY m.cluster_key)""")
    collisions = con.execute("""
        SELECT n.cluster_key, n.anchor FROM id_new n SEMI JOIN golden_ids g USING (cluster_id)
        ORDER BY n.cluster_key""").fetchall()
    if collisions:  # a retired id's anchor anchors a cluster again (a split): never reuse an id
        fresh = _fresh_ids(con, collisions)
        with registered(con, "id_fresh", {"cluster_key": list(fresh), "cluster_id": list(fresh.values())},
                        {"cluster_key": "BIGINT", "cluster_id": "VARCHAR"}):
            con.execute("""UPDATE id_new n SET cluster_id = f.cluster_id FROM id_fresh f
                           WHERE n.cluster_key = f.cluster_key""")
    assigned = """
        SELECT m.rid, m.source, m.record_id, coalesce(k.cluster_id, n.cluster_id) AS cluster_id, m.flags,
               m.cluster_key, m.content_hash  -- what the next night's clustering starts from
        FROM current_members m LEFT JOIN id_kept k USING (cluster_key) LEFT JOIN id_new n USING (cluster_key)"""
    if changed:
        # Edit in place: rewriting every row would cost more than the night's changes.
        con.execute("DELETE FROM cluster_ids WHERE rid IN (SELECT rid FROM current_members) "
                    "OR rid NOT IN (SELECT rid FROM std)")
        con.execute(f"INSERT INTO cluster_ids {assigned}")
        # The membership rows ``commit`` rewrites (without this table: all of them).
        con.execute("""CREATE OR REPLACE TEMP TABLE id_scope AS
                       SELECT source, record_id FROM previous_members
                       UNION SELECT source, record_id FROM current_members""")
        # The clusters these records left or joined: no other golden record can have changed.
        con.execute("""CREATE OR REPLACE TEMP TABLE id_touched AS
                       SELECT cluster_id FROM previous_members
                       UNION SELECT cluster_id FROM cluster_ids WHERE rid IN (SELECT rid FROM current_members)""")
    else:
        con.execute(f"CREATE OR REPLACE TABLE cluster_ids AS {assigned} ORDER BY m.rid")
        con.execute("DROP TABLE IF EXISTS id_scope")
        con.execute("DROP TABLE IF EXISTS id_touched")
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE id_events AS
        -- previous ids that lost the merge
        SELECT {generation} AS generation, c.cluster_id, 'merged_into' AS event, k.cluster_id AS other_id
        FROM id_claims c JOIN id_kept k USING (cluster_key) WHERE c.cluster_id <> k.cluster_id
        UNION ALL
        -- new clusters carved out of a previous one
        SELECT {generation}, n.cluster_id, 'split_from',
               arg_max(o.cluster_id, struct_pack(n := o.n, i := o.cluster_id))
        FROM id_new n JOIN id_overlap o USING (cluster_key) GROUP BY n.cluster_id
        UNION ALL
        SELECT {generation}, n.cluster_id, 'created', NULL FROM id_new n
        UNION ALL
        -- previous ids none of whose members remain
        SELECT {generation}, v.cluster_id, 'retired', NULL
        FROM (SELECT DISTINCT cluster_id FROM previous_members) v ANTI JOIN id_overlap o USING (cluster_id)
        ORDER BY {HISTORY_ORDER}""")
    counts = dict(con.execute("SELECT event, count(*) FROM id_events GROUP BY 1").fetchall())
    counts["kept"] = con.execute(
        "SELECT count(DISTINCT cluster_id) FROM cluster_ids ANTI JOIN id_new USING (cluster_id)").fetchall()[0][0]
    for t in ("current_members", "previous_members", "id_overlap", "id_claims", "id_kept"):
        con.execute(f"DROP TABLE {t}")
    return counts


def history_query() -> str:
    """The full id history after this run's events (for the ``id_history`` output), in
    ``HISTORY_ORDER`` without a sort: both tables are stored in it, and this run's generation comes
    after every stored one."""
    return ("SELECT generation, cluster_id, event, other_id FROM id_history "
            "UNION ALL SELECT generation, cluster_id, event, other_id FROM id_events")


def commit(con: duckdb.DuckDBPyConnection, generation: int) -> None:
    """Apply the staged assignment to the registry (call inside the run's final transaction)."""
    con.execute(f"""INSERT INTO golden_ids SELECT cluster_id, {generation}, NULL FROM id_new
                    ANTI JOIN golden_ids USING (cluster_id)""")
    con.execute(f"""UPDATE golden_ids SET retired_generation = {generation}
                    WHERE cluster_id IN (SELECT cluster_id FROM id_events
                                         WHERE event IN ('merged_into', 'retired'))""")
    con.execute("INSERT INTO id_history SELECT * FROM id_events")  # appended in order (HISTORY_ORDER)
    if con.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = 'id_scope'").fetchall()[0][0]:
        con.execute("""DELETE FROM golden_membership g USING id_scope s
                       WHERE g.source = s.source AND g.record_id = s.record_id""")
        con.execute("""INSERT INTO golden_membership SELECT c.source, c.record_id, c.cluster_id
                       FROM cluster_ids c SEMI JOIN id_scope s USING (source, record_id)""")
    else:
        con.execute("CREATE OR REPLACE TABLE golden_membership AS "
                    "SELECT DISTINCT source, record_id, cluster_id FROM cluster_ids")


__all__ = ["assign", "commit", "history_query"]
