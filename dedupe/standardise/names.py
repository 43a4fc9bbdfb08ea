"""Person names: cleaning, parsing, nickname families and phonetic codes.

Every public function takes one value, is pure and deterministic, and never raises:
the caller runs them over the distinct values of a column and joins the results back.

Design choices
--------------
* Transliteration is anyascii (ISC), never NFKD-only: NFKD drops "Ł", "ø", Cyrillic and CJK
  outright, anyascii spells them out ("Łukasz" -> "lukasz", "Søren" -> "soren").
* ``clean_name`` deletes apostrophes ("O'Neil" -> "oneil": the apostrophe is often omitted
  by typists, and "o neil" would add a spurious token) but turns hyphens and any other
  punctuation into a space ("Doe-Smith" -> "doe smith"), so a double-barrelled name keeps
  both parts as tokens and still matches a record that has only one of them, token-wise.
  Digits are dropped too: they are never part of a name.
* ``parse_person_name`` wraps nameparser (slow, ~6k/s, fine on distinct values) with a private
  ``Constants`` instance, so we never mutate the library's global configuration. Two of its
  known faults are corrected: a household such as "Bob & Alice Smith" keeps only the first
  person's given name, and a single token ("Madonna", "Smith") is returned as the *last*
  name, because in CRM exports a lone name is usually the mandatory surname field.
* Nickname families (see ``first_name_family``) come from the ``nicknames`` package
  (Apache-2.0, English names only), corrected by ``data/nickname_overrides.csv``: spelling
  variants and common German/Spanish/French/Polish/Indian short forms added, masculine vs
  feminine forms and a few misleading relations dropped. Families are truncated by name
  popularity from ``data/given_name_rank.txt`` (US 1990 Census, public domain).
  Two nicknames of one canonical are equivalent ("bob" ~ "rob"), which also yields some
  loose links ("lisa" ~ "alice" via alicia): the match model weighs the level, it is not
  a decision.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections import defaultdict
from functools import cache, lru_cache
from importlib import resources

from anyascii import anyascii
from doublemetaphone import doublemetaphone
from nameparser import HumanName
from nameparser.config import Constants
from nicknames import NickNamer

_PLACEHOLDERS = frozenset({"n/a", "n.a.", "none", "null", "nil", "nan", "unknown", "-", "--", "?"})
_APOSTROPHES = re.compile(r"['`\u00b4]")
_NON_LETTER = re.compile(r"[^a-z]+")
_HOUSEHOLD = re.compile(r"\s+(?:&|and|\+)\s+", re.IGNORECASE)

# Suffix spellings -> canonical lower-case form. Generational suffixes (jr/sr/ii...) tell
# two people apart; professional ones (phd/md...) do not, but callers can decide that.
_SUFFIX_CANON = {
    "jr": "jr", "jnr": "jr", "junior": "jr",
    "sr": "sr", "snr": "sr", "senior": "sr",
    "i": "i", "1st": "i",
    "ii": "ii", "2nd": "ii",
    "iii": "iii", "3rd": "iii",
    "iv": "iv", "4th": "iv",
    "v": "v", "5th": "v",
    "esq": "esq", "esquire": "esq",
    "phd": "phd", "md": "md", "dds": "dds", "dmd": "dmd", "dvm": "dvm", "jd": "jd",
    "mba": "mba", "cpa": "cpa", "rn": "rn", "cfa": "cfa", "pe": "pe", "ret": "ret",
}
# What split_suffix may cut off a bare last name: not "i"/"v" (a trailing single letter is
# more often an initial), nor "pe"/"ret". "D.O." is absent on purpose: "Do" is a surname.
_SPLITTABLE = frozenset(_SUFFIX_CANON) - {"i", "1st", "v", "5th", "pe", "ret"}

_MAX_CANONICALS = 5  # family = the name + at most this many canonicals (blocking-key budget)


def to_ascii(value: str) -> str:
    """Transliterate to ASCII with anyascii, first dropping non-ASCII symbols and controls.

    anyascii spells emoji out (":slight_smile:"), which would turn "Jo 🙂" into a longer
    name, so symbols (Unicode category S*) and controls/format characters (C*) go first.
    This is the one transliteration every field family uses.
    """
    if value.isascii():
        return value
    kept = "".join(ch for ch in value if ch.isascii() or unicodedata.category(ch)[0] not in "SC")
    return anyascii(kept)


# The per-value rules below are pure and see the same first names and surnames over and over
# (a CRM has a few thousand distinct first names across millions of full-name tuples): memoise.
@lru_cache(maxsize=1 << 20)
def clean_name(value: str | None) -> str | None:
    """Lower-case ASCII letters and single spaces; None when nothing name-like is left."""
    if not isinstance(value, str) or value.strip().lower() in _PLACEHOLDERS:
        return None
    folded = _APOSTROPHES.sub("", to_ascii(value).lower())
    cleaned = _NON_LETTER.sub(" ", folded).strip()
    return cleaned or None


# A surname prefix written apart ("O Neil", "D Angelo", "Mc Donald") is almost always an apostrophe
# or a join lost in some system: glued back, it meets "O'Neil" and "McDonald" exactly. Longer
# particles (van, de, la) stay words: "De Souza" and "Souza" are often one person written two ways.
_DETACHED_PREFIX = re.compile(r"\b(o|d|l|mc) (?=[a-z]{2})")


@lru_cache(maxsize=1 << 20)
def clean_surname(value: str | None) -> str | None:
    """``clean_name`` with detached prefixes glued back: "O Neil" -> "oneil", like "O'Neil"."""
    cleaned = clean_name(value)
    return _DETACHED_PREFIX.sub(r"\1", cleaned) if cleaned else cleaned


def parse_person_name(full: str | None) -> dict:
    """Split a full name into title/first/middle/last/suffix (original casing and accents).

    Absent parts are None. ``suffix`` is canonical lower case ("Jr." -> "jr",
    "Jr., M.D." -> "jr md").
    """
    parts = dict.fromkeys(("first", "middle", "last", "suffix", "title"))
    if not isinstance(full, str) or full.strip().lower() in _PLACEHOLDERS:
        return parts
    simple = _parse_simple(full)
    if simple is not None:
        parts.update(simple)
        return parts
    return _parse_with_nameparser(full)


def _parse_with_nameparser(full: str) -> dict:
    parts = dict.fromkeys(("first", "middle", "last", "suffix", "title"))
    try:
        human = HumanName(" ".join(full.split()), constants=_constants())
        parts.update(
            first=_HOUSEHOLD.split(human.first)[0],
            middle=human.middle,
            last=human.last,
            title=human.title,
        )
        parts["suffix"] = _canonical_suffixes(human.suffix)
    except Exception:  # nameparser has no documented exceptions; garbage in, None out
        return dict.fromkeys(parts)
    for key in ("first", "middle", "last", "title"):
        text = (parts[key] or "").strip(" ,")
        parts[key] = text if any(ch.isalpha() for ch in text) else None
    if parts["last"] is None and parts["first"] is not None and parts["middle"] is None:
        parts["last"], parts["first"] = parts["first"], None
    return parts


_SIMPLE_TOKEN = re.compile(r"^[^\W\d_]+(?:['-][^\W\d_]+)*$")
_INITIAL = re.compile(r"^[^\W\d_]\.?$")


def _parse_simple(full: str) -> dict | None:
    """The common shapes without nameparser (which parses ~6k names/s): "First Last",
    "First M. Last" and "Last, First [M.]", made only of plain name tokens that are no title,
    suffix or particle. Anything else returns None and goes to nameparser."""
    head, comma, tail = full.partition(",")
    if "," in tail:
        return None
    tokens = (tail.split() + head.split()) if comma else full.split()
    if len(tokens) not in (2, 3):
        return None
    constants = _constants()
    for token in tokens:
        key = token.lower().rstrip(".")
        if key in constants.titles or key in constants.prefixes or key in _SPLITTABLE or \
                key in constants.conjunctions:
            return None
    if comma:
        # "Last, First [M.]": the last name is exactly the part before the comma.
        if len(head.split()) != 1:
            return None
        rest = tail.split()
    else:
        rest = tokens[:-1]
    last = tokens[-1] if not comma else head.strip()
    first, middle = rest[0], (rest[1] if len(rest) == 2 else None)
    if middle is not None and not _INITIAL.match(middle):
        return None
    if not all(_SIMPLE_TOKEN.match(t) for t in (first, last)):
        return None
    return {"first": first, "middle": middle, "last": last}


def split_suffix(last: str | None) -> tuple[str | None, str | None]:
    """Cut trailing suffixes off a separately supplied last name.

    "Smith Jr." -> ("Smith", "jr"); "Smith, III" -> ("Smith", "iii"). A value that is nothing
    but a suffix is left alone (it is the only surname we have).
    """
    if not isinstance(last, str) or not last.strip():
        return None, None
    tokens = last.replace(",", " ").split()
    suffixes: list[str] = []
    while len(tokens) > 1:
        key = tokens[-1].lower().replace(".", "")
        if key not in _SPLITTABLE:
            break
        suffixes.insert(0, _SUFFIX_CANON[key])
        tokens.pop()
    if not suffixes:
        return last.strip(), None
    return " ".join(tokens), " ".join(suffixes)


@lru_cache(maxsize=1 << 20)
def _family(first_clean: str | None) -> tuple[str, ...]:
    return tuple(_first_name_family(first_clean))


def first_name_family(first_clean: str | None) -> list[str]:
    """Sorted nickname-family keys (see ``_first_name_family``); memoised per name."""
    return list(_family(first_clean))


def _first_name_family(first_clean: str | None) -> list[str]:
    """Sorted nickname-family keys; two first names are equivalent iff their families meet.

    Rule: the family is the name itself plus its *canonicals*, i.e. the names it is a
    nickname of ("bob" -> bob, bobby, robert; "robert" -> robert). A nickname and its
    canonical therefore share the canonical, and two nicknames of one canonical share it
    too ("bob" ~ "rob" via robert), while two canonicals never match unless the data says
    one is a nickname of the other ("jonathan" lists "john"). Nothing is transitive: "jack"
    meets "john" (a nickname of John) but not "jonathan". When the dataset links two
    names both ways (john <-> jon), only the longer name is kept as the canonical, so
    common full names keep one-element families. At most five canonicals are kept, the
    most common first (census rank, then alphabetical), so a family has <= 6 keys.
    Unknown names, initials and compound names are their own family. None -> [].
    """
    key = clean_name(first_clean)
    if key is None:
        return []
    canonicals = sorted(_canonicals().get(key, ()), key=_popularity)[:_MAX_CANONICALS]
    return sorted({key, *canonicals})


@lru_cache(maxsize=1 << 20)
def phonetic(value_clean: str | None) -> str | None:
    """Double-metaphone primary code of the cleaned value ("Schmidt" and "Smith" differ here;
    the secondary code is what links them, and we deliberately keep one key per value)."""
    cleaned = clean_name(value_clean)
    if cleaned is None:
        return None
    return doublemetaphone(cleaned)[0] or None


def is_initial(first_clean: str | None) -> bool:
    """True when every token is a single letter ("j", "j r")."""
    cleaned = clean_name(first_clean)
    return cleaned is not None and all(len(token) == 1 for token in cleaned.split())


GENERATIONAL = frozenset({"jr", "sr", "ii", "iii", "iv"})


def generation(suffix: str | None) -> str | None:
    """The generational part of a canonical suffix ("jr" in "jr md"): father and son differ in it."""
    return next((t for t in (suffix or "").split() if t in GENERATIONAL), None)


def strip_title(first: str | None) -> str | None:
    """"Dr. John" in a first-name column is John: a leading title goes (a lone title stays)."""
    if not first:
        return first
    head, _, tail = first.strip().partition(" ")
    if tail.strip() and head.lower().rstrip(".") in _constants().titles:
        return tail.strip()
    return first


def _canonical_suffixes(raw: str) -> str | None:
    tokens = [t.replace(".", "").lower() for t in re.split(r"[\s,]+", raw) if t.strip(".")]
    canon = [_SUFFIX_CANON.get(t, t) for t in tokens]
    return " ".join(canon) or None


@cache
def _constants() -> Constants:
    constants = Constants()
    constants.suffix_not_acronyms.add("2nd", "3rd", "4th", "5th")
    return constants


@cache
def _canonicals() -> dict[str, frozenset[str]]:
    """nickname -> the names it is a nickname of, after overrides and mutual-pair resolution."""
    edges = {(canon, nick) for nick, canons in NickNamer().canonical_lookup.items() for canon in canons}
    text = resources.files(__package__).joinpath("data/nickname_overrides.csv").read_text("utf-8")
    for op, canon, nick in csv.reader(line for line in text.splitlines() if line and not line.startswith("#")):
        (edges.add if op == "add" else edges.discard)((canon, nick))
    result: dict[str, set[str]] = defaultdict(set)
    for canon, nick in edges:
        if (nick, canon) in edges and (len(nick), canon) > (len(canon), nick):
            continue  # mutual pair: the longer name (ties: alphabetically first) is the canonical
        result[nick].add(canon)
    return {nick: frozenset(canons) for nick, canons in result.items()}


@cache
def _rank() -> dict[str, int]:
    text = resources.files(__package__).joinpath("data/given_name_rank.txt").read_text("utf-8")
    names = [line for line in text.splitlines() if line and not line.startswith("#")]
    return {name: i for i, name in enumerate(names)}


def _popularity(name: str) -> tuple[int, str]:
    return _rank().get(name, len(_rank())), name
