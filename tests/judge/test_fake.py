"""The fake itself, checked with the real SDK in strict mode and with raw HTTP.

Every body and result line the fake emits is also validated against the SDK's
models inside the fake (the `fake` fixture fails on any mismatch)."""

import dataclasses
import datetime as dt
import json
import time
import urllib.error
import urllib.request

import anthropic
import pytest

from dedupe.judge import JudgeSettings, prompt
from tests.judge.fake_batches import FakeBatchesServer

S = JudgeSettings()


def _client(fake, **kw):
    return anthropic.Anthropic(api_key="test", base_url=fake.url, _strict_response_validation=True,
                               max_retries=kw.pop("max_retries", 0), **kw)


def _requests(n, settings=S, tag="p"):
    return [prompt.build_request(prompt.serialise_pair({"first_name": f"{tag}{i}", "last_name": "Doe"},
                                                       {"first_name": f"{tag}{i}x", "last_name": "Doe"},
                                                       settings.fields), settings) for i in range(n)]


def _raw(fake, path, headers=None, method="GET"):
    h = {"anthropic-version": "2026-10-21", "authorization": "Bearer t"}
    h.update(headers or {})
    req = urllib.request.Request(fake.url + path, headers={k: v for k, v in h.items() if v is not None},
                                 method=method)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def test_lifecycle_counts_and_out_of_order_results(fake):
    c = _client(fake)
    reqs = _requests(30)
    b = c.messages.batches.create(requests=reqs)
    assert b.processing_status == "in_progress" and b.results_url is None
    assert b.request_counts.processing == 30 and b.expires_at - b.created_at == dt.timedelta(hours=24)
    b = c.messages.batches.retrieve(b.id)  # first poll: still in progress, all "processing"
    assert b.processing_status == "in_progress" and b.request_counts.succeeded == 0
    b = c.messages.batches.retrieve(b.id)
    assert b.processing_status == "ended" and b.ended_at is not None
    assert b.request_counts.processing == 0 and b.request_counts.succeeded == 30
    assert b.results_url.startswith(fake.url)  # absolute, on the fake's own host
    lines = list(c.messages.batches.results(b.id))
    got = [line.custom_id for line in lines]
    assert sorted(got) == sorted(r["custom_id"] for r in reqs)
    assert got != [r["custom_id"] for r in reqs]  # shuffled
    assert all(line.result.type == "succeeded" for line in lines)


def test_results_jsonl_is_compact_chunked_and_has_no_blank_lines(fake):
    c = _client(fake)
    b = c.messages.batches.create(requests=_requests(5))
    fake.finish(b.id)
    status, body = _raw(fake, f"/v1/messages/batches/{b.id}/results")
    assert status == 200
    text = body.decode()
    assert text.endswith("\n") and "\n\n" not in text and len(text.splitlines()) == 5
    assert max(len(x) for x in text.splitlines()) > fake.chunk_size  # lines straddle chunks


def test_auth_and_version_headers_are_required(fake):
    assert _raw(fake, "/v1/messages/batches", {"authorization": None})[0] == 401
    assert _raw(fake, "/v1/messages/batches", {"authorization": None, "x-api-key": "k"})[0] == 200
    status, body = _raw(fake, "/v1/messages/batches", {"anthropic-version": None})
    assert status == 400 and json.loads(body)["error"]["type"] == "invalid_request_error"
    assert _raw(fake, "/v1/messages/batches/nope")[0] == 404


def test_list_is_newest_first_and_paginates(fake):
    c = _client(fake)
    ids = [c.messages.batches.create(requests=_requests(1, tag=f"b{i}")).id for i in range(5)]
    assert [b.id for b in c.messages.batches.list(limit=2)] == ids[::-1]  # auto-pagination
    page = c.messages.batches.list(limit=2, before_id=ids[1])
    assert [b.id for b in page.data] == [ids[3], ids[2]]
    with pytest.raises(anthropic.BadRequestError):
        c.messages.batches.list(limit=0)


def test_cancel_then_cancel_again(fake):
    fake.hold_processing = True
    c = _client(fake)
    b = c.messages.batches.create(requests=_requests(4))
    b = c.messages.batches.cancel(b.id)
    assert b.processing_status == "canceling" and b.cancel_initiated_at is not None
    b = c.messages.batches.retrieve(b.id)
    assert b.processing_status == "ended" and b.request_counts.canceled == 4
    assert {line.result.type for line in c.messages.batches.results(b.id)} == {"canceled"}
    with pytest.raises(anthropic.BadRequestError):
        c.messages.batches.cancel(b.id)


def test_expiry_delete_and_archive(fake):
    fake.hold_processing = True
    c = _client(fake)
    b = c.messages.batches.create(requests=_requests(3))
    with pytest.raises(anthropic.BadRequestError):
        c.messages.batches.delete(b.id)  # still in progress
    fake.advance(25 * 3600)
    b2 = c.messages.batches.retrieve(b.id)
    assert b2.processing_status == "ended" and b2.request_counts.expired == 3 and b2.ended_at == b2.expires_at
    fake.advance(30 * 86400)
    b2 = c.messages.batches.retrieve(b.id)
    assert b2.archived_at is not None
    with pytest.raises(anthropic.NotFoundError):
        list(c.messages.batches.results(b.id))
    assert c.messages.batches.delete(b.id).type == "message_batch_deleted"
    with pytest.raises(anthropic.NotFoundError):
        c.messages.batches.retrieve(b.id)


