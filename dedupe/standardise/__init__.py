"""Standardise: turn raw record values into matching keys and display values.

Reads ``records`` (from ingest) and writes ``std``, one row per record, with two kinds of columns:

* **display values** for golden records: parsed names in their original casing and accents, the
  email lower-cased as written, the phone in E.164, the country as ISO-3166 alpha-2;
* **matching keys** for blocking and comparison: ASCII lower-case names, a nickname family per first
  name, phonetic codes, the email key with gmail dot/plus folding, free-mail and role-account flags,
  a company key without legal suffixes, the company label of a corporate email domain.

The per-field rules live in one module per field family (``names``, ``emails``, ``phones``,
``companies``, ``places``) as pure per-value functions. This module applies them to the *distinct*
values of each column only (a CRM has far fewer distinct first names, domains or companies than
rows) and joins the results back in DuckDB, so Python never loops over rows.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Callable, Iterable

import duckdb

from dedupe.columns import registered
from dedupe.config import Config
from dedupe.state import column_type, crash_point, get_meta, set_meta, transaction
from dedupe.standardise import companies, emails, names, phones, places

# Region used to read a phone number when the record has no (recognisable) country.
DEFAULT_PHONE_REGION = "US"


def _map_distinct(con: duckdb.DuckDBPyConnection, table: str, source_sql: str, inputs: list[str],
                  fn: Callable[..., tuple], outputs: dict[str, str],
                  progress: Callable[[str], None] | None = None) -> None:
    """Apply ``fn`` to each distinct tuple of ``inputs``; store ``in_<input>`` + outputs (name: SQL
    type) in ``table``.

    Inputs get an ``in_`` prefix because outputs may reuse their names (``first_name`` in, parsed
    ``first_name`` out)."""
    distinct = con.sql(f"SELECT DISTINCT {', '.join(inputs)} FROM {source_sql}").to_arrow_table()
    if progress and distinct.num_rows >= 100_000:
        progress(f"{table.removeprefix('map_')}: {distinct.num_rows:,} distinct values")
    columns = [distinct.column(i).to_pylist() for i in range(len(inputs))]
    results = _apply(fn, list(zip(*columns))) if columns and columns[0] else []
    out_columns = list(zip(*results)) if results else [() for _ in outputs]
    # The inputs stay in Arrow with their own types; the outputs go over as NumPy (see
    # dedupe.columns) and line up with them row by row.
    con.register("_distinct", distinct)
    try:
        with registered(con, "_mapped", dict(zip(outputs, out_columns)), outputs):
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE {table} AS
                SELECT {', '.join(f'd.{name} AS in_{name}' for name in inputs)}, m.*
                FROM _distinct d POSITIONAL JOIN _mapped m""")
    finally:
        con.unregister("_distinct")


# Below this many distinct values, handing work to other processes costs more than it saves
# (measured on 2 cores: 134k-147k distinct names, emails and phones at 2 x 100k records take
# 5.5 s in one process and 4.5 s with two workers; at 60k the two are even).
PARALLEL_MIN_VALUES = 100_000


