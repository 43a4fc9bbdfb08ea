"""Fixtures: a fake Batches server wired into the environment, a state DB, settings."""

from __future__ import annotations

import pathlib
import sys

import duckdb
import pytest

# `tests.judge.*` is imported by absolute name (other tests import the fake as
# `tests.judge.fake_batches`).  `python -m pytest` from the repo root has the
# root on sys.path; a bare `pytest` does not, so add it.
_ROOT = str(pathlib.Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from tests.judge.driver import DEMO_PAIRS, Log, build_review
from tests.judge.fake_batches import FakeBatchesServer

# Variables the SDK would otherwise read for credentials or headers.
_SDK_ENV = ("ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_PROFILE", "ANTHROPIC_CONFIG_DIR", "ANTHROPIC_CUSTOM_HEADERS")


@pytest.fixture
def fake(monkeypatch):
    """A started fake; the SDK reaches it via ANTHROPIC_BASE_URL, as in production.

    Fails the test if the fake ever emitted JSON the SDK's models reject."""
    with FakeBatchesServer() as server:
        for name in _SDK_ENV:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        yield server
        assert server.validation_errors == []


@pytest.fixture
def con(tmp_path):
    c = duckdb.connect(str(tmp_path / "state.duckdb"))
    yield c
    c.close()


@pytest.fixture
def demo(con):
    build_review(con, DEMO_PAIRS)
    return "review"


@pytest.fixture
def log():
    return Log()
