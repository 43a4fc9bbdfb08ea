"""SIGKILL at the worst moments, then a normal run: nothing lost, nothing paid twice.

The driver (tests/judge/driver.py) runs in a subprocess against the in-process
fake; the fake's holds freeze it at a precise point so the test can kill it."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import duckdb
import pytest

from tests.judge.driver import synthetic_pairs

ROOT = pathlib.Path(__file__).resolve().parents[2]
N = 20

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


def _driver(db, *args):
    return subprocess.Popen(
        [sys.executable, "-m", "tests.judge.driver", str(db), "--pairs", str(N), *args],
        cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _wait(predicate, what, timeout=30):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def _kill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def _query(db, sql):
    with duckdb.connect(str(db)) as con:
        return con.execute(sql).fetchall()


def _rerun_and_check(fake, db, expected_creates):
    proc = _driver(db)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    # The server saw the expected creates and exactly one live batch with our pairs ...
    assert fake.ops("create") == expected_creates
    (batch,) = fake.live_batches()
    assert len(batch.requests) == N and batch.processing_status == "ended"
    # ... every pair has exactly one verdict, and no custom_id was billed twice.
    rows = _query(db, "SELECT pair_key, judge_batch_id FROM judge_results")
    assert sorted(r[0] for r in rows) == sorted(p[0] for p in synthetic_pairs(N))
    assert {r[1] for r in rows} == {batch.id}
    assert set(fake.billed().values()) == {1} and len(fake.billed()) == N
    return err


def test_killed_after_create_stored_before_batch_id_written(fake, tmp_path):
    db = tmp_path / "state.duckdb"
    fake.hold_create = True  # store the batch, then sit on the response
    proc = _driver(db)
    assert fake.create_stored.wait(30)
    _kill(proc)
    fake.hold_create = False
    fake.release_create.set()
    # The journal shows a create in flight with no batch id: the worst moment.
    assert _query(db, "SELECT status, batch_id FROM judge_batches") == [("creating", None)]

    err = _rerun_and_check(fake, db, expected_creates=1)
    assert "adopted batch" in err
    assert _query(db, "SELECT role, status FROM judge_batches") == [("primary", "collected")]


def test_killed_before_the_server_stored_the_create(fake, tmp_path):
    db = tmp_path / "state.duckdb"
    fake.hold_create = "before_store"
    fake.discard_held_create = True
    proc = _driver(db)
    assert fake.create_received.wait(30)
    _kill(proc)
    fake.release_create.set()
    fake.hold_create = False
    assert _query(db, "SELECT status, batch_id FROM judge_batches") == [("creating", None)]

    err = _rerun_and_check(fake, db, expected_creates=1)
    assert "never reached the server" in err
    assert sorted(_query(db, "SELECT status FROM judge_batches")) == [("collected",), ("not_created",)]


def test_killed_while_polling(fake, tmp_path):
    db = tmp_path / "state.duckdb"
    fake.hold_processing = True
    proc = _driver(db, "--poll", "0.02")
    _wait(lambda: fake.ops("retrieve") >= 3, "a few polls")
    _kill(proc)
    assert _query(db, "SELECT status, batch_id IS NOT NULL FROM judge_batches") == [("submitted", True)]
    fake.hold_processing = False

    _rerun_and_check(fake, db, expected_creates=1)
