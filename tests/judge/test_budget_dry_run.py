"""Budget refusal (nothing reaches the server) and the dry run (exactly what would be sent)."""

import json

import pytest

from dedupe.judge import JudgeBudgetError, JudgePending, dry_run, run_judge
from tests.judge.driver import DEMO_PAIRS, build_review, fast, synthetic_pairs
from tests.judge.fake_batches import validate_request_item


def _journal_rows(con):
    return sum(con.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
               for t in ("judge_requests", "judge_batches", "judge_batch_items", "judge_batch_pairs"))


@pytest.mark.parametrize("limit", [{"max_requests": 7}, {"max_cost_usd": 0.0001}])
def test_budget_refusal_sends_nothing(fake, con, demo, log, limit):
    with pytest.raises(JudgeBudgetError) as exc:
        run_judge(con, demo, fast(**limit), log=log)
    message = str(exc.value)
    assert "\n" not in message and message.endswith("nothing was sent")
    assert ("max_requests = 7" in message) if "max_requests" in limit else ("max_cost_usd = $0.00" in message)
    assert fake.calls == []  # not even a list() or a retrieve
    assert _journal_rows(con) == 0
    assert log[0].startswith("judge estimate: 8 requests")


def test_a_refused_night_still_collects_the_batch_an_earlier_night_left_open(fake, con, log):
    build_review(con, synthetic_pairs(5))
    fake.hold_processing = True
    with pytest.raises(JudgePending):  # night 1 exits 75 with its batch in flight
        run_judge(con, "review", fast(max_wait_s=0), log=log)
    fake.hold_processing = False
    fake.finish()
    creates = fake.ops("create")
    # Night 2 brings far more new pairs than the budget allows: refused, but the paid batch is collected.
    build_review(con, synthetic_pairs(5) + synthetic_pairs(400, "new"))
    with pytest.raises(JudgeBudgetError, match="nothing was sent"):
        run_judge(con, "review", fast(max_cost_usd=0.01), log=log)
    assert fake.ops("create") == creates  # nothing new submitted
    assert con.execute("SELECT count(*) FROM judge_cache").fetchone()[0] == 5
    assert con.execute("SELECT status FROM judge_batches").fetchall() == [("collected",)]


def test_dry_run_writes_exactly_what_a_run_sends(fake, con, demo, tmp_path, log, monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")  # a dry run needs no key
    out = tmp_path / "out" / "requests.jsonl"
    report = dry_run(con, demo, fast(), out, log=log)
    assert fake.calls == [] and _journal_rows(con) == 0
    assert report.skipped and report.skip_reason == "dry run" and report.requests_sent == 0
    assert report.estimated["requests"] == len(DEMO_PAIRS) and report.estimated["cost_usd"] > 0
    assert "nothing sent" in log[0] and log[1].startswith("judge estimate:")

    raw = out.read_text()
    assert raw.endswith("\n") and "\n\n" not in raw
    items = [json.loads(line) for line in raw.splitlines()]
    for item in items:
        assert validate_request_item(item) is None  # the SDK's batch_create_params.Request

    monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
    run_judge(con, demo, fast(), log=log)
    assert fake.live_batches()[0].requests == items  # byte for byte the same requests

    dry_run(con, demo, fast(), out, log=log)  # after the run: everything is cached
    assert out.read_text() == ""


def test_dry_run_notes_a_budget_a_real_run_would_refuse(con, demo, tmp_path, log):
    dry_run(con, demo, fast(max_requests=1), tmp_path / "r.jsonl", log=log)
    assert any(line.startswith("note: a real run would refuse") for line in log)
    assert len((tmp_path / "r.jsonl").read_text().splitlines()) == len(DEMO_PAIRS)
