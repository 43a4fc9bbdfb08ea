"""Small builders for stage tests: write tiny sources, run the real early stages in DuckDB."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb

from dedupe.config import Config, load_config
from dedupe.ingest import ingest
from dedupe.standardise import standardise

CONTACT_COLUMNS = ["id", "first_name", "last_name", "email", "company", "phone", "country", "updated_at",
                   "date_of_birth"]


def write_csv(path: Path, rows: list[dict], columns: list[str] = CONTACT_COLUMNS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        for row in rows:
            w.writerow({c: row.get(c, "") for c in columns})
    return path


def contacts_config(tmp_path: Path, sources: dict[str, list[dict]], extra_toml: str = "") -> Config:
    """A config with one CSV source per entry, all in the simple contact schema above."""
    parts = ['[project]\nname = "t"\noutput_dir = "out"\n']
    for name, rows in sources.items():
        write_csv(tmp_path / f"{name}.csv", rows)
        parts.append(f"""
[[sources]]
name = "{name}"
path = "{name}.csv"
id = "id"
[sources.columns]
first_name = "first_name"
last_name = "last_name"
email = "email"
company = "company"
phone = "phone"
country = "country"
updated_at = "updated_at"
date_of_birth = "date_of_birth"
""")
    parts.append(extra_toml)
    path = tmp_path / "t.toml"
    path.write_text("\n".join(parts), encoding="utf-8")
    return load_config(path)


def standardised(config: Config) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB holding ``records`` and ``std`` for the config's sources."""
    con = duckdb.connect()
    ingest(con, config)
    standardise(con, config)
    return con


def rid(con: duckdb.DuckDBPyConnection, source: str, record_id: str) -> int:
    return con.execute("SELECT rid FROM std WHERE source = ? AND record_id = ?",
                       [source, record_id]).fetchall()[0][0]
