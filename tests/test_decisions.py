"""Analyst decisions: storage, undo, which decision is in force, cluster actions as pairs, CSV."""

from __future__ import annotations

import csv
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from dedupe import decisions
from dedupe.decisions import DecisionsError

A, B, C, D = ("crm", "C1"), ("crm", "C2"), ("partner", "P1"), ("partner", "P2")


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute("CREATE TABLE std AS SELECT * FROM (VALUES (1, 'crm', 'C1'), (2, 'crm', 'C2'), "
              "(3, 'partner', 'P1'), (4, 'partner', 'P2')) t(rid, source, record_id)")
    decisions.ensure_schema(c)
    yield c
    c.close()


def in_force(con) -> dict:
    return {((r[4], r[5]), (r[6], r[7])): r[3] for r in decisions.active(con).fetchall()}


def test_pairs_are_stored_once_in_canonical_order_with_reviewer_note_and_time(con):
    decisions.ensure_schema(con)  # idempotent
    action = decisions.record(con, "split", [(C, A), (A, C), (B, A)], reviewer=" ann ", note=" twins ")
    rows = con.execute("SELECT action_id, action, kind, source_l, record_id_l, source_r, record_id_r, "
                       "reviewer, note, created_at, undone_at FROM analyst_decisions ORDER BY decision_id").fetchall()
    assert [r[3:7] for r in rows] == [("crm", "C1", "crm", "C2"), ("crm", "C1", "partner", "P1")]
    assert {r[0] for r in rows} == {action} and {r[1:3] for r in rows} == {("split", "cannot_link")}
    assert {(r[7], r[8]) for r in rows} == {("ann", "twins")}
    assert all(isinstance(r[9], datetime) and r[10] is None for r in rows)
    assert decisions.record(con, "merge", [(A, D)], reviewer="ann") == action + 1


@pytest.mark.parametrize("call, message", [
    (lambda c: decisions.record(c, "delete", [(A, B)], "ann"), "unknown action 'delete'"),
    (lambda c: decisions.record(c, "merge", [(A, B)], "  "), "a reviewer name is required"),
    (lambda c: decisions.record(c, "merge", [(A, A)], "ann"), "a record cannot be paired with itself"),
    (lambda c: decisions.record(c, "confirm", [], "ann"), "no record pairs"),
    (lambda c: decisions.record(c, "import", [(A, B)], "ann", kind="maybe"), "kind must be one of"),
])
def test_bad_actions_are_refused_with_a_clear_message(con, call, message):
    with pytest.raises(DecisionsError, match=message):
        call(con)
    assert con.execute("SELECT count(*) FROM analyst_decisions").fetchall()[0][0] == 0


def test_the_latest_action_wins_and_undo_brings_the_earlier_one_back(con):
    first = decisions.record(con, "confirm", [(A, B), (B, C)], reviewer="ann")
    second = decisions.record(con, "reject_link", [(B, C)], reviewer="bob")
    assert in_force(con) == {(A, B): "must_link", (B, C): "cannot_link"}
    assert decisions.undo(con, second) == 1
    assert in_force(con) == {(A, B): "must_link", (B, C): "must_link"}
    assert decisions.undo(con, second) == 0  # already undone
    assert decisions.undo(con, first) == 2  # the whole action, every pair row
    assert in_force(con) == {}
    assert len(decisions.history(con)) == 3  # nothing is deleted


def test_active_works_read_only_before_any_decision_exists(tmp_path):
    path = tmp_path / "state.duckdb"
    duckdb.connect(str(path)).close()
    ro = duckdb.connect(str(path), read_only=True)
    try:
        assert decisions.active(ro).fetchall() == []
        assert decisions.history(ro) == []
        assert [d[0] for d in decisions.active(ro).description][:4] == ["decision_id", "action_id", "action", "kind"]
    finally:
        ro.close()


def test_history_filters_by_record_keys(con):
    decisions.record(con, "merge", [(A, B)], reviewer="ann")
    decisions.record(con, "merge", [(C, D)], reviewer="ann")
    assert [(r["source_r"], r["record_id_r"]) for r in decisions.history(con, [B])] == [B]
    assert decisions.history(con, []) == []


# ------------------------------------------------------------------------------------------
# cluster actions


def test_confirm_is_a_maximum_spanning_tree_of_the_links_plus_the_anchor_for_the_rest():
    links = [(A, B, 0.99), (B, C, 0.60), (A, C, 0.97)]
    pairs = decisions.confirm_pairs([A, B, C, D], links)
    assert pairs == [(A, B), (A, C), (A, D)]  # B-C (weakest) is not needed; D has no link: anchor A
    assert len(decisions.confirm_pairs([A, B], [])) == 1
    assert decisions.confirm_pairs([A], []) == []


def test_split_cannot_links_the_record_with_every_other_member():
    assert decisions.split_pairs(C, [A, B, C]) == [(A, C), (B, C)]


def test_merge_pins_both_clusters_as_one_through_their_best_scored_pair():
    scored = [(A, C, 0.4), (D, B, 0.8), (A, B, 0.99)]
    # A spanning tree of all four members, strongest links first: it holds B-D, the best pair between.
    assert decisions.merge_pairs([A, B], [C, D], scored) == [(A, B), (B, D), (A, C)]
    assert decisions.merge_pairs([B, A], [D, C]) == [(A, B), (A, C), (A, D)]  # no links: tied to the anchor


# ------------------------------------------------------------------------------------------
# CSV


