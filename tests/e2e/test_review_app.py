"""The review app end to end: a real headless Chromium (Playwright) drives the app over the demo
data, the pipeline re-runs through the real CLI, and the decisions are checked in the state DB.

Browser tests need Debian's chromium (see conftest.py). The HTTP-level tests (security, busy
database, queue/page agreement) use Starlette's TestClient and run everywhere.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest

from dedupe import decisions

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "fixtures" / "demo"
XSS_NAME = "<script>alert(1)</script>"
XSS_COMPANY = '"><img src=x onerror=alert(2)>'


def demo_config(folder: Path, crm: Path | None = None) -> Path:
    """A copy of configs/demo.toml writing to ``folder/out`` (optionally with another crm.csv)."""
    text = (ROOT / "configs" / "demo.toml").read_text(encoding="utf-8")
    text = text.replace("../fixtures/demo/", f"{DEMO.as_posix()}/")
    if crm is not None:
        text = text.replace(f"{DEMO.as_posix()}/crm.csv", crm.as_posix())
    text = text.replace('output_dir = "../out/demo"', 'output_dir = "out"')
    text = text.replace('state = "../out/demo/state.duckdb"', 'state = "out/state.duckdb"')
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "demo.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run_pipeline(config: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    done = subprocess.run([sys.executable, "-m", "dedupe.cli", "run", str(config)], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    return done


def query(state: Path, sql: str, params: list | None = None) -> list[tuple]:
    con = duckdb.connect(str(state), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def cluster_of(state: Path, key: tuple[str, str]) -> str:
    return query(state, "SELECT cluster_id FROM cluster_ids WHERE source = ? AND record_id = ?", list(key))[0][0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory, review_server):
    """The demo run in a temp folder, and the review app serving it for the whole module."""
    folder = tmp_path_factory.mktemp("review_demo")
    config = demo_config(folder)
    run_pipeline(config)
    with review_server(config) as url:
        yield SimpleNamespace(config=config, state=folder / "out" / "state.duckdb", url=url, folder=folder)


# ------------------------------------------------------------------------------------------
# the browser: queue, cluster page, screenshots


def test_queue_ranks_risky_clusters_and_filters_live(demo, page):
    page.goto(demo.url + "/")
    assert page.locator("h1").text_content() == "Clusters needing attention"
    rows = page.locator("table.queue tbody tr")
    assert rows.count() > 5
    risks = [int(x) for x in page.locator("table.queue tbody td:first-child").all_text_contents()]
    assert risks == sorted(risks, reverse=True) and risks[0] > 0

    page.select_option("select[name=reason]", "large")  # htmx swaps the results in place
    page.wait_for_function("() => location.search.includes('reason=large')")
    page.wait_for_function("() => [...document.querySelectorAll('table.queue tbody tr')]"
                           ".every(tr => tr.textContent.includes('large cluster'))")
    sizes = [int(x) for x in page.locator("table.queue tbody td:nth-child(4)").all_text_contents()]
    assert sizes and min(sizes) >= 5

    key, name = query(demo.state, "SELECT record_id, last_name FROM std WHERE source = 'partner' "
                                  "AND last_name IS NOT NULL ORDER BY rid LIMIT 1")[0]
    page.select_option("select[name=reason]", "")
    page.fill("#q", key)
    page.wait_for_function("n => document.querySelectorAll('table.queue tbody tr').length === n", arg=1)
    page.locator("table.queue a.cid").first.click()
    page.wait_for_selector("table.records")
    assert page.locator("table.records td.key").all_text_contents().count(f"partner:{key}") == 1
    assert page.dialogs.messages == []


def test_screenshots_of_queue_and_cluster(demo, page, tmp_path):
    """Screenshots for docs/review.md; saved to docs/screenshots when DEDUPE_SCREENSHOTS is set."""
    target = Path(os.environ.get("DEDUPE_SCREENSHOTS") or tmp_path)
    target.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1400, "height": 860})
    page.goto(demo.url + "/")
    page.screenshot(path=str(target / "queue.png"))
    page.locator("table.queue a.cid").first.click()
    page.wait_for_selector("table.edges")
    assert page.locator("table.edges .chip").count() > 0  # per-field contributions are shown
    assert page.locator("table.records tr.golden small").count() > 0  # golden provenance
    page.screenshot(path=str(target / "cluster.png"), full_page=True)
    for name in ("queue.png", "cluster.png"):
        assert (target / name).stat().st_size > 10_000


# ------------------------------------------------------------------------------------------
# actions in the browser, then a real re-run


def _strong_pair_cluster(state: Path) -> tuple[tuple, tuple]:
    """Two records forming a 2-record cluster over one model 'match' link."""
    row = query(state, """
        WITH two AS (SELECT cluster_id FROM cluster_ids GROUP BY 1 HAVING count(*) = 2)
        SELECT l.source, l.record_id, r.source, r.record_id
        FROM pairs p JOIN cluster_ids l ON l.rid = p.rid_l JOIN cluster_ids r ON r.rid = p.rid_r
        WHERE l.cluster_id = r.cluster_id AND l.cluster_id IN (SELECT cluster_id FROM two)
          AND p.decision = 'match'
        ORDER BY l.source, l.record_id LIMIT 1""")[0]
    return (row[0], row[1]), (row[2], row[3])


def _clusters_to_merge(state: Path, exclude: set[str]) -> tuple[str, str]:
    """Two small clusters that a scored review pair connects but clustering kept apart."""
    rows = query(state, """
        WITH sizes AS (SELECT cluster_id, count(*) AS n FROM cluster_ids GROUP BY 1)
        SELECT l.cluster_id, r.cluster_id
        FROM pairs p JOIN cluster_ids l ON l.rid = p.rid_l JOIN cluster_ids r ON r.rid = p.rid_r
        JOIN sizes sl ON sl.cluster_id = l.cluster_id JOIN sizes sr ON sr.cluster_id = r.cluster_id
        WHERE l.cluster_id <> r.cluster_id AND p.decision = 'review' AND sl.n <= 3 AND sr.n <= 3
        ORDER BY p.match_probability DESC, l.cluster_id""")
    return next((a, b) for a, b in rows if a not in exclude and b not in exclude)


def _decision_rows(state: Path) -> list[tuple]:
    return query(state, "SELECT action_id, action, kind, source_l, record_id_l, source_r, record_id_r, "
                        "reviewer, note, undone_at FROM analyst_decisions ORDER BY decision_id")


@pytest.fixture(scope="module")
def reviewed(demo, browser):
    """In the browser: reject a link, merge two clusters, confirm one and undo it; then re-run."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    left, right = _strong_pair_cluster(demo.state)
    rejected_cluster = cluster_of(demo.state, left)
    merge_a, merge_b = _clusters_to_merge(demo.state, {rejected_cluster})
    confirm_cluster = query(demo.state, "SELECT cluster_id FROM cluster_ids GROUP BY 1 HAVING count(*) >= 3 "
                                        "ORDER BY 1 LIMIT 1")[0][0]

    # Reject a link: open the queue, find the record, open its cluster, reject its only link.
    page.goto(demo.url + "/")
    page.fill("#q", f"{left[0]}:{left[1]}")
    page.wait_for_function("() => document.querySelectorAll('table.queue tbody tr').length === 1")
    page.locator("table.queue a.cid").first.click()
    page.wait_for_selector("table.records")
    assert rejected_cluster in page.locator("h1").text_content()
    page.fill("input[name=reviewer]", "Ana Analyst")
    page.fill("input[name=note]", "different people: checked LinkedIn")
    page.locator("table.edges tbody tr").first.get_by_role("button", name="Reject link").click()
    page.wait_for_selector("p.flash")
    assert "Recorded #" in page.locator("p.flash").text_content()
    assert "cannot-link" in page.locator("table.edges tbody tr").first.text_content()
    assert page.locator("table.edges tbody tr.rejected").count() == 1

    # Merge two clusters: from the first one's page, name the second.
    page.goto(demo.url + "/cluster/" + merge_a)
    assert page.locator("input[name=reviewer]").input_value() == "Ana Analyst"  # remembered (cookie)
    page.fill("input[name=merge_with]", merge_b)
    page.get_by_role("button", name="Merge", exact=True).first.click()
    page.wait_for_selector("p.flash")
    merge_flash = page.locator("p.flash").text_content()
    assert "merged two clusters" in merge_flash

    # Confirm a cluster, then undo it from the flash message.
    page.goto(demo.url + "/cluster/" + confirm_cluster)
    page.get_by_role("button", name="Confirm cluster").click()
    page.wait_for_selector("p.flash")
    page.locator("p.flash").get_by_role("button", name="Undo").click()
    page.wait_for_selector("p.flash:has-text('undone')")
    assert page.locator("table.history tr.undone").count() >= 1

    before = _decision_rows(demo.state)
    started = time.monotonic()
    run_pipeline(demo.config)  # the app is still serving: it must not hold the state DB open
    info = SimpleNamespace(left=left, right=right, merge_a=merge_a, merge_b=merge_b,
                           confirm_cluster=confirm_cluster, before=before, page=page, dialogs=dialogs,
                           rerun_s=time.monotonic() - started)
    yield info
    context.close()


