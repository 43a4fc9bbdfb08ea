"""Fault injection: every run must end with no lost verdict, no duplicate paid
batch left running, and no pair judged (billed) twice."""

import pytest

from dedupe.judge import JudgeError, JudgePending, run_judge
from tests.judge.driver import DEMO_PAIRS, build_review, fast, synthetic_pairs
from tests.judge.fake_batches import FakeBatchesServer


def _verdicts(con):
    return dict(con.execute("SELECT pair_key, decision FROM judge_results").fetchall())


def _assert_clean(fake, con, n_pairs):
    """All verdicts in, nothing running on the server, nothing billed twice."""
    assert len(_verdicts(con)) == n_pairs
    assert all(b.processing_status == "ended" for b in fake.live_batches())
    assert set(fake.billed().values()) <= {1}


def test_http_faults_on_every_route(fake, con, demo, log):
    fake.inject("create", 429)
    fake.inject("create", 529)
    fake.inject("list", 500)
    fake.inject("retrieve", 503)
    fake.inject("retrieve", drop=True)
    fake.inject("results", 500)
    report = run_judge(con, demo, fast(), log=log)
    assert len(fake.live_batches()) == 1 and fake.ops("create", 200) == 1
    assert report.requests_sent == len(DEMO_PAIRS)
    _assert_clean(fake, con, len(DEMO_PAIRS))


def test_create_stored_then_500_is_adopted_not_resubmitted(fake, con, demo, log):
    fake.inject("create", 500, stored=True)
    report = run_judge(con, demo, fast(), log=log)
    assert fake.ops("create") == 1 and len(fake.live_batches()) == 1
    assert report.batches == [fake.live_batches()[0].id]
    assert "had stored it" in log.text()
    _assert_clean(fake, con, len(DEMO_PAIRS))


def test_duplicate_create_is_canceled(fake, con, demo, log):
    # The stored batch is invisible to the first list(), so a second create goes
    # out; the check after it finds the first one and cancels it.
    fake.inject("create", 500, stored=True, hide_from_list=1)
    fake.hold_processing = True  # the duplicate is still cancelable when found
    with pytest.raises(JudgePending):
        run_judge(con, demo, fast(max_wait_s=0), log=log)
    first, second = fake.live_batches()
    assert first.processing_status == "ended" and first.cancel_initiated_at is not None
    assert second.cancel_initiated_at is None
    fake.hold_processing = False
    report = run_judge(con, demo, fast(), log=log)
    assert report.requests_sent == 0 and fake.ops("create") == 2
    assert {r["type"] for r in first.results.values()} == {"canceled"}
    _assert_clean(fake, con, len(DEMO_PAIRS))
    assert set(con.execute("SELECT judge_batch_id FROM judge_results").fetchall()) == {(second.id,)}
    roles = con.execute("SELECT role, status FROM judge_batches ORDER BY role").fetchall()
    assert roles == [("duplicate", "collected"), ("primary", "collected")]


def test_paid_results_of_a_canceled_duplicate_are_kept(monkeypatch, con, log):
    # This time the duplicate had processed everything before the cancel landed:
    # those results are paid for, so they are used (first verdict wins).
    with FakeBatchesServer(cancel_keeps_fraction=1.0, hold_processing=True) as fake:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        build_review(con, DEMO_PAIRS)
        fake.inject("create", 500, stored=True, hide_from_list=1)
        with pytest.raises(JudgePending):
            run_judge(con, "review", fast(max_wait_s=0), log=log)
        dup, primary = fake.live_batches()
        batch_ids = {r[0] for r in con.execute("SELECT judge_batch_id FROM judge_results").fetchall()}
        assert len(_verdicts(con)) == len(DEMO_PAIRS) and batch_ids == {dup.id}
        fake.hold_processing = False
        report = run_judge(con, "review", fast(), log=log)
        assert report.requests_sent == 0 and fake.ops("create") == 2
        assert primary.processing_status == "ended"
        batch_ids = {r[0] for r in con.execute("SELECT judge_batch_id FROM judge_results").fetchall()}
        assert batch_ids == {dup.id}  # a later verdict never overwrites an earlier one
        assert fake.validation_errors == []


def test_unbilled_failures_are_resent_up_to_max_attempts(fake, con, log):
    pairs = synthetic_pairs(6)
    build_review(con, pairs)
    names = [p[1]["first_name"] for p in pairs]
    fake.script(f'"{names[0]}"', ["api_error"])
    fake.script(f'"{names[1]}"', ["expired"])
    fake.script(f'"{names[2]}"', ["canceled"])
    fake.script(f'"{names[3]}"', ["overloaded_error", "api_error"])
    fake.script(f'"{names[4]}"', ["overloaded_error", "expired", "api_error"])  # never succeeds
    report = run_judge(con, "review", fast(max_attempts=3), log=log)
    assert [len(b.requests) for b in fake.live_batches()] == [6, 5, 2]
    assert report.requests_sent == 13
    assert len(_verdicts(con)) == 5 and pairs[4][0] not in _verdicts(con)
    assert report.failed == 1 and report.failures == {"attempts_exhausted": 1}
    assert set(fake.billed().values()) == {1}
    # The next night does not try the exhausted pair again.
    again = run_judge(con, "review", fast(max_attempts=3), log=log)
    assert again.requests_sent == 0 and again.failed == 1


