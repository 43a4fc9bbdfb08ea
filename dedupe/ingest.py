"""Ingest: read each source with DuckDB's readers and map it onto the canonical record table.

Output: table ``records`` with one row per input record::

    rid BIGINT          -- dense integer id, stable for a given input (ordered by source, record_id)
    source VARCHAR      -- the source's configured name
    record_id VARCHAR   -- the source's own key
    <field> VARCHAR     -- every canonical field and declared extra (full_name kept for parsing)
    updated_at TIMESTAMP, date_of_birth DATE

Every CSV value is read as text (all columns VARCHAR) so a CSV never fails on a type guess; typed fields are
parsed here with ``try_strptime`` and a value that does not parse becomes NULL and is counted in
``IngestReport.unparsed`` rather than failing the run. What does fail the run, with one line naming the
file, row or column (``InputError``): a missing or empty file, a mapped column that is not in the file,
duplicate or empty ids, undecodable text, and malformed CSV rows.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field

import duckdb

from dedupe.columns import sql_literal
from dedupe.config import RECORD_FIELDS, Config, Source
from dedupe.state import ensure_schema, get_meta, has_table, set_meta

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


# Delimiters recognised in a header line when a CSV source sets none (.tsv implies a tab).
DELIMITER_CANDIDATES = (",", ";", "\t", "|")


def _python_encoding(source: Source) -> str:
    """Python's codec for the source; a UTF-8 byte-order mark is dropped, as DuckDB does."""
    if not source.encoding or source.encoding.lower().replace("_", "-") in ("utf-8", "utf8"):
        return "utf-8-sig"
    return source.encoding


def _first_line(source: Source) -> tuple[str, bool]:
    """The file's first line as text and whether anything but whitespace follows it (looking a
    little way ahead); UnicodeError if the first line does not decode."""
    with source.path.open(encoding=_python_encoding(source), errors="replace", newline="") as f:
        line, rest = f.readline(), f.read(65536)
    if "\ufffd" in line:  # undecodable bytes (what follows line 1 is DuckDB's to report)
        raise UnicodeError(line)
    return line.rstrip("\r\n"), bool(rest.strip())


def _csv_layout(source: Source) -> tuple[str, list[str]]:
    """The delimiter and the column names of a CSV source, read from its first line.

    The dialect is fixed (RFC 4180 quoting, the configured or header-detected delimiter) rather than
    left to DuckDB's sniffer: on a small file the sniffer "explains" a malformed row by choosing
    another dialect (one column, no quoting), which silently shifts values or turns the problem into
    a misleading "column not found". With the dialect and columns fixed, a bad row is reported with
    its line number. Names follow DuckDB's own rules (trimmed; empty -> columnN; repeats -> name_1).
    """
    try:
        first = _first_line(source)
    except UnicodeError:
        raise InputError(_not_utf8(source, 1)) from None
    except LookupError:
        raise InputError(f"{source.path}: unknown encoding '{source.encoding}' "
                         f"(source '{source.name}')") from None
    line, more = first
    if not line.strip():
        if more:
            raise InputError(f"{source.path}: malformed CSV at line 1: the line is empty"
                             + (" (expected the header row)" if source.header else ""))
        raise InputError(f"{source.path}: file has no records (source '{source.name}')")
    delimiter = source.delimiter
    if not delimiter:
        counts = {d: line.count(d) for d in DELIMITER_CANDIDATES}
        best = max(DELIMITER_CANDIDATES, key=lambda d: counts[d])
        delimiter = best if counts[best] else ","
    try:
        fields = next(csv.reader([line], delimiter=delimiter, quotechar='"', strict=True))
    except (csv.Error, StopIteration) as e:
        raise InputError(f"{source.path}: malformed CSV at line 1: {e}") from None
    width = len(str(max(len(fields) - 1, 0)))
    names: list[str] = []
    for i, raw in enumerate(fields):
        name = raw.strip() if source.header else ""
        if not name:
            name = f"column{i:0{width}d}"
        # DuckDB's names are case-insensitive: "Email" and "email" are a repeat too.
        base, n = name, 0
        while name.lower() in {x.lower() for x in names}:
            n += 1
            name = f"{base}_{n}"
        names.append(name)
    return delimiter, names


