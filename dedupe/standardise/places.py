"""Countries to ISO 3166 alpha-2, and a comparison form for cities, regions, streets, postcodes.

Design choices
--------------
* ``country_code`` is a dict look-up, built once on first use from pycountry (alpha-2,
  alpha-3, numeric, name, official and common names, and "Korea, Republic of" reordered to
  "republic of korea") plus ``data/country_aliases.tsv`` for what pycountry lacks (USA, UK,
  England, Deutschland, Holland, Ivory Coast, Turkey, Burma, Swaziland ...). It never calls
  ``pycountry.countries.lookup``/``search_fuzzy``: a miss there costs ~13 ms, and a fuzzy
  guess is worse than None for matching.
* "NA" / "N/A" mean "not available" in contact data far more often than Namibia, so they are
  None; "Namibia" and "NAM" still resolve.
* ``clean_place`` deletes periods and apostrophes ("St. John's" -> "st johns",
  "P.O. Box" -> "po box") and turns other punctuation into spaces ("Winston-Salem" ->
  "winston salem", "12345-6789" -> "12345 6789"). It does not expand abbreviations
  ("st" vs "street"): that belongs to address comparison, not to cleaning.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

import pycountry

from dedupe.standardise.names import to_ascii

_PLACEHOLDERS = frozenset({"", "na", "n a", "none", "null", "nil", "nan", "unknown", "not applicable"})
_DELETED = re.compile(r"['`.]")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def clean_place(value: str | None) -> str | None:
    """Lower-case ASCII, punctuation removed, single spaces; None for empty or "n/a"."""
    if not isinstance(value, str):
        return None
    folded = _NON_ALNUM.sub(" ", _DELETED.sub("", to_ascii(value).lower())).strip()
    return None if folded in _PLACEHOLDERS else folded


def country_code(value: str | None) -> str | None:
    """ISO 3166-1 alpha-2 ("GB") for a code, number, name or common alias; unknown -> None."""
    key = _country_key(value)
    return _country_index().get(key) if key else None


def _country_key(value: str | None) -> str | None:
    cleaned = clean_place(value)
    if cleaned is None:
        return None
    tokens = ["saint" if token == "st" else token for token in cleaned.split()]
    if tokens[0] == "the" and len(tokens) > 1:
        tokens = tokens[1:]
    return " ".join(tokens)


@cache
def _country_index() -> dict[str, str]:
    index: dict[str, str] = {}

    def add(text: str | None, alpha2: str) -> None:
        key = _country_key(text)
        if key:
            index.setdefault(key, alpha2)

    for country in pycountry.countries:
        alpha2 = country.alpha_2
        for text in (alpha2, country.alpha_3, country.numeric, str(int(country.numeric))):
            add(text, alpha2)
        for attr in ("name", "official_name", "common_name"):
            name = getattr(country, attr, None)
            if not name:
                continue
            add(name, alpha2)
            head, comma, tail = name.partition(", ")
            if comma:  # "Korea, Republic of" -> "Republic of Korea"
                add(f"{tail} {head}", alpha2)

    text = resources.files(__package__).joinpath("data/country_aliases.tsv").read_text("utf-8")
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            alias, alpha2 = line.split("\t")
            index[_country_key(alias)] = alpha2.strip()  # aliases are deliberate: they win
    return index
