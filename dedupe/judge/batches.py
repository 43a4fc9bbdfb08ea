"""Submit, poll and collect Message Batches, with every step journaled in DuckDB.

The invariant: the state DB is written *before* and *after* every API call that
creates or changes something on the server, so a process killed at any moment
(SIGKILL included) leaves enough behind for the next run to finish the job
without losing a paid result or paying twice.

Journal (all tables in the state DB):

* ``judge_requests``: one row per distinct request (custom_id), with the pair
  text that was sent, so "what left the machine" can be audited.
* ``judge_batches``: one row per batch.  ``local_id`` is ours and is written,
  status ``creating``, *before* the create call; ``batch_id`` is filled in
  right after it returns.
* ``judge_batch_items``: which request went into which batch, and its outcome
  (NULL while in flight).
* ``judge_batch_pairs``: which review pairs rode on each request in each batch.

Create is the dangerous call: the API has no idempotency key, and a create that
times out or gets a 5xx may still have been stored.  So create is sent with the
SDK's retries off and retried here; after any failure, and for any ``creating``
row left by a killed process, ``list()`` looks for a batch created since the
row was written with the same number of requests and not already known.  The
oldest match is adopted; any further match is a duplicate: it is canceled at
once and journaled as a ``duplicate`` batch, whose already-paid results are
still collected (first verdict wins).

Outcome classes (``judge_batch_items.outcome``):

* ``succeeded``: verdict stored in judge_cache.
* terminal, never resent as is: ``invalid_request`` (the request itself is bad),
  and ``refusal``, ``max_tokens``, ``unparsable`` (billed; the same request
  would most likely fail the same way and be billed again).
* retryable, resent in a later batch until ``max_attempts``: ``errored`` (any
  other error type), ``expired``, ``canceled``, ``missing`` (no result line).
* not an attempt: ``not_created`` (create never reached the server),
  ``superseded`` (a duplicate batch's unbilled leftovers).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable

import duckdb

from . import cache, cost, prompt
from ..columns import registered
from ..state import transaction
from .settings import JudgeSettings

TERMINAL = ("invalid_request", "refusal", "max_tokens", "unparsable")
RETRYABLE = ("errored", "expired", "canceled", "missing")
OPEN_STATUSES = ("creating", "submitted", "ended")
#: Allowed difference between our clock and the API's when matching a batch
#: found by list() to a create we journaled.
CLOCK_SKEW = dt.timedelta(minutes=10)

DDL = [
    """
    CREATE TABLE IF NOT EXISTS judge_requests (
        custom_id      VARCHAR PRIMARY KEY,
        cache_key      VARCHAR NOT NULL,
        model          VARCHAR NOT NULL,
        prompt_version VARCHAR NOT NULL,
        user_text      VARCHAR NOT NULL,   -- the pair text exactly as sent
        request_bytes  BIGINT,
        first_sent_at  TIMESTAMP
    )""",
    # No primary keys on the tables below: they are updated in place, and
    # DuckDB checks index constraints eagerly on updates within a transaction.
    """
    CREATE TABLE IF NOT EXISTS judge_batches (
        local_id             VARCHAR NOT NULL,  -- ours, written before create
        batch_id             VARCHAR,           -- Anthropic's, written after create
        role                 VARCHAR NOT NULL,  -- primary | duplicate
        dup_of               VARCHAR,           -- local_id of the primary
        status               VARCHAR NOT NULL,  -- creating | submitted | ended | collected | not_created | lost
        processing_status    VARCHAR,           -- as last seen from the API
        n_requests           INTEGER NOT NULL,
        n_bytes              BIGINT,
        model                VARCHAR NOT NULL,
        create_started_at    TIMESTAMP NOT NULL,  -- UTC
        server_created_at    TIMESTAMP,           -- UTC
        ended_at             TIMESTAMP,
        results_collected_at TIMESTAMP,
        processing INTEGER, succeeded INTEGER, errored INTEGER, canceled INTEGER, expired INTEGER,
        note                 VARCHAR
    )""",
    """
    CREATE TABLE IF NOT EXISTS judge_batch_items (
        local_id    VARCHAR NOT NULL,
        custom_id   VARCHAR NOT NULL,
        outcome     VARCHAR,      -- NULL while in flight, see module docstring
        error_type  VARCHAR,
        detail      VARCHAR,
        input_tokens INTEGER, output_tokens INTEGER,
        cache_creation_input_tokens INTEGER, cache_read_input_tokens INTEGER,
        cost_usd    DOUBLE,
        resolved_at TIMESTAMP
    )""",
    """
    CREATE TABLE IF NOT EXISTS judge_batch_pairs (
        local_id  VARCHAR NOT NULL,
        custom_id VARCHAR NOT NULL,
        pair_key  VARCHAR NOT NULL
    )""",
]


class JudgeError(Exception):
    """The judge could not finish; the state DB is consistent and the next run resumes."""


class JudgePending(Exception):
    """max_wait_s elapsed with batches still in progress (the CLI exits 75).

    Deliberately not a JudgeError: it is not a failure, and a CLI that catches
    JudgeError first must not turn "come back later" into exit code 1."""

    report: Any = None  # the JudgeReport so far, attached by run_judge


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    for ddl in DDL:
        con.execute(ddl)
    cache.ensure_schema(con)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def _utc(ts: dt.datetime | None) -> dt.datetime | None:
    if ts is None:
        return None
    if ts.tzinfo is not None:
        ts = ts.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return ts


# ---------------------------------------------------------------- planning


@dataclass(frozen=True)
class Todo:
    custom_id: str
    cache_key: str
    user_text: str
    request_bytes: int
    n_pairs: int


_ATTEMPTS_SQL = f"""
    SELECT custom_id,
           count(*) FILTER (WHERE outcome IN {RETRYABLE}) AS attempts,
           bool_or(outcome IN {TERMINAL})                   AS blocked
    FROM judge_batch_items GROUP BY custom_id
