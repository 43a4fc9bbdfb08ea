"""Helpers for the judge tests (review tables, settings, log), and a subprocess driver.

``python -m tests.judge.driver STATE_DB [--pairs N] [--poll S] [--max-wait S]``
opens a state DuckDB file, (re)builds a review table of N synthetic pairs and
calls ``run_judge``; it is what the SIGKILL tests kill.  It prints the report
as JSON on stdout and exits 75 when batches are still pending, like the CLI.
ANTHROPIC_BASE_URL / ANTHROPIC_API_KEY come from the environment.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any, Iterable

import duckdb

from dedupe.judge.settings import CANONICAL_FIELDS

Pair = tuple[str, dict[str, Any], dict[str, Any]]

#: Hand-written pairs covering the rubric's cases.  Pair keys carry source names
#: and record ids on purpose: tests assert they never reach the server.
DEMO_PAIRS: list[Pair] = [
    ("crm:1001|billing:B-77",
     {"first_name": "John", "last_name": "Smith", "email": "jsmith@acme.com", "company": "Acme"},
     {"first_name": "Jonathan", "last_name": "Smith", "email": "j.smith@acmecorp.com", "company": "AcmeCorp"}),
    ("crm:1002|events:E-3",
     {"first_name": "Robert", "last_name": "Brown", "phone": "+447700900123", "company": "Initech"},
     {"first_name": "Bob", "last_name": "Brown", "phone": "+447700900123", "company": "Initrode"}),
    ("crm:1003|crm:1004",
     {"first_name": "Maria", "last_name": "Garcia", "email": "mgarcia@globex.com", "city": "Madrid"},
     {"first_name": "Maria", "last_name": "Garcia", "email": "maria.garcia@globex.com", "city": "Madrid"}),
    ("billing:B-12|support:S-9",
     {"first_name": "James", "last_name": "Wilson Sr", "street": "1 High St", "phone": "+15555550100"},
     {"first_name": "James", "last_name": "Wilson Jr", "street": "1 High St", "phone": "+15555550100"}),
    ("support:S-10|support:S-11",
     {"first_name": "Peter", "last_name": "Gibbons", "email": "info@initech.com"},
     {"first_name": "Michael", "last_name": "Bolton", "email": "info@initech.com"}),
    ("crm:1005|events:E-8",
     {"first_name": "Ann", "last_name": "Lee", "phone": "+442079460000", "title": "Accountant"},
     {"first_name": "Tom", "last_name": "Chen", "phone": "+442079460000", "title": "Engineer"}),
    ("crm:1006|billing:B-90",
     {"first_name": "Margaret", "last_name": "Olsen", "email": "peggy.olsen@gmail.com", "company": "Sterling Cooper"},
     {"first_name": "Peggy", "last_name": "Olsen", "email": "peggy.olsen@gmail.com", "company": "McCann"}),
    ("events:E-20|support:S-30",
     {"first_name": "Wei", "last_name": "Zhang", "city": "Shanghai", "date_of_birth": "1980-02-01"},
     {"first_name": "Wei", "last_name": "Zhang", "city": "Shanghai", "date_of_birth": "1975-07-19"}),
]


def synthetic_pairs(n: int, prefix: str = "syn") -> list[Pair]:
    """n distinct pairs with deterministic content (distinct per prefix too)."""
    out = []
    for i in range(n):
        name = f"{prefix.title()}{i}"
        left = {"first_name": name, "last_name": f"Family{i % 7}", "email": f"{prefix}{i}@example.com",
                "street": f"{i} Long Road"}
        right = {"first_name": name, "last_name": f"Family{i % 7}",
                 "email": f"{prefix}{i}@example.com" if i % 2 else f"other{i}@example.org"}
        out.append((f"{prefix}:{i}|{prefix}:{i + 100000}", left, right))
    return out


def build_review(con: duckdb.DuckDBPyConnection, pairs: Iterable[Pair], table: str = "review") -> None:
    """Create `table` with the review-table contract's columns."""
    cols = ["pair_key VARCHAR", "match_probability DOUBLE"]
    for f in CANONICAL_FIELDS:
        cols += [f"l_{f} VARCHAR", f"r_{f} VARCHAR"]
    con.execute(f"CREATE OR REPLACE TABLE {table} ({', '.join(cols)})")
    rows = []
    for key, left, right in pairs:
        row: list[Any] = [key, 0.5]
        for f in CANONICAL_FIELDS:
            row += [left.get(f), right.get(f)]
        rows.append(row)
    if rows:
        con.executemany(f"INSERT INTO {table} VALUES ({', '.join(['?'] * len(rows[0]))})", rows)


def fast(**kw: Any):
    """JudgeSettings for tests: no waiting between polls, a short max wait."""
    from dedupe.judge import JudgeSettings

    base = JudgeSettings(backend="anthropic", poll_interval_s=0.0, max_wait_s=10.0, max_retries=2)
    return dataclasses.replace(base, **kw)


class Log(list):
    """A `log` callable that keeps the lines."""

    def __call__(self, line: str) -> None:
        self.append(line)

    def text(self) -> str:
        return "\n".join(self)


def main(argv: list[str] | None = None) -> int:
    from dedupe.judge import JudgePending, JudgeSettings, run_judge

    ap = argparse.ArgumentParser()
    ap.add_argument("state_db")
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--poll", type=float, default=0.05)
    ap.add_argument("--max-wait", type=float, default=30.0)
    args = ap.parse_args(argv)

    con = duckdb.connect(args.state_db)
    build_review(con, synthetic_pairs(args.pairs))
    settings = JudgeSettings(backend="anthropic", poll_interval_s=args.poll, max_wait_s=args.max_wait,
                             max_retries=2)

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        report = run_judge(con, "review", settings, log=log)
    except JudgePending as e:
        log(str(e))
        return 75
    print(json.dumps(report.as_dict()))
    con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