def _reader_sql(source: Source) -> str:
    path = sql_literal(source.path)
    if source.format == "csv":
        delimiter, names = _csv_layout(source)
        columns = "{" + ", ".join(f"{sql_literal(n)}: 'VARCHAR'" for n in names) + "}"
        opts = ["header = true" if source.header else "header = false", "auto_detect = false",
                f"columns = {columns}", f"delim = {sql_literal(delimiter)}", "quote = '\"'",
                "escape = '\"'", "strict_mode = true", "null_padding = false"]
        if source.encoding:
            opts.append(f"encoding = {sql_literal(source.encoding.lower().replace('_', '-'))}")
        return f"read_csv({path}, {', '.join(opts)})"
    if source.format == "parquet":
        return f"read_parquet({path})"
    if source.format == "jsonl":
        return f"read_json({path}, format = 'newline_delimited')"
    return f"read_json({path}, format = 'auto')"


def _not_utf8(source: Source, line: int | str | None) -> str:
    where = f" (line {line})" if line else ""
    if source.encoding and source.encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
        return (f"{source.path}: not valid {source.encoding}{where}; check the encoding of "
                f"source '{source.name}'")
    return (f"{source.path}: not valid UTF-8{where}; set encoding = \"latin-1\" (or the file's "
            f"encoding) for source '{source.name}'")


def _explain_reader_error(source: Source, error: Exception) -> str:
    text = str(error)
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    first = lines[0] if lines else type(error).__name__
    name = source.path
    line = re.search(r"[Ll]ine:? (\d+)", text)
    lowered = text.lower()
    if "invalid unicode" in lowered or "not utf-8 encoded" in lowered or "not utf8" in lowered:
        return _not_utf8(source, line.group(1) if line else None)
    if "not utf-16 encoded" in lowered:
        return _not_utf8(source, None)
    if line and source.format == "csv":
        # DuckDB's message: "CSV Error on Line: N", "Original Line: ..." (the record, which may
        # span lines), the reason, then "Possible fixes".
        end = next((i for i, ln in enumerate(lines) if ln.startswith("Possible")), len(lines))
        reason = lines[end - 1] if end >= 3 else re.sub(r"^.*?Error: ", "", first)
        return f"{name}: malformed CSV at line {line.group(1)}: {reason.rstrip('.')}"
    return f"{name}: cannot read as {source.format}: {first}"


def _open_source(con: duckdb.DuckDBPyConnection, source: Source, view: str) -> dict[str, str]:
    """Create a view over the file and return its columns with their types, or raise InputError."""
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
    described = [(r[0], r[1]) for r in con.execute(f"DESCRIBE {view}").fetchall() if r[0] != "__row"]
    n = con.execute(f"SELECT count(*) FROM {view}").fetchall()[0][0]
    if n == 0:
        raise InputError(f"{source.path}: file has no records (source '{source.name}')")
    mapped = {source.id_column} | {c for cols in source.columns.values() for c in cols}
    for name, dtype in described:
        # A nested value (a JSON object or array) has no single text form to match on.
        if name in mapped and (dtype.startswith(("STRUCT", "MAP", "UNION")) or dtype.endswith("]")):
            raise InputError(f"{source.path}: column '{name}' (source '{source.name}') holds nested "
                             f"values ({dtype.split('(')[0].split('[')[0]}); map a plain field instead")
    return dict(described)


def _check_columns(source: Source, columns: dict[str, str]) -> None:
    wanted = [("id", source.id_column)] + [(f, c) for f, cols in source.columns.items() for c in cols]
    for fname, col in wanted:
        if col not in columns:
            found = ", ".join(list(columns)[:30]) + (" ..." if len(columns) > 30 else "")
            key = "id" if fname == "id" else f"columns.{fname}"
            raise InputError(f"{source.path}: column '{col}' (mapped by {key} of source "
                             f"'{source.name}') not found; columns found: {found}")


# How keys become text. 2: whole numbers in a float or decimal key column without a fraction.
# A state made before keeps 1 (the plain cast, "1001.0"): its registry, crosswalk and golden
# provenance hold those texts, and downstream systems key on them.
RECORD_ID_TEXT = "2"


def _record_id_text(con: duckdb.DuckDBPyConnection) -> str:
    """The key text form this state uses (see RECORD_ID_TEXT); a new state takes the current one."""
    version = get_meta(con, "record_id_text")
    if version is None:
        known = con.execute("SELECT count(*) FROM (SELECT 1 FROM record_registry LIMIT 1)").fetchall()[0][0]
        version = "1" if known else RECORD_ID_TEXT
        set_meta(con, "record_id_text", version)
    return version


