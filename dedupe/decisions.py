"""Analyst decisions: must-link and cannot-link pairs that win over the model and the LLM.

Storage is one table in the state database, ``analyst_decisions``, one row per record pair of an
analyst *action*::

    decision_id BIGINT     one row                     action_id BIGINT   the action it belongs to
    action      VARCHAR    confirm | reject_link | split | merge | import
    kind        VARCHAR    must_link | cannot_link
    source_l, record_id_l, source_r, record_id_r       the pair, canonical order (see below)
    reviewer    VARCHAR    who                         note VARCHAR        why (optional)
    created_at  TIMESTAMP  when (UTC)                  undone_at TIMESTAMP  NULL while in force

Choices, and why:

* **Keys are source record keys** ``(source, record_id)``, never the run-local ``rid``: rids are
  re-assigned by every run, a record's key is not. Each pair is stored in canonical order, the two
  ``(source, record_id)`` tuples sorted, so a pair has one spelling and lookups are plain equality.
* **Rows are never deleted.** Undo sets ``undone_at`` on every row of the action, which keeps the
  history ("who decided what, when, and who took it back") for review and export.
* **The latest action wins for a pair** (``active``): a later decision on the same pair overrides an
  earlier one, and undoing the later one brings the earlier one back. Contradictions *across* pairs
  (A=B and B=C but A!=C) are the pipeline's to resolve when it clusters.
* **Cluster-level actions become pair decisions** (``*_pairs`` helpers below, which the review app
  uses): confirm a cluster = must-link along a maximum spanning tree of its current links (n-1
  pairs, each one a link the analyst saw, strongest first; members the links do not reach are tied
  to the anchor, the smallest key); reject a link = cannot-link on that pair; move a record out =
  cannot-link between that record and every other member; merge two clusters = must-link on the
  best-scored pair between them (a pair that was actually compared), else between their anchors.
* **CSV round trip** for spreadsheet review (``export_csv`` / ``import_csv``): columns ``action_id,
  kind, source_l, record_id_l, source_r, record_id_r, reviewer, note, created_at, undone_at``.
  Import validates every row first and writes nothing if any row is bad (one line per problem,
  naming the row as a spreadsheet shows it and the column), and is idempotent, see ``import_csv``.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import duckdb

from dedupe.state import has_table

TABLE = "analyst_decisions"
KINDS = ("must_link", "cannot_link")
# What each analyst action records. "import" rows carry the kind the CSV names.
ACTIONS = {"confirm": "must_link", "reject_link": "cannot_link", "split": "cannot_link",
           "merge": "must_link", "import": None}
CSV_COLUMNS = ("action_id", "kind", "source_l", "record_id_l", "source_r", "record_id_r", "reviewer",
               "note", "created_at", "undone_at")
REQUIRED_CSV_COLUMNS = ("kind", "source_l", "record_id_l", "source_r", "record_id_r", "reviewer")

Key = tuple[str, str]  # (source, record_id)
Pair = tuple[Key, Key]

_COLUMNS_SQL = """
    decision_id BIGINT NOT NULL,
    action_id BIGINT NOT NULL,
    action VARCHAR NOT NULL,
    kind VARCHAR NOT NULL CHECK (kind IN ('must_link', 'cannot_link')),
    source_l VARCHAR NOT NULL,
    record_id_l VARCHAR NOT NULL,
    source_r VARCHAR NOT NULL,
    record_id_r VARCHAR NOT NULL,
    reviewer VARCHAR,
    note VARCHAR,
    created_at TIMESTAMP NOT NULL,
    undone_at TIMESTAMP"""

_ACTIVE_COLUMNS = ("decision_id", "action_id", "action", "kind", "source_l", "record_id_l", "source_r",
                   "record_id_r", "reviewer", "note", "created_at")


class DecisionsError(ValueError):
    """Bad input to the decisions store; ``problems`` has one line per problem."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class ImportCounts:
    rows: int = 0  # data rows read
    inserted: int = 0  # new decisions written
    unchanged: int = 0  # already stored, or already in force for that pair
    undone: int = 0  # stored decisions the file marks as undone
    actions: int = 0  # new actions the inserted rows form

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


