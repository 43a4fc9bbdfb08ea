"""Golden records: one merged record per cluster, chosen field by field, with provenance.

For every field, each cluster takes the value of the member that ranks first under the field's
survivorship rules (``[survivorship]`` in the config), considering only members that have a value:

* ``most_recent``: latest ``updated_at`` first (records without a date last);
* ``most_complete``: the member with the most non-empty fields first (a fuller record is usually
  a better-kept one);
* ``source_priority``: sources in ``survivorship.source_priority`` order (default: config order);
* ``most_frequent``: the value most members agree on.

The default is ``most_recent, most_complete, source_priority``: people change jobs and emails, so
the freshest record wins, and completeness then source order break ties. Remaining ties go to the
smallest record key, so the choice is deterministic. Each field ``F`` comes with ``F_source`` and
``F_record_id`` naming where the value came from.

Values are the standardised display values (parsed names with their original accents and casing,
lower-cased email, E.164 phone, ISO country), not matching keys.
"""

from __future__ import annotations

import duckdb

from dedupe.config import Config
from dedupe.state import get_meta, set_meta, table_columns

# Bump when the way golden values are chosen changes, so stored golden rows are rebuilt.
GOLDEN_VERSION = 2

GOLDEN_FIELDS = ("first_name", "middle_name", "last_name", "name_suffix", "email", "phone", "company",
                 "title", "street", "city", "postcode", "region", "country", "date_of_birth")


def golden_fields(config: Config) -> list[str]:
    mapped = config.mapped_fields
    name_fields = {"first_name", "middle_name", "last_name", "name_suffix"}
    out = [f for f in GOLDEN_FIELDS if f in mapped or (f in name_fields and mapped & name_fields)]
    return out + [e.name for e in config.extra_fields if e.name in mapped]


def _rank_order(rules: tuple[str, ...], field: str) -> str:
    """ORDER BY terms that put the best member first under ``rules`` (ties: source order, record id)."""
    parts = []
    for rule in rules:
        if rule == "most_recent":
            parts.append("coalesce(-epoch(updated_at), 1e18)")  # newest first, undated last
        elif rule == "most_complete":
            parts.append("-completeness")
        elif rule == "source_priority":
            parts.append("source_rank")
        elif rule == "most_frequent":
            parts.append(f"-freq_{field}")
    return ", ".join(parts + ["source_rank", "record_id"])


# Golden rows live in a large ``golden_base`` that a night leaves alone, a small ``golden_delta``
# of rows recomputed since, and ``golden_dropped``, the base rows they replace or that are gone;
# the view ``golden`` joins them. Editing the base in place instead would make DuckDB rewrite its
# row groups at the next checkpoint, about half a second a night whatever the number of changes.
# When the side tables reach this share of the base, the view is written out as the new base.
COMPACT_SHARE = 0.25


def _is_view(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute("SELECT 1 FROM duckdb_views() WHERE view_name = ? AND schema_name = 'main' "
                            "AND database_name = current_database() AND NOT temporary", [name]).fetchall())


def _drop_golden(con: duckdb.DuckDBPyConnection) -> None:
    """Remove the ``golden`` view, or the plain table states before the split kept."""
    con.execute(f"DROP {'VIEW' if _is_view(con, 'golden') else 'TABLE'} IF EXISTS golden")


