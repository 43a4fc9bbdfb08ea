"""Comparisons: a multi-level agreement vector per candidate pair, computed in one SQL statement.

Each comparison turns one field family of the two records into a small integer *level*
(``-1`` = a value is missing on either side, ``0`` = different, higher = stronger agreement),
Splink-style. Levels are SQL ``CASE`` branches, tried from the strongest down, so a reader sees the
rule exactly as it runs.

Similarities: DuckDB's built-in ``jaro_winkler_similarity`` (measured 5x faster here than calling
rapidfuzz through a UDF), and rapidfuzz for what DuckDB lacks (``rf_token_set``, ``rf_lev``),
registered as vectorised Arrow UDFs over ``process.cpdist``. DuckDB streams the pair table through
them in chunks, so memory stays bounded, and the same SQL could run on another engine that
registers the same functions. Each distinct similarity is computed once per pair, however many
levels test it.

The levels are deliberately coarse (2-6 per field): the model learns one m/u probability per level,
and coarse levels keep those estimates stable on small data.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa
from duckdb.sqltypes import DOUBLE, VARCHAR
from rapidfuzz import distance, fuzz, process

from dedupe.blocking import BlockingReport
from dedupe.config import Config
from dedupe.state import column_type, get_meta, has_table, set_meta, transaction


@dataclass(frozen=True)
class Comparison:
    name: str
    null_when: str  # SQL: the pair cannot be compared on this field
    levels: tuple[tuple[str, str], ...]  # (label, SQL condition), strongest first; level = len - index
    tf_column: str | None = None  # std column whose value frequency adjusts the exact level

    @property
    def level_labels(self) -> dict[int, str]:
        n = len(self.levels)
        labels = {n - i: label for i, (label, _) in enumerate(self.levels)}
        return {-1: "missing", 0: "different", **labels}

    def case_sql(self) -> str:
        n = len(self.levels)
        branches = " ".join(f"WHEN {cond} THEN {n - i}" for i, (_, cond) in enumerate(self.levels))
        return f"CAST(CASE WHEN {self.null_when} THEN -1 {branches} ELSE 0 END AS TINYINT)"

    @property
    def exact_level(self) -> int:
        return len(self.levels)


def _either_null(col: str) -> str:
    return f"(l.{col} IS NULL OR r.{col} IS NULL)"


# --------------------------------------------------------------------------------------------
# rapidfuzz as vectorised DuckDB functions


def _pairwise(scorer, scale: float):
    def udf(left: pa.Array, right: pa.Array) -> pa.Array:
        a = left.to_pylist()
        b = right.to_pylist()
        mask = np.fromiter((x is None or y is None for x, y in zip(a, b)), dtype=bool, count=len(a))
        a = ["" if x is None else x for x in a]
        b = ["" if y is None else y for y in b]
        scores = process.cpdist(a, b, scorer=scorer, workers=-1, dtype=np.float64) / scale
        # From the buffers: pa.array() would import pandas (see dedupe.columns).
        validity = pa.py_buffer(np.packbits(~mask, bitorder="little"))
        return pa.Array.from_buffers(pa.float64(), len(scores), [validity, pa.py_buffer(scores)],
                                     null_count=int(mask.sum()))
    return udf


def register_functions(con: duckdb.DuckDBPyConnection) -> None:
    """Register the rapidfuzz similarity functions (idempotent per connection)."""
    # rapidfuzz's own scorers keep cpdist on its C++ path (a Python wrapper would not); 0-100
    # ratios are scaled to 0-1 like every other similarity here.
    functions = {
        "rf_lev": (distance.Levenshtein.normalized_similarity, 1.0),
        "rf_token_set": (fuzz.token_set_ratio, 100.0),
    }
    for name, (scorer, scale) in functions.items():
        try:
            con.remove_function(name)
        except duckdb.Error:
            pass
        con.create_function(name, _pairwise(scorer, scale), [VARCHAR, VARCHAR], DOUBLE, type="arrow",
                            null_handling="special", side_effects=False)


# --------------------------------------------------------------------------------------------
# the comparison library

def _name_comparison(name: str, col: str, phonetic: str | None = None, tf: bool = True,
                     swapped_with: str | None = None) -> Comparison:
    fuzzy_2 = f"jaro_winkler_similarity(l.{col}, r.{col}) >= 0.85"
    if phonetic:
        fuzzy_2 = f"({fuzzy_2} OR l.{phonetic} = r.{phonetic})"
    swapped = ()
    if swapped_with:
        swapped = (("swapped with " + swapped_with.removesuffix("_clean"),
                    f"jaro_winkler_similarity(l.{col}, r.{swapped_with}) >= 0.92 AND jaro_winkler_similarity(r.{col}, l.{swapped_with}) >= 0.92"),)
    return Comparison(name, _either_null(col), (
        ("exact", f"l.{col} = r.{col}"),
        *swapped,
        ("jaro_winkler>=0.94", f"jaro_winkler_similarity(l.{col}, r.{col}) >= 0.94"),
        ("jaro_winkler>=0.85 or phonetic", fuzzy_2),
        ("shared token", f"list_has_any(string_split(l.{col}, ' '), string_split(r.{col}, ' '))"),
    ), tf_column=col if tf else None)


def _string_comparison(name: str, col: str, tf: bool = False) -> Comparison:
    return Comparison(name, _either_null(col), (
        ("exact", f"l.{col} = r.{col}"),
        ("token_set>=0.85", f"rf_token_set(l.{col}, r.{col}) >= 0.85"),
        ("jaro_winkler>=0.88", f"jaro_winkler_similarity(l.{col}, r.{col}) >= 0.88"),
    ), tf_column=col if tf else None)


def _exact_comparison(name: str, col: str, tf: bool = False, one_edit: bool = False) -> Comparison:
    """Exact agreement; with ``one_edit``, a single typo (identifiers, postcodes) gets its own level,
    which keeps "different" a strong signal instead of one diluted by typos."""
    levels = [("exact", f"l.{col} = r.{col}")]
    if one_edit:
        levels.append(("one edit", f"damerau_levenshtein(l.{col}, r.{col}) <= 1"))
    return Comparison(name, _either_null(col), tuple(levels), tf_column=col if tf else None)


def _date_comparison(name: str, col: str) -> Comparison:
    l, r = f"l.{col}", f"r.{col}"
    same = [f"year({l}) = year({r})", f"month({l}) = month({r})", f"day({l}) = day({r})"]
    two_of_three = " + ".join(f"CAST({s} AS INTEGER)" for s in same) + " = 2"
    swapped = f"(month({l}) = day({r}) AND day({l}) = month({r}) AND year({l}) = year({r}))"
    return Comparison(name, _either_null(col), (
        ("exact", f"{l} = {r}"),
        ("one part differs or day/month swapped", f"({two_of_three} OR {swapped})"),
        ("within a year", f"abs(datediff('day', {l}, {r})) <= 366"),
    ))


def _number_comparison(name: str, col: str) -> Comparison:
    l, r = f"l.{col}", f"r.{col}"
    return Comparison(name, _either_null(col), (
        ("exact", f"{l} = {r}"),
        ("within 1%", f"abs({l} - {r}) <= 0.01 * greatest(abs({l}), abs({r}))"),
    ))


# "Smith, John" keyed as first name Smith: a swap gets its own level in both name comparisons.
FIRST_NAME = Comparison("first_name", _either_null("first_clean"), (
    ("exact", "l.first_clean = r.first_clean"),
    ("swapped with last name", "jaro_winkler_similarity(l.first_clean, r.last_clean) >= 0.92 AND "
                               "jaro_winkler_similarity(r.first_clean, l.last_clean) >= 0.92"),
    ("nickname family", "list_has_any(l.first_family, r.first_family)"),
    ("jaro_winkler>=0.88", "jaro_winkler_similarity(l.first_clean, r.first_clean) >= 0.88"),
    ("initial", "(length(l.first_clean) = 1 OR length(r.first_clean) = 1) "
                "AND l.first_initial = r.first_initial"),
), tf_column="first_clean")

MIDDLE_INITIAL = Comparison("middle_initial", _either_null("middle_initial"), (
    ("same initial", "l.middle_initial = r.middle_initial"),
))

# Sr/Jr: a missing suffix on one side is common for the same person; two different generational
# suffixes are strong evidence of two people (father and son).
# Only the generational part counts (standardise keeps it apart: "jr md" is a junior doctor).
NAME_SUFFIX = Comparison(
    "name_suffix",
    "(l.name_generation IS NULL AND r.name_generation IS NULL)",
    (("same generation", "l.name_generation = r.name_generation"),
     ("one side only", "(l.name_generation IS NULL OR r.name_generation IS NULL)")),
)

# A local part made of the person's own name ("jsmith", "john.smith") agrees whenever the names
# agree, so it adds nothing the name comparisons have not already counted: namesakes share it too.
# Only a local part that is *not* the name (a handle such as "wolfpack77") is evidence of its own.
# Both records' local parts against both records' names, so the level does not depend on which
# record is on the left; a missing name never matches ('~').
_NAMES = ("replace(l.last_clean, ' ', '')", "l.first_clean", "replace(r.last_clean, ' ', '')", "r.first_clean")
_HANDLE = "(" + " AND ".join(f"strpos({side}.email_local_alnum, coalesce({name}, '~')) = 0"
                             for side in ("l", "r") for name in _NAMES) + ")"

# A shared mailbox or line (standardise flags them from the data: one address or number used
# under two different names) says nothing about identity, so the pair counts as not comparable on
# it rather than as agreeing.
EMAIL = Comparison("email", "(l.email_key IS NULL OR r.email_key IS NULL OR "
                            "(l.email_key = r.email_key AND (l.email_shared OR r.email_shared)))", (
    ("exact personal", "l.email_key = r.email_key"),
    ("same handle, other domain", "l.email_local_alnum = r.email_local_alnum AND "
     f"length(l.email_local_alnum) >= 4 AND NOT l.email_is_role AND NOT r.email_is_role AND {_HANDLE}"),
    ("similar handle", f"NOT l.email_is_role AND NOT r.email_is_role AND {_HANDLE} AND "
     "jaro_winkler_similarity(l.email_local, r.email_local) >= 0.9"),
), tf_column="email_key")

PHONE = Comparison("phone", "(l.phone IS NULL OR r.phone IS NULL OR "
                            "(l.phone = r.phone AND (l.phone_shared OR r.phone_shared)))", (
    ("exact", "l.phone = r.phone"),
    ("same last 7 digits", "right(l.phone, 7) = right(r.phone, 7)"),
), tf_column="phone")

# The email domain of a work address is a company signal: it survives a missing company field
# and ties "Acme" to jsmith@acme.com.
COMPANY = Comparison(
    "company",
    "((l.company_key IS NULL AND l.email_domain_key IS NULL) OR "
    "(r.company_key IS NULL AND r.email_domain_key IS NULL))",
    (("exact", "l.company_key = r.company_key"),
     ("fuzzy name", "rf_token_set(l.company_norm, r.company_norm) >= 0.9 OR "
                    "jaro_winkler_similarity(l.company_key, r.company_key) >= 0.93"),
     ("same email domain", "l.email_domain_key = r.email_domain_key OR "
                           "l.company_key = r.email_domain_key OR r.company_key = l.email_domain_key"),
     ("name contains the other", "length(l.company_key) >= 3 AND length(r.company_key) >= 3 AND "
      "(starts_with(l.company_key, r.company_key) OR starts_with(r.company_key, l.company_key))")),
    tf_column="company_key",
)


# Two records of one export and two records of two exports are not equally likely to be one person:
# a duplicate inside one system is rarer than the same person known to two systems. The model learns
# how much rarer from the data (m from anchor pairs, u from random pairs), so a config with one
# source, or sources without a difference, gets a weight near zero. On the generated 2 x 50k and
# 2 x 100k fixtures m = 0.78 (the true-pair share is 0.79), u = 0.49: +0.7 bits across sources,
# -1.2 bits within one.
SOURCE_PAIR = Comparison("source_pair", "false", (
    ("different sources", "l.source <> r.source"),
))


def comparisons_for(config: Config) -> list[Comparison]:
    """The comparisons that apply to the fields this config maps."""
    mapped = config.mapped_fields
    out: list[Comparison] = []
    if len(config.sources) > 1:
        out.append(SOURCE_PAIR)
    if "first_name" in mapped:
        out.append(FIRST_NAME)
    if "last_name" in mapped:
        out.append(_name_comparison("last_name", "last_clean", phonetic="last_phonetic",
                                    swapped_with="first_clean"))
    if "middle_name" in mapped:
        out.append(MIDDLE_INITIAL)
    if "last_name" in mapped:
        out.append(NAME_SUFFIX)
    if "email" in mapped:
        out.append(EMAIL)
    if "phone" in mapped:
        out.append(PHONE)
    if "company" in mapped or "email" in mapped:
        out.append(COMPANY)
    if "title" in mapped:
        out.append(_string_comparison("title", "title_clean"))
    if "street" in mapped:
        out.append(_string_comparison("street", "street_clean"))
    if "city" in mapped:
        out.append(_string_comparison("city", "city_clean", tf=True))
    if "postcode" in mapped:
        out.append(_exact_comparison("postcode", "postcode_clean", tf=True, one_edit=True))
    if "region" in mapped:
        out.append(_exact_comparison("region", "region_clean"))
    if "country" in mapped:
        out.append(_exact_comparison("country", "country"))
    if "date_of_birth" in mapped:
        out.append(_date_comparison("date_of_birth", "date_of_birth"))
    for extra in config.extra_fields:
        if extra.name not in mapped:
            continue
        col = f"{extra.name}_clean"
        if extra.compare == "exact":
            out.append(_exact_comparison(extra.name, col, tf=True, one_edit=True))
        elif extra.compare == "string":
            out.append(_string_comparison(extra.name, col))
        elif extra.compare == "name":
            out.append(_name_comparison(extra.name, col))
        elif extra.compare == "date":
            out.append(_date_comparison(extra.name, col))
        else:
            out.append(_number_comparison(extra.name, col))
    return out


_SIMILARITY_CALL = re.compile(r"(rf_\w+|jaro_winkler_similarity)\(\s*([lr]\.\w+)\s*,\s*([lr]\.\w+)\s*\)")


def _level_select(comparisons: list[Comparison]) -> tuple[list[str], list[str]]:
    """SELECT items: each distinct similarity call computed once, then the level CASEs.

    Several levels (and comparisons) test the same similarity at different cut-offs; computing it
    once per pair and naming it halves the fuzzy work. DuckDB lets later SELECT items use earlier
    aliases.
    """
    calls: dict[str, str] = {}
    cases = []
    for c in comparisons:
        sql = c.case_sql()
        def name(match: re.Match) -> str:
            # The similarities are symmetric: f(a, b) and f(b, a) are one computation.
            fn, a, b = match.groups()
            call = f"{fn}({min(a, b)}, {max(a, b)})"
            return calls.setdefault(call, f"_sim{len(calls)}")
        sql = _SIMILARITY_CALL.sub(name, sql)
        cases.append(f"{sql} AS {c.name}")
    return [f"{call} AS {alias}" for call, alias in calls.items()], cases


def compare(con: duckdb.DuckDBPyConnection, comparisons: list[Comparison], pairs_table: str,
            out_table: str, persist: bool = False) -> None:
    """Write ``out_table(rid_l, rid_r, key_l, key_r, <comparison>...)`` for every pair of
    ``pairs_table``; ``key_*`` are the records' ``compare_key`` (what the levels depend on)."""
    register_functions(con)
    similarities, cases = _level_select(comparisons)
    names = ", ".join(c.name for c in comparisons)
    con.execute(f"""
        CREATE OR REPLACE {'' if persist else 'TEMP'} TABLE {out_table} AS
        SELECT rid_l, rid_r, key_l, key_r, {names} FROM (
            SELECT p.rid_l, p.rid_r, l.compare_key AS key_l, r.compare_key AS key_r,
                   {', '.join(similarities + cases)}
            FROM {pairs_table} p
            JOIN std l ON l.rid = p.rid_l
            JOIN std r ON r.rid = p.rid_r)""")


