"""Ingest: read each source with DuckDB's readers and map it onto the canonical record table.

Output: table ``records`` with one row per input record::

    rid BIGINT          -- dense integer id, stable for a given input (ordered by source, record_id)
    source VARCHAR      -- the source's configured name
    record_id VARCHAR   -- the source's own key
    <field> VARCHAR     -- every canonical field and declared extra (full_name kept for parsing)
    updated_at TIMESTAMP, date_of_birth DATE

Every value is read as text (``all_varchar``) so a CSV never fails on a type guess; typed fields are
parsed here with ``try_strptime`` and a value that does not parse becomes NULL and is counted in
``IngestReport.unparsed`` rather than failing the run. What does fail the run, with one line naming the
file, row or column (``InputError``): a missing or empty file, a mapped column that is not in the file,
duplicate or empty ids, undecodable text, and malformed CSV rows.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import duckdb

from dedupe.config import RECORD_FIELDS, Config, Source

# Formats tried, in order, when a source gives no date_format. ISO first: it is unambiguous.
TIMESTAMP_FORMATS = ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S.%fZ",
                     "%Y-%m-%d %H:%M", "%Y-%m-%d", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%m/%d/%Y",
                     "%d.%m.%Y %H:%M", "%d.%m.%Y", "%Y%m%d")
DATE_FORMATS = ("%Y-%m-%d", "%Y%m%d", "%m/%d/%Y", "%d.%m.%Y", "%Y/%m/%d", "%d-%m-%Y")


class InputError(Exception):
    """Bad input data: one line naming the file and the row, column or value."""


@dataclass
class IngestReport:
    records: dict[str, int] = field(default_factory=dict)
    unparsed: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> field -> count


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _reader_sql(source: Source) -> str:
    path = _lit(str(source.path))
    if source.format == "csv":
        opts = ["header = true" if source.header else "header = false", "all_varchar = true",
                "strict_mode = true", "null_padding = false", "auto_detect = true"]
        if source.delimiter:
            opts.append(f"delim = {_lit(source.delimiter)}")
        if source.encoding:
            opts.append(f"encoding = {_lit(source.encoding.lower().replace('_', '-'))}")
        return f"read_csv({path}, {', '.join(opts)})"
    if source.format == "parquet":
        return f"read_parquet({path})"
    if source.format == "jsonl":
        return f"read_json({path}, format = 'newline_delimited')"
    return f"read_json({path}, format = 'auto')"


def _explain_reader_error(source: Source, error: Exception) -> str:
    text = str(error)
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    name = source.path
    if "unicode" in text.lower() or "utf-8" in text.lower() or "utf8" in text.lower():
        line = re.search(r"[Ll]ine:? (\d+)", text)
        where = f" (line {line.group(1)})" if line else ""
        return (f"{name}: not valid UTF-8{where}; set encoding = \"latin-1\" (or the file's "
                f"encoding) for source '{source.name}'")
    line = re.search(r"[Ll]ine:? (\d+)", text)
    if line and source.format == "csv":
        detail = re.sub(r"^.*?Error: ", "", first)
        return f"{name}: malformed CSV at line {line.group(1)}: {detail}"
    return f"{name}: cannot read as {source.format}: {first}"


def _open_source(con: duckdb.DuckDBPyConnection, source: Source, view: str) -> list[str]:
    """Create a view over the file and return its columns, or raise InputError."""
    if not source.path.is_file():
        raise InputError(f"{source.path}: file not found (source '{source.name}')")
    if source.path.stat().st_size == 0:
        raise InputError(f"{source.path}: file is empty (source '{source.name}')")
    try:
        # Materialise once: the file is read in one pass and errors surface here, not mid-pipeline.
        con.execute(f"CREATE OR REPLACE TEMP TABLE {view} AS "
                    f"SELECT *, row_number() OVER () AS __row FROM {_reader_sql(source)}")
    except duckdb.Error as e:
        raise InputError(_explain_reader_error(source, e)) from None
    columns = [r[0] for r in con.execute(f"DESCRIBE {view}").fetchall() if r[0] != "__row"]
    n = con.execute(f"SELECT count(*) FROM {view}").fetchall()[0][0]
    if n == 0:
        raise InputError(f"{source.path}: file has no records (source '{source.name}')")
    return columns


def _check_columns(source: Source, columns: list[str]) -> None:
    wanted = [(f"id", source.id_column)] + [(f, c) for f, cols in source.columns.items() for c in cols]
    for fname, col in wanted:
        if col not in columns:
            found = ", ".join(columns[:30]) + (" ..." if len(columns) > 30 else "")
            key = "id" if fname == "id" else f"columns.{fname}"
            raise InputError(f"{source.path}: column '{col}' (mapped by {key} of source "
                             f"'{source.name}') not found; columns found: {found}")


def _check_ids(con: duckdb.DuckDBPyConnection, source: Source, view: str) -> None:
    idc = _q(source.id_column)
    # Row numbers in messages count data rows from 1 (the header is not a row), plus the file line.
    line = "__row + 1" if source.format == "csv" and source.header else "__row"
    empty = con.execute(f"SELECT __row, {line} FROM {view} WHERE nullif(trim(CAST({idc} AS VARCHAR)), '') "
                        f"IS NULL ORDER BY __row LIMIT 1").fetchall()
    if empty:
        empty = empty[0]
        raise InputError(f"{source.path}: row {empty[0]} (line {empty[1]}) has an empty id in column "
                         f"'{source.id_column}'")
    dup = con.execute(f"""
        SELECT CAST({idc} AS VARCHAR) AS id, count(*) AS n, list(__row ORDER BY __row)[1:3] AS rows
        FROM {view} GROUP BY 1 HAVING count(*) > 1 ORDER BY min(__row) LIMIT 1""").fetchall()
    if dup:
        dup = dup[0]
        rows = ", ".join(str(r) for r in dup[2])
        raise InputError(f"{source.path}: id '{dup[0]}' in column '{source.id_column}' appears "
                         f"{dup[1]} times (rows {rows})")


def _field_expr(source: Source, fname: str) -> str:
    cols = source.columns.get(fname)
    if not cols:
        return "CAST(NULL AS VARCHAR)"
    parts = [f"nullif(trim(CAST({_q(c)} AS VARCHAR)), '')" for c in cols]
    expr = parts[0] if len(parts) == 1 else f"nullif(concat_ws(' ', {', '.join(parts)}), '')"
    return expr


def _parse_expr(value: str, formats: tuple[str, ...], cast: str) -> str:
    fmt_list = "[" + ", ".join(_lit(f) for f in formats) + "]"
    return f"CAST(try_strptime({value}, {fmt_list}) AS {cast})"


def ingest(con: duckdb.DuckDBPyConnection, config: Config) -> IngestReport:
    """Read every source into the ``records`` table; raise InputError on bad input."""
    report = IngestReport()
    fields = ("full_name",) + config.record_fields
    selects = []
    for i, source in enumerate(config.sources):
        view = f"src_{i}"
        columns = _open_source(con, source, view)
        _check_columns(source, columns)
        _check_ids(con, source, view)
        exprs = [f"{_lit(source.name)} AS source", f"{i} AS source_index",
                 f"trim(CAST({_q(source.id_column)} AS VARCHAR)) AS record_id"]
        for fname in fields:
            exprs.append(f"{_field_expr(source, fname)} AS {fname}")
        selects.append(f"SELECT {', '.join(exprs)} FROM {view}")

    con.execute(f"CREATE OR REPLACE TEMP TABLE raw_records AS {' UNION ALL '.join(selects)}")

    ts_formats = {i: ((s.date_format,) if s.date_format else TIMESTAMP_FORMATS)
                  for i, s in enumerate(config.sources)}
    updated_expr = "CASE source_index " + " ".join(
        f"WHEN {i} THEN {_parse_expr('updated_at', f, 'TIMESTAMP')}" for i, f in ts_formats.items()
    ) + " END"
    typed_extras = {f.name: f.compare for f in config.extra_fields if f.compare in ("date", "number")}

    def typed(fname: str) -> str:
        if fname == "updated_at":
            return f"{updated_expr} AS updated_at"
        if fname == "date_of_birth" or typed_extras.get(fname) == "date":
            return f"{_parse_expr(fname, DATE_FORMATS, 'DATE')} AS {fname}"
        if typed_extras.get(fname) == "number":
            return f"try_cast({fname} AS DOUBLE) AS {fname}"
        return fname

    checked = [f for f in fields if f in ("updated_at", "date_of_birth") or f in typed_extras]
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE typed_records AS
        SELECT CAST(row_number() OVER (ORDER BY source_index, record_id) AS BIGINT) AS rid,
               source, record_id, {', '.join(typed(f) for f in fields)},
               {', '.join(f'{f} AS {f}__raw' for f in checked)}
        FROM raw_records""")
    for fname in checked:
        rows = con.execute(f"""SELECT source, count(*) FROM typed_records
                               WHERE {fname}__raw IS NOT NULL AND {fname} IS NULL GROUP BY source
                               ORDER BY source""").fetchall()
        for src, n in rows:
            report.unparsed.setdefault(src, {})[fname] = n
    raw_cols = ", ".join(f"{f}__raw" for f in checked)
    con.execute(f"CREATE OR REPLACE TABLE records AS "
                f"SELECT * EXCLUDE ({raw_cols}) FROM typed_records ORDER BY rid")
    for source in config.sources:
        report.records[source.name] = con.execute(
            "SELECT count(*) FROM records WHERE source = ?", [source.name]).fetchall()[0][0]
    con.execute("DROP TABLE typed_records")
    con.execute("DROP TABLE raw_records")
    for i in range(len(config.sources)):
        con.execute(f"DROP TABLE src_{i}")
    return report


__all__ = ["ingest", "InputError", "IngestReport", "RECORD_FIELDS"]
