"""What the model is asked, exactly: rubric, pair serialisation, verdict schema.

Everything in this module is pure (no I/O) so tests and the dry run can show
precisely what would leave the machine.

Design choices
--------------
* The rubric is the system prompt, byte-identical across requests and marked
  ``cache_control: {"type": "ephemeral", "ttl": "1h"}`` so that, where the model
  caches a prefix this long, every request after the first in a batch reads it
  at a tenth of the input price.  The 1 h TTL matters because a batch can run
  for longer than the default 5 minutes.
* The pair goes in the user message as two compact JSON objects, keys in the
  canonical field order, missing values left out.  JSON quotes values, so an
  odd value (a company called "Smith: CEO") cannot be mistaken for structure.
* The two records are put in a canonical order (sorted by their JSON text):
  the question is symmetric, so (A, B) and (B, A) must be the same request and
  share one cache entry.
* Nothing identifying the pair is sent: no pair key, record id or source name.
  Source names can leak the truth (two records from the same source are rarely
  duplicates), and ids help the model with nothing.
* ``custom_id`` is a hash of the full request ``params``: it is stable for the
  pair (same content and settings give the same id across runs and resends),
  fits ``^[a-zA-Z0-9_-]{1,64}$`` whatever the pair key looks like, and, unlike a
  hash of the pair key, cannot be brute-forced back to record ids.  Because it
  names the exact request, "never resend an invalid_request_error as is" is a
  simple rule: never resend that custom_id.
* The verdict cache key is narrower: pair text, model, prompt_version and a
  fingerprint of the rubric and schema.  Changing max_tokens or output_mode
  changes the request but keeps earlier verdicts; editing the rubric in code
  invalidates them even if nobody bumped prompt_version.
* No ``temperature``: API version 2026-10-21 rejects it.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

from .settings import CANONICAL_FIELDS, JudgeSettings

TOOL_NAME = "record_verdict"

RUBRIC = """\
You decide whether two contact records from business systems (CRM, billing, \
event sign-ups, support desk) describe the same real person.

Each record is a JSON object with some of these fields: first_name, \
middle_name, last_name, email, phone, company, title, street, city, postcode, \
region, country, date_of_birth. A field that is absent is unknown, not \
different. Values may already be normalised (case, accents, phone formats).

These are consistent with the SAME person:
- Nicknames, short forms, initials and transliterations of one given name: \
Bob/Robert, Bill/William, Peggy/Margaret, Jon/John/Jonathan, Sasha/Alexander, \
J./John, José/Jose.
- Typos, a missing or added middle name, first and last name swapped.
- A surname change (marriage, hyphenation, double surnames in another order) \
when the other details agree.
- Company rebrands, mergers and acquisitions, and legal-suffix differences \
(Acme Inc, ACME Corporation, Acme Corp, AcmeCorp). An email address at the old \
and the new domain of the same company with the same or a similar local part \
(jsmith@acme.com and j.smith@acmecorp.com) points to one person.
- Job changes: a new employer or title does not make a new person when the \
name agrees and a personal identifier (personal email, mobile number) is shared.
- A move to another city, when the name and a personal identifier agree.

These are NOT evidence of the same person, or point to different people:
- Namesakes: a common name (John Smith, Maria Garcia, Wei Zhang) with no \
shared personal identifier is not enough, even at the same company or in the \
same city.
- Generational suffixes and relatives: Sr and Jr, II and III, or different \
dates of birth are different people, even at the same address or phone number.
- Shared mailboxes and role addresses (info@, sales@, office@, hr@, \
support@, admin@, contact@, team@, billing@) belong to an organisation, not to \
a person.
- Office lines, switchboards, main numbers and household landlines are shared \
by several people; a matching phone number counts only together with a \
matching name.
- Same company and title but given names that are not variants of each other: \
colleagues, not one person.