def _record_id_expr(column: str, dtype: str, text_version: str = RECORD_ID_TEXT) -> str:
    """SQL for a source's key as text. A float or decimal key column (pandas writes integer ids
    with a missing value as float64) gives its whole numbers without a fraction, 1001 and not
    1001.0, so the crosswalk matches the source system's ids; NaN and infinities are no id."""
    col = _q(column)
    kind = dtype.split("(")[0]
    if text_version == "1" or kind not in ("FLOAT", "DOUBLE", "DECIMAL"):
        return f"trim(CAST({col} AS VARCHAR))"
    is_float = kind != "DECIMAL"  # NaN and infinities are no id; beyond 1e18 a float is no integer id
    return (f"CASE {f'WHEN NOT isfinite({col}) THEN NULL ' if is_float else ''}"
            f"WHEN {col} = trunc({col}){f' AND abs({col}) < 1e18' if is_float else ''} "
            f"THEN CAST(CAST({col} AS HUGEINT) AS VARCHAR) ELSE CAST({col} AS VARCHAR) END")


def _csv_line(source: Source, row: int) -> int | None:
    """The line of the file on which data row ``row`` starts. Not the row number plus one: a
    quoted value may span lines, and DuckDB skips blank lines (except in a one-column file,
    where a blank line is a record with no value). Read only to word an error."""
    delimiter, names = _csv_layout(source)
    try:
        with source.path.open(encoding=_python_encoding(source), errors="replace", newline="") as f:
            reader = csv.reader(f, delimiter=delimiter, quotechar='"', doublequote=True)
            if source.header:
                next(reader, None)
            seen, end = 0, reader.line_num
            for record in reader:
                if record or len(names) == 1:
                    seen += 1
                    if seen == row:
                        return end + 1
                end = reader.line_num
    except (OSError, csv.Error):
        return None
    return None


def _jsonl_line(source: Source, row: int) -> int | None:
    """The line of a JSON Lines file holding record ``row`` (blank lines hold none)."""
    try:
        with source.path.open(encoding=_python_encoding(source), errors="replace") as f:
            seen = 0
            for number, text in enumerate(f, start=1):
                if text.strip():
                    seen += 1
                    if seen == row:
                        return number
    except OSError:
        return None
    return None


def _check_ids(con: duckdb.DuckDBPyConnection, source: Source, view: str, record_id: str) -> None:
    # Row numbers in messages count data rows from 1 (the header is not a row), plus the file line.
    # One pass finds both problems: the empty ids form the NULL group, reported first.
    problem = con.execute(f"""
        SELECT id, count(*) AS n, list(__row ORDER BY __row)[1:3] AS rows
        FROM (SELECT nullif({record_id}, '') AS id, __row FROM {view})
        GROUP BY id HAVING id IS NULL OR count(*) > 1
        ORDER BY id IS NOT NULL, min(__row) LIMIT 1""").fetchall()
    if not problem:
        return
    id_, n, rows = problem[0]
    if id_ is None:
        row = rows[0]
        line = (_csv_line(source, row) if source.format == "csv"
                else _jsonl_line(source, row) if source.format == "jsonl" else None)
        where = f"row {row} (line {line})" if line else f"row {row}"
        raise InputError(f"{source.path}: {where} has an empty id in column '{source.id_column}'")
    raise InputError(f"{source.path}: id '{id_}' in column '{source.id_column}' appears "
                     f"{n} times (rows {', '.join(str(r) for r in rows)})")


def _field_expr(source: Source, fname: str) -> str:
    cols = source.columns.get(fname)
    if not cols:
        return "CAST(NULL AS VARCHAR)"
    parts = [f"nullif(trim(CAST({_q(c)} AS VARCHAR)), '')" for c in cols]
    expr = parts[0] if len(parts) == 1 else f"nullif(concat_ws(' ', {', '.join(parts)}), '')"
    return expr


def _parse_expr(value: str, formats: tuple[str, ...], cast: str) -> str:
    """The formats first; then any ISO 8601 form DuckDB reads (fractions of a second, a time zone
    offset, converted to UTC). JSON and Parquet readers hand over real timestamps, whose text is
    such a form ("2023-05-17 15:44:23.120+00"), as well as the text dates of CSV files."""
    fmt_list = "[" + ", ".join(sql_literal(f) for f in formats) + "]"
    iso = (f"CASE WHEN NOT regexp_matches({value}, '^[0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}([ T]|$)') THEN NULL "
           f"WHEN regexp_matches({value}, '(Z|[+-][0-9][0-9](:?[0-9][0-9])?)$') "
           f"THEN timezone('UTC', try_cast({value} AS TIMESTAMPTZ)) ELSE try_cast({value} AS TIMESTAMP) END")
    return f"CAST(coalesce(try_strptime({value}, {fmt_list}), {iso}) AS {cast})"


# Below this many missing records the deletion guard stays quiet: a few deletions are nightly
# routine whatever share of a small source they are.
MIN_DELETIONS_GUARDED = 10


