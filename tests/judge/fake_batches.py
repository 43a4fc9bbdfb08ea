"""A faithful local fake of Anthropic's Message Batches HTTP API.

A loopback ``ThreadingHTTPServer`` that the *real* ``anthropic`` SDK talks to
through ``ANTHROPIC_BASE_URL`` (nothing in the SDK is patched).  It follows
/work/shared/docs/anthropic-message-batches.md section 10:

* endpoints: create, retrieve, list (newest first, cursors), cancel, delete,
  results (absolute ``results_url``, shuffled JSONL, chunked so that lines are
  split across chunks, never a blank line);
* headers: ``Authorization: Bearer`` or ``x-api-key`` (else 401),
  ``anthropic-version`` required (else 400), ``request-id`` on every answer;
* state machine: in_progress -> ended, cancel -> canceling -> ended, expiry
  after 24 h, archive after 29 days, delete; ``request_counts`` report
  everything as processing until the batch ends;
* per-request validation turned into ``errored`` results (invalid params,
  ``temperature``, ``stream``, ``speed``, forced tool use with thinking...);
* prompt-cache accounting (1 h / 5 min writes and reads) in ``usage``;
* fault injection: queued HTTP failures per operation (429/5xx with a tiny
  ``retry-after-ms``, dropped connections, create stored-then-500, a stored
  batch hidden from ``list()`` for a while), scripted per-request outcomes
  (errored, expired, canceled, refusal, max_tokens, unparsable JSON, custom
  verdicts), and "holds" that freeze a create response or batch processing so
  a test can kill a client at a precise moment.

Every JSON body and every result line it emits is validated against the SDK's
own pydantic models; a mismatch is recorded in ``validation_errors`` (the
conftest fixture fails the test) and answered with a 500.

Time is an injectable clock (``advance()``); nothing here sleeps except a held
create, which waits on an Event.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import random
import re
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from anthropic.types import Message
from anthropic.types.messages import DeletedMessageBatch, MessageBatch, MessageBatchIndividualResponse
from anthropic.types.messages.batch_create_params import Request
from anthropic.types.message_create_params import MessageCreateParamsNonStreaming
from anthropic.types.shared import ErrorResponse
from pydantic import TypeAdapter

CUSTOM_ID_RE = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
KNOWN_VERSIONS = ("2026-10-21", "2023-06-01")
#: Models that think unless told otherwise (forced tool use then fails).
THINKS_BY_DEFAULT = ("claude-haiku-5-5", "claude-sonnet-5-5", "claude-opus-5-5", "claude-fable-5-1")
FORBIDDEN_SCHEMA_KEYWORDS = ("minimum", "maximum", "minLength", "maxLength", "multipleOf")
RESULT_KINDS = ("succeeded", "errored", "canceled", "expired")
OUTCOMES = (
    "ok", "api_error", "overloaded_error", "invalid_request_error", "expired",
    "canceled", "refusal", "max_tokens", "unparsable",
)

# Module-level on purpose: pydantic's lazy iterators need their adapter alive.
_PARAMS_ADAPTER = TypeAdapter(MessageCreateParamsNonStreaming)
_REQUEST_ADAPTER = TypeAdapter(Request)
_PARAM_KEYS = set(MessageCreateParamsNonStreaming.__required_keys__) | set(
    MessageCreateParamsNonStreaming.__optional_keys__
)


def force(obj: Any) -> Any:
    """Materialise pydantic's lazy iterators so TypedDict validation really runs."""
    if isinstance(obj, dict):
        return {k: force(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [force(v) for v in obj]
    if type(obj).__name__ == "ValidatorIterator":
        return [force(v) for v in obj]
    return obj


def validate_params(params: Any) -> str | None:
    """Check request params against the SDK's own request type; None if valid.

    Used by the fake (to turn bad params into errored results) and by tests (the
    dry-run JSONL).  pydantic ignores unknown TypedDict keys, so they are
    checked by name: that is how ``temperature`` is caught."""
    if not isinstance(params, dict):
        return "params: must be an object"
    extra = sorted(set(params) - _PARAM_KEYS)
    if extra:
        return f"{extra[0]}: Extra inputs are not permitted"
    try:
        force(_PARAMS_ADAPTER.validate_python(params))
    except Exception as e:  # pydantic.ValidationError
        return str(e).splitlines()[0] + ": " + " ".join(str(e).splitlines()[1:3])
    return None


def validate_request_item(item: Any) -> str | None:
    """Check one batch request item against the SDK's ``batch_create_params.Request``."""
    if not isinstance(item, dict) or set(item) != {"custom_id", "params"}:
        return "request item must have exactly custom_id and params"
    if not isinstance(item["custom_id"], str) or not CUSTOM_ID_RE.match(item["custom_id"]):
        return f"custom_id {item['custom_id']!r} does not match {CUSTOM_ID_RE.pattern}"
    try:
        force(_REQUEST_ADAPTER.validate_python(item))
    except Exception as e:  # pydantic.ValidationError
        return str(e)
    return validate_params(item["params"])


def _ts(t: dt.datetime | None) -> str | None:
    return None if t is None else t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text.encode("utf-8")) / 4))