def _start_delta(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE OR REPLACE TABLE golden_delta AS SELECT * FROM golden_base LIMIT 0")
    con.execute("CREATE OR REPLACE TABLE golden_dropped (cluster_id VARCHAR)")
    con.execute("""CREATE OR REPLACE VIEW golden AS
                   SELECT * FROM golden_delta
                   UNION ALL
                   SELECT * FROM golden_base ANTI JOIN golden_dropped USING (cluster_id)""")


def _compact_if_due(con: duckdb.DuckDBPyConnection) -> None:
    base, side = con.execute("SELECT (SELECT count(*) FROM golden_base), "
                             "(SELECT count(*) FROM golden_delta) + (SELECT count(*) FROM golden_dropped)"
                             ).fetchall()[0]
    if side > COMPACT_SHARE * base:
        con.execute("CREATE OR REPLACE TEMP TABLE golden_compacted AS SELECT * FROM golden")
        _drop_golden(con)
        con.execute("CREATE OR REPLACE TABLE golden_base AS SELECT * FROM golden_compacted")
        con.execute("DROP TABLE golden_compacted")
        _start_delta(con)


def build_golden(con: duckdb.DuckDBPyConnection, config: Config, full: bool = True,
                 touched: str | None = None) -> dict[str, int]:
    """Bring ``golden`` (one row per cluster) up to date with ``std`` and ``cluster_ids``.

    Each golden row carries ``members_hash``, a digest of its members' keys, the values
    survivorship reads, and the cluster's flags. With ``full=False`` only clusters whose digest
    changed (or that are new) are recomputed, in place; on a night where 1% of records change, so
    does about 1% of golden. ``touched``: SQL yielding the ``cluster_id`` of every cluster that can
    have changed since the stored golden rows were made (every other one is as it was, members,
    values and flags); only their digests are computed. Returns {"recomputed": n, "kept": n}.
    """
    fields = golden_fields(config)
    rules = {f: config.survivorship.fields.get(f, config.survivorship.rules) for f in fields}
    priority = list(config.survivorship.source_priority)
    signature = repr((GOLDEN_VERSION, fields, rules, priority))
    # The digest covers every input of a golden row: each member's key and the values survivorship
    # reads (so a re-standardisation or a new date format shows, not only a content change), then
    # the cluster's flags once. DuckDB's hash() XORs its last argument in plainly, so each call ends
    # with a constant: a per-member term in last place would cancel out in pairs under bit_xor.
    member = ", ".join(["c.rid", "s.source", "s.record_id", "s.updated_at"] + [f"s.{f}" for f in fields] + ["0"])
    incremental = (not full and get_meta(con, "golden_signature") == signature
                   and _is_view(con, "golden") and "members_hash" in table_columns(con, "golden_delta"))
    scope = f"cluster_id IN ({touched})" if incremental and touched else "true"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE golden_keys AS
        SELECT c.cluster_id, hash(bit_xor(hash({member})), any_value(c.flags), 0) AS members_hash
        FROM (SELECT * FROM cluster_ids WHERE {scope}) c JOIN std s ON s.rid = c.rid GROUP BY c.cluster_id""")
    if incremental:
        # Retire the rows whose cluster is gone or changed; what remains is still right.
        con.execute(f"""DELETE FROM golden_delta WHERE {scope} AND cluster_id NOT IN
                        (SELECT cluster_id FROM golden_delta SEMI JOIN golden_keys USING (cluster_id, members_hash))""")
        con.execute(f"""INSERT INTO golden_dropped
                        SELECT cluster_id FROM golden_base ANTI JOIN golden_dropped USING (cluster_id)
                        ANTI JOIN golden_keys USING (cluster_id, members_hash) WHERE {scope}""")
        kept = con.execute("SELECT count(*) FROM golden").fetchall()[0][0]
        con.execute("CREATE OR REPLACE TEMP TABLE golden_todo AS "
                    "SELECT * FROM golden_keys ANTI JOIN golden USING (cluster_id)")
    else:
        kept = 0
        con.execute("CREATE OR REPLACE TEMP TABLE golden_todo AS SELECT * FROM golden_keys")
    rank = "CASE s.source " + " ".join(f"WHEN '{name}' THEN {i}" for i, name in enumerate(priority)) + \
        f" ELSE {len(priority)} END"
    completeness = " + ".join(f"CAST(s.{f} IS NOT NULL AS INTEGER)" for f in fields)
    freq = "".join(f", count(s.{f}) OVER (PARTITION BY c.cluster_id, s.{f}) AS freq_{f}"
                   for f in fields if "most_frequent" in rules[f])
    # Each distinct ordering becomes one integer rank over all members (usually one for every
    # field): picking by an integer is several times cheaper than by a struct per field.
    orders: dict[str, str] = {}
    rank_of = {f: orders.setdefault(_rank_order(rules[f], f), f"rank_{len(orders)}") for f in fields}
    ranks = ", ".join(f"row_number() OVER (ORDER BY {order}) AS {col}" for order, col in orders.items())
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE golden_members AS
        SELECT *, {ranks}
        FROM (SELECT c.cluster_id, t.members_hash, c.flags, s.source, s.record_id, s.updated_at,
                     {', '.join(f's.{f}' for f in fields)},
                     {rank} AS source_rank, {completeness} AS completeness {freq}
              FROM cluster_ids c JOIN golden_todo t USING (cluster_id) JOIN std s ON s.rid = c.rid)""")
    # The value, its source and its record id come from the same member by construction; members
    # without a value have no rank for that field, so arg_min passes over them.
    picks = [f"arg_min(struct_pack(v := {f}, s := source, r := record_id), "
             f"CASE WHEN {f} IS NOT NULL THEN {rank_of[f]} END) AS pick_{f}" for f in fields]
    unpack = [f"pick_{f}.v AS {f}, pick_{f}.s AS {f}_source, pick_{f}.r AS {f}_record_id" for f in fields]
    picked = f"""
        WITH picked AS (
            SELECT cluster_id, count(*) AS record_count,
                   array_to_string(list_sort(list_distinct(list(source))), ',') AS sources,
                   {', '.join(picks)},
                   max(updated_at) AS updated_at, any_value(flags) AS flags,
                   any_value(members_hash) AS members_hash
            FROM golden_members GROUP BY cluster_id
        )
        SELECT cluster_id, record_count, sources, {', '.join(unpack)}, updated_at, flags, members_hash
        FROM picked"""  # unordered: rows are edited in place, and every reader sorts
    if incremental:
        con.execute(f"INSERT INTO golden_delta BY NAME {picked}")
        _compact_if_due(con)
    else:
        _drop_golden(con)
        con.execute(f"CREATE OR REPLACE TABLE golden_base AS {picked}")
        _start_delta(con)
        set_meta(con, "golden_signature", signature)
    recomputed = con.execute("SELECT count(*) FROM golden_todo").fetchall()[0][0]
    for t in ("golden_members", "golden_todo", "golden_keys"):
        con.execute(f"DROP TABLE {t}")
    return {"recomputed": recomputed, "kept": kept}


__all__ = ["build_golden", "golden_fields", "GOLDEN_FIELDS"]
