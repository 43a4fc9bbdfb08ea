"""Nightly reconciliation: stable ids, merges and splits, incremental == full, crash safety, the lock,
and analyst decisions winning on the next run. Whole runs of the real CLI on the demo fixtures."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from dedupe import decisions

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "fixtures" / "demo"
OUTPUTS = ("clusters.csv", "golden_records.csv", "id_history.csv")


def make_project(folder: Path) -> Path:
    """A copy of the demo exports and a config using them, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in ("crm.csv", "partner.csv"):
        shutil.copy(DEMO / f, folder / f)
    text = (ROOT / "configs" / "demo.toml").read_text(encoding="utf-8")
    text = text.replace("../fixtures/demo/", "").replace('"../out/demo/state.duckdb"', '"out/state.duckdb"')
    text = text.replace('output_dir = "../out/demo"', 'output_dir = "out"')
    (folder / "demo.toml").write_text(text, encoding="utf-8")
    return folder


@pytest.fixture()
def project(tmp_path):
    return make_project(tmp_path)


def dedupe(project: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ANTHROPIC_", "DEDUPE_"))}
    return subprocess.run([sys.executable, "-m", "dedupe.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, env={**base, **(env or {})}, timeout=300)


def run(project: Path, *extra: str, env: dict | None = None) -> dict:
    done = dedupe(project, "run", str(project / "demo.toml"), *extra, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads((project / "out" / "run_report.json").read_text())


def clusters(project: Path) -> dict[tuple[str, str], str]:
    with (project / "out" / "clusters.csv").open() as f:
        return {(r["source"], r["record_id"]): r["cluster_id"] for r in csv.DictReader(f)}


def partition(assignment: dict) -> set[frozenset]:
    groups: dict[str, set] = {}
    for key, cid in assignment.items():
        groups.setdefault(cid, set()).add(key)
    return {frozenset(g) for g in groups.values()}


def edit_crm(project: Path, record_id: str, **values: str) -> None:
    path = project / "crm.csv"
    rows = list(csv.DictReader(path.open(encoding="utf-8")))
    for row in rows:
        if row["Contact ID"] == record_id:
            row.update(values)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def crm_row(project: Path, record_id: str) -> dict:
    return next(r for r in csv.DictReader((project / "crm.csv").open(encoding="utf-8"))
                if r["Contact ID"] == record_id)


def refused(project: Path, *args: str) -> str:
    """Run the CLI expecting exit 2; check it said one error line and left the outputs as they
    were; return that line."""
    before = {name: (project / "out" / name).read_bytes() for name in OUTPUTS}
    done = dedupe(project, "run", *args)
    assert done.returncode == 2, done.stderr
    problem = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(problem) == 1 and "Traceback" not in done.stderr
    assert {name: (project / "out" / name).read_bytes() for name in OUTPUTS} == before
    return problem[0]


def history(project: Path) -> list[dict]:
    return list(csv.DictReader((project / "out" / "id_history.csv").open()))


def test_ids_stay_stable_when_nothing_changes_and_the_second_night_reuses_work(project):
    first = run(project)
    before = clusters(project)
    second = run(project)
    assert clusters(project) == before
    assert second["reuse"]["standardise"]["standardised"] == 0
    assert second["reuse"]["compare"]["compared"] == 0 and second["reuse"]["model"] == "reused"
    assert second["generation"] == first["generation"] + 1
    assert [h for h in history(project) if h["generation"] == str(second["generation"])] == []
    runs = dedupe(project, "runs", str(project / "demo.toml"))
    assert runs.returncode == 0 and runs.stdout.count(" ok ") == 2
    # Inputs identical to the last run's are reported: on a schedule, an export that did not refresh.
    assert first["unchanged_inputs"] == []
    assert second["unchanged_inputs"] == sorted(str(project / f) for f in ("crm.csv", "partner.csv"))
    edit_crm(project, crm_row(project, "C000001")["Contact ID"], **{"Job Title": "Night Three"})
    done = dedupe(project, "run", str(project / "demo.toml"))
    assert done.returncode == 0
    assert json.loads((project / "out" / "run_report.json").read_text())["unchanged_inputs"] == \
        [str(project / "partner.csv")]
    assert f"warning: {project / 'partner.csv'} has the same size and modification time" in done.stderr
    assert "crm.csv has the same size" not in done.stderr


def test_merge_keeps_the_larger_clusters_id_and_split_keeps_the_majoritys(project):
    run(project)
    night1 = clusters(project)
    groups = partition(night1)
    crm_in = lambda g: sorted(k[1] for k in g if k[0] == "crm")
    big = next(g for g in sorted(groups, key=lambda g: (-len(g), sorted(g))) if len(g) >= 3 and crm_in(g))
    single = next(g for g in sorted(groups, key=sorted) if len(g) == 1 and crm_in(g))
    big_id = night1[next(iter(big))]
    lone = crm_in(single)[0]
    lone_id = night1[("crm", lone)]
    twin = crm_row(project, crm_in(big)[0])

    # Night 2: the lone record becomes a copy of a member of the big cluster: they merge.
    edit_crm(project, lone, **{k: v for k, v in twin.items() if k not in ("Contact ID",)})
    run(project)
    night2 = clusters(project)
    assert night2[("crm", lone)] == big_id  # the larger previous cluster's id survives
    events = {(h["cluster_id"], h["event"], h["other_id"]) for h in history(project)}
    assert (lone_id, "merged_into", big_id) in events

    # Night 3: that record becomes someone else entirely: it splits off, the majority keeps the id.
    edit_crm(project, lone, **{"First Name": "Zebulon", "Last Name": "Quixotewright",
                               "Email": "zq@nowhere-in-particular.org", "Phone": "", "Company": "Solo"})
    run(project)
    night3 = clusters(project)
    assert all(night3[k] == big_id for k in big)
    new_id = night3[("crm", lone)]
    assert new_id not in (big_id, lone_id)  # new person, new id; retired ids are never reused
    events = {(h["cluster_id"], h["event"], h["other_id"]) for h in history(project)}
    assert (new_id, "split_from", big_id) in events and (new_id, "created", "") in events


def test_incremental_and_full_runs_give_the_same_clusters(project):
    run(project)
    rows = list(csv.DictReader((project / "crm.csv").open(encoding="utf-8")))
    # change two records, delete one, add a duplicate of a third
    edit_crm(project, rows[0]["Contact ID"], **{"Job Title": "Chief Everything Officer"})
    edit_crm(project, rows[1]["Contact ID"], **{"Last Name": rows[1]["Last Name"] + "e"})
    rows = list(csv.DictReader((project / "crm.csv").open(encoding="utf-8")))
    rows = [r for r in rows if r["Contact ID"] != rows[2]["Contact ID"]] + [dict(rows[3], **{"Contact ID": "C-NEW-1"})]
    with (project / "crm.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    shutil.copytree(project / "out", project / "out_copy", symlinks=True)
    incremental = run(project)
    inc_pairs = _pairs(project)
    inc_golden = (project / "out" / "golden_records.csv").read_bytes()
    assert 0 < incremental["reuse"]["standardise"]["standardised"] < 10
    # only the part of the link graph the changes reach is clustered again
    assert 0 < incremental["reuse"]["cluster"]["reclustered"] < incremental["records_total"] / 10
    inc = clusters(project)
    shutil.rmtree(project / "out")
    shutil.move(project / "out_copy", project / "out")
    full = run(project, "--full")
    assert full["reuse"]["standardise"]["reused"] == 0
    assert partition(clusters(project)) == partition(inc)
    assert clusters(project) == inc  # the same ids too
    assert _pairs(project) == inc_pairs  # every pair's levels, score and decision
    assert (project / "out" / "golden_records.csv").read_bytes() == inc_golden


def test_a_retrain_killed_while_storing_its_model_leaves_the_old_model_and_frequencies_whole(project):
    # Phones move between records, so a retrain counts new term frequencies. Killed after counting
    # them but before storing its weights, it must leave the old model with the old frequencies:
    # the next incremental run then equals --full.
    run(project)
    rows = list(csv.DictReader((project / "crm.csv").open(encoding="utf-8")))
    for i in range(0, 40, 2):
        edit_crm(project, rows[i]["Contact ID"], Phone=rows[i + 1]["Phone"])
    done = dedupe(project, "run", str(project / "demo.toml"), "--retrain",
                  env={"DEDUPE_CRASH_AFTER": "term_frequencies"})
    assert done.returncode == -9
    shutil.copytree(project / "out", project / "out_copy", symlinks=True)
    run(project)
    incremental = _pairs(project)
    shutil.rmtree(project / "out")
    shutil.move(project / "out_copy", project / "out")
    run(project, "--full")
    assert _pairs(project) == incremental


def _pairs(project):
    return duckdb.connect().execute(f"SELECT * FROM '{project / 'out' / 'pairs.parquet'}' ORDER BY ALL").fetchall()


@pytest.mark.parametrize("stage", ["standardise", "block", "compare", "cluster", "golden", "checkpointed",
                                   "published"])
def test_a_run_killed_at_any_stage_then_rerun_gives_the_uninterrupted_outputs(tmp_path, stage):
    # "cluster" and "golden" kill the run while pairs.parquet is being written in the background;
    # "checkpointed" once the background checkpoint has put the night's tables in the state file,
    # while the outputs are still being written and before the run is recorded as done.
    a, b = make_project(tmp_path / "a"), make_project(tmp_path / "b")
    run(a)
    run(b)
    # Night 2 on both: a runs through; b is SIGKILLed after `stage`, then rerun.
    for d in (a, b):
        edit_crm(d, crm_row(d, "C000001")["Contact ID"], **{"Job Title": "Night Two"})
    run(a)
    killed = dedupe(b, "run", str(b / "demo.toml"), env={"DEDUPE_CRASH_AFTER": stage})
    assert killed.returncode == -9
    if stage != "published":
        assert (b / "out" / "run_report.json").is_file()  # the previous night's outputs are intact
    run(b)
    for name in OUTPUTS:
        assert (a / "out" / name).read_bytes() == (b / "out" / name).read_bytes(), name
    con = duckdb.connect()
    pa_, pb = (con.execute(f"SELECT * EXCLUDE (judge_batch_id) FROM '{d / 'out' / 'pairs.parquet'}' "
                           "ORDER BY ALL").fetchall() for d in (a, b))
    assert pa_ == pb
    runs = json.loads(dedupe(b, "runs", str(b / "demo.toml"), "--json").stdout)
    assert [r["status"] for r in runs] == ["ok", "killed", "ok"]


def test_a_run_killed_inside_standardise_leaves_no_stale_shared_contact_flags(project):
    # Night 2 puts C000002 on C000001's line, so the line becomes shared. The run dies after std's
    # rows changed and before their flags were refreshed; the rerun must flag it as a rebuild does.
    run(project)
    one, two = crm_row(project, "C000001"), crm_row(project, "C000002")
    assert one["First Name"][0] != two["First Name"][0] and one["Phone"] != two["Phone"]
    edit_crm(project, "C000002", Phone=one["Phone"])
    killed = dedupe(project, "run", str(project / "demo.toml"), env={"DEDUPE_CRASH_AFTER": "standardise_rows"})
    assert killed.returncode == -9

    def flags() -> list[tuple]:
        con = duckdb.connect(str(project / "out" / "state.duckdb"), read_only=True)
        try:
            return con.execute("SELECT source, record_id, phone_shared, email_shared, compare_key "
                               "FROM std ORDER BY ALL").fetchall()
        finally:
            con.close()
    run(project)
    after_rerun = flags()
    run(project, "--full")
    assert after_rerun == flags()
    assert {r[1]: r[2] for r in after_rerun if r[0] == "crm" and r[1] in ("C000001", "C000002")} == \
        {"C000001": True, "C000002": True}


def test_a_second_concurrent_run_is_refused_and_a_stale_lock_is_taken_over(project):
    run(project)
    lock = project / "out" / "state.duckdb.lock"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        import socket
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname(), "started_at": "now"}))
        refused = dedupe(project, "run", str(project / "demo.toml"))
        assert refused.returncode == 1
        assert f"another dedupe run (pid {sleeper.pid}" in refused.stderr
        assert (project / "out" / "run_report.json").is_file()
    finally:
        sleeper.kill()
        sleeper.wait()
    # The holder is gone: its lock is stale, and the next run takes it over.
    taken = dedupe(project, "run", str(project / "demo.toml"))
    assert taken.returncode == 0, taken.stderr
    assert "stale lock" in taken.stderr and not lock.exists()


def test_analyst_decisions_win_on_the_next_run_and_are_never_sent_to_the_llm(project):
    run(project)
    night1 = clusters(project)
    groups = sorted((sorted(g) for g in partition(night1) if len(g) == 2), key=lambda g: g)
    split_pair = groups[0]
    singles = sorted(sorted(g)[0] for g in partition(night1) if len(g) == 1)
    merge_pair = (singles[0], singles[1])
    con = duckdb.connect(str(project / "out" / "state.duckdb"))
    decisions.ensure_schema(con)
    decisions.record(con, "reject_link", [tuple(split_pair)], reviewer="ann", note="different people")
    decisions.record(con, "merge", [merge_pair], reviewer="ann")
    con.close()
    report = run(project)
    after = clusters(project)
    assert after[split_pair[0]] != after[split_pair[1]]
    assert after[merge_pair[0]] == after[merge_pair[1]]
    assert report["reuse"]["analyst_decisions"] == 2
    pairs = duckdb.connect().execute(
        f"SELECT decided_by, decision FROM '{project / 'out' / 'pairs.parquet'}' "
        f"WHERE (source_l, record_id_l, source_r, record_id_r) IN "
        f"(('{split_pair[0][0]}', '{split_pair[0][1]}', '{split_pair[1][0]}', '{split_pair[1][1]}'), "
        f" ('{split_pair[1][0]}', '{split_pair[1][1]}', '{split_pair[0][0]}', '{split_pair[0][1]}'))").fetchall()
    assert pairs == [("analyst", "non_match")]


def test_new_standardisation_rules_recompute_what_depends_on_them_and_retrain(project, monkeypatch):
    # In process, so the rules' version can be bumped as an upgrade of dedupe would.
    import dedupe.standardise as std_module
    from dedupe.config import load_config
    from dedupe.pipeline import run as run_pipeline

    config = load_config(project / "demo.toml")
    quiet = lambda message: None  # noqa: E731
    run_pipeline(config, log=quiet)
    assert run_pipeline(config, log=quiet).report["reuse"]["model"] == "reused"
    monkeypatch.setattr(std_module, "STANDARDISE_VERSION", "next")
    reuse = run_pipeline(config, log=quiet).report["reuse"]
    assert reuse["standardise"]["reused"] == 0 and reuse["compare"]["reused"] == 0
    assert reuse["model"] == "trained"


def test_an_in_process_run_leaves_the_cycle_collector_as_it_found_it(project):
    # A run pauses Python's cycle collector (see pipeline._cycle_collector_paused); a program
    # calling it must get its collector back, after a failed run as after a good one.
    import gc

    from dedupe.config import load_config
    from dedupe.ingest import InputError
    from dedupe.pipeline import run as run_pipeline

    config = load_config(project / "demo.toml")
    quiet = lambda message: None  # noqa: E731
    assert gc.isenabled()
    run_pipeline(config, log=quiet)
    assert gc.isenabled()
    (project / "crm.csv").write_text("name\nBob\n", encoding="utf-8")  # no id column: bad input
    with pytest.raises(InputError):
        run_pipeline(config, log=quiet)
    assert gc.isenabled()
    gc.disable()
    try:  # nor does it switch on a collector its caller had switched off
        with pytest.raises(InputError):
            run_pipeline(config, log=quiet)
        assert not gc.isenabled()
    finally:
        gc.enable()


def state_rows(state: Path) -> dict[str, list]:
    """Every row of every table in a state file, in a fixed order."""
    con = duckdb.connect(str(state), read_only=True)
    try:
        tables = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall()]
        return {t: sorted(con.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}
    finally:
        con.close()


def test_a_compacted_state_keeps_every_row_and_the_next_night_publishes_the_same_outputs(tmp_path):
    a, b = make_project(tmp_path / "a"), make_project(tmp_path / "b")
    for d in (a, b):
        run(d)
        edit_crm(d, crm_row(d, "C000001")["Contact ID"], **{"Job Title": "Night Two"})
        run(d)
    state = b / "out" / "state.duckdb"
    rows, size = state_rows(state), state.stat().st_size
    done = dedupe(b, "compact", str(b / "demo.toml"))
    assert done.returncode == 0, done.stderr
    assert f"{state}: " in done.stdout and " MB -> " in done.stdout
    assert state_rows(state) == rows
    assert state.stat().st_size < size  # two nights of changes in place left space to give back
    assert sorted(p.name for p in state.parent.glob("state.duckdb*")) == ["state.duckdb"]
    # Night three on both: the compacted state gives the same outputs and keeps the run history.
    for d in (a, b):
        edit_crm(d, crm_row(d, "C000002")["Contact ID"], **{"Job Title": "Night Three"})
        run(d)
    for name in OUTPUTS:
        assert (a / "out" / name).read_bytes() == (b / "out" / name).read_bytes(), name
    runs = json.loads(dedupe(b, "runs", str(b / "demo.toml"), "--json").stdout)
    assert [r["status"] for r in runs] == ["ok", "ok", "ok"]


def test_compaction_is_refused_during_a_run_and_a_killed_one_leaves_the_state_whole(project):
    from dedupe.state import RunLock

    run(project)
    state = project / "out" / "state.duckdb"
    rows = state_rows(state)
    with RunLock(state, log=lambda message: None):  # as a run in progress holds it
        refused = dedupe(project, "compact", str(project / "demo.toml"))
    assert refused.returncode == 1 and "another dedupe run" in refused.stderr
    killed = dedupe(project, "compact", str(project / "demo.toml"), env={"DEDUPE_CRASH_AFTER": "compacted"})
    assert killed.returncode == -9  # after writing the copy, before it replaced the state
    assert (project / "out" / "state.duckdb.compact").is_file()
    assert state_rows(state) == rows
    done = dedupe(project, "compact", str(project / "demo.toml"))  # takes over the stale lock
    assert done.returncode == 0, done.stderr
    assert not (project / "out" / "state.duckdb.compact").exists()
    assert state_rows(state) == rows
    run(project)


def test_compacting_before_the_first_run_is_a_one_line_error(project):
    done = dedupe(project, "compact", str(project / "demo.toml"))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {project / 'out' / 'state.duckdb'}: no state database yet; run `dedupe run` first"


def test_a_truncated_export_is_refused_until_the_operator_allows_the_deletions(project):
    run(project)
    before = {name: (project / "out" / name).read_bytes() for name in OUTPUTS}
    full_export = (project / "crm.csv").read_text(encoding="utf-8")
    lines = full_export.splitlines(keepends=True)
    kept = lines[: 1 + (len(lines) - 1) * 6 // 10]  # the header and 60% of the rows: a broken export
    (project / "crm.csv").write_text("".join(kept), encoding="utf-8")
    missing = len(lines) - len(kept)

    problem = refused(project, str(project / "demo.toml"))
    assert "crm.csv" in problem and f"{missing:,} of the {len(lines) - 1:,} records" in problem
    assert "max_deleted_share" in problem and "--allow-deletions" in problem
    runs = json.loads(dedupe(project, "runs", str(project / "demo.toml"), "--json").stdout)
    assert [(r["status"], r["exit_code"]) for r in runs] == [("ok", 0), ("failed", 2)]

    # The full export is back the next night: nothing was retired, nobody gets a new id.
    (project / "crm.csv").write_text(full_export, encoding="utf-8")
    run(project)
    assert {name: (project / "out" / name).read_bytes() for name in ("clusters.csv", "id_history.csv")} == \
        {name: before[name] for name in ("clusters.csv", "id_history.csv")}

    # Deletions the operator confirms go through, and the ids of people who left are retired.
    (project / "crm.csv").write_text("".join(kept), encoding="utf-8")
    report = run(project, "--allow-deletions")
    assert report["records"]["crm"] == len(kept) - 1
    assert any(h["event"] == "retired" for h in history(project))


def test_a_state_with_text_compare_keys_is_rebuilt_once_and_keeps_its_model(project):
    # States written before compare keys became integers hold them as md5 text: the first run of
    # the new code re-standardises and re-compares everything once, keeps the model, and gives the
    # same clusters; the run after that reuses everything again.
    run(project)
    before = clusters(project)
    con = duckdb.connect(str(project / "out" / "state.duckdb"))
    con.execute("ALTER TABLE std ALTER compare_key SET DATA TYPE VARCHAR")
    con.execute("ALTER TABLE comparisons ALTER key_l SET DATA TYPE VARCHAR")
    con.execute("ALTER TABLE comparisons ALTER key_r SET DATA TYPE VARCHAR")
    con.close()
    upgraded = run(project)
    assert upgraded["reuse"]["standardise"]["reused"] == 0
    assert upgraded["reuse"]["compare"]["reused"] == 0
    assert upgraded["reuse"]["model"] == "reused"
    assert clusters(project) == before
    after = run(project)
    assert after["reuse"]["standardise"]["standardised"] == 0 and after["reuse"]["compare"]["compared"] == 0


def test_a_source_dropped_or_renamed_in_the_config_is_refused_like_a_mass_deletion(project):
    run(project)
    conf = project / "demo.toml"
    conf.write_text(conf.read_text(encoding="utf-8").replace('name = "partner"', 'name = "partner_v2"'),
                    encoding="utf-8")
    problem = refused(project, str(conf))
    assert "source 'partner' is no longer configured" in problem and "--allow-deletions" in problem
    assert dedupe(project, "run", str(conf), "--allow-deletions").returncode == 0


def test_allowed_deletions_survive_a_run_that_waits_on_its_batch(project):
    from tests.judge.fake_batches import FakeBatchesServer

    conf = project / "demo.toml"
    conf.write_text(conf.read_text(encoding="utf-8") +
                    '\n[judge]\nbackend = "auto"\npoll_interval_s = 0.01\nmax_wait_s = 0.2\n', encoding="utf-8")
    run(project)  # no API key: the judge is skipped, the review band waits for it
    lines = (project / "crm.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    (project / "crm.csv").write_text("".join(lines[: 1 + (len(lines) - 1) * 6 // 10]), encoding="utf-8")
    with FakeBatchesServer() as fake:
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake.url}
        fake.hold_processing = True
        waiting = dedupe(project, "run", str(conf), "--allow-deletions", env=env)
        assert waiting.returncode == 75, waiting.stderr
        fake.hold_processing = False
        resumed = dedupe(project, "run", str(conf), env=env)  # the scheduled run: no flag
        assert resumed.returncode == 0, resumed.stderr
        assert "deletions allowed by an earlier run" in resumed.stderr
    assert any(h["event"] == "retired" for h in history(project))
    # Published: the allowance is used up, and a new truncation is refused again.
    (project / "crm.csv").write_text("".join(lines[: 1 + (len(lines) - 1) * 3 // 10]), encoding="utf-8")
    assert dedupe(project, "run", str(conf)).returncode == 2


def test_a_verdict_already_paid_for_still_decides_a_pair_the_review_budget_cuts(project):
    from tests.judge.fake_batches import FakeBatchesServer

    conf = project / "demo.toml"
    base = conf.read_text(encoding="utf-8")

    def configure(budget: float) -> None:
        conf.write_text(base + f"\n[thresholds]\nreview_budget = {budget}\n"
                        '[judge]\nbackend = "auto"\npoll_interval_s = 0.01\nmax_wait_s = 60\n', encoding="utf-8")

    def llm_pairs() -> dict:
        rows = duckdb.connect().execute(
            f"SELECT source_l, record_id_l, source_r, record_id_r, decision, decided_by, over_budget "
            f"FROM '{project / 'out' / 'pairs.parquet'}'").fetchall()
        return {r[:4]: r[4:] for r in rows}

    with FakeBatchesServer() as fake:
        fake.responder = lambda a, b: {"same_person": False, "confidence": 0.99, "reason": "different people"}
        env = {"ANTHROPIC_API_KEY": "test-key", "ANTHROPIC_BASE_URL": fake.url}
        configure(5)
        first = run(project, env=env)
        before = partition(clusters(project))
        judged = {k for k, v in llm_pairs().items() if v[1] == "llm"}
        assert first["judge"]["requests_sent"] > 0 and judged
        configure(1)  # the band now outgrows the budget: most judged pairs are cut
        second = run(project, env=env)
    assert second["review_cut_by_budget"] > 0 and second["judge"]["requests_sent"] == 0
    now = llm_pairs()
    cut = [k for k in judged if now[k][2]]
    assert cut  # some judged pairs were cut by the budget...
    assert all(now[k][:2] == ("non_match", "llm") for k in judged)  # ...and the paid verdict still decides
    assert partition(clusters(project)) == before  # so no cut pair became a link


def test_golden_csv_and_parquet_hold_the_same_rows_in_cluster_id_order(project):
    run(project)
    out = project / "out"
    with (out / "golden_records.csv").open(encoding="utf-8") as f:
        csv_ids = [r["cluster_id"] for r in csv.DictReader(f)]
    parquet_ids = [r[0] for r in duckdb.connect().execute(
        f"SELECT cluster_id FROM '{out / 'golden_records.parquet'}'").fetchall()]
    assert csv_ids == parquet_ids == sorted(csv_ids) and len(set(csv_ids)) == len(csv_ids) > 100


def test_output_and_temp_folders_with_quotes_and_spaces_in_their_names(project):
    conf = project / "demo.toml"
    text = conf.read_text(encoding="utf-8").replace('output_dir = "out"', "output_dir = \"o'brien out\"")
    text = text.replace('"out/state.duckdb"', "\"o'brien out/state.duckdb\"")
    conf.write_text(text + "\n[engine]\ntemp_directory = \"tmp o'k\"\n", encoding="utf-8")
    done = dedupe(project, "run", str(conf))
    assert done.returncode == 0, done.stderr
    assert (project / "o'brien out" / "clusters.csv").is_file()


def test_a_second_state_publishing_into_the_same_output_folder_is_refused(project):
    run(project)
    conf = project / "demo.toml"
    other = project / "other.toml"
    other.write_text(conf.read_text(encoding="utf-8").replace('"out/state.duckdb"', '"other.duckdb"'),
                     encoding="utf-8")
    assert "holds the runs of another state database" in refused(project, str(other))


def test_run_folders_left_by_an_earlier_state_never_make_the_new_run_prune_itself(project):
    for generation in range(10, 15):  # an earlier life of this folder, before the state was reset
        (project / "out" / "runs" / str(generation)).mkdir(parents=True)
    run(project)
    assert (project / "out" / "latest").resolve() == (project / "out" / "runs" / "1").resolve()
    assert (project / "out" / "clusters.csv").is_file()


def test_a_state_started_afresh_at_the_same_path_keeps_publishing_into_its_folder(project):
    run(project)
    (project / "out" / "state.duckdb").unlink()  # "start over": the outputs stay
    assert run(project)["generation"] == 1
