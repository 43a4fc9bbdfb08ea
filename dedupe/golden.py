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


def _order_by(rules: tuple[str, ...], field: str) -> str:
    keys = []
    for rule in rules:
        if rule == "most_recent":
            keys.append("updated_at DESC NULLS LAST")
        elif rule == "most_complete":
            keys.append("completeness DESC")
        elif rule == "source_priority":
            keys.append("source_rank ASC")
        elif rule == "most_frequent":
            keys.append(f"freq_{field} DESC")
    keys.append("source_rank ASC, record_id ASC")
    return ", ".join(keys)


def build_golden(con: duckdb.DuckDBPyConnection, config: Config) -> int:
    """Write table ``golden`` (one row per cluster) from ``std`` and ``cluster_ids``."""
    fields = golden_fields(config)
    priority = list(config.survivorship.source_priority)
    rank = "CASE s.source " + " ".join(f"WHEN '{name}' THEN {i}" for i, name in enumerate(priority)) + \
        f" ELSE {len(priority)} END"
    completeness = " + ".join(f"CAST(s.{f} IS NOT NULL AS INTEGER)" for f in fields)
    freq = ", ".join(f"count(s.{f}) OVER (PARTITION BY c.cluster_id, s.{f}) AS freq_{f}" for f in fields)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE golden_members AS
        SELECT c.cluster_id, c.flags, s.*, {rank} AS source_rank, {completeness} AS completeness, {freq}
        FROM std s JOIN cluster_ids c ON c.rid = s.rid""")
    picks = []
    for f in fields:
        rules = config.survivorship.fields.get(f, config.survivorship.rules)
        order = _order_by(rules, f)
        value = f"first({f} ORDER BY {order}) FILTER (WHERE {f} IS NOT NULL)"
        picks.append(f"{value} AS {f}")
        picks.append(f"first(source ORDER BY {order}) FILTER (WHERE {f} IS NOT NULL) AS {f}_source")
        picks.append(f"first(record_id ORDER BY {order}) FILTER (WHERE {f} IS NOT NULL) AS {f}_record_id")
    con.execute(f"""
        CREATE OR REPLACE TABLE golden AS
        SELECT cluster_id, count(*) AS record_count,
               string_agg(DISTINCT source, ',' ORDER BY source) AS sources,
               {', '.join(picks)},
               max(updated_at) AS updated_at, any_value(flags) AS flags
        FROM golden_members GROUP BY cluster_id ORDER BY cluster_id""")
    con.execute("DROP TABLE golden_members")
    return con.execute("SELECT count(*) FROM golden").fetchall()[0][0]


__all__ = ["build_golden", "golden_fields", "GOLDEN_FIELDS"]