def test_reject_link_is_recorded_with_reviewer_note_and_time(reviewed, demo):
    rows = [r for r in reviewed.before if r[1] == "reject_link"]
    assert len(rows) == 1
    _action, _label, kind, sl, rl, sr, rr, reviewer, note, undone = rows[0]
    assert kind == "cannot_link" and undone is None
    assert {(sl, rl), (sr, rr)} == {reviewed.left, reviewed.right}
    assert (sl, rl) < (sr, rr)  # canonical order
    assert reviewer == "Ana Analyst" and note == "different people: checked LinkedIn"


def test_merge_is_one_must_link_between_the_clusters(reviewed, demo):
    rows = [r for r in reviewed.before if r[1] == "merge"]
    assert len(rows) == 1 and rows[0][2] == "must_link" and rows[0][9] is None


def test_undo_undoes_the_whole_confirm_action(reviewed):
    rows = [r for r in reviewed.before if r[1] == "confirm"]
    assert len(rows) >= 2  # a 3+ record cluster: n-1 must-links
    assert all(r[9] is not None for r in rows)
    assert len({r[0] for r in rows}) == 1


def test_decisions_survive_a_rerun_and_the_app_keeps_serving(reviewed, demo):
    assert _decision_rows(demo.state) == reviewed.before
    page = reviewed.page
    page.goto(demo.url + "/decisions")
    assert page.locator("table.history tbody tr").count() == 3
    page.goto(demo.url + f"/record/{reviewed.left[0]}/{reviewed.left[1]}")
    page.wait_for_selector("table.records")
    assert reviewed.dialogs == []