def _worker_context() -> multiprocessing.context.BaseContext:
    """Workers fork from a clean server process that has imported the rules once: no DuckDB
    threads inherited (as a plain fork would), no per-worker import cost (as spawn pays)."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["dedupe.standardise"])
    return ctx


def _apply_chunk(fn: Callable[..., tuple], rows: list[tuple]) -> list[tuple]:
    return [fn(*row) for row in rows]


def _apply(fn: Callable[..., tuple], rows: list[tuple]) -> list[tuple]:
    """``fn`` over every row; large inputs are split across all cores (the rules are pure Python,
    so threads would not help)."""
    workers = os.cpu_count() or 1
    if len(rows) < PARALLEL_MIN_VALUES or workers < 2:
        return _apply_chunk(fn, rows)
    size = -(-len(rows) // (workers * 4))
    chunks = [rows[i:i + size] for i in range(0, len(rows), size)]
    try:
        # No cycle collection in the workers, as in the run that called them
        # (``pipeline._cycle_collector_paused``): the rules make no cycles, and the collector kept
        # re-walking the chunk's tuples (names 0.21 -> 0.14 s per 70k values in one worker;
        # standardise 29.3 -> 28.4 s at 1.6M records). The workers live for this one call.
        with ProcessPoolExecutor(max_workers=workers, mp_context=_worker_context(),
                                 initializer=gc.disable) as pool:
            return [out for part in pool.map(_apply_chunk, [fn] * len(chunks), chunks) for out in part]
    # A __main__ that cannot be re-imported (code piped to python), or a sandbox without the
    # sockets and semaphores workers need: one process still gives the same answer.
    except (BrokenProcessPool, OSError):
        return _apply_chunk(fn, rows)


def warm_up() -> None:
    """Load the rules' reference data now (nickname families, name constants, legal suffixes,
    public suffixes, country names; about 0.2 s): a run calls this in a background thread while
    DuckDB reads the exports, so a night that standardises a few records does not wait for it."""
    _name_parts("Dr. Bob Smith Jr.", None, None, None)
    names.first_name_family(names.clean_name("Bob"))
    _email_parts("bob.smith@acme.co.uk")
    companies.company_key(companies.normalise_company("Acme GmbH"))
    phones.to_e164("+44 20 7946 0000", places.country_code("United Kingdom"))


def _join_on(alias: str, inputs: Iterable[str], rec: str = "r") -> str:
    return " AND ".join(f"{alias}.in_{c} IS NOT DISTINCT FROM {rec}.{c}" for c in inputs)


# --------------------------------------------------------------------------------------------
# per-family adapters: one distinct input tuple -> one output tuple


def _name_parts(full: str | None, first: str | None, middle: str | None, last: str | None) -> tuple:
    suffix = None
    if full and not (first or last):
        parsed = names.parse_person_name(full)
        first, middle, last, suffix = parsed["first"], parsed["middle"], parsed["last"], parsed["suffix"]
    else:
        if last:
            last, suffix = names.split_suffix(last)
        first = names.strip_title(first)
        if first and not middle and " " in first.strip():
            # "John A." in a first-name column: the tail is a middle name or initial.
            head, _, tail = first.strip().partition(" ")
            first, middle = head, tail.strip() or None
    first_c = names.clean_name(first)
    last_c = names.clean_surname(last)
    middle_c = names.clean_name(middle)
    return (
        first, middle, last, suffix, names.generation(suffix),
        first_c, middle_c[:1] if middle_c else None, last_c,
        names.first_name_family(first_c) if first_c else None,
        first_c[:1] if first_c else None,
        names.phonetic(last_c), names.phonetic(first_c),
    )


NAME_OUTPUTS = {
    "first_name": "VARCHAR", "middle_name": "VARCHAR", "last_name": "VARCHAR",
    "name_suffix": "VARCHAR", "name_generation": "VARCHAR", "first_clean": "VARCHAR", "middle_initial": "VARCHAR",
    "last_clean": "VARCHAR", "first_family": "VARCHAR[]", "first_initial": "VARCHAR",
    "last_phonetic": "VARCHAR", "first_phonetic": "VARCHAR",
}


def _email_parts(value: str | None) -> tuple:
    e = emails.normalise_email(value) if value else None
    if not e:
        return (None,) * 6 + (False, False)
    domain_key = emails.company_from_domain(e["domain"])
    return (e["email"], e["key"], e["local"], e["domain"], e["local_alnum"] or None, domain_key,
            bool(e["is_free"]), bool(e["is_role"]))


EMAIL_OUTPUTS = {
    "email_display": "VARCHAR", "email_key": "VARCHAR", "email_local": "VARCHAR",
    "email_domain": "VARCHAR", "email_local_alnum": "VARCHAR", "email_domain_key": "VARCHAR",
    "email_is_free": "BOOLEAN", "email_is_role": "BOOLEAN",
}


def _company_parts(value: str | None) -> tuple:
    norm = companies.normalise_company(value) if value else None
    return norm, companies.company_key(norm) if norm else None


def _country_part(value: str | None) -> tuple:
    return (places.country_code(value) if value else None,)


def _phone_part(raw: str | None, country: str | None) -> tuple:
    if not raw:
        return (None,)
    return (phones.to_e164(raw, country, default_region=DEFAULT_PHONE_REGION),)


def _place_part(value: str | None) -> tuple:
    return (places.clean_place(value) if value else None,)


def _name_part(value: str | None) -> tuple:
    return (names.clean_name(value) if value else None,)


def _exact_part(value: str | None) -> tuple:
    return (" ".join(value.split()).lower() if value else None,)


# --------------------------------------------------------------------------------------------


PLACE_FIELDS = ("street", "city", "postcode", "region")


# Above this many records, a value's shared flag comes from initials and surname sounds alone:
# checking every pair of a large group (an office line) would grow with its square.
SHARED_PAIRWISE_MAX = 20

# Bump when a rule changes what a record standardises to: cached std rows are then rebuilt.
STANDARDISE_VERSION = "7"


def _signature(config: Config) -> str:
    extras = ";".join(f"{e.name}:{e.compare}" for e in config.extra_fields)
    return hashlib.sha256(f"{STANDARDISE_VERSION}|{DEFAULT_PHONE_REGION}|{extras}".encode()).hexdigest()[:16]


def standardise(con: duckdb.DuckDBPyConnection, config: Config, full: bool = True,
                progress: Callable[[str], None] | None = None) -> dict[str, int]:
    """Build the ``std`` table from ``records``; return {"standardised": n, "reused": n}.

    With ``full=False``, rows of the previous ``std`` whose record content is unchanged (same
    ``content_hash``) are reused, so a night with 1% changed records standardises 1% of them. The
    shared-contact flags are recomputed for every record holding a phone or email key that a
    deleted, changed or new record held (a value's flag depends only on the records holding it).
    """
    signature = _signature(config)
    # A state from before compare keys were integers is rebuilt once (the model is kept).
    reuse = (not full and get_meta(con, "standardise_signature") == signature
             and column_type(con, "std", "compare_key") == "UBIGINT")
    if reuse:
        con.execute("""CREATE OR REPLACE TEMP TABLE changed_records AS
                       SELECT r.* FROM records r ANTI JOIN std s ON s.rid = r.rid AND s.content_hash = r.content_hash""")
    else:
        con.execute("CREATE OR REPLACE TEMP VIEW changed_records AS SELECT * FROM records")
    source = "changed_records"

    _map_distinct(con, "map_name", source, ["full_name", "first_name", "middle_name", "last_name"],
                  _name_parts, NAME_OUTPUTS, progress)
    _map_distinct(con, "map_email", source, ["email"], _email_parts, EMAIL_OUTPUTS, progress)
    _map_distinct(con, "map_company", source, ["company"], _company_parts,
                  {"company_norm": "VARCHAR", "company_key": "VARCHAR"})
    _map_distinct(con, "map_country", source, ["country"], _country_part, {"country_code": "VARCHAR"})
    _map_distinct(con, "map_phone",
                  f"(SELECT r.phone, c.country_code FROM {source} r LEFT JOIN map_country c "
                  "ON c.in_country IS NOT DISTINCT FROM r.country)",
                  ["phone", "country_code"], _phone_part, {"phone_e164": "VARCHAR"}, progress)

    simple_maps: list[tuple[str, str, Callable]] = []
    for f in PLACE_FIELDS:
        simple_maps.append((f, f"{f}_clean", _place_part))
    simple_maps.append(("title", "title_clean", _place_part))
    for extra in config.extra_fields:
        if extra.compare == "name":
            simple_maps.append((extra.name, f"{extra.name}_clean", _name_part))
        elif extra.compare == "string":
            simple_maps.append((extra.name, f"{extra.name}_clean", _place_part))
        elif extra.compare == "exact":
            simple_maps.append((extra.name, f"{extra.name}_clean", _exact_part))
    for i, (src, out, fn) in enumerate(simple_maps):
        _map_distinct(con, f"map_simple_{i}", source, [src], fn, {out: "VARCHAR"})

    joins = [
        f"LEFT JOIN map_name n ON {_join_on('n', ['full_name', 'first_name', 'middle_name', 'last_name'])}",
        f"LEFT JOIN map_email e ON {_join_on('e', ['email'])}",
        f"LEFT JOIN map_company c ON {_join_on('c', ['company'])}",
        f"LEFT JOIN map_country k ON {_join_on('k', ['country'])}",
        "LEFT JOIN map_phone p ON p.in_phone IS NOT DISTINCT FROM r.phone "
        "AND p.in_country_code IS NOT DISTINCT FROM k.country_code",
    ]
    selects = [
        "r.rid", "r.source", "r.record_id", "r.content_hash",
        # display values (golden records)
        "n.first_name", "n.middle_name", "n.last_name", "n.name_suffix", "n.name_generation",
        "e.email_display AS email", "p.phone_e164 AS phone", "r.company", "r.title",
        "r.street", "r.city", "r.postcode", "r.region", "k.country_code AS country",
        "r.date_of_birth", "r.updated_at",
        # matching keys
        "n.first_clean", "n.middle_initial", "n.last_clean", "n.first_family", "n.first_initial",
        "n.last_phonetic", "n.first_phonetic",
        "e.email_key", "e.email_local", "e.email_domain", "e.email_local_alnum", "e.email_domain_key",
        "coalesce(e.email_is_free, false) AS email_is_free",
        "coalesce(e.email_is_role, false) AS email_is_role",
        "c.company_norm", "c.company_key",
    ]
    for i, (src, out, _fn) in enumerate(simple_maps):
        joins.append(f"LEFT JOIN map_simple_{i} s{i} ON s{i}.in_{src} IS NOT DISTINCT FROM r.{src}")
        selects.append(f"s{i}.{out}")
    for extra in config.extra_fields:
        if extra.compare in ("date", "number"):
            selects.append(f"r.{extra.name} AS {extra.name}_clean")
        selects.append(f"r.{extra.name}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE std_base AS SELECT {', '.join(selects)} FROM {source} r "
                f"{' '.join(joins)}")
    counts = {"standardised": con.execute("SELECT count(*) FROM std_base").fetchall()[0][0], "reused": 0}
    # Shared contact points, learnt from the data rather than from a list: a phone or an email
    # used by records of two different people-looking names is an office line, a family mailbox or
    # a role account, and matching must not treat it as personal. A record without a first or last
    # name is nobody in particular here: it neither makes a value shared nor counts as a second
    # person. Values with a few records are checked pair by pair: two records are one person when
    # their first names are one nickname family (Bob and Robert Lee) whatever their surnames: a
    # married name keeps its direct line, mobile and mailbox (Ann Lee who became Ann Park), while an
    # office line or a spouses' mailbox is shared by people with different first names. A first
    # initial alone ("J. Lee") agrees with a name of that initial when the surnames sound alike.
    # (On the 2 x 100k fixtures, also requiring the surnames to sound alike flagged the personal
    # lines of 1,100 married-name pairs as shared; pairwise F1 0.9530 -> 0.9570.) The rare value
    # with more records is judged by initial and surname sound alone (an office line).
    person = "first_initial || '|' || last_phonetic"

    def shared(table: str, col: str) -> str:
        return f"""
            WITH named AS (
                SELECT rid, {col} AS v, first_initial, last_phonetic, first_family FROM {table} n
                WHERE {col} IS NOT NULL AND first_initial IS NOT NULL AND last_phonetic IS NOT NULL
            ), candidates AS (
                SELECT v, count(*) AS n FROM named GROUP BY v HAVING count(DISTINCT {person}) > 1
            ), few AS (  -- both sides of the pairwise check filtered first: whatever the join
                         -- order, a value held by 500k records never meets itself
                SELECT n.* FROM named n SEMI JOIN candidates c ON c.v = n.v AND c.n <= {SHARED_PAIRWISE_MAX}
            )
            SELECT v FROM candidates WHERE n > {SHARED_PAIRWISE_MAX}
            UNION
            SELECT a.v FROM few a JOIN few b ON b.v = a.v AND a.rid < b.rid
            WHERE NOT (list_has_any(a.first_family, b.first_family)
                       OR (a.first_initial = b.first_initial AND a.last_phonetic = b.last_phonetic))"""
    # compare_key: everything a comparison of this record depends on (its content, the shared
    # flags, and the version of these rules). Comparisons are reused across nights for pairs whose
    # two compare_keys are unchanged.
    # A 64-bit integer (the low half of an md5), not the hex string: nightly reuse joins millions of
    # pairs on two keys, and integer joins are several times faster than 32-character ones.
    compare_key = (f"md5_number_lower('{signature}' || content_hash || CAST(phone_shared AS VARCHAR) "
                   f"|| CAST(email_shared AS VARCHAR))")

    def flagged(table: str) -> str:
        return f"""
            SELECT t.*, sp.v IS NOT NULL AS phone_shared,
                   t.email_key IS NOT NULL AND (t.email_is_role OR se.v IS NOT NULL) AS email_shared
            FROM {table} t
            LEFT JOIN ({shared(table, 'phone')}) sp ON sp.v = t.phone
            LEFT JOIN ({shared(table, 'email_key')}) se ON se.v = t.email_key"""

    if not reuse:
        con.execute(f"""CREATE OR REPLACE TABLE std AS
                        SELECT *, {compare_key} AS compare_key FROM ({flagged('std_base')}) ORDER BY rid""")
    else:
        # One transaction: the rows and their flags change together or not at all. A crash between
        # the two would leave new rows with placeholder flags that the rerun, finding no changed
        # record, would never refresh.
        with transaction(con):
            # Edit std in place (a rewrite would cost more than the night's changes): drop rows of
            # deleted and changed records, add the new rows, then refresh the flags that moved.
            con.execute("""CREATE OR REPLACE TEMP TABLE std_gone AS
                           SELECT s.rid, s.phone, s.email_key FROM std s
                           ANTI JOIN records r ON s.rid = r.rid AND s.content_hash = r.content_hash""")
            con.execute("DELETE FROM std WHERE rid IN (SELECT rid FROM std_gone)")
            counts["reused"] = con.execute("SELECT count(*) FROM std").fetchall()[0][0]
            con.execute("INSERT INTO std BY NAME SELECT *, false AS phone_shared, false AS email_shared, "
                        "CAST(NULL AS UBIGINT) AS compare_key FROM std_base")
            crash_point("standardise_rows")
            # Whether a value is shared depends only on the records holding it, so only values a
            # deleted, changed or new record held can change their flags: the flags are recomputed for
            # the records holding such a value (all of them), and the others keep theirs.
            for col in ("phone", "email_key"):
                con.execute(f"""CREATE OR REPLACE TEMP TABLE touched_{col} AS
                                SELECT DISTINCT {col} AS v FROM (SELECT {col} FROM std_gone
                                                                 UNION ALL SELECT {col} FROM std_base)
                                WHERE {col} IS NOT NULL""")
            con.execute("DROP TABLE std_gone")
            cols = ("rid, content_hash, phone, email_key, email_is_role, first_initial, last_phonetic, "
                    "first_family, phone_shared, email_shared, compare_key")

            def holding(col: str) -> str:
                return f"(SELECT {cols} FROM std SEMI JOIN touched_{col} t ON t.v = std.{col})"
            con.execute(f"""
                CREATE OR REPLACE TEMP TABLE std_flags AS
                WITH todo AS (
                    SELECT {cols} FROM std WHERE compare_key IS NULL
                    UNION SELECT * FROM {holding('phone')}
                    UNION SELECT * FROM {holding('email_key')}
                ), flags AS (
                    SELECT t.rid, t.content_hash, t.phone_shared AS old_phone_shared,
                           t.email_shared AS old_email_shared, t.compare_key AS old_compare_key,
                           CASE WHEN tp.v IS NULL THEN t.phone_shared ELSE sp.v IS NOT NULL END AS phone_shared,
                           CASE WHEN te.v IS NULL THEN t.email_shared
                                ELSE t.email_is_role OR se.v IS NOT NULL END AS email_shared
                    FROM todo t
                    LEFT JOIN touched_phone tp ON tp.v = t.phone
                    LEFT JOIN touched_email_key te ON te.v = t.email_key
                    LEFT JOIN ({shared(holding('phone'), 'phone')}) sp ON sp.v = t.phone
                    LEFT JOIN ({shared(holding('email_key'), 'email_key')}) se ON se.v = t.email_key
                )
                SELECT rid, phone_shared, email_shared, {compare_key} AS compare_key
                FROM flags
                WHERE old_compare_key IS NULL OR phone_shared <> old_phone_shared
                   OR email_shared <> old_email_shared""")
            con.execute("""
                UPDATE std SET phone_shared = f.phone_shared, email_shared = f.email_shared,
                               compare_key = f.compare_key
                FROM std_flags f WHERE std.rid = f.rid""")
            con.execute("DROP TABLE touched_phone")
            con.execute("DROP TABLE touched_email_key")
            con.execute("DROP TABLE std_flags")
    set_meta(con, "standardise_signature", signature)
    con.execute("DROP TABLE std_base")
    con.execute(f"DROP {'TABLE' if reuse else 'VIEW'} changed_records")
    for t in ["map_name", "map_email", "map_company", "map_country", "map_phone"] + \
             [f"map_simple_{i}" for i in range(len(simple_maps))]:
        con.execute(f"DROP TABLE {t}")
    return counts


__all__ = ["standardise", "STANDARDISE_VERSION"]
