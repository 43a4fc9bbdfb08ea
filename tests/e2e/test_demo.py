"""Whole runs of the CLI on the bundled demo fixtures: quality against truth, and the LLM judge
against the local fake Message Batches server (the real SDK over HTTP)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb

from tests.judge.fake_batches import FakeBatchesServer

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "fixtures" / "demo"


def _config(tmp_path: Path, judge: str = "") -> Path:
    text = (ROOT / "configs" / "demo.toml").read_text(encoding="utf-8")
    text = text.replace("../fixtures/demo/", f"{DEMO.as_posix()}/")
    text = text.replace('output_dir = "../out/demo"', 'output_dir = "out"')
    text = text.replace('state = "../out/demo/state.duckdb"', 'state = "out/state.duckdb"')
    path = tmp_path / "demo.toml"
    path.write_text(text + "\n" + judge, encoding="utf-8")
    return path


def _dedupe(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    return subprocess.run([sys.executable, "-m", "dedupe.cli", *args], capture_output=True, text=True,
                          env={**base, **(env or {})}, cwd=ROOT, timeout=300)


def test_demo_run_without_a_key_meets_quality_and_says_what_it_skipped(tmp_path):
    config = _config(tmp_path)
    done = _dedupe("run", str(config))
    assert done.returncode == 0, done.stderr
    assert "judge skipped" in done.stderr and "review pairs would have been judged" in done.stderr
    out = tmp_path / "out"
    for name in ("clusters.csv", "golden_records.csv", "golden_records.parquet", "pairs.parquet",
                 "run_report.json", "model.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob(".staging-*"))

    done = _dedupe("evaluate", str(config), "--truth", str(DEMO / "truth.csv"))
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "evaluation.json").read_text())
    model = result["model_and_judge"]["all"]
    assert model["precision"] >= 0.95 and model["recall"] >= 0.92 and model["f1"] >= 0.93
    assert result["review_oracle"]["all"]["f1"] >= model["f1"]
    assert result["review_pairs_per_100_records"] <= 5
    assert result["clusters"]["largest_cluster"] <= 20
    assert result["blocking"]["recall"] >= 0.99
    # Review pairs whose verdict could not change a cluster were kept from the judge, say so, and
    # were decided as unjudged review pairs are (a weak link at the fallback threshold, else none).
    report = json.loads((out / "run_report.json").read_text())
    skipped = duckdb.connect().execute(f"""
        SELECT count(*), bool_and((decision = 'match') = (match_probability >= 0.95))
        FROM '{out / 'pairs.parquet'}' WHERE judge_skipped""").fetchall()[0]
    assert skipped[0] == report["review_skipped_same_clusters"] > 0 and skipped[1]

    # Every input record appears exactly once in the crosswalk; golden records cover every cluster.
    con = duckdb.connect()
    n_records = sum(1 for _ in (DEMO / "crm.csv").open()) + sum(1 for _ in (DEMO / "partner.csv").open()) - 2
    crosswalk = con.execute(f"SELECT count(*), count(DISTINCT (source, record_id)), count(DISTINCT cluster_id) "
                            f"FROM '{out / 'clusters.csv'}'").fetchall()[0]
    assert crosswalk[0] == crosswalk[1] == n_records
    golden = con.execute(f"SELECT count(*), sum(record_count) FROM '{out / 'golden_records.parquet'}'").fetchall()[0]
    assert golden == (crosswalk[2], n_records)


def test_review_budget_keeps_the_likeliest_pairs_and_lets_the_model_decide_the_rest(tmp_path):
    # A budget of 1 review pair per 100 records, far below what the demo's band holds.
    config = _config(tmp_path, "[thresholds]\nreview_budget = 1\n")
    done = _dedupe("run", str(config))
    assert done.returncode == 0, done.stderr
    assert "review band over budget" in done.stderr
    report = json.loads((tmp_path / "out" / "run_report.json").read_text())
    cap = int(report["records_total"] / 100)
    assert report["zones_before_judge"]["review"] == cap
    assert report["review_cut_by_budget"] > 0
    con = duckdb.connect()
    pairs = f"'{tmp_path / 'out' / 'pairs.parquet'}'"
    kept = con.execute(f"SELECT min(match_probability) FROM {pairs} WHERE decision = 'review'").fetchall()[0][0]
    # Every pair the cap took out of the band is marked, was less likely than every pair it kept,
    # and was decided by the model at the fallback threshold.
    cut = con.execute(f"""
        SELECT count(*), max(match_probability), bool_and((decision = 'match') = (match_probability >= 0.95))
        FROM {pairs} WHERE over_budget""").fetchall()[0]
    assert cut[0] == report["review_cut_by_budget"] and cut[1] <= kept and cut[2]


def _truth_responder(config: Path):
    """A judge that knows the truth: it looks each serialised record up by its content."""
    out = config.parent / "out"
    con = duckdb.connect(str(out / "state.duckdb"), read_only=True)
    rows = con.execute(f"""
        SELECT s.first_name, s.last_name, s.email, s.phone, s.company, t.entity_id
        FROM std s JOIN read_csv('{DEMO / 'truth.csv'}', all_varchar = true) t
          ON t.source = s.source AND t.record_id = s.record_id""").fetchall()
    con.close()
    entity = {}
    for *key, ent in rows:
        entity.setdefault(tuple(key), set()).add(ent)

    def key_of(rec: dict) -> tuple:
        return tuple(rec.get(f) for f in ("first_name", "last_name", "email", "phone", "company"))

    def respond(a: dict, b: dict) -> dict:
        same = bool(entity.get(key_of(a), set()) & entity.get(key_of(b), set()))
        return {"same_person": same, "confidence": 0.97, "reason": "truth oracle"}
    return respond


def test_judge_sends_exactly_the_review_pairs_applies_verdicts_and_never_pays_twice(tmp_path):
    judge = "[judge]\nbackend = \"auto\"\npoll_interval_s = 0.01\nmax_wait_s = 60\n"
    config = _config(tmp_path, judge)
    offline = _dedupe("run", str(config))  # no key: the judge is skipped, review pairs stay
    assert offline.returncode == 0, offline.stderr
    out = tmp_path / "out"
    before = duckdb.connect().execute(
        f"SELECT source_l, record_id_l, source_r, record_id_r, match_probability FROM '{out / 'pairs.parquet'}' "
        "WHERE decision = 'review'").fetchall()
    assert before, "the demo must have a review band for this test to mean anything"
    assert _zones_published(out) == json.loads((out / "run_report.json").read_text())["zones"]
    f1_before = json.loads(_dedupe("evaluate", str(config), "--truth", str(DEMO / "truth.csv"),
                                   "--json").stdout.split("\nwritten:")[0])["model_and_judge"]["all"]["f1"]

    with FakeBatchesServer() as fake:
        fake.responder = _truth_responder(config)
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake.url}
        first = _dedupe("run", str(config), env=env)
        assert first.returncode == 0, first.stderr
        creates = [c for c in fake.calls if c[0] == "create"]
        assert len(creates) == 1
        sent = {custom_id for _batch, custom_id, _outcome in fake.processed}
        report = json.loads((out / "run_report.json").read_text())
        assert report["judge"]["requests_sent"] == len(sent) > 0

        pairs = duckdb.connect().execute(
            f"SELECT source_l, record_id_l, source_r, record_id_r, decision, decided_by, judge_custom_id, "
            f"llm_same_person FROM '{out / 'pairs.parquet'}' WHERE decided_by = 'llm'").fetchall()
        judged = {p[:4] for p in pairs}
        assert judged == {b[:4] for b in before}  # exactly the review band was judged...
        assert {p[6] for p in pairs} == sent  # ...by exactly the requests the server received
        assert all(p[4] == ("match" if p[7] else "non_match") for p in pairs)
        assert _zones_published(out) == report["zones"] != report["zones_before_judge"]

        calls_before = len(fake.calls)
        second = _dedupe("run", str(config), env=env)
        assert second.returncode == 0, second.stderr
        assert len(fake.calls) == calls_before  # unchanged data: zero requests, zero HTTP calls
        again = json.loads((out / "run_report.json").read_text())["judge"]
        assert again["requests_sent"] == 0 and again["cache_hits"] == len(sent)
        assert fake.validation_errors == []

    evaluation = _dedupe("evaluate", str(config), "--truth", str(DEMO / "truth.csv"), "--json")
    after = json.loads(evaluation.stdout.split("\nwritten:")[0])["model_and_judge"]["all"]
    assert after["f1"] > f1_before  # a correct judge on the review band improves the clusters


def _zones_published(out: Path) -> dict[str, int]:
    """Pairs per decision in pairs.parquet: what the run report's (and summary's) zones must say."""
    counted = dict(duckdb.connect().execute(
        f"SELECT decision, count(*) FROM '{out / 'pairs.parquet'}' GROUP BY 1").fetchall())
    return {k: counted.get(k, 0) for k in ("match", "review", "non_match")}


def test_a_run_waiting_on_its_batch_exits_75_and_the_next_run_resumes_it(tmp_path):
    config = _config(tmp_path, "[judge]\nbackend = \"anthropic\"\npoll_interval_s = 0.01\nmax_wait_s = 0.2\n")
    with FakeBatchesServer() as fake:
        fake.hold_processing = True  # the batch stays in progress, as a real one may for hours
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake.url}
        waiting = _dedupe("run", str(config), env=env)
        assert waiting.returncode == 75, waiting.stderr
        assert "resumes" in waiting.stderr
        assert not (tmp_path / "out" / "clusters.csv").exists()  # nothing half-published
        runs = json.loads(_dedupe("runs", str(config), "--json").stdout)
        assert [(r["status"], r["exit_code"]) for r in runs] == [("pending", 75)]

        fake.hold_processing = False
        done = _dedupe("run", str(config), env=env)
        assert done.returncode == 0, done.stderr
        assert len([c for c in fake.calls if c[0] == "create"]) == 1  # resumed, not resubmitted
        report = json.loads((tmp_path / "out" / "run_report.json").read_text())
        assert report["judge"]["requests_sent"] == 0 and report["judge"]["applied"]
