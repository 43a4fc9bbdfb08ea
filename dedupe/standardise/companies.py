"""Company names: a normalised form for fuzzy comparison and a compact key for exact blocking.

Design choices
--------------
* Our own suffix table (``data/legal_suffixes.txt``) instead of cleanco: cleanco strips one
  legal form per call, keeps case and a leading "The", and is 10k/s; a token table stripped
  from the end until stable handles "Toyota Motor Co., Ltd." and "Acme GmbH & Co. KG".
  The first token is never stripped, so "The Company" or "Limited" keeps a name.
* Periods and apostrophes are deleted rather than spaced, so "L.L.C." is "llc" and
  "McDonald's" is "mcdonalds"; every other punctuation mark becomes a space.
* "&" becomes "and", except inside short initialisms ("AT&T" -> "att", "H&M" -> "hm"), which
  are usually also written without it.
* Parenthesised asides are dropped ("Acme (UK) Ltd" -> "acme", "Alphabet Inc (Google)" ->
  "alphabet"): they qualify the name rather than being part of it.
* Descriptive words ("group", "holdings", "international") are kept: "Acme Holdings" and
  "Acme" may be different legal entities, which is for the scorer or the judge to weigh.
* No splitting of run-together names: "AcmeCorp" stays "acmecorp".
* Values that name no employer ("n/a", "self-employed", "retired", ...) are None.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from dedupe.standardise.names import to_ascii


_PLACEHOLDERS = frozenset({
    "n a", "na", "none", "null", "nil", "nan", "unknown", "not applicable", "not employed",
    "self", "self employed", "selfemployed", "freelance", "freelancer", "retired", "student",
    "unemployed", "individual", "private", "personal", "home", "homemaker", "test",
})
_ASIDE = re.compile(r"\([^)]*(?:\)|$)|\[[^\]]*(?:\]|$)")
# Legal forms that are also words ("Scooby Doo", "Wilde Sau", "Radio HF", "One GK", "Kung Pao"),
# so the suffix table cannot hold them: stripped only when written with their periods.
_PUNCTUATED_FORMS = re.compile(r"(?<=\S)[\s,]+(?:d\.\s?o\.\s?o|s\.\s?a\.\s?u|g\.\s?k|e?hf)\.\s*$")
_INITIALISM_AND = re.compile(r"\b([a-z]{1,2})&([a-z]{1,2})\b")
_DELETED = re.compile(r"['`.]")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def normalise_company(value: str | None) -> str | None:
    """Comparison form: "ACME, Inc." -> "acme", "Toyota Motor Co., Ltd." -> "toyota motor"; junk -> None."""
    if not isinstance(value, str):
        return None
    text = _PUNCTUATED_FORMS.sub("", _ASIDE.sub(" ", to_ascii(value).lower()).rstrip())
    text = _INITIALISM_AND.sub(r"\1\2", text).replace("&", " and ")
    tokens = _NON_ALNUM.sub(" ", _DELETED.sub("", text)).split()
    if not tokens or " ".join(tokens) in _PLACEHOLDERS:
        return None
    if tokens[0] == "the" and len(tokens) > 1:
        tokens = tokens[1:]
    while True:
        for form in _suffixes().get(tokens[-1], ()):
            if len(tokens) > len(form) and tuple(tokens[-len(form):]) == form:
                del tokens[-len(form):]
                break
        else:
            return " ".join(tokens)


def company_key(normalised: str | None) -> str | None:
    """The normalised name without spaces, for exact blocking.

    "Acme Corp" and "ACME Corporation" both normalise to "acme" and share the key; "A C M E"
    and "ACME" share "acme" too. "AcmeCorp" keeps "acmecorp": a run-together legal form is
    indistinguishable from a different brand, so that pair is left to fuzzy comparison.
    """
    if not isinstance(normalised, str):
        return None
    key = "".join(normalised.split())
    return key or None


@cache
def _suffixes() -> dict[str, tuple[tuple[str, ...], ...]]:
    """Legal forms as token tuples keyed by their last token, longest first ("and co" before "co")."""
    text = resources.files(__package__).joinpath("data/legal_suffixes.txt").read_text("utf-8")
    forms = {tuple(line.split()) for line in text.splitlines() if line.strip() and not line.startswith("#")}
    by_last: dict[str, list[tuple[str, ...]]] = {}
    for form in sorted(forms, key=lambda form: (-len(form), form)):
        by_last.setdefault(form[-1], []).append(form)
    return {last: tuple(group) for last, group in by_last.items()}
