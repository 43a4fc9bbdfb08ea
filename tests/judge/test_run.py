"""run_judge end to end against the fake: what is sent, what comes back, the cache."""

import json

import pytest

from dedupe.judge import JudgeError, JudgePending, prompt, run_judge
from tests.judge.driver import DEMO_PAIRS, build_review, fast, synthetic_pairs
from tests.judge.fake_batches import FakeBatchesServer

EXPECTED = {  # decisions the fake's default_verdict produces for DEMO_PAIRS at min_confidence 0.8
    "crm:1001|billing:B-77": "match",
    "crm:1002|events:E-3": "review",  # Robert/Bob: 0.6
    "crm:1003|crm:1004": "match",
    "billing:B-12|support:S-9": "non_match",
    "support:S-10|support:S-11": "match",
    "crm:1005|events:E-8": "non_match",
    "crm:1006|billing:B-90": "match",
    "events:E-20|support:S-30": "match",
}


def _results(con):
    return {r[0]: r for r in con.execute("SELECT * FROM judge_results").fetchall()}


def test_demo_run_sends_exactly_the_review_pairs_then_nothing(fake, con, demo, log):
    report = run_judge(con, demo, fast(), log=log)

    plan_ids = {r[0] for r in con.execute("SELECT custom_id FROM judge_plan").fetchall()}
    assert len(plan_ids) == len(DEMO_PAIRS)
    assert sorted(fake.submitted_custom_ids()) == sorted(plan_ids)
    assert report.requests_sent == len(DEMO_PAIRS) and len(report.batches) == 1
    assert {k: v[-1] for k, v in _results(con).items()} == EXPECTED
    assert report.verdicts == {"match": 5, "non_match": 2, "review": 1}
    assert report.failed == 0 and not report.skipped

    cols = con.execute("DESCRIBE judge_results").fetchall()
    assert [(c[0], c[1]) for c in cols] == [
        ("pair_key", "VARCHAR"), ("judge_model", "VARCHAR"), ("judge_batch_id", "VARCHAR"),
        ("judge_custom_id", "VARCHAR"), ("llm_same_person", "BOOLEAN"), ("llm_confidence", "DOUBLE"),
        ("llm_reason", "VARCHAR"), ("decision", "VARCHAR")]
    row = _results(con)["crm:1001|billing:B-77"]
    assert row[1] == "claude-haiku-5-5" and row[2] == report.batches[0] and row[3] in plan_ids

    # Nothing identifying the pair left the machine.  The user message is the
    # only pair-specific text (everything else is one shared template) ...
    sent = [r for b in fake.live_batches() for r in b.requests]
    templates = {json.dumps({k: v for k, v in r["params"].items() if k != "messages"}) for r in sent}
    assert len(templates) == 1
    texts = " ".join(r["params"]["messages"][0]["content"] for r in sent)
    # ... and holds no pair key, source name or record id, and no unsent field.
    for key, _, _ in DEMO_PAIRS:
        for token in key.replace("|", ":").split(":"):
            assert token not in texts and token not in json.dumps([r["custom_id"] for r in sent])
    lines = "\n".join(r["params"]["messages"][0]["content"] for r in sent).splitlines()
    records = [json.loads(line.split(": ", 1)[1]) for line in lines if line.startswith("Record ")]
    assert len(records) == 2 * len(DEMO_PAIRS)
    assert set().union(*records) <= set(fast().fields)
    assert "1 High St" not in texts and "1980-02-01" not in texts  # street, date_of_birth: not sent
    assert "temperature" not in json.dumps(sent)

    calls = len(fake.calls)
    again = run_judge(con, demo, fast(), log=log)
    assert again.requests_sent == 0 and again.cache_hits == len(DEMO_PAIRS) and again.batches == []
    assert len(fake.calls) == calls  # not a single HTTP call
    assert {k: v[-1] for k, v in _results(con).items()} == EXPECTED


def test_results_are_joined_on_custom_id_not_order(fake, con, log):
    pairs = synthetic_pairs(40)
    build_review(con, pairs)
    # The verdict names the pair it is about, so a mix-up would show.
    fake.responder = lambda a, b: {"same_person": True, "confidence": 0.99,
                                   "reason": "|".join(sorted([a["first_name"], b["first_name"]]))}
    run_judge(con, "review", fast(), log=log)
    results = _results(con)
    assert len(results) == 40
    for key, left, right in pairs:
        assert results[key][6] == "|".join(sorted([left["first_name"], right["first_name"]]))


def test_changed_sent_field_is_rejudged_unsent_field_is_not(fake, con, demo, log):
    run_judge(con, demo, fast(), log=log)
    con.execute("UPDATE review SET l_email = 'john.smith@acme.com' WHERE pair_key = 'crm:1001|billing:B-77'")
    con.execute("UPDATE review SET r_street = '2 Low St' WHERE pair_key = 'billing:B-12|support:S-9'")
    report = run_judge(con, demo, fast(), log=log)
    assert report.requests_sent == 1 and report.cache_hits == len(DEMO_PAIRS) - 1
    assert len(fake.live_batches()) == 2
    assert "john.smith@acme.com" in json.dumps(fake.live_batches()[-1].requests)