def _check_deletions(con: duckdb.DuckDBPyConnection, config: Config) -> None:
    """Refuse a source that lost more than ``max_deleted_share`` of the records the last run published.

    A truncated or half-written export looks exactly like a mass deletion: the run would retire
    the golden ids of every missing person, and since ids are never reused, the next night's full
    export would give them new ones, breaking every downstream key. So it is an input error unless
    the operator says the deletions are real (``dedupe run --allow-deletions``)."""
    if not has_table(con, "golden_membership"):
        return
    rows = con.execute("""
        SELECT m.source, count(*) AS published, count(*) FILTER (WHERE r.record_id IS NULL) AS missing
        FROM golden_membership m
        LEFT JOIN raw_records r USING (source, record_id)
        GROUP BY m.source""").fetchall()
    paths = {s.name: s.path for s in config.sources}
    for source, published, missing in sorted(rows):
        if source not in paths and published >= MIN_DELETIONS_GUARDED:
            # A renamed or dropped [[sources]] entry deletes every record it had published.
            raise InputError(
                f"{config.path}: source '{source}' is no longer configured; the {published:,} records the "
                f"last run published from it would lose their golden ids. If that is intended, rerun "
                f"with --allow-deletions")
        if source in paths and missing >= MIN_DELETIONS_GUARDED and missing > config.max_deleted_share * published:
            raise InputError(
                f"{paths[source]}: {missing:,} of the {published:,} records the last run published are "
                f"missing ({missing / published:.0%}, more than [project] max_deleted_share = "
                f"{config.max_deleted_share:g}); a truncated export would retire their golden ids. "
                f"If the records were really deleted, rerun with --allow-deletions")


def ingest(con: duckdb.DuckDBPyConnection, config: Config, allow_deletions: bool = False) -> IngestReport:
    """Read every source into the ``records`` table; raise InputError on bad input (and, unless
    ``allow_deletions``, on a source missing too many of the records the last run published)."""
    report = IngestReport()
    fields = ("full_name",) + config.record_fields
    selects = []
    ensure_schema(con)
    text_version = _record_id_text(con)
    for i, source in enumerate(config.sources):
        view = f"src_{i}"
        columns = _open_source(con, source, view)
        _check_columns(source, columns)
        record_id = _record_id_expr(source.id_column, columns[source.id_column], text_version)
        _check_ids(con, source, view, record_id)
        exprs = [f"{sql_literal(source.name)} AS source", f"{i} AS source_index", f"{record_id} AS record_id"]
        for fname in fields:
            exprs.append(f"{_field_expr(source, fname)} AS {fname}")
        selects.append(f"SELECT {', '.join(exprs)} FROM {view}")

    # A view: the deletion guard and the registry read only the keys, the typed table reads it once.
    con.execute(f"CREATE OR REPLACE TEMP VIEW raw_records AS {' UNION ALL '.join(selects)}")
    if not allow_deletions:
        _check_deletions(con, config)

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
    # Stable ids: a key seen before keeps its rid; new keys get new rids in key order.
    con.execute("""
        INSERT INTO record_registry
        SELECT r.source, r.record_id,
               (SELECT coalesce(max(rid), 0) FROM record_registry)
               + row_number() OVER (ORDER BY r.source_index, r.record_id)
        FROM raw_records r ANTI JOIN record_registry g USING (source, record_id)""")
    # The content hash says whether a record changed since it was last standardised: every mapped
    # value takes part as read (after date parsing, so a new date_format counts as a change), NULL
    # distinct from empty. (One pass: the raw text of parsed fields stays alongside, unread later.)
    content = ", ".join(f"coalesce(CAST({f} AS VARCHAR), chr(0))" for f in fields)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE records AS
        SELECT *, md5(concat_ws(chr(31), {content})) AS content_hash
        FROM (SELECT g.rid, r.source, r.record_id, {', '.join(typed(f) for f in fields)}
                     {''.join(f', r.{f} AS {f}__raw' for f in checked)}
              FROM raw_records r JOIN record_registry g USING (source, record_id))
        ORDER BY rid""")
    for fname in checked:
        rows = con.execute(f"""SELECT source, count(*) FROM records
                               WHERE {fname}__raw IS NOT NULL AND {fname} IS NULL GROUP BY source
                               ORDER BY source""").fetchall()
        for src, n in rows:
            report.unparsed.setdefault(src, {})[fname] = n
    counts = dict(con.execute("SELECT source, count(*) FROM records GROUP BY source").fetchall())
    report.records = {source.name: counts.get(source.name, 0) for source in config.sources}
    con.execute("DROP VIEW raw_records")
    for i in range(len(config.sources)):
        con.execute(f"DROP TABLE src_{i}")
    return report


__all__ = ["ingest", "InputError", "IngestReport", "RECORD_FIELDS"]
