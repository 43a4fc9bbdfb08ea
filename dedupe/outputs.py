"""Atomic publication of a run's output files.

Every file is first written by DuckDB into a staging folder inside ``output_dir`` (same file
system), then moved into place with ``os.replace``, which is atomic: a reader sees the previous
complete file or the new complete file, never a half-written one. ``run_report.json`` moves last,
so a report always describes files that are already in place. If the run fails before publishing,
the staging folder is removed and the previous outputs stay exactly as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import duckdb


class Publisher:
    """Collects output files in a staging folder; ``publish()`` moves them all into place."""

    def __init__(self, output_dir: Path):
        self.output_dir = output_dir
        output_dir.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=output_dir))
        self.files: list[str] = []

    def path(self, name: str) -> Path:
        self.files.append(name)
        return self.staging / name

    def copy_query(self, con: duckdb.DuckDBPyConnection, query: str, name: str) -> None:
        target = self.path(name)
        fmt = "(FORMAT parquet, COMPRESSION zstd)" if name.endswith(".parquet") else "(FORMAT csv, HEADER)"
        con.execute(f"COPY ({query}) TO '{target}' {fmt}")

    def write_json(self, name: str, data: dict) -> None:
        self.path(name).write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")

    def write_text(self, name: str, text: str) -> None:
        self.path(name).write_text(text, encoding="utf-8")

    def publish(self, last: str | None = None) -> list[Path]:
        order = [f for f in self.files if f != last] + ([last] if last in self.files else [])
        published = []
        for name in order:
            os.replace(self.staging / name, self.output_dir / name)
            published.append(self.output_dir / name)
        self.discard()
        return published

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def remove_stale_staging(output_dir: Path) -> None:
    """Remove staging folders left by a run that was killed (they were never published)."""
    if output_dir.is_dir():
        for p in output_dir.glob(".staging-*"):
            shutil.rmtree(p, ignore_errors=True)


__all__ = ["Publisher", "remove_stale_staging"]
