"""Golden-id assignment over successive clusterings, driven directly (no pipeline around it)."""

from __future__ import annotations

import duckdb
import pytest

from dedupe import identity, state


@pytest.fixture
def nights():
    """nights(clusters) publishes one night's clusters (lists of record numbers) and returns
    ({frozenset(records): cluster_id}, [(cluster_id, event, other_id), ...]). ``nights.history``
    is the id_history output that night published; ``nights.con`` the state."""
    con = duckdb.connect()
    state.ensure_schema(con)
    generation = 0

    def publish(clusters: list[list[int]]):
        nonlocal generation
        generation += 1
        rows = [(rid, min(c)) for c in clusters for rid in c]
        con.execute("CREATE OR REPLACE TABLE std (rid BIGINT, source VARCHAR, record_id VARCHAR, content_hash VARCHAR)")
        con.executemany("INSERT INTO std VALUES (?, 'crm', ?, 'h')", [(r, f"r{r}") for r, _ in rows])
        con.execute("CREATE OR REPLACE TEMP TABLE clusters (rid BIGINT, cluster_key BIGINT, flags VARCHAR)")
        con.executemany("INSERT INTO clusters VALUES (?, ?, NULL)", rows)
        identity.assign(con, generation)
        ids = con.execute("SELECT list(rid ORDER BY rid), cluster_id FROM cluster_ids GROUP BY cluster_id").fetchall()
        events = con.execute("SELECT cluster_id, event, other_id FROM id_events ORDER BY ALL").fetchall()
        publish.history = con.execute(identity.history_query()).fetchall()
        identity.commit(con, generation)
        return {frozenset(members): cid for members, cid in ids}, events

    publish.con = con
    return publish


def _in_output_order(history: list[tuple]) -> bool:
    return history == sorted(history, key=lambda h: (h[0], h[2], h[1]))  # generation, event, id


def test_the_id_history_output_lists_every_event_by_generation_then_event_then_id(nights):
    nights([[1, 2, 3], [4, 5, 6], [7]])
    nights([[1], [2, 3], [4, 5, 6, 7], [8]])  # a split, a merge, a new person
    nights([[1, 2, 3], [4, 5], [6], [9]])  # merged back, split, 7 and 8 gone, new
    history = nights.history
    assert {h[2] for h in history} == {"created", "merged_into", "split_from", "retired"}
    assert {h[0] for h in history} == {1, 2, 3} and _in_output_order(history)


def test_a_history_stored_out_of_order_by_older_code_is_put_in_order_once(nights):
    nights([[1, 2], [3]])
    nights([[1], [2, 3], [4]])
    con = nights.con
    con.execute("CREATE OR REPLACE TABLE id_history AS SELECT * FROM id_history ORDER BY cluster_id DESC, event DESC")
    con.execute("DELETE FROM meta WHERE key = 'id_history_order'")
    nights([[1, 2, 3, 4], [5]])
    assert len(nights.history) > 4 and _in_output_order(nights.history)


def test_a_record_moving_between_two_equal_clusters_leaves_both_ids_with_their_people(nights):
    first, _ = nights([[1, 2], [3, 4]])
    a, b = first[frozenset({1, 2})], first[frozenset({3, 4})]
    # Record 1 turns out to be b's person. a's id ties between {2} and {1, 3, 4}: it stays with 2.
    second, events = nights([[1, 3, 4], [2]])
    assert second == {frozenset({1, 3, 4}): b, frozenset({2}): a}
    assert events == []


def test_a_split_into_equal_halves_keeps_the_id_on_one_and_logs_the_other(nights):
    first, _ = nights([[1, 2]])
    a = first[frozenset({1, 2})]
    second, events = nights([[1], [2]])
    assert second[frozenset({1})] == a
    new = second[frozenset({2})]
    assert new != a and sorted(events) == [(new, "created", None), (new, "split_from", a)]


def test_a_merge_keeps_the_larger_previous_clusters_id(nights):
    first, _ = nights([[1, 2], [3, 4, 5]])
    a, b = first[frozenset({1, 2})], first[frozenset({3, 4, 5})]
    second, events = nights([[1, 2, 3, 4, 5]])
    assert second == {frozenset({1, 2, 3, 4, 5}): b}
    assert events == [(a, "merged_into", b)]


def test_a_split_off_anchor_never_gets_an_id_issued_before_even_when_it_splits_off_again(nights):
    # A new cluster's id derives from its anchor (its smallest record key); the part that keeps
    # the old id was anchored by the same record, so the new id must be a fresh one, each time.
    first, _ = nights([[1, 2, 3], [4, 5, 6]])
    a, b = first[frozenset({1, 2, 3})], first[frozenset({4, 5, 6})]
    second, _ = nights([[1], [2, 3], [4], [5, 6]])  # two such splits in one night
    assert second[frozenset({2, 3})] == a and second[frozenset({5, 6})] == b
    split_1, split_4 = second[frozenset({1})], second[frozenset({4})]
    assert len({a, b, split_1, split_4}) == 4
    third, events = nights([[1, 2, 3], [4, 5, 6]])  # back together: the split-off ids retire
    assert third == first and sorted(events) == sorted([(split_1, "merged_into", a), (split_4, "merged_into", b)])
    fourth, _ = nights([[1], [2, 3], [4], [5, 6]])  # and apart again: ids never seen before
    assert len({a, b, split_1, split_4, fourth[frozenset({1})], fourth[frozenset({4})]}) == 6