def test_rejected_link_puts_the_two_records_in_different_clusters_after_rerun(reviewed, demo):
    page = reviewed.page
    page.goto(demo.url + f"/record/{reviewed.left[0]}/{reviewed.left[1]}")
    page.wait_for_selector("table.records")
    members = page.locator("table.records td.key").all_text_contents()
    assert f"{reviewed.left[0]}:{reviewed.left[1]}" in members
    assert f"{reviewed.right[0]}:{reviewed.right[1]}" not in members


def test_merged_clusters_are_one_cluster_after_rerun(reviewed, demo):
    rows = query(demo.state, "SELECT source_l, record_id_l, source_r, record_id_r FROM analyst_decisions "
                             "WHERE action = 'merge'")
    (sl, rl, sr, rr), = rows
    page = reviewed.page
    page.goto(demo.url + f"/record/{sl}/{rl}")
    page.wait_for_selector("table.records")
    assert f"{sr}:{rr}" in page.locator("table.records td.key").all_text_contents()


# ------------------------------------------------------------------------------------------
# escaping


def test_a_script_name_renders_as_text(tmp_path, page, review_server):
    rows = list(csv.reader((DEMO / "crm.csv").open(encoding="utf-8")))
    header, first = rows[0], rows[1]
    first[header.index("First Name")] = XSS_NAME
    first[header.index("Company")] = XSS_COMPANY
    crm = tmp_path / "crm.csv"
    with crm.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(rows)
    config = demo_config(tmp_path, crm=crm)
    run_pipeline(config)

    with review_server(config) as url:
        page.goto(url + "/")
        page.fill("#q", "<script>")
        page.wait_for_function("() => document.querySelectorAll('table.queue tbody tr').length === 1")
        page.locator("table.queue a.cid").first.click()
        page.wait_for_selector("table.records")
        cell = page.locator("table.records tr[id^=m] td", has_text=XSS_NAME).first
        assert cell.is_visible() and cell.text_content() == XSS_NAME
        assert page.locator("table.records td", has_text=XSS_COMPANY).count() >= 1
        assert page.locator("table.records img").count() == 0  # no element was injected
        page.reload()
        page.wait_for_selector("table.records")
        assert page.dialogs.messages == []
        html = page.content()
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