# --------------------------------------------------------------------------------------------
# storage


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create ``analyst_decisions`` if it does not exist (needs a read-write connection)."""
    con.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} ({_COLUMNS_SQL})")


def canonical(a: Key, b: Key) -> Pair:
    """The pair in stored order: the smaller ``(source, record_id)`` first."""
    a, b = (str(a[0]), str(a[1])), (str(b[0]), str(b[1]))
    return (a, b) if a <= b else (b, a)


def _now() -> datetime:
    # Naive UTC, like every TIMESTAMP the pipeline writes.
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _next_ids(con: duckdb.DuckDBPyConnection) -> tuple[int, int]:
    # max+1 rather than a sequence: ids stay dense and survive a table rebuilt from a CSV. Writers
    # are serialised by DuckDB's file lock (one process) and the review app's own lock (threads).
    decision, action = con.execute(f"SELECT coalesce(max(decision_id), 0) + 1, "
                                   f"coalesce(max(action_id), 0) + 1 FROM {TABLE}").fetchall()[0]
    return int(decision), int(action)


def _insert(con: duckdb.DuckDBPyConnection, rows: list[tuple]) -> None:
    con.executemany(f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def record(con: duckdb.DuckDBPyConnection, action: str, pairs: Iterable[Pair], reviewer: str,
           note: str | None = None, kind: str | None = None,
           created_at: datetime | None = None) -> int:
    """Store one analyst action as pair decisions; return its ``action_id``.

    ``action`` is one of ``ACTIONS``; its kind is implied (``kind`` is only for ``import``). Pairs
    are ``((source, record_id), (source, record_id))`` in any order; duplicates are dropped."""
    if action not in ACTIONS:
        raise DecisionsError([f"unknown action '{action}' (use one of {', '.join(ACTIONS)})"])
    kind = ACTIONS[action] or kind
    if kind not in KINDS:
        raise DecisionsError([f"kind must be one of {', '.join(KINDS)}, got {kind!r}"])
    reviewer = (reviewer or "").strip()
    if not reviewer:
        raise DecisionsError(["a reviewer name is required"])
    unique = sorted({canonical(a, b) for a, b in pairs})
    if any(a == b for a, b in unique):
        raise DecisionsError(["a record cannot be paired with itself"])
    if not unique:
        raise DecisionsError([f"{action}: no record pairs to record"])
    ensure_schema(con)
    when = created_at or _now()
    note = (note or "").strip() or None
    con.execute("BEGIN TRANSACTION")
    try:
        decision_id, action_id = _next_ids(con)
        _insert(con, [(decision_id + i, action_id, action, kind, a[0], a[1], b[0], b[1], reviewer, note,
                       when, None) for i, (a, b) in enumerate(unique)])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return action_id


def undo(con: duckdb.DuckDBPyConnection, action_id: int) -> int:
    """Undo a whole action (every pair row of it); return how many rows were undone (0: nothing to do)."""
    ensure_schema(con)
    undone = con.execute(f"UPDATE {TABLE} SET undone_at = ? WHERE action_id = ? AND undone_at IS NULL "
                         f"RETURNING decision_id", [_now(), int(action_id)]).fetchall()
    return len(undone)


_ACTIVE_SQL = f"""
    SELECT {', '.join(_ACTIVE_COLUMNS)}
    FROM {TABLE}
    WHERE undone_at IS NULL
    QUALIFY row_number() OVER (PARTITION BY source_l, record_id_l, source_r, record_id_r
                               ORDER BY created_at DESC, decision_id DESC) = 1"""

_EMPTY_ACTIVE_SQL = ("SELECT NULL::BIGINT AS decision_id, NULL::BIGINT AS action_id, NULL::VARCHAR AS action, "
                     "NULL::VARCHAR AS kind, NULL::VARCHAR AS source_l, NULL::VARCHAR AS record_id_l, "
                     "NULL::VARCHAR AS source_r, NULL::VARCHAR AS record_id_r, NULL::VARCHAR AS reviewer, "
                     "NULL::VARCHAR AS note, NULL::TIMESTAMP AS created_at WHERE false")


def active_sql(con: duckdb.DuckDBPyConnection) -> str:
    """SQL text of ``active`` to embed in a larger query (works before any decision exists)."""
    return _ACTIVE_SQL if has_table(con, TABLE) else _EMPTY_ACTIVE_SQL


def active(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
    """The decision in force per pair: not undone, latest action wins.

    A relation with columns ``decision_id, action_id, action, kind, source_l, record_id_l, source_r,
    record_id_r, reviewer, note, created_at``; ``.fetchall()`` it, or ``.create_view(name)`` /
    ``.create(name)`` to join it in SQL. Read-only connections work (empty before the first decision).
    """
    return con.sql(active_sql(con))


def history(con: duckdb.DuckDBPyConnection, keys: Sequence[Key] | None = None) -> list[dict]:
    """Every decision row (undone ones too), newest first; with ``keys``, those touching any of them."""
    if not has_table(con, TABLE):
        return []
    where, params = "", []
    if keys is not None:
        if not keys:
            return []
        values = ", ".join("(?, ?)" for _ in keys)
        params = [str(v) for k in keys for v in k]
        where = (f"WHERE EXISTS (SELECT 1 FROM (VALUES {values}) k(s, r) WHERE "
                 f"(k.s = d.source_l AND k.r = d.record_id_l) OR (k.s = d.source_r AND k.r = d.record_id_r))")
    cur = con.execute(f"SELECT d.* FROM {TABLE} d {where} ORDER BY created_at DESC, decision_id DESC", params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row)) for row in cur.fetchall()]


# --------------------------------------------------------------------------------------------
# cluster-level actions as pair decisions


def confirm_pairs(members: Sequence[Key], links: Sequence[tuple[Key, Key, float]]) -> list[Pair]:
    """Must-link pairs that pin a cluster together: a maximum spanning tree of its links.

    Kruskal over ``links`` (``(key, key, probability)`` between members), strongest first; members the
    links do not connect are tied to the anchor (the smallest key). n-1 pairs for n members."""
    parent = {k: k for k in members}

    def find(x: Key) -> Key:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    chosen: list[Pair] = []
    for a, b, _p in sorted(links, key=lambda e: (-e[2], canonical(e[0], e[1]))):
        if a not in parent or b not in parent:
            continue
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
            chosen.append(canonical(a, b))
    if members:
        anchor = min(members)
        for k in sorted(members):
            if find(k) != find(anchor):
                chosen.append(canonical(anchor, k))
                parent[find(k)] = find(anchor)
    return chosen


def split_pairs(record_key: Key, members: Sequence[Key]) -> list[Pair]:
    """Cannot-link pairs that move ``record_key`` out of its cluster: one with every other member."""
    return [canonical(record_key, k) for k in members if k != record_key]


def merge_pairs(members_a: Sequence[Key], members_b: Sequence[Key],
                scored: Sequence[tuple[Key, Key, float]] = ()) -> list[Pair]:
    """Must-link pairs that pin two clusters together as one: a maximum spanning tree over all
    their members (``confirm_pairs`` of the union), which holds the best-scored pair between them.

    The analyst has looked at both clusters and says they are one person; a single bridging link
    would leave the rest to the model, and the over-merge guard could take the union apart again
    over an identifier typo the analyst already saw."""
    return confirm_pairs(list(members_a) + list(members_b), scored)


# --------------------------------------------------------------------------------------------
# CSV


def _fmt_ts(value: datetime | None) -> str:
    return "" if value is None else value.isoformat(sep=" ", timespec="microseconds")


def export_csv(con: duckdb.DuckDBPyConnection, path: str | Path) -> int:
    """Write every decision row (undone ones too, for the record) to ``path``; return the row count.

    The file is written next to ``path`` and moved into place, so a failed export leaves no half file."""
    path = Path(path)
    rows = history(con)
    rows.sort(key=lambda r: (r["action_id"], r["decision_id"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        for r in rows:
            w.writerow([r["action_id"], r["kind"], r["source_l"], r["record_id_l"], r["source_r"],
                        r["record_id_r"], r["reviewer"] or "", r["note"] or "", _fmt_ts(r["created_at"]),
                        _fmt_ts(r["undone_at"])])
    os.replace(tmp, path)
    return len(rows)


def _parse_ts(text: str) -> datetime:
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    value = datetime.fromisoformat(text)
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


@dataclass
class _Row:
    line: int
    action_id: int | None
    kind: str
    pair: Pair
    written: Pair  # the pair in the file's own column order, for error messages
    reviewer: str
    note: str | None
    created_at: datetime | None
    undone_at: datetime | None


def _read_csv(path: Path) -> tuple[list[_Row], list[str]]:
    problems: list[str] = []
    rows: list[_Row] = []
    # utf-8-sig: spreadsheets save a byte-order mark; a locale may save with semicolons.
    text = path.read_text(encoding="utf-8-sig")
    first = text.split("\n", 1)[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","
    # newline="": a note may hold line breaks inside quotes.
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [h.strip() for h in (reader.fieldnames or [])]
    reader.fieldnames = header
    missing = [c for c in REQUIRED_CSV_COLUMNS if c not in header]
    if missing:
        return [], [f"{path}: row 1: missing column{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(missing)} (expected {', '.join(CSV_COLUMNS)})"]
    for line, raw in enumerate(reader, start=2):  # row numbers as a spreadsheet shows them
        values = {k: (v or "").strip() for k, v in raw.items() if k is not None}
        if not any(values.values()):
            continue  # blank line
        where = f"{path}: row {line}"
        bad = len(problems)
        kind = values.get("kind", "").lower().replace("-", "_").replace(" ", "_")
        if kind not in KINDS:
            problems.append(f"{where}, column kind: {values.get('kind')!r} is not one of {', '.join(KINDS)}")
        for col in ("source_l", "record_id_l", "source_r", "record_id_r", "reviewer"):
            if not values.get(col):
                problems.append(f"{where}, column {col}: empty")
        action_id = None
        if values.get("action_id"):
            try:
                action_id = int(values["action_id"])
            except ValueError:
                problems.append(f"{where}, column action_id: {values['action_id']!r} is not a whole number")
        stamps: dict[str, datetime | None] = {}
        for col in ("created_at", "undone_at"):
            stamps[col] = None
            if values.get(col):
                try:
                    stamps[col] = _parse_ts(values[col])
                except ValueError:
                    problems.append(f"{where}, column {col}: {values[col]!r} is not a date-time "
                                    f"(use YYYY-MM-DD HH:MM:SS)")
        if values.get("undone_at") and not values.get("created_at"):
            problems.append(f"{where}, column created_at: an undone decision needs its created_at")
        left = (values.get("source_l", ""), values.get("record_id_l", ""))
        right = (values.get("source_r", ""), values.get("record_id_r", ""))
        if all(left) and left == right:
            problems.append(f"{where}, column record_id_r: pairs {left[0]}:{left[1]} with itself")
        if len(problems) == bad:
            rows.append(_Row(line, action_id, kind, canonical(left, right), (left, right), values["reviewer"],
                             values.get("note") or None, stamps["created_at"], stamps["undone_at"]))
    return rows, problems


def _unknown_records(con: duckdb.DuckDBPyConnection, path: Path, rows: list[_Row]) -> list[str]:
    """One problem per row naming a record the state database does not hold (typos, mostly)."""
    if not has_table(con, "std") or not rows:
        return []
    keys = sorted({k for r in rows if r.undone_at is None for k in r.pair})
    if not keys:
        return []
    con.execute("CREATE OR REPLACE TEMP TABLE _import_keys (source VARCHAR, record_id VARCHAR)")
    con.executemany("INSERT INTO _import_keys VALUES (?, ?)", keys)
    known = set(con.execute("SELECT k.source, k.record_id FROM _import_keys k "
                            "JOIN std s ON s.source = k.source AND s.record_id = k.record_id").fetchall())
    con.execute("DROP TABLE _import_keys")
    problems = []
    for r in rows:
        if r.undone_at is not None:
            continue  # history: the record may have left the sources since
        for side, (source, record_id) in zip(("l", "r"), r.written):
            if (source, record_id) not in known:
                problems.append(f"{path}: row {r.line}, column record_id_{side}: no record "
                                f"{source}:{record_id} in the state database")
    return problems


def import_csv(con: duckdb.DuckDBPyConnection, path: str | Path) -> ImportCounts:
    """Read decisions from a CSV (as ``export_csv`` writes it, possibly edited in a spreadsheet).

    Every row is validated first; any bad row raises ``DecisionsError`` (one line per problem, naming
    the row and column) and nothing is written. Then, per row:

    * the same decision already stored (same kind and pair, and the same ``created_at`` or the same
      ``action_id``): nothing new; if the file marks it undone and the store does not, it is undone;
    * otherwise, a decision the file does not mark undone and whose kind is already in force for that
      pair: nothing new (so rows typed in without ``created_at`` do not pile up on re-import);
    * otherwise it is inserted (``created_at`` from the file, or now), rows sharing an ``action_id``
      in the file forming one new action (``action = 'import'``), a row without one its own action.

    Importing the same file twice therefore changes nothing the second time. Undoing a decision is
    done by filling in ``undone_at``; clearing it does not bring a decision back (record it again).
    """
    path = Path(path)
    if not path.is_file():
        raise DecisionsError([f"{path}: file not found"])
    rows, problems = _read_csv(path)
    problems += _unknown_records(con, path, rows)
    if problems:
        raise DecisionsError(problems)
    ensure_schema(con)
    counts = ImportCounts(rows=len(rows))
    stored = history(con)
    by_time = {(r["kind"], (r["source_l"], r["record_id_l"]), (r["source_r"], r["record_id_r"]),
                r["created_at"]): r for r in stored}
    by_action = {(r["action_id"], r["kind"], (r["source_l"], r["record_id_l"]),
                  (r["source_r"], r["record_id_r"])): r for r in stored}
    in_force = {((r[4], r[5]), (r[6], r[7])): r[3] for r in active(con).fetchall()}

    now = _now()
    con.execute("BEGIN TRANSACTION")
    try:
        next_decision, next_action = _next_ids(con)
        new_actions: dict[object, int] = {}
        inserts = []
        for r in rows:
            a, b = r.pair
            match = by_time.get((r.kind, a, b, r.created_at)) if r.created_at else None
            if match is None and r.action_id is not None:
                match = by_action.get((r.action_id, r.kind, a, b))
            if match is not None:
                if r.undone_at is not None and match["undone_at"] is None:
                    con.execute(f"UPDATE {TABLE} SET undone_at = ? WHERE decision_id = ?",
                                [r.undone_at, match["decision_id"]])
                    match["undone_at"] = r.undone_at
                    counts.undone += 1
                else:
                    counts.unchanged += 1
                continue
            if r.undone_at is None and in_force.get(r.pair) == r.kind:
                counts.unchanged += 1
                continue
            group = ("file", r.action_id) if r.action_id is not None else ("row", r.line)
            if group not in new_actions:
                new_actions[group] = next_action
                next_action += 1
            created = r.created_at or now
            inserts.append((next_decision, new_actions[group], "import", r.kind, a[0], a[1], b[0], b[1],
                            r.reviewer, r.note, created, r.undone_at))
            next_decision += 1
            by_time[(r.kind, a, b, created)] = {"decision_id": inserts[-1][0], "undone_at": r.undone_at}
            if r.undone_at is None:
                in_force[r.pair] = r.kind
        if inserts:
            _insert(con, inserts)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    counts.inserted = len(inserts)
    counts.actions = len(new_actions)
    return counts


__all__ = ["ensure_schema", "record", "undo", "active", "active_sql", "history", "export_csv",
           "import_csv", "confirm_pairs", "split_pairs", "merge_pairs", "canonical", "DecisionsError",
           "ImportCounts", "ACTIONS", "KINDS", "CSV_COLUMNS", "TABLE"]