Answer with:
- same_person: true only if the records more likely than not describe the \
same person.
- confidence: your probability, from 0 to 1, that your same_person answer is \
correct. Use 0.5 to 0.7 when the evidence is thin or mixed; use more than 0.9 \
only when a personal identifier agrees and nothing conflicts.
- reason: one short sentence, at most 25 words, naming the decisive evidence, \
for example "Same mobile number; Bob is short for Robert; Acme renamed to \
AcmeCorp."

Judge only from the two records. Do not use outside knowledge about real \
people.
"""

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["same_person", "confidence", "reason"],
    "properties": {
        "same_person": {
            "type": "boolean",
            "description": "True if both records describe the same real person.",
        },
        "confidence": {
            "type": "number",
            "description": "Probability from 0 to 1 that same_person is correct.",
        },
        "reason": {
            "type": "string",
            "description": "One short sentence naming the decisive evidence.",
        },
    },
}

_QUESTION = "Are these two contact records the same person?"


def _sha256(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8")
        # Length-prefix each part so ("ab","c") and ("a","bc") differ.
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


#: Changes whenever the rubric or the schema changes (part of the cache key).
PROMPT_FINGERPRINT = _sha256(RUBRIC, json.dumps(VERDICT_SCHEMA, sort_keys=True))[:16]


def _clean(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = " ".join(str(value).split())  # collapse runs of whitespace
    return text or None


def record_json(record: Mapping[str, Any], fields: tuple[str, ...]) -> str:
    """One record as compact JSON: allowed fields only, canonical order, no nulls."""
    out = {}
    for f in CANONICAL_FIELDS:  # canonical order, whatever order `fields` has
        if f in fields:
            v = _clean(record.get(f))
            if v is not None:
                out[f] = v
    return json.dumps(out, ensure_ascii=False, separators=(", ", ": "))


def serialise_pair(
    left: Mapping[str, Any], right: Mapping[str, Any], fields: tuple[str, ...]
) -> str:
    """The user message for one pair: the only pair-specific text that is sent."""
    a, b = sorted((record_json(left, fields), record_json(right, fields)))
    return f"{_QUESTION}\nRecord A: {a}\nRecord B: {b}"


def params_template(settings: JudgeSettings) -> dict[str, Any]:
    """Request params shared by every request (everything except `messages`)."""
    params: dict[str, Any] = {
        "model": settings.model,
        "max_tokens": settings.max_tokens,
        "system": [
            {
                "type": "text",
                "text": RUBRIC,
                "cache_control": {"type": "ephemeral", "ttl": "1h"},
            }
        ],
    }
    if settings.output_mode == "json_schema":
        params["output_config"] = {"format": {"type": "json_schema", "schema": VERDICT_SCHEMA}}
    else:
        params["tools"] = [
            {
                "name": TOOL_NAME,
                "description": "Record the verdict on whether the two records are one person.",
                "input_schema": VERDICT_SCHEMA,
                "strict": True,
            }
        ]
        params["tool_choice"] = {
            "type": "tool",
            "name": TOOL_NAME,
            "disable_parallel_tool_use": True,
        }
    if settings.thinking == "disabled":
        params["thinking"] = {"type": "disabled"}
    return params


def shared_text(settings: JudgeSettings) -> str:
    """The text every request carries besides the pair: rubric plus the schema
    (or tool definition) the model is shown.  Used for token estimates."""
    p = params_template(settings)
    extra = p.get("output_config") or {"tools": p.get("tools"), "tool_choice": p.get("tool_choice")}
    return RUBRIC + json.dumps(extra, ensure_ascii=False)


def build_params(user_text: str, settings: JudgeSettings) -> dict[str, Any]:
    params = params_template(settings)
    params["messages"] = [{"role": "user", "content": user_text}]
    return params


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class RequestIds:
    """custom_id and cache key for many pairs, hashing the shared template once."""

    def __init__(self, settings: JudgeSettings):
        self.settings = settings
        self._template_sha = _sha256(_canonical(params_template(settings)))
        template_bytes = len(json.dumps(params_template(settings)).encode())
        # {"custom_id": "...", "params": {..., "messages": [{"role": "user", "content": ...}]}}
        self._fixed_bytes = template_bytes + 110

    def plan_signature(self) -> str:
        """Everything besides the two records that shapes a request's text, ids and size."""
        s = self.settings
        return _sha256(self._template_sha, s.model, s.prompt_version, PROMPT_FINGERPRINT, ",".join(s.fields))

    def custom_id(self, user_text: str) -> str:
        # 40 hex chars = 160 bits: collisions are out of the question, and
        # "j1_" + 40 = 43 chars stays well inside the 64-char limit.
        return "j1_" + _sha256(self._template_sha, user_text)[:40]

    def cache_key(self, user_text: str) -> str:
        s = self.settings
        return _sha256(s.model, s.prompt_version, PROMPT_FINGERPRINT, user_text)

    def request_bytes(self, user_text: str) -> int:
        return self._fixed_bytes + len(json.dumps(user_text).encode())