def read_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: list[dict], columns=decisions.CSV_COLUMNS, delimiter=",", bom=False) -> Path:
    with path.open("w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), delimiter=delimiter, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def test_export_then_import_into_another_state_round_trips_and_is_idempotent(con, tmp_path):
    decisions.record(con, "confirm", [(A, B), (B, C)], reviewer="ann", note='commas, "quotes"\nand lines')
    undone = decisions.record(con, "reject_link", [(C, D)], reviewer="bob")
    decisions.undo(con, undone)
    path = tmp_path / "decisions.csv"
    assert decisions.export_csv(con, path) == 3
    rows = read_rows(path)
    assert list(rows[0]) == list(decisions.CSV_COLUMNS)
    assert rows[2]["undone_at"] and not rows[0]["undone_at"]

    other = duckdb.connect()  # no run yet (no std): keys cannot be checked, and are taken as they are
    counts = decisions.import_csv(other, path)
    assert (counts.rows, counts.inserted, counts.unchanged, counts.actions) == (3, 3, 0, 2)
    assert in_force(other) == in_force(con)
    again = decisions.import_csv(other, path)
    assert (again.inserted, again.unchanged, again.undone) == (0, 3, 0)
    assert other.execute("SELECT count(*) FROM analyst_decisions").fetchall()[0][0] == 3
    note = other.execute("SELECT note FROM analyst_decisions WHERE kind = 'must_link' LIMIT 1").fetchall()[0][0]
    assert note == 'commas, "quotes"\nand lines'

    # Into the state it came from: nothing new.
    same = decisions.import_csv(con, path)
    assert same.inserted == 0 and same.unchanged == 3


def test_rows_typed_in_a_spreadsheet_are_added_once(con, tmp_path):
    path = write_rows(tmp_path / "new.csv", [
        {"kind": "Cannot-Link", "source_l": "partner", "record_id_l": "P1", "source_r": "crm",
         "record_id_r": "C1", "reviewer": "cy"},
        {"action_id": "7", "kind": "must_link", "source_l": "crm", "record_id_l": "C1", "source_r": "crm",
         "record_id_r": "C2", "reviewer": "cy", "note": "same phone"},
        {"action_id": "7", "kind": "must_link", "source_l": "crm", "record_id_l": "C2", "source_r": "partner",
         "record_id_r": "P2", "reviewer": "cy"},
    ], delimiter=";", bom=True)
    counts = decisions.import_csv(con, path)
    assert (counts.inserted, counts.actions) == (3, 2)  # rows sharing an action_id form one action
    assert in_force(con) == {(A, C): "cannot_link", (A, B): "must_link", (B, D): "must_link"}
    assert decisions.import_csv(con, path).inserted == 0
    assert set(con.execute("SELECT DISTINCT action FROM analyst_decisions").fetchall()) == {("import",)}


def test_filling_in_undone_at_in_the_file_undoes_the_decision(con, tmp_path):
    decisions.record(con, "merge", [(A, C)], reviewer="ann")
    path = tmp_path / "d.csv"
    decisions.export_csv(con, path)
    rows = read_rows(path)
    rows[0]["undone_at"] = "2030-01-02T03:04:05Z"
    counts = decisions.import_csv(con, write_rows(path, rows))
    assert counts.undone == 1 and in_force(con) == {}
    assert con.execute("SELECT undone_at FROM analyst_decisions").fetchall()[0][0] == datetime(2030, 1, 2, 3, 4, 5)


def test_a_bad_file_names_each_bad_row_and_column_and_writes_nothing(con, tmp_path):
    decisions.record(con, "merge", [(A, C)], reviewer="ann")
    path = write_rows(tmp_path / "bad.csv", [
        {"kind": "must_link", "source_l": "crm", "record_id_l": "C2", "source_r": "partner",
         "record_id_r": "P2", "reviewer": "ann"},  # fine, but must not be written
        {"kind": "mustlink", "source_l": "crm", "record_id_l": "C1", "source_r": "crm", "record_id_r": "C2",
         "reviewer": "ann"},
        {"kind": "cannot_link", "source_l": "crm", "record_id_l": "", "source_r": "crm", "record_id_r": "C2",
         "reviewer": "ann", "created_at": "yesterday"},
        {"kind": "cannot_link", "source_l": "crm", "record_id_l": "C9", "source_r": "crm", "record_id_r": "C2",
         "reviewer": "ann"},
        {"kind": "cannot_link", "source_l": "crm", "record_id_l": "C1", "source_r": "crm", "record_id_r": "C1",
         "reviewer": "ann", "action_id": "x"},
    ])
    with pytest.raises(DecisionsError) as e:
        decisions.import_csv(con, path)
    assert e.value.problems == [
        f"{path}: row 3, column kind: 'mustlink' is not one of must_link, cannot_link",
        f"{path}: row 4, column record_id_l: empty",
        f"{path}: row 4, column created_at: 'yesterday' is not a date-time (use YYYY-MM-DD HH:MM:SS)",
        f"{path}: row 6, column action_id: 'x' is not a whole number",
        f"{path}: row 6, column record_id_r: pairs crm:C1 with itself",
        f"{path}: row 5, column record_id_l: no record crm:C9 in the state database",
    ]
    assert con.execute("SELECT count(*) FROM analyst_decisions").fetchall()[0][0] == 1


def test_a_file_without_the_key_columns_is_refused(con, tmp_path):
    path = write_rows(tmp_path / "cols.csv", [], columns=["kind", "left", "right"])
    with pytest.raises(DecisionsError, match=r"row 1: missing columns source_l, record_id_l, source_r, "
                                             r"record_id_r, reviewer"):
        decisions.import_csv(con, path)
    with pytest.raises(DecisionsError, match="file not found"):
        decisions.import_csv(con, tmp_path / "nope.csv")
