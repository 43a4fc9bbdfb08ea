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

GOLDEN_FIELDS = ("first_name", "middle_name", "last_name", "name_suffix", "email", "phone", "company",
                 "title", "street", "city", "postcode", "region", "country", "date_of_birth")


def golden_fields(config: Config) -> list[str]:
    mapped = config.mapped_fields
    name_fields = {"first_name", "middle_name", "last_name", "name_suffix"}
    out = [f for f in GOLDEN_FIELDS if f in mapped or (f in name_fields and mapped & name_fields)]
    return out + [e.name for e in config.extra_fields if e.name in mapped]


def _rank_key(rules: tuple[str, ...], field: str) -> str:
    """A struct that sorts the best member first under ``rules`` (ties: source order, record id)."""
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
    parts += ["source_rank", "record_id"]
    return "struct_pack(" + ", ".join(f"k{i} := {p}" for i, p in enumerate(parts)) + ")"


def build_golden(con: duckdb.DuckDBPyConnection, config: Config) -> int:
    """Write table ``golden`` (one row per cluster) from ``std`` and ``cluster_ids``."""
    fields = golden_fields(config)
    rules = {f: config.survivorship.fields.get(f, config.survivorship.rules) for f in fields}
    priority = list(config.survivorship.source_priority)
    rank = "CASE s.source " + " ".join(f"WHEN '{name}' THEN {i}" for i, name in enumerate(priority)) + \
        f" ELSE {len(priority)} END"
    completeness = " + ".join(f"CAST(s.{f} IS NOT NULL AS INTEGER)" for f in fields)
    freq = "".join(f", count(s.{f}) OVER (PARTITION BY c.cluster_id, s.{f}) AS freq_{f}"
                   for f in fields if "most_frequent" in rules[f])
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE golden_members AS
        SELECT c.cluster_id, c.flags, s.source, s.record_id, s.updated_at,
               {', '.join(f's.{f}' for f in fields)},
               {rank} AS source_rank, {completeness} AS completeness {freq}
        FROM std s JOIN cluster_ids c ON c.rid = s.rid""")
    # One arg_min per field over a rank struct: no sort per field, and the value, its source and its
    # record id come from the same member by construction.
    picks = [f"arg_min(struct_pack(v := {f}, s := source, r := record_id), {_rank_key(rules[f], f)}) "
             f"FILTER (WHERE {f} IS NOT NULL) AS pick_{f}" for f in fields]
    unpack = [f"pick_{f}.v AS {f}, pick_{f}.s AS {f}_source, pick_{f}.r AS {f}_record_id" for f in fields]
    con.execute(f"""
        CREATE OR REPLACE TABLE golden AS
        WITH picked AS (
            SELECT cluster_id, count(*) AS record_count,
                   string_agg(DISTINCT source, ',' ORDER BY source) AS sources,
                   {', '.join(picks)},
                   max(updated_at) AS updated_at, any_value(flags) AS flags
            FROM golden_members GROUP BY cluster_id
        )
        SELECT cluster_id, record_count, sources, {', '.join(unpack)}, updated_at, flags
        FROM picked ORDER BY cluster_id""")
    con.execute("DROP TABLE golden_members")
    return con.execute("SELECT count(*) FROM golden").fetchall()[0][0]


__all__ = ["build_golden", "golden_fields", "GOLDEN_FIELDS"]