def test_identical_content_shares_one_request(fake, con, log):
    left, right = DEMO_PAIRS[0][1], DEMO_PAIRS[0][2]
    build_review(con, [("a:1|b:1", left, right), ("a:2|b:2", right, left)])  # same people, swapped sides
    report = run_judge(con, "review", fast(), log=log)
    assert report.requests_sent == 1 and len(_results(con)) == 2


def test_pending_after_max_wait_then_resume_without_resubmitting(fake, con, demo, log):
    fake.hold_processing = True
    with pytest.raises(JudgePending, match="next `dedupe run` resumes") as exc:
        run_judge(con, demo, fast(max_wait_s=0), log=log)
    assert exc.value.report.requests_sent == len(DEMO_PAIRS)
    assert con.execute("SELECT count(*) FROM judge_results").fetchone()[0] == 0
    assert "waiting for 1 batch(es): 8 processing" in log.text()
    batch_id = exc.value.report.batches[0]

    with pytest.raises(JudgePending):  # still held: polls, does not resubmit
        run_judge(con, demo, fast(max_wait_s=0), log=log)
    fake.hold_processing = False
    report = run_judge(con, demo, fast(), log=log)
    assert fake.ops("create") == 1 and report.requests_sent == 0 and report.batches == [batch_id]
    assert {k: v[-1] for k, v in _results(con).items()} == EXPECTED
    assert {v[2] for v in _results(con).values()} == {batch_id}


def test_batches_are_split_by_count_and_bytes(fake, con, log):
    build_review(con, synthetic_pairs(7))
    report = run_judge(con, "review", fast(max_batch_requests=3), log=log)
    assert [len(b.requests) for b in fake.live_batches()] == [3, 3, 1] and len(report.batches) == 3
    build_review(con, synthetic_pairs(4, prefix="other"))
    per_request = con.execute("SELECT max(request_bytes) FROM judge_plan").fetchone()[0]
    run_judge(con, "review", fast(max_batch_bytes=2 * per_request + 100), log=log)
    assert [len(b.requests) for b in fake.live_batches()][3:] == [2, 2]
    assert len(_results(con)) == 4


def test_tool_mode_end_to_end(fake, con, demo, log):
    report = run_judge(con, demo, fast(output_mode="tool"), log=log)
    assert report.verdicts == {"match": 5, "non_match": 2, "review": 1}
    params = fake.live_batches()[0].requests[0]["params"]
    assert params["tool_choice"]["name"] == prompt.TOOL_NAME and "output_config" not in params


def test_actual_usage_and_cost_are_recorded(monkeypatch, con, log):
    with FakeBatchesServer(min_cacheable_tokens=0) as fake:  # make the rubric cacheable
        monkeypatch.setenv("ANTHROPIC_BASE_URL", fake.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        build_review(con, DEMO_PAIRS)
        report = run_judge(con, "review", fast(), log=log)
        lines = [r["message"]["usage"] for b in fake.live_batches() for r in b.results.values()]
        assert fake.validation_errors == []
    a = report.actual
    assert a["input_tokens"] == sum(u["input_tokens"] for u in lines)
    assert a["output_tokens"] == sum(u["output_tokens"] for u in lines)
    assert a["cache_creation_input_tokens"] > 0 and a["cache_read_input_tokens"] > 0
    assert 0 < a["cost_usd"] < report.estimated["max_cost_usd"]
    stored = con.execute("SELECT sum(cost_usd) FROM judge_batch_items").fetchone()[0]
    assert stored == pytest.approx(a["cost_usd"], abs=1e-6)


def test_skipped_without_key_but_cached_verdicts_apply(fake, con, demo, log, monkeypatch):
    run_judge(con, demo, fast(), log=log)
    con.execute("UPDATE review SET l_email = 'new@acme.com' WHERE pair_key = 'crm:1001|billing:B-77'")
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    calls = len(fake.calls)
    lines = []
    report = run_judge(con, demo, fast(backend="auto"), log=lines.append)
    assert len(lines) == 1 and lines[0].startswith("judge skipped: no ANTHROPIC_API_KEY; 1 review pairs would")
    assert "(est. $" in lines[0]
    assert report.skipped and report.skip_reason == "no ANTHROPIC_API_KEY" and report.requests_sent == 0
    assert len(_results(con)) == len(DEMO_PAIRS) - 1  # everything but the changed pair
    assert len(fake.calls) == calls


def test_backend_none_never_sends(fake, con, demo):
    lines = []
    report = run_judge(con, demo, fast(backend="none"), log=lines.append)
    assert report.skipped and len(lines) == 1 and 'judge.backend = "none"' in lines[0]
    assert fake.calls == [] and len(_results(con)) == 0


def test_backend_anthropic_without_key_is_an_error(fake, con, demo, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(JudgeError, match="ANTHROPIC_API_KEY is not set"):
        run_judge(con, demo, fast(), log=lambda _: None)
    assert fake.calls == []


def test_empty_review_table(fake, con, log):
    build_review(con, [])
    report = run_judge(con, "review", fast(), log=log)
    assert report.pairs_in_review == 0 and report.requests_sent == 0 and fake.calls == []
    assert con.execute("SELECT count(*) FROM judge_results").fetchone()[0] == 0