class FakeClock:
    """Wall clock plus an offset that tests move with advance()."""

    def __init__(self) -> None:
        self.offset = dt.timedelta(0)

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += dt.timedelta(seconds=seconds)


@dataclasses.dataclass
class Fault:
    status: int = 500
    retry_after_ms: int | None = 10
    drop: bool = False  # close the connection without answering
    stored: bool = False  # create only: store the batch, then fail
    hide_from_list: int = 0  # with stored: hide the batch from the next N list() calls
    should_retry: bool | None = None  # x-should-retry header


@dataclasses.dataclass
class FakeBatch:
    id: str
    requests: list[dict]
    created_at: dt.datetime
    expires_at: dt.datetime
    seq: int
    processing_status: str = "in_progress"
    ended_at: dt.datetime | None = None
    cancel_initiated_at: dt.datetime | None = None
    archived_at: dt.datetime | None = None
    results: dict[str, dict] = dataclasses.field(default_factory=dict)
    retrieves: int = 0
    deleted: bool = False
    held: bool = False


class FakeBatchesServer:
    """Run with ``with FakeBatchesServer() as fake:``; point the SDK at ``fake.url``."""

    def __init__(
        self,
        *,
        seed: int = 0,
        finish_after_retrieves: int = 2,
        hold_processing: bool = False,
        max_body_bytes: int = 256 * 1024 * 1024,
        max_requests: int = 100_000,
        min_cacheable_tokens: int = 4096,
        cancel_keeps_fraction: float = 0.0,
        chunk_size: int = 97,
    ) -> None:
        self.clock = FakeClock()
        self.rng = random.Random(seed)
        self.finish_after_retrieves = finish_after_retrieves
        self.hold_processing = hold_processing
        self.max_body_bytes = max_body_bytes
        self.max_requests = max_requests
        self.min_cacheable_tokens = min_cacheable_tokens
        self.cancel_keeps_fraction = cancel_keeps_fraction
        self.chunk_size = chunk_size
        self.responder: Callable[[dict, dict], dict] = default_verdict

        self.lock = threading.RLock()
        self.batches: dict[str, FakeBatch] = {}
        self.calls: list[tuple[str, str, int]] = []  # (op, path, status)
        self.faults: dict[str, deque[Fault]] = {}
        self.scripts: list[tuple[str, deque]] = []
        self.processed: list[tuple[str, str, str]] = []  # (batch_id, custom_id, outcome)
        self.validation_errors: list[str] = []
        self.prompt_cache: dict[str, dt.datetime] = {}
        self.hidden: dict[str, int] = {}
        self._seq = 0

        # Holds.  hold_create=True: a create stores the batch, sets
        # `create_stored`, then waits for `release_create` before answering.
        # hold_create="before_store": sets `create_received` and waits *before*
        # storing; with discard_held_create it then drops the request unstored.
        self.hold_create: bool | str = False
        self.discard_held_create = False
        self.create_received = threading.Event()
        self.create_stored = threading.Event()
        self.release_create = threading.Event()
        self.retrieved = threading.Event()  # set on every retrieve

        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> "FakeBatchesServer":
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release_create.set()
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> "FakeBatchesServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # ------------------------------------------------------------ test hooks

    def inject(self, op: str, status: int = 500, *, times: int = 1, **kw: Any) -> None:
        """Queue `times` failures for op in {create, retrieve, list, cancel, delete, results}."""
        with self.lock:
            q = self.faults.setdefault(op, deque())
            for _ in range(times):
                q.append(Fault(status=status, **kw))

    def script(self, match: str, outcomes: list) -> None:
        """Outcomes for requests whose custom_id equals `match` or whose user text
        contains it, consumed one per processing (attempt); then "ok".
        An outcome is one of OUTCOMES or a verdict dict to answer with."""
        for o in outcomes:
            assert isinstance(o, dict) or o in OUTCOMES, o
        with self.lock:
            self.scripts.append((match, deque(outcomes)))

    def finish(self, batch_id: str | None = None) -> None:
        """Process and end one batch (or every open one) now."""
        with self.lock:
            for b in self._open(batch_id):
                self._process_all(b)

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.clock.advance(seconds)
            for b in list(self.batches.values()):
                self._tick(b, retrieving=False)

    def ops(self, op: str, status: int | None = None) -> int:
        """How many calls of op the server answered (with `status`, if given)."""
        with self.lock:
            return sum(1 for o, _, s in self.calls if o == op and (status is None or s == status))

    def live_batches(self) -> list[FakeBatch]:
        with self.lock:
            return [b for b in self.batches.values() if not b.deleted]

    def billed(self) -> dict[str, int]:
        """custom_id -> how many times a billed (succeeded) result was produced."""
        out: dict[str, int] = {}
        with self.lock:
            for _, cid, outcome in self.processed:
                if outcome in ("ok", "refusal", "max_tokens", "unparsable") or outcome.startswith("verdict"):
                    out[cid] = out.get(cid, 0) + 1
        return out

    def submitted_custom_ids(self) -> list[str]:
        with self.lock:
            return [r["custom_id"] for b in self.batches.values() for r in b.requests]

    # ------------------------------------------------------------ state machine

    def _open(self, batch_id: str | None) -> list[FakeBatch]:
        bs = [self.batches[batch_id]] if batch_id else list(self.batches.values())
        return [b for b in bs if b.processing_status != "ended" and not b.deleted]

    def _tick(self, b: FakeBatch, *, retrieving: bool) -> None:
        now = self.clock.now()
        if b.processing_status == "in_progress" and now >= b.expires_at:
            self._end(b, leftover="expired", at=b.expires_at)
        elif b.processing_status == "canceling":
            for r in b.requests:
                if r["custom_id"] not in b.results and self.rng.random() < self.cancel_keeps_fraction:
                    self._process(b, r)
            self._end(b, leftover="canceled", at=now)
        elif b.processing_status == "in_progress" and not (self.hold_processing or b.held):
            if retrieving and b.retrieves >= self.finish_after_retrieves:
                self._process_all(b)
        if b.processing_status == "ended" and b.archived_at is None and now >= b.created_at + dt.timedelta(days=29):
            b.archived_at = now

    def _process_all(self, b: FakeBatch) -> None:
        for r in b.requests:
            if r["custom_id"] not in b.results:
                self._process(b, r)
        self._end(b, leftover="expired", at=self.clock.now())

    def _end(self, b: FakeBatch, *, leftover: str, at: dt.datetime) -> None:
        for r in b.requests:
            if r["custom_id"] not in b.results:
                b.results[r["custom_id"]] = {"type": leftover}
                self.processed.append((b.id, r["custom_id"], leftover))
        b.processing_status = "ended"
        b.ended_at = at

    def _next_outcome(self, r: dict) -> Any:
        text = _user_text(r.get("params"))
        for match, q in self.scripts:
            if q and (match == r["custom_id"] or match in text):
                return q.popleft()
        return "ok"

    def _process(self, b: FakeBatch, r: dict) -> None:
        cid, params = r["custom_id"], r["params"]
        outcome = self._next_outcome(r)
        problem = self._request_problem(params)
        if problem:
            outcome = "invalid_request_error"
        label = outcome if isinstance(outcome, str) else "verdict"
        if outcome in ("expired", "canceled"):
            result = {"type": outcome}
        elif outcome in ("api_error", "overloaded_error", "invalid_request_error"):
            message = problem or {"api_error": "Internal server error", "overloaded_error": "Overloaded",
                                  "invalid_request_error": "invalid request"}[outcome]
            result = {"type": "errored", "error": {"type": "error", "error": {"type": outcome, "message": message},
                                                   "request_id": self._req_id()}}
        else:
            result = {"type": "succeeded", "message": self._message(params, outcome)}
        b.results[cid] = result
        self.processed.append((b.id, cid, label))

    def _request_problem(self, params: dict) -> str | None:
        """Validation the API does asynchronously (errored results, section 10.4)."""
        problem = validate_params(params)
        if problem:
            return problem
        if params.get("max_tokens", 0) < 1:
            return "max_tokens: must be at least 1"
        if params.get("stream"):
            return "stream: not supported in batches"
        if "speed" in params:
            return "speed: not supported in batches"
        if not params.get("messages"):
            return "messages: at least one message is required"
        tc = params.get("tool_choice") or {}
        thinking = (params.get("thinking") or {}).get("type")
        thinks = thinking not in (None, "disabled") or (thinking is None and params["model"] in THINKS_BY_DEFAULT)
        if tc.get("type") in ("tool", "any") and thinks:
            return "tool_choice: forced tool use is not compatible with thinking"
        fmt = ((params.get("output_config") or {}).get("format")) or None
        if fmt is not None:
            p = _schema_problem(fmt.get("schema"))
            if p:
                return f"output_config.format.schema: {p}"
        return None

    def _message(self, params: dict, outcome: Any) -> dict:
        text_in = _user_text(params)
        records = _records(text_in)
        verdict = outcome if isinstance(outcome, dict) else self.responder(*records)
        answer = json.dumps(verdict)
        tool_mode = (params.get("tool_choice") or {}).get("type") == "tool"
        stop, stop_details = "end_turn", None
        if outcome == "refusal":
            content, stop = [], "refusal"
            stop_details = {"type": "refusal", "category": None, "explanation": None}
        elif outcome == "max_tokens":
            content, stop = [{"type": "text", "text": answer[: len(answer) // 2]}], "max_tokens"
        elif outcome == "unparsable":
            content = [{"type": "text", "text": "I think they are the same person."}]
        elif tool_mode:
            content = [{"type": "tool_use", "id": "toolu_01" + self._rand(22),
                        "name": params["tool_choice"]["name"], "input": verdict}]
            stop = "tool_use"
        else:
            content = [{"type": "text", "text": answer}]
        return {
            "id": "msg_01" + self._rand(22), "type": "message", "role": "assistant",
            "model": params["model"], "content": content, "stop_reason": stop,
            "stop_sequence": None, "stop_details": stop_details,
            "usage": self._usage(params, text_in, answer),
        }

    def _usage(self, params: dict, user_text: str, answer: str) -> dict:
        system = params.get("system") or []
        if isinstance(system, str):
            system = [{"type": "text", "text": system}]
        sys_text = "".join(b.get("text", "") for b in system)
        prefix = _tokens(sys_text) if sys_text else 0
        ttl = next((b["cache_control"].get("ttl", "5m") for b in system if b.get("cache_control")), None)
        read = write = 0
        if ttl and prefix >= self.min_cacheable_tokens:
            key = f"{params['model']}\n{sys_text}"
            now = self.clock.now()
            if self.prompt_cache.get(key, now) > now:
                read = prefix
            else:
                write = prefix
            self.prompt_cache[key] = now + (dt.timedelta(hours=1) if ttl == "1h" else dt.timedelta(minutes=5))
        extra = _tokens(json.dumps(params.get("output_config") or params.get("tools") or ""))
        return {
            "input_tokens": _tokens(user_text) + 10 + extra + (0 if (read or write) else prefix),
            "output_tokens": _tokens(answer),
            "cache_creation_input_tokens": write,
            "cache_read_input_tokens": read,
            "cache_creation": {"ephemeral_5m_input_tokens": write if ttl == "5m" else 0,
                               "ephemeral_1h_input_tokens": write if ttl == "1h" else 0},
            "service_tier": "batch",
        }

    # ------------------------------------------------------------ JSON shapes

    def _rand(self, n: int) -> str:
        with self.lock:
            return "".join(self.rng.choice(BASE62) for _ in range(n))

    def _req_id(self) -> str:
        return "req_01" + self._rand(22)

    def batch_json(self, b: FakeBatch) -> dict:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if b.processing_status == "ended":
            for res in b.results.values():
                counts[res["type"]] += 1
        else:
            counts["processing"] = len(b.requests)  # nothing is reported until the end
        return {
            "id": b.id, "type": "message_batch", "processing_status": b.processing_status,
            "request_counts": counts, "created_at": _ts(b.created_at), "expires_at": _ts(b.expires_at),
            "ended_at": _ts(b.ended_at), "cancel_initiated_at": _ts(b.cancel_initiated_at),
            "archived_at": _ts(b.archived_at),
            "results_url": f"{self.url}/v1/messages/batches/{b.id}/results" if b.processing_status == "ended" else None,
        }

    def check(self, model: Any, obj: dict) -> dict:
        """Validate an emitted object with the SDK's model; record any mismatch."""
        try:
            model.model_validate(obj)
            if model is MessageBatchIndividualResponse:
                kind = obj["result"]["type"]
                if kind not in RESULT_KINDS:
                    raise ValueError(f"unknown result type {kind!r}")
                if kind == "succeeded":
                    Message.model_validate(obj["result"]["message"])
                if kind == "errored":
                    ErrorResponse.model_validate(obj["result"]["error"])
        except Exception as e:
            self.validation_errors.append(f"{model.__name__}: {e}")
            raise
        return obj

    # ------------------------------------------------------------ operations

    def op_create(self, body: Any) -> tuple[int, dict]:
        reqs = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(reqs, list) or not reqs:
            return _error(400, "invalid_request_error", "requests: must be a non-empty list")
        if len(reqs) > self.max_requests:
            return _error(400, "invalid_request_error", f"requests: at most {self.max_requests} items")
        seen = set()
        for i, r in enumerate(reqs):
            if not isinstance(r, dict) or "custom_id" not in r or "params" not in r:
                return _error(400, "invalid_request_error", f"requests.{i}: custom_id and params are required")
            cid = r["custom_id"]
            if not isinstance(cid, str) or not CUSTOM_ID_RE.match(cid):
                return _error(400, "invalid_request_error",
                              f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
            if cid in seen:
                return _error(400, "invalid_request_error", f"requests.{i}.custom_id: duplicate custom_id {cid}")
            seen.add(cid)
        with self.lock:
            now = self.clock.now()
            self._seq += 1
            b = FakeBatch(id="msgbatch_01" + self._rand(22), requests=reqs, created_at=now,
                          expires_at=now + dt.timedelta(hours=24), seq=self._seq)
            self.batches[b.id] = b
            return 200, self.check(MessageBatch, self.batch_json(b))

    def op_retrieve(self, batch_id: str) -> tuple[int, dict]:
        with self.lock:
            b = self._get(batch_id)
            if b is None:
                return _not_found(batch_id)
            b.retrieves += 1
            self._tick(b, retrieving=True)
            out = self.check(MessageBatch, self.batch_json(b))
        self.retrieved.set()
        return 200, out

    def op_list(self, query: dict) -> tuple[int, dict]:
        try:
            limit = int(query.get("limit", ["20"])[0])
        except ValueError:
            limit = -1
        if not 1 <= limit <= 1000:
            return _error(400, "invalid_request_error", "limit: must be between 1 and 1000")
        with self.lock:
            items = sorted((b for b in self.batches.values() if not b.deleted), key=lambda b: -b.seq)
            for b in items:
                self._tick(b, retrieving=False)
            visible = []
            for b in items:
                if self.hidden.get(b.id, 0) > 0:
                    self.hidden[b.id] -= 1
                else:
                    visible.append(b)
            ids = [b.id for b in visible]
            if "before_id" in query:  # newer than the cursor, nearest first page
                bid = query["before_id"][0]
                end = ids.index(bid) if bid in ids else 0
                start = max(0, end - limit)
                page, has_more = visible[start:end], start > 0
            else:
                aid = query.get("after_id", [None])[0]
                start = ids.index(aid) + 1 if aid in ids else (0 if aid is None else len(ids))
                page, has_more = visible[start:start + limit], len(visible) > start + limit
            data = [self.check(MessageBatch, self.batch_json(b)) for b in page]
            return 200, {"data": data, "has_more": has_more,
                         "first_id": page[0].id if page else None, "last_id": page[-1].id if page else None}

    def op_cancel(self, batch_id: str) -> tuple[int, dict]:
        with self.lock:
            b = self._get(batch_id)
            if b is None:
                return _not_found(batch_id)
            if b.processing_status == "ended":
                return _error(400, "invalid_request_error", f"batch {batch_id} has already ended")
            if b.processing_status == "in_progress":
                b.processing_status = "canceling"
                b.cancel_initiated_at = self.clock.now()
            return 200, self.check(MessageBatch, self.batch_json(b))

    def op_delete(self, batch_id: str) -> tuple[int, dict]:
        with self.lock:
            b = self._get(batch_id)
            if b is None:
                return _not_found(batch_id)
            if b.processing_status != "ended":
                return _error(400, "invalid_request_error", "a batch must end (or be canceled) before deletion")
            b.deleted = True
            return 200, self.check(DeletedMessageBatch, {"id": b.id, "type": "message_batch_deleted"})

    def op_results(self, batch_id: str) -> tuple[int, Any]:
        with self.lock:
            b = self._get(batch_id)
            if b is None:
                return _not_found(batch_id)
            self._tick(b, retrieving=False)
            if b.processing_status != "ended":
                return _error(400, "invalid_request_error", "results are available once the batch has ended")
            if b.archived_at is not None:
                return _error(404, "not_found_error", "results are no longer available (archived)")
            lines = [{"custom_id": r["custom_id"], "result": b.results[r["custom_id"]]} for r in b.requests]
            self.rng.shuffle(lines)  # results come out of order
            payload = "".join(json.dumps(self.check(MessageBatchIndividualResponse, ln),
                                         separators=(",", ":")) + "\n" for ln in lines)
        return 200, payload.encode("utf-8")

    def _get(self, batch_id: str) -> FakeBatch | None:
        b = self.batches.get(batch_id)
        return None if b is None or b.deleted else b


# ------------------------------------------------------------------ helpers


def _error(status: int, etype: str, message: str) -> tuple[int, dict]:
    return status, {"type": "error", "error": {"type": etype, "message": message}, "request_id": None}


def _not_found(batch_id: str) -> tuple[int, dict]:
    return _error(404, "not_found_error", f"batch {batch_id} not found")


def _schema_problem(schema: Any) -> str | None:
    """Structured-outputs restrictions (section 7): closed objects, no bounds."""
    if not isinstance(schema, dict):
        return "must be an object"
    for k in FORBIDDEN_SCHEMA_KEYWORDS:
        if k in schema:
            return f"{k} is not supported"
    if schema.get("type") == "object":
        if schema.get("additionalProperties") is not False:
            return "additionalProperties must be false"
        for sub in (schema.get("properties") or {}).values():
            p = _schema_problem(sub)
            if p:
                return p
    return None


def _user_text(params: Any) -> str:
    try:
        content = params["messages"][-1]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    if isinstance(content, str):
        return content
    return "".join(b.get("text", "") for b in content if isinstance(b, dict))


def _records(text: str) -> tuple[dict, dict]:
    found = re.findall(r"^Record [AB]: (\{.*\})$", text, flags=re.M)
    try:
        a, b = (json.loads(x) for x in found[:2])
        return a, b
    except (ValueError, TypeError):
        return {}, {}


def default_verdict(a: dict, b: dict) -> dict:
    """A deterministic stand-in for the model: same email, or same last name and
    a first name with the same initial, is the same person."""
    if a.get("email") and a.get("email") == b.get("email"):
        return {"same_person": True, "confidence": 0.95, "reason": "Same email address."}
    if a.get("last_name") and a.get("last_name") == b.get("last_name"):
        if (a.get("first_name") or "?")[:1] == (b.get("first_name") or "!")[:1]:
            return {"same_person": True, "confidence": 0.85, "reason": "Same surname; compatible given names."}
        return {"same_person": False, "confidence": 0.6, "reason": "Same surname, different given names."}
    return {"same_person": False, "confidence": 0.9, "reason": "Different names."}


# ------------------------------------------------------------------ HTTP


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle's algorithm on, the body then waits
    # for the client's delayed ACK, ~40 ms on every call: a stall of this fake, not of the API.
    disable_nagle_algorithm = True
    fake: FakeBatchesServer

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _route(self, method: str, path: str) -> tuple[str, str | None]:
        parts = [p for p in path.split("/") if p]
        if parts[:3] != ["v1", "messages", "batches"]:
            return "unknown", None
        rest = parts[3:]
        if not rest:
            return {"POST": "create", "GET": "list"}.get(method, "unknown"), None
        if len(rest) == 1:
            return {"GET": "retrieve", "DELETE": "delete"}.get(method, "unknown"), rest[0]
        if len(rest) == 2 and rest[1] == "cancel" and method == "POST":
            return "cancel", rest[0]
        if len(rest) == 2 and rest[1] == "results" and method == "GET":
            return "results", rest[0]
        return "unknown", None

    def _dispatch(self, method: str) -> None:
        fake = self.fake
        url = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        op, batch_id = self._route(method, url.path)
        try:
            status, body = self._handle(op, batch_id, url, raw)
        except Exception as e:  # a bug in the fake or an invalid emitted shape
            status, body = _error(500, "api_error", f"fake failure: {e}")
        if status is None:  # dropped connection
            return
        with fake.lock:
            fake.calls.append((op, url.path, status))
        self._send(status, body, getattr(self, "_extra_headers", {}))

    def _handle(self, op: str, batch_id: str | None, url: Any, raw: bytes) -> tuple[Any, Any]:
        fake = self.fake
        self._extra_headers: dict[str, str] = {}
        auth = self.headers.get("authorization", "")
        if not (auth.startswith("Bearer ") and auth[7:].strip()) and not self.headers.get("x-api-key"):
            return _error(401, "authentication_error", "invalid x-api-key or bearer token")
        if self.headers.get("anthropic-version") not in KNOWN_VERSIONS:
            return _error(400, "invalid_request_error", "anthropic-version header is required")
        if op == "unknown":
            return _error(404, "not_found_error", f"no route for {self.command} {url.path}")

        with fake.lock:
            q = fake.faults.get(op)
            fault = q.popleft() if q else None
        if fault and fault.drop:
            self.close_connection = True
            self.connection.close()
            with fake.lock:
                fake.calls.append((op, url.path, 0))
            return None, None
        if fault and not fault.stored:
            return self._fault_response(fault, op)

        if op == "create":
            if len(raw) > fake.max_body_bytes:
                return _error(413, "request_too_large", f"request exceeds {fake.max_body_bytes} bytes")
            try:
                body = json.loads(raw)
            except ValueError:
                return _error(400, "invalid_request_error", "body is not valid JSON")
            if fake.hold_create == "before_store":
                # The request reached the server but was not stored yet.
                fake.create_received.set()
                fake.release_create.wait(timeout=60)
                if fake.discard_held_create:  # as if the client's death aborted it
                    self.close_connection = True
                    return None, None
            status, out = fake.op_create(body)
            if status == 200:
                if fault and fault.hide_from_list:
                    with fake.lock:
                        fake.hidden[out["id"]] = fault.hide_from_list
                fake.create_stored.set()
                if fake.hold_create is True:
                    # Stored on the server; the client has not heard back yet.
                    fake.release_create.wait(timeout=60)
            if fault:  # stored-then-fail
                return self._fault_response(fault, op)
            return status, out
        if op == "list":
            return fake.op_list(parse_qs(url.query))
        assert batch_id is not None
        return {"retrieve": fake.op_retrieve, "cancel": fake.op_cancel, "delete": fake.op_delete,
                "results": fake.op_results}[op](batch_id)

    def _fault_response(self, fault: Fault, op: str) -> tuple[int, dict]:
        if fault.retry_after_ms is not None:
            self._extra_headers["retry-after-ms"] = str(fault.retry_after_ms)
        if fault.should_retry is not None:
            self._extra_headers["x-should-retry"] = "true" if fault.should_retry else "false"
        etype = {429: "rate_limit_error", 529: "overloaded_error", 504: "timeout_error",
                 409: "conflict_error", 408: "timeout_error"}.get(fault.status, "api_error")
        if fault.status < 500 and fault.status not in (408, 409, 429):
            etype = "invalid_request_error"
        return _error(fault.status, etype, f"injected {fault.status} on {op}")

    def _send(self, status: int, body: Any, extra: dict[str, str]) -> None:
        fake = self.fake
        try:
            self.send_response(status)
            self.send_header("request-id", fake._req_id())
            for k, v in extra.items():
                self.send_header(k, v)
            if isinstance(body, bytes):  # JSONL, chunked on purpose
                self.send_header("content-type", "application/binary")
                self.send_header("transfer-encoding", "chunked")
                self.end_headers()
                for i in range(0, len(body), fake.chunk_size):
                    piece = body[i:i + fake.chunk_size]
                    self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
            else:
                if status >= 400:
                    body["request_id"] = fake._req_id()
                    # 413's "request_too_large" is real but missing from the
                    # SDK's ErrorType literal (doc section 5); check the rest.
                    if body["error"]["type"] != "request_too_large":
                        fake.check(ErrorResponse, body)
                data = json.dumps(body).encode()
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True  # the client went away (e.g. was killed)