# ------------------------------------------------------------------------------------------
# HTTP-level: security, a busy database, queue and page agreeing


@pytest.fixture(scope="module")
def client(demo):
    from fastapi.testclient import TestClient

    from dedupe.review.app import create_app

    app = create_app(demo.config)
    return SimpleNamespace(http=TestClient(app, base_url="http://127.0.0.1:8765", follow_redirects=False),
                           csrf=app.state.review.guard.csrf_token, config=app.state.review.config)


def _some_cluster(state: Path) -> str:
    return query(state, "SELECT cluster_id FROM cluster_ids GROUP BY 1 HAVING count(*) >= 2 ORDER BY 1 LIMIT 1")[0][0]


def test_cross_site_posts_are_refused(client, demo):
    cid = _some_cluster(demo.state)
    count = len(query(demo.state, "SELECT 1 FROM duckdb_tables() WHERE table_name = 'analyst_decisions'"))
    form = {"op": '{"do": "confirm"}', "reviewer": "mallory"}
    assert client.http.post(f"/cluster/{cid}", data=form).status_code == 403  # no CSRF token
    with_token = {**form, "csrf": client.csrf}
    assert client.http.post(f"/cluster/{cid}", data=with_token,
                            headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.http.post(f"/cluster/{cid}", data=with_token,
                            headers={"Origin": "http://evil.example"}).status_code == 403
    assert client.http.post(f"/cluster/{cid}", data={**form, "csrf": "forged"}).status_code == 403
    if count:
        assert not query(demo.state, "SELECT 1 FROM analyst_decisions WHERE reviewer = 'mallory'")


def test_actions_work_without_javascript_and_undo_by_action(client, demo):
    """Plain form posts (what a browser without htmx sends): 303 to the page, which shows the flash."""
    cid = query(demo.state, "SELECT cluster_id FROM cluster_ids GROUP BY 1 HAVING count(*) = 3 "
                            "ORDER BY 1 DESC LIMIT 1")[0][0]
    members = query(demo.state, "SELECT source, record_id FROM cluster_ids WHERE cluster_id = ? "
                                "ORDER BY source, record_id", [cid])
    form = {"op": json.dumps({"do": "split", "key": list(members[0])}), "reviewer": "Zoë <b>",
            "note": "moved", "csrf": client.csrf}
    done = client.http.post(f"/cluster/{cid}", data=form)
    assert done.status_code == 303 and done.headers["location"].startswith(f"/cluster/{cid}?done=")
    action = int(done.headers["location"].split("done=")[1])
    rows = query(demo.state, "SELECT kind, reviewer FROM analyst_decisions WHERE action_id = ?", [action])
    assert rows == [("cannot_link", "Zoë <b>")] * 2
    page = client.http.get(done.headers["location"])  # the client keeps the reviewer cookie
    assert f"Recorded #{action}" in page.text and "Zoë &lt;b&gt;" in page.text
    assert 'value="Zoë &lt;b&gt;"' in page.text  # the reviewer name is remembered, escaped

    no_name = client.http.post(f"/cluster/{cid}", data={**form, "reviewer": ""})
    assert no_name.status_code == 400 and "Reviewer box" in no_name.text
    stale = client.http.post(f"/cluster/{cid}", data={**form, "op": json.dumps({"do": "split", "key": ["crm", "nope"]})})
    assert stale.status_code == 409 and "no longer in this cluster" in stale.text

    undo = client.http.post(f"/decisions/{action}/undo", data={"csrf": client.csrf, "next": "//evil.example/"})
    assert undo.status_code == 303 and undo.headers["location"] == f"/decisions?undone={action}"
    assert query(demo.state, "SELECT count(*) FROM analyst_decisions WHERE action_id = ? "
                             "AND undone_at IS NULL", [action]) == [(0,)]
    export = client.http.get("/decisions.csv")
    assert export.status_code == 200 and export.text.startswith(",".join(decisions.CSV_COLUMNS))


def test_only_loopback_host_names_are_served_without_a_token(client):
    assert client.http.get("/", headers={"Host": "127.0.0.1:8765"}).status_code == 200
    assert client.http.get("/", headers={"Host": "localhost:8765"}).status_code == 200
    assert client.http.get("/", headers={"Host": "attacker.example:8765"}).status_code == 400  # DNS rebinding


def test_a_token_is_required_when_configured(demo):
    from fastapi.testclient import TestClient

    from dedupe.review.app import create_app

    http = TestClient(create_app(demo.config, token="s3cret-token"), base_url="http://192.0.2.10:8765",
                      follow_redirects=False)
    assert http.get("/").status_code == 401
    assert http.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert http.get("/", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
    entry = http.get("/?token=s3cret-token&reason=large")
    assert entry.status_code == 303 and entry.headers["location"] == "/?reason=large"
    assert "httponly" in entry.headers["set-cookie"].lower()
    assert http.get("/").status_code == 200  # the cookie now carries it


def test_serving_beyond_loopback_needs_a_token(demo):
    from dedupe.review import ReviewError, check_binding, serve

    check_binding("127.0.0.1", None)
    check_binding("::1", None)
    check_binding("0.0.0.0", "a-token")
    with pytest.raises(ReviewError, match="refusing to serve on 0.0.0.0 without a token"):
        serve(demo.config, host="0.0.0.0", port=1)  # refused before anything binds
    with pytest.raises(ReviewError):
        check_binding("192.168.1.5", "")


def test_pages_send_a_strict_content_security_policy(client):
    response = client.http.get("/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"


def test_a_busy_state_database_gives_a_clear_message(client, demo):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import duckdb, sys, time\n"
        f"con = duckdb.connect({str(demo.state)!r})\n"
        "print('locked', flush=True)\n"
        "sys.stdin.readline()\n")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        response = client.http.get("/")
        assert response.status_code == 503 and "A dedupe run is using the state database" in response.text
        # Any cluster id: the lock is hit before the cluster is looked up.
        posted = client.http.post("/cluster/G0000000000000000", data={"op": '{"do": "confirm"}', "reviewer": "x",
                                                           "csrf": client.csrf})
        assert posted.status_code == 503 and "Nothing was changed" in posted.text
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(timeout=30)
    assert client.http.get("/").status_code == 200  # and it recovers at once


def test_a_run_lock_counts_as_busy_unless_stale(client, demo):
    import socket

    lock = demo.state.with_name(demo.state.name + ".lock")
    try:
        lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        assert client.http.get("/").status_code == 503  # a run is starting: do not open the DB now
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()
        lock.write_text(json.dumps({"pid": int(dead), "host": socket.gethostname()}))
        assert client.http.get("/").status_code == 200  # its process is gone
    finally:
        lock.unlink(missing_ok=True)


def test_queue_and_cluster_page_give_the_same_reasons(client, demo):
    from dedupe.review import queries

    con = duckdb.connect(str(demo.state), read_only=True)
    try:
        model = queries.Model.load(demo.folder / "out" / "model.json")
        seen = 0
        for reason in queries.REASONS:
            result = queries.queue(con, client.config, queries.QueueFilters(reason=reason, status="all"))
            for row in result.rows[:8]:
                page = queries.cluster_page(con, client.config, model, row["cluster_id"])
                assert set(page.reasons) == set(row["reasons"]), row["cluster_id"]
                seen += 1
    finally:
        con.close()
    assert seen >= 10


def test_level_weights_explain_the_match_weight(client, demo):
    """prior + per-field weights from model.json = match_weight, but for the term-frequency adjustment,
    which only exact matches on a frequency-adjusted field get."""
    from dedupe.compare import comparisons_for
    from dedupe.review import queries

    model = queries.Model.load(demo.folder / "out" / "model.json")
    names = [r[0] for r in query(demo.state, "DESCRIBE pairs") if r[0] in model.levels]
    assert {"first_name", "last_name", "email"} <= set(names)
    rows = query(demo.state, f"SELECT match_weight, {', '.join(names)} FROM pairs")
    tf_exact = {c.name: c.exact_level for c in comparisons_for(client.config) if c.tf_column}
    plain = 0
    for weight, *levels in rows:
        contributions = model.contributions(dict(zip(names, levels)), names)
        if any(lv == tf_exact.get(name) for name, lv, _l, _w in contributions):
            continue
        plain += 1
        assert model.prior_weight + sum(c[3] for c in contributions) == pytest.approx(weight, abs=1e-6)
    assert plain >= 20  # enough pairs without a frequency-adjusted exact match to mean something
