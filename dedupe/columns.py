"""Hand Python values to DuckDB as a table, without pyarrow's conversion from Python objects.

pyarrow imports pandas the first time it converts Python objects or NumPy arrays (``pa.array``,
``pa.table``), to check whether it was given a pandas object: about 0.3 s of CPU on every run, a
tenth of a small nightly run's work. dedupe never uses pandas, so it hands columns to DuckDB as
NumPy arrays instead, which DuckDB scans directly: object arrays for text, lists and anything
with NULLs. ``registered(..., types=...)`` casts each column, so an empty or all-NULL column still
gets its type. Where DuckDB takes no parameter (file paths in ATTACH, COPY and the readers, reader
options), ``sql_literal`` writes a value as an SQL string literal.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence

import duckdb
import numpy as np


def as_array(values: Sequence | np.ndarray) -> np.ndarray:
    """A NumPy array DuckDB can scan: given arrays as they are, other sequences as object arrays
    (element by element, so a list of equal-length lists stays a column of lists)."""
    if isinstance(values, np.ndarray):
        return values
    return np.fromiter(values, dtype=object, count=len(values))


@contextlib.contextmanager
def registered(con: duckdb.DuckDBPyConnection, name: str, columns: dict[str, Sequence | np.ndarray],
               types: dict[str, str] | None = None) -> Iterator[str]:
    """Make ``columns`` (all of one length) queryable as the view ``name`` while the block runs.

    With ``types`` (column -> SQL type, for every column), the view casts each column to its type,
    so an empty or all-NULL column still has it."""
    arrays = {column: as_array(values) for column, values in columns.items()}
    # Typed, the arrays sit under another name and ``name`` is a view that casts them.
    raw = name if types is None else f"{name}__values"
    con.register(raw, arrays)
    try:
        if types is None:
            yield name
            return
        casts = ", ".join(f"CAST({column} AS {types[column]}) AS {column}" for column in columns)
        con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {casts} FROM {raw}")
        try:
            yield name
        finally:
            con.execute(f"DROP VIEW IF EXISTS {name}")
    finally:
        con.unregister(raw)


def sql_literal(value: str | Path) -> str:
    """``value`` as an SQL string literal: quoted, its quotes doubled."""
    return "'" + str(value).replace("'", "''") + "'"


__all__ = ["as_array", "registered", "sql_literal"]