def test_invalid_request_is_recorded_and_never_resent(fake, con, log):
    pairs = synthetic_pairs(3)
    build_review(con, pairs)
    fake.script(f'"{pairs[0][1]["first_name"]}"', ["invalid_request_error"])
    report = run_judge(con, "review", fast(), log=log)
    assert report.requests_sent == 3 and report.failures == {"invalid_request": 1}
    row = con.execute("SELECT outcome, error_type, detail FROM judge_batch_items "
                      "WHERE outcome = 'invalid_request'").fetchall()
    assert row == [("invalid_request", "invalid_request_error", "invalid request")]
    assert run_judge(con, "review", fast(), log=log).requests_sent == 0
    assert len(fake.live_batches()) == 1


@pytest.mark.parametrize("kind", ["refusal", "max_tokens", "unparsable"])
def test_billed_failures_count_as_failed_and_are_not_resent(fake, con, log, kind):
    pairs = synthetic_pairs(3)
    build_review(con, pairs)
    fake.script(f'"{pairs[1][1]["first_name"]}"', [kind])
    report = run_judge(con, "review", fast(), log=log)
    assert report.failures == {kind: 1} and len(_verdicts(con)) == 2
    assert report.actual["output_tokens"] > 0
    assert run_judge(con, "review", fast(), log=log).requests_sent == 0
    assert set(fake.billed().values()) == {1}


def test_low_confidence_stays_in_review(fake, con, log):
    pairs = synthetic_pairs(2)
    build_review(con, pairs)
    fake.script(f'"{pairs[0][1]["first_name"]}"', [{"same_person": True, "confidence": 0.55, "reason": "thin"}])
    fake.script(f'"{pairs[1][1]["first_name"]}"', [{"same_person": False, "confidence": 0.8, "reason": "no"}])
    run_judge(con, "review", fast(min_confidence=0.8), log=log)
    assert _verdicts(con) == {pairs[0][0]: "review", pairs[1][0]: "non_match"}


def test_batch_expiring_on_the_server_is_resent(fake, con, demo, log):
    fake.hold_processing = True
    with pytest.raises(JudgePending):
        run_judge(con, demo, fast(max_wait_s=0), log=log)
    fake.advance(25 * 3600)  # 24 h pass: every request expires unprocessed
    fake.hold_processing = False
    report = run_judge(con, demo, fast(), log=log)
    first, second = fake.live_batches()
    assert first.processing_status == "ended" and {r["type"] for r in first.results.values()} == {"expired"}
    assert report.requests_sent == len(DEMO_PAIRS) and len(second.requests) == len(DEMO_PAIRS)
    _assert_clean(fake, con, len(DEMO_PAIRS))


def test_request_too_large_is_a_clear_error_and_nothing_is_stuck(fake, con, demo, log):
    fake.max_body_bytes = 2000
    with pytest.raises(JudgeError, match=r"HTTP 413.*lower judge.max_batch_bytes"):
        run_judge(con, demo, fast(), log=log)
    assert fake.live_batches() == []
    assert con.execute("SELECT status FROM judge_batches").fetchall() == [("not_created",)]
    fake.max_body_bytes = 10**9
    report = run_judge(con, demo, fast(), log=log)
    assert report.requests_sent == len(DEMO_PAIRS)
    _assert_clean(fake, con, len(DEMO_PAIRS))


def test_api_down_while_polling_saves_state(fake, con, demo, log):
    fake.inject("retrieve", 500, times=3)  # more than the SDK retries (2)
    with pytest.raises(JudgeError, match="the next run resumes"):
        run_judge(con, demo, fast(), log=log)
    report = run_judge(con, demo, fast(), log=log)
    assert report.requests_sent == 0 and fake.ops("create") == 1
    _assert_clean(fake, con, len(DEMO_PAIRS))


def test_archived_results_are_resent(fake, con, demo, log):
    fake.hold_processing = True
    with pytest.raises(JudgePending):
        run_judge(con, demo, fast(max_wait_s=0), log=log)
    fake.finish()
    fake.hold_processing = False
    fake.advance(30 * 86400)  # results are kept 29 days after creation
    report = run_judge(con, demo, fast(), log=log)
    assert "no longer exists" in log.text() and report.requests_sent == len(DEMO_PAIRS)
    assert len(_verdicts(con)) == len(DEMO_PAIRS)