"""
_INFLIGHT_SQL = f"""
    SELECT DISTINCT r.cache_key
    FROM judge_batch_items i
    JOIN judge_batches b USING (local_id)
    JOIN judge_requests r USING (custom_id)
    WHERE i.outcome IS NULL AND b.status IN {OPEN_STATUSES}
"""


def pending(con: duckdb.DuckDBPyConnection, settings: JudgeSettings) -> list[Todo]:
    """Requests to send now: plan rows with no cached verdict, not in flight
    (by cache key, so a settings change mid-flight cannot double-pay), never
    failed terminally, and under max_attempts."""
    rows = con.execute(
        f"""
        WITH a AS ({_ATTEMPTS_SQL}), f AS ({_INFLIGHT_SQL})
        SELECT p.custom_id, any_value(p.cache_key), any_value(p.user_text),
               any_value(p.request_bytes), count(*)
        FROM judge_plan p LEFT JOIN a USING (custom_id)
        WHERE p.cache_key NOT IN (SELECT cache_key FROM judge_cache)
          AND p.cache_key NOT IN (SELECT cache_key FROM f)
          AND NOT coalesce(a.blocked, false)
          AND coalesce(a.attempts, 0) < $max_attempts
        GROUP BY p.custom_id HAVING bool_or(p.send) ORDER BY p.custom_id
        """,
        {"max_attempts": settings.max_attempts},
    ).fetchall()
    return [Todo(*r) for r in rows]


def has_open_batches(con: duckdb.DuckDBPyConnection) -> bool:
    """Anything journaled that still needs the API (including interrupted creates)?"""
    n = con.execute(f"SELECT count(*) FROM judge_batches WHERE status IN {OPEN_STATUSES}").fetchall()[0][0]
    return n > 0


def failures(con: duckdb.DuckDBPyConnection, settings: JudgeSettings) -> dict[str, int]:
    """Review pairs left without a verdict for good, by reason."""
    rows = con.execute(
        f"""
        WITH a AS ({_ATTEMPTS_SQL}),
        last_terminal AS (
            SELECT custom_id, any_value(outcome) AS outcome
            FROM judge_batch_items WHERE outcome IN {TERMINAL} GROUP BY custom_id)
        SELECT CASE WHEN a.blocked THEN t.outcome ELSE 'attempts_exhausted' END, count(*)
        FROM judge_plan p JOIN a USING (custom_id) LEFT JOIN last_terminal t USING (custom_id)
        WHERE p.send AND p.cache_key NOT IN (SELECT cache_key FROM judge_cache)
          AND (a.blocked OR a.attempts >= $max_attempts)
        GROUP BY ALL
        """,
        {"max_attempts": settings.max_attempts},
    ).fetchall()
    return dict(rows)


def chunk(todo: list[Todo], settings: JudgeSettings) -> list[list[Todo]]:
    """Split into batches under max_batch_requests and max_batch_bytes."""
    budget = settings.max_batch_bytes - 64  # {"requests":[...]} framing
    out: list[list[Todo]] = []
    cur: list[Todo] = []
    size = 0
    for t in todo:
        item = t.request_bytes + 1  # the comma
        if cur and (len(cur) >= settings.max_batch_requests or size + item > budget):
            out.append(cur)
            cur, size = [], 0
        cur.append(t)
        size += item
    if cur:
        out.append(cur)
    return out


# ---------------------------------------------------------------- the session


@dataclass
class Progress:
    requests_sent: int = 0
    batch_ids: list[str] = field(default_factory=list)
    usage: cost.Usage = field(default_factory=cost.Usage)


class Session:
    """One run's conversation with the Batches API."""

    def __init__(self, con, client, settings: JudgeSettings, log: Callable[[str], None],
                 submit_new: bool = True):
        self.con = con
        self.client = client
        self.settings = settings
        self.log = log
        # False: only resume and collect batches already open (they are paid for), send nothing.
        self.submit_new = submit_new
        self.prices = cost.prices_for(settings)
        self.progress = Progress()

    # -- the loop

    def run(self) -> None:
        """Submit, poll, collect and resend until nothing is open or pending.

        Raises JudgePending after max_wait_s with batches still open."""
        deadline = time.monotonic() + self.settings.max_wait_s
        started = time.monotonic()
        # Requests freed by reconcile() (an interrupted create that never
        # reached the server) were budget-checked by the run that planned them.
        self.reconcile()
        while True:
            todo = pending(self.con, self.settings) if self.submit_new else []
            if todo:
                self.submit(todo)
            open_batches = self.poll_once(started)
            if not open_batches:
                if not self.submit_new or not pending(self.con, self.settings):
                    return
                continue  # resends became due: submit them right away
            if time.monotonic() >= deadline:
                ids = ", ".join(b for b in open_batches)
                raise JudgePending(
                    f"judge: {len(open_batches)} batch(es) still in progress after "
                    f"{self.settings.max_wait_s:g} s ({ids}); state saved, the next "
                    "`dedupe run` resumes them without resubmitting"
                )
            time.sleep(self.settings.poll_interval_s)

    # -- submission

    def submit(self, todo: list[Todo]) -> None:
        for part in chunk(todo, self.settings):
            self._submit_one(part)

    def _submit_one(self, part: list[Todo]) -> None:
        s = self.settings
        local_id = "lb_" + uuid.uuid4().hex
        started = utcnow()
        n_bytes = sum(t.request_bytes for t in part)
        columns = {
            "custom_id": [t.custom_id for t in part],
            "cache_key": [t.cache_key for t in part],
            "user_text": [t.user_text for t in part],
            "request_bytes": [t.request_bytes for t in part],
        }
        # Journal first: if we die during create, the next run finds this row.
        types = {"custom_id": "VARCHAR", "cache_key": "VARCHAR", "user_text": "VARCHAR", "request_bytes": "BIGINT"}
        with registered(self.con, "judge_submit_new", columns, types):
            with transaction(self.con):
                self.con.execute(
                    """INSERT INTO judge_requests
                       SELECT custom_id, cache_key, $model, $pv, user_text, request_bytes, $now
                       FROM judge_submit_new ON CONFLICT DO NOTHING""",
                    {"model": s.model, "pv": s.prompt_version, "now": started},
                )
                self.con.execute(
                    """INSERT INTO judge_batches (local_id, role, status, n_requests, n_bytes,
                                                  model, create_started_at)
                       VALUES ($lid, 'primary', 'creating', $n, $bytes, $model, $now)""",
                    {"lid": local_id, "n": len(part), "bytes": n_bytes, "model": s.model, "now": started},
                )
                self.con.execute(
                    "INSERT INTO judge_batch_items (local_id, custom_id) "
                    "SELECT $lid, custom_id FROM judge_submit_new",
                    {"lid": local_id},
                )
                self.con.execute(
                    """INSERT INTO judge_batch_pairs
                       SELECT $lid, p.custom_id, p.pair_key FROM judge_plan p
                       WHERE p.custom_id IN (SELECT custom_id FROM judge_submit_new)""",
                    {"lid": local_id},
                )

        requests = [
            {"custom_id": t.custom_id, "params": prompt.build_params(t.user_text, s)} for t in part
        ]
        batch = self._create(local_id, requests, started)
        self.progress.requests_sent += len(part)
        self.log(f"judge: submitted batch {batch.id} with {len(part):,} requests")

    def _create(self, local_id: str, requests: list[dict], started: dt.datetime):
        """Create with our own retry loop; adopt a batch the server stored anyway."""
        import anthropic

        once = self.client.with_options(max_retries=0)
        attempts = self.settings.max_retries + 1
        failed = False
        for attempt in range(attempts):
            try:
                batch = once.messages.batches.create(requests=requests)
            except anthropic.APIStatusError as e:
                if not _retryable_status(e):
                    self._mark_not_created(local_id, f"{e.status_code}: {_api_message(e)}")
                    hint = " (lower judge.max_batch_bytes)" if e.status_code == 413 else ""
                    raise JudgeError(
                        f"judge: batch create rejected with HTTP {e.status_code}: {_api_message(e)}{hint}; "
                        "nothing was stored"
                    ) from e
                wait = _retry_after(e.response, attempt)
                reason = f"HTTP {e.status_code}"
            except anthropic.APIConnectionError as e:  # includes timeouts
                wait, reason = _backoff(attempt), type(e).__name__
            else:
                self._adopt(local_id, batch)
                if failed:
                    # A timed-out attempt may have been stored after our list().
                    self._cancel_duplicates(local_id, len(requests), started)
                return batch
            failed = True
            self.log(f"judge: batch create failed ({reason}); checking whether the server stored it")
            found = self._find_on_server(len(requests), started)
            if found:
                self._adopt(local_id, found[0])
                for dup in found[1:]:
                    self._record_duplicate(local_id, dup)
                self.log(f"judge: the server had stored it as {found[0].id}; adopted")
                return found[0]
            if attempt + 1 < attempts:
                time.sleep(wait)
        raise JudgeError(
            f"judge: batch create failed {attempts} times; state saved, the next run checks "
            "whether the server stored it before sending anything again"
        )

    def _adopt(self, local_id: str, batch) -> None:
        self.con.execute(
            """UPDATE judge_batches SET batch_id = $bid, status = 'submitted',
                   processing_status = $ps, server_created_at = $created
               WHERE local_id = $lid""",
            {"bid": batch.id, "ps": batch.processing_status, "created": _utc(batch.created_at), "lid": local_id},
        )
        self.progress.batch_ids.append(batch.id)

    def _mark_not_created(self, local_id: str, note: str) -> None:
        with transaction(self.con):
            self.con.execute(
                "UPDATE judge_batches SET status = 'not_created', note = $note WHERE local_id = $lid",
                {"note": note, "lid": local_id},
            )
            self.con.execute(
                "UPDATE judge_batch_items SET outcome = 'not_created', resolved_at = now()::TIMESTAMP "
                "WHERE local_id = $lid AND outcome IS NULL",
                {"lid": local_id},
            )

    def _find_on_server(self, n: int, started: dt.datetime) -> list:
        """Unknown batches of n requests created since `started` (oldest first)."""
        known = {r[0] for r in self.con.execute(
            "SELECT batch_id FROM judge_batches WHERE batch_id IS NOT NULL").fetchall()}
        found = []
        for b in self.client.messages.batches.list(limit=100):  # newest first
            created = _utc(b.created_at)
            if created < started - CLOCK_SKEW:
                break
            c = b.request_counts
            total = c.processing + c.succeeded + c.errored + c.canceled + c.expired
            if total == n and b.id not in known:
                found.append(b)
        return sorted(found, key=lambda b: b.created_at)

    def _cancel_duplicates(self, local_id: str, n: int, started: dt.datetime) -> None:
        for dup in self._find_on_server(n, started):
            self._record_duplicate(local_id, dup)

    def _record_duplicate(self, primary: str, batch) -> None:
        """Journal a duplicate (same requests as `primary`), then cancel it."""
        dup_id = "lb_" + uuid.uuid4().hex
        with transaction(self.con):
            self.con.execute(
                """INSERT INTO judge_batches (local_id, batch_id, role, dup_of, status, processing_status,
                       n_requests, n_bytes, model, create_started_at, server_created_at, note)
                   SELECT $dup, $bid, 'duplicate', local_id, 'submitted', $ps, n_requests, n_bytes, model,
                          create_started_at, $created, 'duplicate create; canceled'
                   FROM judge_batches WHERE local_id = $lid""",
                {"dup": dup_id, "bid": batch.id, "ps": batch.processing_status,
                 "created": _utc(batch.created_at), "lid": primary},
            )
            self.con.execute(
                "INSERT INTO judge_batch_items (local_id, custom_id) "
                "SELECT $dup, custom_id FROM judge_batch_items WHERE local_id = $lid",
                {"dup": dup_id, "lid": primary},
            )
        self.log(f"judge: batch {batch.id} is a duplicate create; canceling it (paid results are kept)")
        self.progress.batch_ids.append(batch.id)
        self._cancel(batch.id)

    def _cancel(self, batch_id: str) -> None:
        import anthropic

        try:
            self.client.messages.batches.cancel(batch_id)
        except anthropic.APIStatusError as e:
            # Already ended (nothing left to cancel) is fine; poll() retries otherwise.
            self.log(f"judge: cancel of {batch_id} answered HTTP {e.status_code}; will re-check")

    # -- crash recovery

    def reconcile(self) -> None:
        """Resolve `creating` rows left by a process that died inside create."""
        rows = self.con.execute(
            "SELECT local_id, n_requests, create_started_at FROM judge_batches "
            "WHERE status = 'creating' ORDER BY create_started_at"
        ).fetchall()
        for local_id, n, started in rows:
            found = self._find_on_server(n, started)
            if not found:
                self._mark_not_created(local_id, "create never reached the server (found by list())")
                self.log(f"judge: an interrupted create of {n:,} requests never reached the server; will resend")
                continue
            self._adopt(local_id, found[0])
            self.log(f"judge: adopted batch {found[0].id} from an interrupted create")
            for dup in found[1:]:
                self._record_duplicate(local_id, dup)

    # -- polling

    def poll_once(self, started: float) -> list[str]:
        """Retrieve every open batch once, collect ended ones; return ids still open."""
        import anthropic

        rows = self.con.execute(
            "SELECT local_id, batch_id, role, status FROM judge_batches "
            "WHERE status IN ('submitted', 'ended') ORDER BY create_started_at"
        ).fetchall()
        still_open, totals = [], {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        for local_id, batch_id, role, status in rows:
            if status == "submitted":
                try:
                    b = self.client.messages.batches.retrieve(batch_id)
                except anthropic.NotFoundError:
                    self._lost(local_id, batch_id)
                    continue
                except anthropic.APIError as e:
                    raise JudgeError(f"judge: polling {batch_id} failed: {e}; state saved, the next run resumes") from e
                self._record_status(local_id, b)
                if b.processing_status == "ended":
                    status = "ended"
                else:
                    if role == "duplicate" and b.processing_status == "in_progress":
                        self._cancel(batch_id)
                    still_open.append(batch_id)
                    for k in totals:
                        totals[k] += getattr(b.request_counts, k)
            if status == "ended":
                self.collect(local_id, batch_id, role)
        if still_open:
            waited = time.monotonic() - started
            self.log(
                f"judge: waiting for {len(still_open)} batch(es): "
                + ", ".join(f"{v:,} {k}" for k, v in totals.items())
                + f"; {waited:.0f} s of max {self.settings.max_wait_s:g} s"
            )
        return still_open

    def _record_status(self, local_id: str, b) -> None:
        c = b.request_counts
        self.con.execute(
            """UPDATE judge_batches SET processing_status = $ps, ended_at = $ended,
                   status = CASE WHEN $ps = 'ended' THEN 'ended' ELSE status END,
                   processing = $p, succeeded = $s, errored = $e, canceled = $c, expired = $x
               WHERE local_id = $lid""",
            {"ps": b.processing_status, "ended": _utc(b.ended_at), "p": c.processing, "s": c.succeeded,
             "e": c.errored, "c": c.canceled, "x": c.expired, "lid": local_id},
        )

    def _lost(self, local_id: str, batch_id: str) -> None:
        self.log(f"judge: batch {batch_id} no longer exists on the server; its requests will be resent")
        with transaction(self.con):
            self.con.execute("UPDATE judge_batches SET status = 'lost' WHERE local_id = $lid", {"lid": local_id})
            self.con.execute(
                "UPDATE judge_batch_items SET outcome = 'missing', detail = 'batch not found', "
                "resolved_at = now()::TIMESTAMP WHERE local_id = $lid AND outcome IS NULL",
                {"lid": local_id},
            )

    # -- results

    def collect(self, local_id: str, batch_id: str, role: str) -> None:
        """Stream results, join on custom_id, store verdicts and outcomes atomically.

        Downloading results is free, so if we die half-way the next run simply
        downloads them again; nothing is written until the whole file is read."""
        import anthropic

        try:
            lines = list(self.client.messages.batches.results(batch_id))
        except anthropic.NotFoundError:
            # Deleted, or archived (results are kept 29 days): nothing to
            # collect, so the requests go out again.
            self._lost(local_id, batch_id)
            return
        except anthropic.APIError as e:
            raise JudgeError(f"judge: downloading results of {batch_id} failed: {e}; "
                             "state saved, the next run resumes") from e
        (model,) = self.con.execute("SELECT model FROM judge_batches WHERE local_id = $lid",
                                    {"lid": local_id}).fetchall()[0]
        # Price with the model the batch was sent to, even if the config changed since.
        prices = cost.prices_for(dataclasses.replace(self.settings, model=model)) or self.prices
        rows: dict[str, dict] = {}
        batch_usage = cost.Usage()
        for line in lines:
            if line.custom_id in rows:
                continue  # first line wins; the API sends one per request
            row = self._classify(line.result, role, prices)
            row["custom_id"] = line.custom_id
            rows[line.custom_id] = row
            batch_usage.add(cost.Usage(*(row[k] or 0 for k in (
                "input_tokens", "output_tokens", "cache_creation_input_tokens",
                "cache_read_input_tokens", "cost_usd"))))
        self._store(local_id, batch_id, role, list(rows.values()))
        self.progress.usage.add(batch_usage)
        self.progress.batch_ids.append(batch_id)
        summary: dict[str, int] = {}
        for r in rows.values():
            summary[r["outcome"]] = summary.get(r["outcome"], 0) + 1
        self.log(f"judge: batch {batch_id} ended: "
                 + ", ".join(f"{n:,} {k}" for k, n in sorted(summary.items()))
                 + f"; cost ${batch_usage.cost_usd:.4f}")

    def _classify(self, result, role: str, prices: cost.ModelPrices) -> dict:
        row = dict(outcome=None, error_type=None, detail=None, same_person=None, confidence=None,
                   reason=None, input_tokens=None, output_tokens=None, cache_creation_input_tokens=None,
                   cache_read_input_tokens=None, cost_usd=None)
        kind = getattr(result, "type", None)
        if kind == "succeeded" and getattr(result, "message", None) is not None:
            msg = result.message
            used = cost.usage_cost(msg.usage, prices)  # billed even when unusable
            row.update(input_tokens=used.input_tokens, output_tokens=used.output_tokens,
                       cache_creation_input_tokens=used.cache_creation_input_tokens,
                       cache_read_input_tokens=used.cache_read_input_tokens, cost_usd=used.cost_usd)
            verdict, failure, detail = prompt.parse_verdict(msg)
            if verdict is not None:
                row.update(outcome="succeeded", same_person=verdict.same_person,
                           confidence=verdict.confidence, reason=verdict.reason)
            else:
                row.update(outcome=failure, detail=detail)
        elif kind == "errored":
            err = getattr(getattr(result, "error", None), "error", None)
            etype = getattr(err, "type", None) or "unknown"
            row.update(outcome="invalid_request" if etype == "invalid_request_error" else "errored",
                       error_type=etype, detail=getattr(err, "message", None))
        elif kind in ("expired", "canceled"):
            row.update(outcome=kind)
        else:
            row.update(outcome="missing", detail=f"unknown result type {kind!r}")
        if role == "duplicate" and row["outcome"] in RETRYABLE:
            row["outcome"] = "superseded"  # the primary batch owns the retry
        return row

    def _store(self, local_id: str, batch_id: str, role: str, rows: list[dict]) -> None:
        types = {"custom_id": "VARCHAR", "outcome": "VARCHAR", "error_type": "VARCHAR", "detail": "VARCHAR",
                 "same_person": "BOOLEAN", "confidence": "DOUBLE", "reason": "VARCHAR",
                 "input_tokens": "BIGINT", "output_tokens": "BIGINT", "cache_creation_input_tokens": "BIGINT",
                 "cache_read_input_tokens": "BIGINT", "cost_usd": "DOUBLE"}
        leftover = "superseded" if role == "duplicate" else "missing"
        with registered(self.con, "judge_results_new", {n: [r[n] for r in rows] for n in types}, types):
            with transaction(self.con):
                self.con.execute(
                    """UPDATE judge_batch_items i SET outcome = r.outcome, error_type = r.error_type,
                           detail = r.detail, input_tokens = r.input_tokens, output_tokens = r.output_tokens,
                           cache_creation_input_tokens = r.cache_creation_input_tokens,
                           cache_read_input_tokens = r.cache_read_input_tokens, cost_usd = r.cost_usd,
                           resolved_at = now()::TIMESTAMP
                       FROM judge_results_new r
                       WHERE i.local_id = $lid AND i.custom_id = r.custom_id AND i.outcome IS NULL""",
                    {"lid": local_id},
                )
                self.con.execute(
                    """CREATE OR REPLACE TEMP TABLE judge_new_verdicts AS
                       SELECT q.cache_key, q.model, q.prompt_version, r.same_person, r.confidence,
                              r.reason, $bid AS batch_id, r.custom_id
                       FROM judge_results_new r
                       JOIN judge_requests q USING (custom_id)
                       WHERE r.outcome = 'succeeded' AND r.custom_id IN
                             (SELECT custom_id FROM judge_batch_items WHERE local_id = $lid)""",
                    {"bid": batch_id, "lid": local_id},
                )
                cache.store_verdicts(self.con, "judge_new_verdicts")
                self.con.execute(
                    "UPDATE judge_batch_items SET outcome = $o, detail = 'no result line', "
                    "resolved_at = now()::TIMESTAMP WHERE local_id = $lid AND outcome IS NULL",
                    {"o": leftover, "lid": local_id},
                )
                self.con.execute(
                    "UPDATE judge_batches SET status = 'collected', results_collected_at = now()::TIMESTAMP "
                    "WHERE local_id = $lid",
                    {"lid": local_id},
                )
        self.con.execute("DROP TABLE IF EXISTS judge_new_verdicts")


def _retryable_status(e) -> bool:
    return e.status_code in (408, 409, 429) or e.status_code >= 500


def _api_message(e) -> str:
    return getattr(e, "api_message", None) or str(e)


def _backoff(attempt: int) -> float:
    return min(8.0, 0.5 * 2**attempt)


def _retry_after(response, attempt: int) -> float:
    """Honour retry-after-ms / retry-after (capped at a minute), else back off."""
    headers = getattr(response, "headers", None) or {}
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        try:
            value = float(headers.get(name)) * scale
        except (TypeError, ValueError):
            continue
        if value >= 0:
            return min(value, 60.0)
    return _backoff(attempt)
