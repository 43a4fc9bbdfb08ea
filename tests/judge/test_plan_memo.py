"""The plan memo: a nightly run serialises only review pairs whose sent values it has not seen."""

from __future__ import annotations

import duckdb

from dedupe.judge import batches, cache, prompt
from tests.judge.driver import DEMO_PAIRS, build_review, fast


def _review(con, pairs, table="review"):
    batches.ensure_schema(con)
    build_review(con, pairs, table)


def _plan(con):
    return con.execute("SELECT * FROM judge_plan ORDER BY pair_key").fetchall()


def test_second_night_serialises_only_new_or_changed_pairs_and_plans_the_same(con, monkeypatch):
    settings = fast()
    _review(con, DEMO_PAIRS)
    cache.build_plan(con, "review", settings)

    serialised = []
    real = prompt.serialise_pair
    monkeypatch.setattr(prompt, "serialise_pair", lambda *a: serialised.append(a) or real(*a))
    # Night two: one pair's right-hand record changed, one pair is gone, one is new.
    key, left, right = DEMO_PAIRS[0]
    night2 = [(key, left, {**right, "company": "Acme Corporation"})] + DEMO_PAIRS[1:-1] + [
        ("new:1|new:2", {"first_name": "Ada", "last_name": "Byron"}, {"first_name": "Ada", "last_name": "King"})]
    _review(con, night2)
    summary = cache.build_plan(con, "review", settings)
    assert len(serialised) == 2 and summary.pairs == len(night2)
    remembered = _plan(con)

    # The memo holds tonight's pairs only.
    assert con.execute("SELECT count(*) FROM judge_plan_memo").fetchall()[0][0] == len(night2)
    # The same plan as serialising everything from scratch (a state that never saw night one).
    fresh = duckdb.connect()
    _review(fresh, night2)
    cache.build_plan(fresh, "review", settings)
    assert remembered == _plan(fresh)


def test_changed_judge_settings_serialise_everything_again(con, monkeypatch):
    _review(con, DEMO_PAIRS)
    cache.build_plan(con, "review", fast())
    serialised = []
    real = prompt.serialise_pair
    monkeypatch.setattr(prompt, "serialise_pair", lambda *a: serialised.append(a) or real(*a))
    cache.build_plan(con, "review", fast(fields=("first_name", "last_name", "email")))
    assert len(serialised) == len(DEMO_PAIRS)
    assert all("street" not in text for (text,) in con.execute("SELECT user_text FROM judge_plan").fetchall())
