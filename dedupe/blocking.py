"""Blocking: cheap candidate pairs from several OR-ed blocking keys, with bounded block sizes.

A blocking rule is a list of key names; a record's rule key is their values joined (a record whose
first name has several nickname families gets one key per family). Two records become a candidate
pair when any rule gives them the same key. Everything happens in DuckDB: the key tables, the block
size census, and the self-joins.

**Block caps.** A block (one key value of one rule) larger than ``max_block_size`` records is skipped
for that rule and reported (``email_key=info@acme.com: 12,345 records, capped``): a shared ``info@``
mailbox or an office main line would otherwise explode into n^2/2 pairs that say nothing about
identity. Members of a capped block still meet their true duplicates through the other rules. The
pair count of every rule is known from the block census *before* the join runs, so a run never
materialises a join it cannot afford.

Output: table ``candidates(rid_l, rid_r, rule)`` with ``rid_l < rid_r`` and ``rule`` the first rule
(in config order) that produced the pair, plus a ``BlockingReport``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

# name -> (SQL expression over std, is_list). The local-part key is for *handles* ("wolfpack77"):
# a role mailbox says nothing about who wrote to you, and a local part spelt from the person's
# name ("jsmith") only repeats the name keys while its blocks grow with every namesake.
BLOCKING_KEYS: dict[str, tuple[str, bool]] = {
    "email_key": ("email_key", False),
    "email_local_alnum": ("CASE WHEN NOT email_is_role "
                          "AND strpos(email_local_alnum, coalesce(replace(last_clean, ' ', ''), '~')) = 0 "
                          "AND strpos(email_local_alnum, coalesce(first_clean, '~')) = 0 "
                          "THEN email_local_alnum END", False),
    "email_domain_key": ("email_domain_key", False),
    "phone": ("phone", False),
    "first_family": ("first_family", True),
    "first_name": ("first_clean", False),
    "first_initial": ("first_initial", False),
    "first_phonetic": ("first_phonetic", False),
    "last_name": ("last_clean", False),
    # First and last name in either order: catches "Smith John" against "John Smith".
    "names_any_order": ("array_to_string(list_sort([first_clean, last_clean]), ' ')", False),
    "last_phonetic": ("last_phonetic", False),
    "company_key": ("company_key", False),
    "city": ("city_clean", False),
    "postcode": ("postcode_clean", False),
    "date_of_birth": ("CAST(date_of_birth AS VARCHAR)", False),
}


@dataclass
class CappedBlock:
    rule: str
    key: str
    records: int

    def __str__(self) -> str:
        return f"{self.rule}={self.key}: {self.records:,} records, capped"


@dataclass
class BlockingReport:
    pairs_per_rule: dict[str, int] = field(default_factory=dict)  # new pairs each rule added
    estimated_pairs_per_rule: dict[str, int] = field(default_factory=dict)
    capped: list[CappedBlock] = field(default_factory=list)
    capped_total: int = 0
    candidate_pairs: int = 0
    skipped_rules: list[str] = field(default_factory=list)


def rule_name(rule: tuple[str, ...]) -> str:
    return "+".join(rule)


def _key_expr(part: str, std_columns: set[str]) -> tuple[str, bool] | None:
    if part.startswith("field:"):
        col = part.removeprefix("field:")
        col = f"{col}_clean" if f"{col}_clean" in std_columns else col
        return (f"CAST({col} AS VARCHAR)", False) if col in std_columns else None
    expr, is_list = BLOCKING_KEYS[part]
    return expr, is_list


def _rule_keys_sql(rule: tuple[str, ...], std_columns: set[str]) -> str | None:
    """SQL yielding (rid, key) for one rule, or None if the rule's fields are absent."""
    exprs = []
    for i, part in enumerate(rule):
        resolved = _key_expr(part, std_columns)
        if resolved is None:
            return None
        expr, is_list = resolved
        exprs.append(f"unnest({expr}) AS k{i}" if is_list else f"{expr} AS k{i}")
    # A key with any missing part is no key: NULL || 'x' is NULL.
    key = " || '|' || ".join(f"CAST(k{i} AS VARCHAR)" for i in range(len(rule)))
    return (f"SELECT DISTINCT rid, {key} AS key FROM (SELECT rid, {', '.join(exprs)} FROM std) "
            f"WHERE {key} IS NOT NULL AND {key} <> ''")


def block(con: duckdb.DuckDBPyConnection, rules: tuple[tuple[str, ...], ...], max_block_size: int,
          max_capped_report: int = 50) -> BlockingReport:
    report = BlockingReport()
    std_columns = {r[0] for r in con.execute("DESCRIBE std").fetchall()}
    con.execute("CREATE OR REPLACE TEMP TABLE candidate_parts (rid_l BIGINT, rid_r BIGINT, rule INTEGER)")
    capped_rows = []
    for index, rule in enumerate(rules):
        name = rule_name(rule)
        keys_sql = _rule_keys_sql(rule, std_columns)
        if keys_sql is None:
            report.skipped_rules.append(name)
            continue
        con.execute(f"CREATE OR REPLACE TEMP TABLE block_keys AS {keys_sql}")
        con.execute("CREATE OR REPLACE TEMP TABLE block_sizes AS "
                    "SELECT key, count(*) AS n FROM block_keys GROUP BY key HAVING count(*) > 1")
        est, capped_n, capped_pairs = con.execute(f"""
            SELECT coalesce(sum(CASE WHEN n <= {max_block_size} THEN n * (n - 1) / 2 END), 0),
                   count(*) FILTER (WHERE n > {max_block_size}),
                   coalesce(sum(CASE WHEN n > {max_block_size} THEN n * (n - 1) / 2 END), 0)
            FROM block_sizes""").fetchall()[0]
        report.estimated_pairs_per_rule[name] = int(est)
        if capped_n:
            report.capped_total += int(capped_n)
            capped_rows += [CappedBlock(name, k, n) for k, n in con.execute(
                f"SELECT key, n FROM block_sizes WHERE n > {max_block_size} "
                f"ORDER BY n DESC, key LIMIT {max_capped_report}").fetchall()]
        con.execute(f"""
            INSERT INTO candidate_parts
            SELECT a.rid, b.rid, {index}
            FROM block_keys a
            JOIN block_sizes s ON s.key = a.key AND s.n <= {max_block_size}
            JOIN block_keys b ON b.key = a.key AND a.rid < b.rid""")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE candidates AS
        SELECT rid_l, rid_r, min(rule) AS rule FROM candidate_parts
        GROUP BY rid_l, rid_r ORDER BY rid_l, rid_r""")
    for rule_index, n in con.execute(
            "SELECT rule, count(*) FROM candidates GROUP BY rule ORDER BY rule").fetchall():
        report.pairs_per_rule[rule_name(rules[rule_index])] = n
    report.candidate_pairs = con.execute("SELECT count(*) FROM candidates").fetchall()[0][0]
    report.capped = sorted(capped_rows, key=lambda c: -c.records)[:max_capped_report]
    for t in ("candidate_parts", "block_keys", "block_sizes"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    return report


__all__ = ["BLOCKING_KEYS", "BlockingReport", "CappedBlock", "block", "rule_name"]