def signature(comparisons: list[Comparison]) -> str:
    """Changes whenever any comparison's SQL changes: cached levels are then recomputed."""
    text = "\n".join(f"{c.name}:{c.case_sql()}" for c in comparisons)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def compare_candidates(con: duckdb.DuckDBPyConnection, comparisons: list[Comparison],
                       blocking: BlockingReport | None = None, full: bool = True) -> dict[str, int]:
    """Levels for every pair in ``candidates`` into ``comparisons``, reusing last night's.

    A previous row is reused when the pair is still a candidate and both records' compare_keys are
    unchanged, so only pairs touching new or changed records are compared again.

    Which pairs to look at: when the stored comparisons were made from the blocking that
    ``blocking.changes_since`` names, only the pairs whose candidacy may have changed
    (``candidate_changes``) and the pairs of records whose compare_key changed (their content, or
    a shared-contact flag set by another record; ``compare_records`` keeps the keys the stored
    rows were made with). Otherwise (a new blocking, or a run killed between blocking and
    comparing) every candidate is diffed against the stored rows.
    """
    sig = signature(comparisons)
    version = blocking.version if blocking else ""
    # Keys of a state from before compare keys were integers never match: rebuild once.
    reuse = (not full and get_meta(con, "comparisons_signature") == sig
             and column_type(con, "comparisons", "key_l") == "UBIGINT")
    if not reuse:
        with transaction(con):
            compare(con, comparisons, "candidates", "comparisons", persist=True)
            con.execute("CREATE OR REPLACE TABLE compare_records AS SELECT rid, compare_key FROM std")
            set_meta(con, "comparisons_signature", sig)
            set_meta(con, "comparisons_blocking_version", version)
        n = con.execute("SELECT count(*) FROM comparisons").fetchall()[0][0]
        return {"compared": n, "reused": 0}
    delta = (blocking is not None and blocking.changes_since is not None
             and get_meta(con, "comparisons_blocking_version") == blocking.changes_since
             and has_table(con, "compare_records"))
    if delta:
        con.execute("""
            CREATE OR REPLACE TEMP TABLE rekeyed AS
            SELECT rid FROM (SELECT rid, compare_key FROM std EXCEPT SELECT rid, compare_key FROM compare_records)
            UNION SELECT rid FROM compare_records ANTI JOIN std USING (rid)""")
        con.execute("""
            CREATE OR REPLACE TEMP TABLE compare_scope AS
            SELECT rid_l, rid_r FROM candidate_changes
            UNION SELECT rid_l, rid_r FROM candidates
                  WHERE rid_l IN (SELECT rid FROM rekeyed) OR rid_r IN (SELECT rid FROM rekeyed)""")
    scope = "candidates c SEMI JOIN compare_scope x USING (rid_l, rid_r)" if delta else "candidates c"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE keyed_candidates AS
        SELECT c.rid_l, c.rid_r, l.compare_key AS key_l, r.compare_key AS key_r
        FROM {scope} JOIN std l ON l.rid = c.rid_l JOIN std r ON r.rid = c.rid_r""")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE stale_pairs AS
        SELECT rid_l, rid_r FROM keyed_candidates k
        ANTI JOIN comparisons o USING (rid_l, rid_r, key_l, key_r)""")
    compare(con, comparisons, "stale_pairs", "fresh_comparisons")
    # Stored rows that are no longer a candidate as they are (in the scope, or anywhere).
    stored = "comparisons o SEMI JOIN compare_scope x USING (rid_l, rid_r)" if delta else "comparisons o"
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE gone_comparisons AS
        SELECT o.rid_l, o.rid_r FROM {stored} ANTI JOIN keyed_candidates k USING (rid_l, rid_r, key_l, key_r)""")
    # In place: the night's changes are small, a rewrite of every pair would not be.
    with transaction(con):
        con.execute("""DELETE FROM comparisons o USING gone_comparisons g
                       WHERE o.rid_l = g.rid_l AND o.rid_r = g.rid_r""")
        # By name: the stored rows also carry their scores (filled in by the pipeline).
        con.execute("INSERT INTO comparisons BY NAME SELECT * FROM fresh_comparisons")
        if delta:
            con.execute("DELETE FROM compare_records WHERE rid IN (SELECT rid FROM rekeyed)")
            con.execute("INSERT INTO compare_records SELECT rid, compare_key FROM std SEMI JOIN rekeyed USING (rid)")
        else:
            con.execute("CREATE OR REPLACE TABLE compare_records AS SELECT rid, compare_key FROM std")
        set_meta(con, "comparisons_blocking_version", version)
    fresh = con.execute("SELECT count(*) FROM fresh_comparisons").fetchall()[0][0]
    total = con.execute("SELECT count(*) FROM comparisons").fetchall()[0][0]
    for t in ("fresh_comparisons", "stale_pairs", "keyed_candidates", "gone_comparisons", "rekeyed", "compare_scope"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    return {"compared": fresh, "reused": total - fresh}


__all__ = ["Comparison", "comparisons_for", "compare", "compare_candidates", "signature", "register_functions"]