def test_create_validation(fake):
    c = _client(fake)
    good = _requests(2)
    with pytest.raises(anthropic.BadRequestError, match="custom_id"):
        c.messages.batches.create(requests=[dict(good[0], custom_id="bad id!")])
    with pytest.raises(anthropic.BadRequestError, match="duplicate"):
        c.messages.batches.create(requests=[good[0], good[0]])
    with pytest.raises(anthropic.BadRequestError):
        c.messages.batches.create(requests=[])
    fake.max_body_bytes = 1000
    with pytest.raises(anthropic.ContentTooLargeError):
        c.messages.batches.create(requests=good)
    assert fake.live_batches() == []


def test_bad_params_become_invalid_request_results(fake):
    c = _client(fake)
    base = _requests(1)[0]
    p = base["params"]
    bad_schema = dict(p, output_config={"format": {"type": "json_schema", "schema": {
        "type": "object", "properties": {"x": {"type": "number", "minimum": 0}}, "additionalProperties": False}}})
    no_thinking_tool = prompt.build_params("x", dataclasses.replace(S, output_mode="tool"))
    del no_thinking_tool["thinking"]  # Haiku 5.5 thinks by default: forced tool use fails
    reqs = [
        {"custom_id": "temp", "params": dict(p, temperature=0.0)},
        {"custom_id": "zero", "params": dict(p, max_tokens=0)},
        {"custom_id": "stream", "params": dict(p, stream=True)},
        {"custom_id": "speed", "params": dict(p, speed="fast")},
        {"custom_id": "schema", "params": bad_schema},
        {"custom_id": "tool", "params": no_thinking_tool},
        {"custom_id": "fine", "params": p},
    ]
    b = c.messages.batches.create(requests=reqs)
    fake.finish(b.id)
    out = {line.custom_id: line.result for line in c.messages.batches.results(b.id)}
    assert out.pop("fine").type == "succeeded"
    for cid, r in out.items():
        assert r.type == "errored" and r.error.error.type == "invalid_request_error", cid


def test_injected_faults_are_retried_quickly(fake):
    c = _client(fake, max_retries=4)
    b = c.messages.batches.create(requests=_requests(1))
    fake.inject("retrieve", drop=True)  # no retry-after: the SDK backs off 0.5 s
    fake.inject("retrieve", 429)
    fake.inject("retrieve", 500)
    fake.inject("retrieve", 529)
    t = time.monotonic()
    assert c.messages.batches.retrieve(b.id).id == b.id
    assert time.monotonic() - t < 2
    assert [s for op, _, s in fake.calls if op == "retrieve"] == [0, 429, 500, 529, 200]
    fake.inject("retrieve", 503, should_retry=False)
    with pytest.raises(anthropic.ServiceUnavailableError):
        c.messages.batches.retrieve(b.id)


def test_create_stored_then_500_leaves_a_batch_behind(fake):
    """The SDK's own retry of create duplicates the batch: what batches.py guards against."""
    c = _client(fake, max_retries=1)
    fake.inject("create", 500, stored=True)
    c.messages.batches.create(requests=_requests(2))
    assert len(fake.live_batches()) == 2


def test_prompt_cache_accounting():
    with FakeBatchesServer(min_cacheable_tokens=0) as fake:
        c = _client(fake)
        b = c.messages.batches.create(requests=_requests(4))
        fake.finish(b.id)
        usages = [line.result.message.usage for line in c.messages.batches.results(b.id)]
        assert sorted(u.cache_creation_input_tokens > 0 for u in usages) == [False, False, False, True]
        assert sum(u.cache_read_input_tokens > 0 for u in usages) == 3
        assert all(u.cache_creation.ephemeral_5m_input_tokens == 0 for u in usages)
        assert fake.validation_errors == []


def test_scripted_outcomes_and_tool_mode(fake):
    c = _client(fake)
    tool = dataclasses.replace(S, output_mode="tool")
    reqs = _requests(6, tag="s") + _requests(1, tool, tag="t")
    for i, kind in enumerate(["refusal", "max_tokens", "unparsable", "api_error", "expired", "canceled"]):
        fake.script(reqs[i]["custom_id"], [kind])
    b = c.messages.batches.create(requests=reqs)
    fake.finish(b.id)
    out = {line.custom_id: line.result for line in c.messages.batches.results(b.id)}
    r = [out[q["custom_id"]] for q in reqs]
    assert r[0].message.stop_reason == "refusal" and r[0].message.stop_details.type == "refusal"
    assert r[1].message.stop_reason == "max_tokens"
    assert prompt.parse_verdict(r[2].message)[1] == "unparsable"
    assert r[3].type == "errored" and r[3].error.error.type == "api_error"
    assert (r[4].type, r[5].type) == ("expired", "canceled")
    assert r[6].message.stop_reason == "tool_use" and r[6].message.content[0].name == prompt.TOOL_NAME
    assert prompt.parse_verdict(r[6].message)[0] is not None
    b = c.messages.batches.retrieve(b.id)
    counts = b.request_counts
    assert (counts.succeeded, counts.errored, counts.expired, counts.canceled) == (4, 1, 1, 1)