def build_request(user_text: str, settings: JudgeSettings) -> dict[str, Any]:
    """One batch request item: ``{"custom_id", "params"}``."""
    return {
        "custom_id": RequestIds(settings).custom_id(user_text),
        "params": build_params(user_text, settings),
    }


# ---------------------------------------------------------------- verdicts


@dataclass(frozen=True)
class Verdict:
    same_person: bool
    confidence: float
    reason: str


#: Outcomes of a `succeeded` result that carry no usable verdict.  They are
#: billed, so they are *not* resent automatically (the same request would most
#: likely fail the same way and be billed again); bump prompt_version or change
#: settings to try again.
FAILED_REFUSAL = "refusal"
FAILED_MAX_TOKENS = "max_tokens"
FAILED_UNPARSABLE = "unparsable"


def parse_verdict(message: Any) -> tuple[Verdict | None, str | None, str]:
    """Parse a `Message` (SDK object) into (verdict, failure kind, detail)."""
    stop = getattr(message, "stop_reason", None)
    if stop == "refusal":
        details = getattr(message, "stop_details", None)
        category = getattr(details, "category", None) if details else None
        return None, FAILED_REFUSAL, f"refusal ({category or 'no category'})"
    if stop == "max_tokens":
        return None, FAILED_MAX_TOKENS, "stopped at max_tokens before the verdict was complete"
    blocks = list(getattr(message, "content", None) or [])
    payload: Any = None
    # Select blocks by type: with thinking on, the answer is not content[0].
    for block in blocks:
        if getattr(block, "type", None) == "tool_use" and getattr(block, "name", None) == TOOL_NAME:
            payload = getattr(block, "input", None)
    if payload is None:
        texts = [b.text for b in blocks if getattr(b, "type", None) == "text"]
        if not texts:
            return None, FAILED_UNPARSABLE, "no text or tool_use block"
        try:
            payload = json.loads(texts[-1])
        except (ValueError, TypeError):
            return None, FAILED_UNPARSABLE, f"not JSON: {texts[-1][:80]!r}"
    return _validate_payload(payload)


def _validate_payload(payload: Any) -> tuple[Verdict | None, str | None, str]:
    if not isinstance(payload, dict):
        return None, FAILED_UNPARSABLE, "verdict is not a JSON object"
    same, conf, reason = payload.get("same_person"), payload.get("confidence"), payload.get("reason")
    if not isinstance(same, bool):
        return None, FAILED_UNPARSABLE, "same_person missing or not a boolean"
    if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0 <= conf <= 1:
        # The schema cannot say minimum/maximum (structured outputs forbid
        # them), so the range is enforced here.
        return None, FAILED_UNPARSABLE, f"confidence missing or outside [0, 1]: {conf!r}"
    if not isinstance(reason, str):
        return None, FAILED_UNPARSABLE, "reason missing or not a string"
    return Verdict(same, float(conf), reason.strip()[:500]), None, ""
