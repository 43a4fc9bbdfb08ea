"""Phone numbers to E.164 with phonenumbers (the lite build: no geocoder/carrier data).

The gate
--------
``phonenumbers.parse`` "succeeds" on junk ("12345" -> +112345, "555-2671" -> +15552671),
so every parse is gated. ``is_valid_number`` is too strict for us: it checks each number
against the allocated ranges, so it rejects the fictional 555 numbers used in test data and
documentation ("+1 555 123 4567") and any real range newer than the metadata. We accept a
number when:

* ``is_possible_number_with_reason`` is exactly IS_POSSIBLE: the digit count is right for
  the country (this rejects "12345", and "555-2671", which is only IS_POSSIBLE_LOCAL_ONLY);
* for the NANP (+1) the area code has a plausible shape, [2-9][0-8]X: this rejects the
  classic fillers "123-456-7890", "000-000-0000" and "111-111-1111" while keeping 555;
* the national number is not one digit repeated ("+44 0000 000000").

Extensions ("x123", "ext. 123") are parsed off and dropped: E.164 has no extension.
An international number written with the "00" prefix is understood whatever the record's
country ("00 44 20 7946 0958" in a US record): when the first parse fails the gate, the
"00" is read as "+" and the number is tried again.
"""

from __future__ import annotations

import re

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, ValidationResult

from dedupe.standardise.places import country_code

_NANP_AREA = re.compile(r"[2-9][0-8]\d")
_LEADING_00 = re.compile(r"^\s*00\s*")


def to_e164(raw: str | None, country_alpha2: str | None, default_region: str = "US") -> str | None:
    """E.164 string ("+14155552671") or None when the value is not a plausible number.

    ``country_alpha2`` is the record's country (any form ``places.country_code`` knows);
    it decides how a number without "+" is read, falling back to ``default_region``.
    """
    if not isinstance(raw, str) or not raw.strip():
        return None
    region = _region(country_alpha2) or _region(default_region) or "US"
    fast = _nanp_fast(raw, region)
    if fast is not None:
        return fast
    number = _parse(raw, region)
    if number is None and _LEADING_00.match(raw):
        number = _parse(_LEADING_00.sub("+", raw, count=1), region)
    if number is None:
        return None
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


_NANP_PLAIN = re.compile(r"^\s*(?:\+?1[\s.-]?)?\(?(\d{3})\)?[\s.-]?(\d{3})[\s.-]?(\d{4})\s*$")
_NANP_REGIONS = frozenset({"US", "CA"})


def _nanp_fast(raw: str, region: str) -> str | None:
    """The plain North American shapes ("(212) 555-0142", "212.555.0142", "+1 212 555 0142")
    without phonenumbers' general parser (about 17k numbers/s). Same answer as the slow path,
    which the tests check; anything else, extensions included, takes the slow path."""
    if region not in _NANP_REGIONS and not raw.lstrip().startswith("+1"):
        return None
    m = _NANP_PLAIN.match(raw)
    if m is None:
        return None
    national = "".join(m.groups())
    if not _NANP_AREA.match(national) or len(set(national)) == 1:
        return None
    return "+1" + national


def _parse(raw: str, region: str) -> phonenumbers.PhoneNumber | None:
    try:
        number = phonenumbers.parse(raw, region)
    except NumberParseException:
        return None
    except Exception:  # defensive: the library is not documented as total
        return None
    if phonenumbers.is_possible_number_with_reason(number) != ValidationResult.IS_POSSIBLE:
        return None
    national = str(number.national_number)
    if number.country_code == 1 and not _NANP_AREA.match(national):
        return None
    if len(set(national)) == 1:
        return None
    return number


def _region(value: str | None) -> str | None:
    if not isinstance(value, str):
        return None
    upper = value.strip().upper()
    if upper in phonenumbers.SUPPORTED_REGIONS:
        return upper
    code = country_code(value)  # "UK", "USA", "Germany" ...
    return code if code in phonenumbers.SUPPORTED_REGIONS else None
