"""Tests for the synthetic fixture generator (fixtures/generate.py).

The hard cases are checked by looking at the generated files (with truth.csv),
not by trusting the generator's own counters.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import re
import subprocess
import sys
import time
import unicodedata
from collections import Counter, defaultdict
from datetime import datetime
from itertools import combinations
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "fixtures" / "generate.py"

_spec = importlib.util.spec_from_file_location("fixtures_generate", SCRIPT)
gen = importlib.util.module_from_spec(_spec)
sys.modules["fixtures_generate"] = gen
_spec.loader.exec_module(gen)

CRM_HEADER = ["Contact ID", "First Name", "Last Name", "Email", "Company", "Job Title", "Phone", "City", "Country",
              "Last Modified"]
PARTNER_HEADER = ["id", "full_name", "email_address", "organization", "phone_number", "country_code", "updated"]
FREE = {"gmail.com", "googlemail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "aol.com",
        "hotmail.co.uk", "btinternet.com", "yahoo.co.uk", "gmx.de", "web.de", "t-online.de", "outlook.de",
        "orange.fr", "free.fr", "laposte.net", "hotmail.fr", "hotmail.es", "yahoo.es", "telefonica.net",
        "outlook.es"}
ROLE = {"info", "sales", "contact", "office", "hello", "admin", "team", "enquiries", "support"}
# an independent, deliberately small nickname list
NICK = {("jonathan", "jon"), ("jonathan", "john"), ("elizabeth", "liz"), ("elizabeth", "beth"), ("robert", "bob"),
        ("robert", "rob"), ("william", "bill"), ("william", "will"), ("margaret", "peggy"), ("margaret", "maggie"),
        ("katherine", "kate"), ("michael", "mike"), ("james", "jim"), ("james", "jimmy"), ("thomas", "tom"),
        ("richard", "rick"), ("christopher", "chris"), ("daniel", "dan"), ("matthew", "matt"),
        ("joseph", "joe"), ("anthony", "tony"), ("jennifer", "jen"), ("patricia", "pat"), ("steven", "steve"),
        ("andrew", "andy"), ("susan", "sue"), ("rebecca", "becky"), ("edward", "ed"), ("charles", "charlie"),
        ("jose", "pepe"), ("francisco", "paco"), ("katarzyna", "kasia"), ("alexander", "alex"),
        ("samuel", "sam"), ("nicholas", "nick"), ("benjamin", "ben"), ("kenneth", "ken"), ("timothy", "tim")}
NICK |= {(b, a) for a, b in NICK}
SUFFIX = re.compile(r",?\s+(Jr\.?|Sr\.?|II|III)$", re.I)
LEGAL = {"inc", "incorporated", "llc", "corp", "corporation", "co", "company", "ltd", "limited", "plc", "llp",
         "gmbh", "ag", "aktiengesellschaft", "kg", "sas", "sa", "sarl", "sl", "sociedad", "limitada", "anonima",
         "and", "u"}


# ---------------------------------------------------------------------------
def fold(s: str) -> str:
    s = s.translate(str.maketrans({"ł": "l", "Ł": "L", "ß": "ss", "đ": "d", "Đ": "D", "ı": "i"}))
    s = unicodedata.normalize("NFKD", s)
    return "".join(c for c in s if not unicodedata.combining(c)).lower()


def fold_de(s: str) -> str:
    return fold(s.translate(str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "Ä": "Ae", "Ö": "Oe", "Ü": "Ue"})))


def one_edit(a: str, b: str) -> bool:
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        d = [i for i in range(len(a)) if a[i] != b[i]]
        return len(d) == 1 or (len(d) == 2 and d[1] == d[0] + 1 and a[d[0]] == b[d[1]] and a[d[1]] == b[d[0]])
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    return a[i:] == b[i + 1:]


def norm_company(s: str) -> str:
    s = re.sub(r"[.,]", "", fold(s).replace("&", " and "))
    words = s.split()
    while words and words[-1] in LEGAL:
        words.pop()
    return "".join(words)


def digits(s: str) -> str:
    return re.sub(r"\D", "", s)[-9:]


def split_partner(full: str):
    """-> (first, middle_initial, last, suffix, order) with order 'first_last' or 'last_first'."""
    s = full.strip()
    if s.lower().startswith("dr. "):
        s = s[4:]
    suffix = ""
    m = re.fullmatch(r"(.*?),\s*(Jr\.?|Sr\.?|II|III)", s, re.I)
    if m:
        s, suffix = m.group(1), m.group(2)
    if "," in s:
        last, first = (x.strip() for x in s.split(",", 1))
        m = SUFFIX.search(last)
        if m:
            last, suffix = last[: m.start()], m.group(1)
        order = "last_first"
    else:
        m = SUFFIX.search(s)
        if m:
            s, suffix = s[: m.start()], m.group(1)
        parts = s.split(" ")
        first, last = parts[0], " ".join(parts[1:])
        if len(parts) > 2 and re.fullmatch(r"[A-Z]\.", parts[1]):
            first, last = parts[0] + " " + parts[1], " ".join(parts[2:])
        order = "first_last"
    middle = ""
    if re.fullmatch(r"\S+ [A-Za-z]\.", first):
        first, middle = first.split(" ")
    return first, middle, last, suffix, order


def read(path: Path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]


def load(out: Path):
    """All records of both files in one normalised shape, with their entity."""
    _, crm = read(out / "crm.csv")
    _, par = read(out / "partner.csv")
    _, truth = read(out / "truth.csv")
    ent = {(t["source"], t["record_id"]): t["entity_id"] for t in truth}
    recs = []
    for r in crm:
        first_field = r["First Name"]
        m = SUFFIX.search(r["Last Name"])
        recs.append(dict(
            src="crm", id=r["Contact ID"], entity=ent[("crm", r["Contact ID"])],
            first_raw=first_field.split(" ")[0] if first_field else "",
            middle=first_field.split(" ")[1] if " " in first_field else "",
            last_raw=r["Last Name"][: m.start()] if m else r["Last Name"], suffix=m.group(1) if m else "",
            email=r["Email"], company=r["Company"], phone=r["Phone"], city=r["City"], order="crm"))
    for r in par:
        f, mid, last, suf, order = split_partner(r["full_name"]) if r["full_name"] else ("", "", "", "", "")
        recs.append(dict(src="partner", id=r["id"], entity=ent[("partner", r["id"])], first_raw=f, middle=mid,
                         last_raw=last, suffix=suf, email=r["email_address"], company=r["organization"],
                         phone=r["phone_number"], city="", order=order))
    for r in recs:
        r["first"], r["last"] = fold(r["first_raw"]), fold(r["last_raw"])
        r["email_l"] = r["email"].lower()
        r["local"], _, r["domain"] = r["email_l"].partition("@")
        r["company_n"] = norm_company(r["company"])
        r["digits"] = digits(r["phone"])
    by_entity = defaultdict(list)
    for r in recs:
        by_entity[r["entity"]].append(r)
    return SimpleData(crm=crm, partner=par, truth=truth, recs=recs, by_entity=by_entity)


class SimpleData:
    def __init__(self, **kw):
        self.__dict__.update(kw)

    def pairs(self):
        for rs in self.by_entity.values():
            yield from combinations(rs, 2)


# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample3000")
    counts = gen.generate(3000, 11, out)
    return counts, out, load(out)


def _files(d: Path):
    return {n: (d / n).read_bytes() for n in ("crm.csv", "partner.csv", "truth.csv")}


def test_same_seed_is_byte_identical(tmp_path):
    gen.generate(2500, 5, tmp_path / "a")
    gen.generate(2500, 5, tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    for name in a:
        assert a[name] == b[name], name


def test_different_seed_differs(tmp_path):
    gen.generate(500, 1, tmp_path / "a")
    gen.generate(500, 2, tmp_path / "b")
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    for name in a:
        assert a[name] != b[name], name


def test_cli(tmp_path):
    out = tmp_path / "cli"
    p = subprocess.run([sys.executable, str(SCRIPT), "--people", "300", "--seed", "4", "--out", str(out)],
                       capture_output=True, text=True, check=True)
    counts = json.loads(p.stdout)
    assert counts["people"] == 300
    for name in ("crm.csv", "partner.csv", "truth.csv"):
        assert (out / name).stat().st_size > 0
    assert counts["crm_rows"] == len(read(out / "crm.csv")[1])
    # the same run through main() in-process gives the same bytes
    gen.main(["--people", "300", "--seed", "4", "--out", str(tmp_path / "inproc")])
    assert _files(out) == _files(tmp_path / "inproc")


def test_schemas_and_formats(sample):
    _, out, d = sample
    assert read(out / "crm.csv")[0] == CRM_HEADER
    assert read(out / "partner.csv")[0] == PARTNER_HEADER
    assert read(out / "truth.csv")[0] == ["source", "record_id", "entity_id"]
    raw = (out / "crm.csv").read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    raw.decode("utf-8")
    crm_ids = [r["Contact ID"] for r in d.crm]
    par_ids = [r["id"] for r in d.partner]
    assert all(re.fullmatch(r"C\d{6,}", i) for i in crm_ids)
    assert all(re.fullmatch(r"P-\d{5,}", i) for i in par_ids)
    assert len(set(crm_ids)) == len(crm_ids) and len(set(par_ids)) == len(par_ids)
    for r in d.crm:
        if r["Last Modified"]:
            datetime.strptime(r["Last Modified"], "%m/%d/%Y %H:%M")
    for r in d.partner:
        if r["updated"]:
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r["updated"])
            datetime.strptime(r["updated"], "%Y-%m-%dT%H:%M:%SZ")
    assert {r["country_code"] for r in d.partner} <= {"", "US", "GB", "DE", "FR", "ES"}
    countries = Counter(r["Country"] for r in d.crm)
    for name in ("United States", "USA", "Germany", "United Kingdom", "UK"):
        assert countries[name] > 0, name
    # no leftover template braces, no stray whitespace
    for r in d.recs:
        for k in ("email", "company", "phone", "first_raw", "last_raw"):
            assert "{" not in r[k] and r[k] == r[k].strip(), (k, r[k])
        if r["email"]:
            assert re.fullmatch(r"[^@\s]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}", r["email"]), r["email"]


def test_truth_covers_every_record_once(sample):
    _, out, d = sample
    keys = [(t["source"], t["record_id"]) for t in d.truth]
    assert len(keys) == len(set(keys))
    expected = {("crm", r["Contact ID"]) for r in d.crm} | {("partner", r["id"]) for r in d.partner}
    assert set(keys) == expected
    assert all(re.fullmatch(r"E\d+", t["entity_id"]) for t in d.truth)


def test_population_shape(sample):
    counts, _, d = sample
    people = 3000
    per_src = {s: Counter(r["entity"] for r in d.recs if r["src"] == s) for s in ("crm", "partner")}
    crm_p, par_p = per_src["crm"], per_src["partner"]
    assert 0.70 < len(crm_p) / people < 0.80
    assert 0.55 < len(par_p) / people < 0.65
    for c in (crm_p, par_p):
        assert 1.0 < sum(c.values()) / len(c) < 1.3               # records per present person
        assert 0.05 < sum(1 for v in c.values() if v > 1) / len(c) < 0.11   # within-file duplicates
    both = set(crm_p) & set(par_p)
    assert 0.35 < len(both) / people < 0.55
    assert len(set(crm_p) - set(par_p)) > 0 and len(set(par_p) - set(crm_p)) > 0
    # rows are shuffled: entity order is unrelated to row order
    ents = [r["entity"] for r in d.recs if r["src"] == "crm"]
    assert ents != sorted(ents)
    assert counts["crm_rows"] == len(d.crm) and counts["partner_rows"] == len(d.partner)


# --- hard cases: positives ---------------------------------------------------
def test_nicknames(sample):
    d = sample[2]
    hits = [(a["first_raw"], b["first_raw"]) for a, b in d.pairs() if (a["first"], b["first"]) in NICK]
    assert len(hits) >= 10, hits


def test_middle_initial_on_one_side(sample):
    d = sample[2]
    hits = [(a["id"], b["id"]) for a, b in d.pairs()
            if a["first"] == b["first"] and a["first"] and bool(a["middle"]) != bool(b["middle"])]
    assert len(hits) >= 10
    assert any(re.fullmatch(r"\S+ [A-Z]\. \S+", r["full_name"]) for r in d.partner)


def test_last_first_order(sample):
    d = sample[2]
    inv = [r for r in d.recs if r["order"] == "last_first"]
    assert 0.08 < len(inv) / len(d.partner) < 0.25


def test_accents_kept_and_stripped(sample):
    d = sample[2]
    hits = []
    for a, b in d.pairs():
        for k in ("first_raw", "last_raw"):
            x, y = a[k], b[k]
            if x and y and x != y and (not x.isascii()) != (not y.isascii()) and \
                    (fold(x) == fold(y) or fold_de(x) == fold_de(y)):
                hits.append((x, y))
    assert len(hits) >= 10, hits
    assert any("ü" in x + y for x, y in hits)
    seen = {r["first_raw"] for r in d.recs} | {r["last_raw"] for r in d.recs}
    assert "Müller" in seen and {"Mueller", "Muller"} & seen
    assert "José" in seen and "Jose" in seen


def test_typos(sample):
    d = sample[2]
    fields = Counter()
    for a, b in d.pairs():
        for k in ("last", "company_n", "local"):
            if a[k] and b[k] and one_edit(a[k], b[k]):
                fields[k] += 1
        if a["first"] and b["first"] and one_edit(a["first"], b["first"]) and (a["first"], b["first"]) not in NICK:
            fields["first"] += 1
    assert all(fields[k] >= 3 for k in ("first", "last", "company_n", "local")), fields


def test_married_name_change(sample):
    d = sample[2]
    hits = []
    for a, b in d.pairs():
        if a["first"] and a["first"] == b["first"] and a["last"] and b["last"] and a["last"] != b["last"] and \
                not one_edit(a["last"], b["last"]) and fold_de(a["last_raw"]) != fold_de(b["last_raw"]) and \
                ((a["email_l"] and a["email_l"] == b["email_l"]) or (a["digits"] and a["digits"] == b["digits"])
                 or (a["company_n"] and a["company_n"] == b["company_n"])):
            hits.append((a["last_raw"], b["last_raw"]))
    assert len(hits) >= 5, hits


def test_company_suffix_variants(sample):
    d = sample[2]
    variants = defaultdict(set)
    for r in d.recs:
        if r["company"]:
            variants[r["company_n"]].add(r["company"])
    rich = [v for v in variants.values() if len(v) >= 3]
    assert len(rich) >= 20
    allc = {c for v in variants.values() for c in v}
    assert any(c.endswith(", Inc.") for c in allc) and any(c.endswith("Incorporated") for c in allc)
    assert any(re.fullmatch(r"[A-Z0-9 &\-]+(,? [A-Za-z.]+)?", c) and c.split(",")[0].isupper() for c in allc)


def test_company_rebrand(sample):
    d = sample[2]
    domain_pairs = defaultdict(set)
    for a, b in d.pairs():
        da, db = a["domain"], b["domain"]
        if da and db and da != db and da not in FREE and db not in FREE and \
                a["company_n"] and b["company_n"] and a["company_n"] != b["company_n"]:
            domain_pairs[tuple(sorted((da, db)))].add(a["entity"])
    rebrands = {k: v for k, v in domain_pairs.items() if len(v) >= 3}
    assert len(rebrands) >= 2, domain_pairs
    # at least one where the new domain extends the old one (acme.com -> acmecorp.com)
    assert any(x.split(".")[0] in y.split(".")[0] or y.split(".")[0] in x.split(".")[0] for x, y in rebrands)


def test_employer_change(sample):
    d = sample[2]
    pair_count = Counter()
    cand = []
    for a, b in d.pairs():
        da, db = a["domain"], b["domain"]
        if da and db and da != db and da not in FREE and db not in FREE and a["company_n"] and b["company_n"] \
                and a["company_n"] != b["company_n"] and a["first"] == b["first"] and a["last"] == b["last"]:
            key = tuple(sorted((da, db)))
            pair_count[key] += 1
            cand.append((key, a, b))
    moves = [(a, b) for key, a, b in cand if pair_count[key] == 1 and a["company_n"][:4] != b["company_n"][:4]]
    assert len(moves) >= 10
    # and some of them can be linked by something personal: a free-mail address or a mobile kept across the move
    linked = [1 for a, b in d.pairs() if a["company_n"] and b["company_n"] and a["company_n"] != b["company_n"]
              and ((a["email_l"] == b["email_l"] and a["domain"] in FREE) or (a["digits"] and a["digits"] == b["digits"]))]
    assert len(linked) >= 5


def test_role_mailboxes_shared(sample):
    d = sample[2]
    users = defaultdict(set)
    for r in d.recs:
        if r["local"] in ROLE:
            users[r["email_l"]].add(r["entity"])
    shared = {k: v for k, v in users.items() if len(v) >= 2}
    assert len(shared) >= 5, users


def test_office_main_lines_shared(sample):
    d = sample[2]
    who = defaultdict(set)
    firm = defaultdict(set)
    for r in d.recs:
        if len(r["digits"]) == 9:
            who[r["digits"]].add(r["entity"])
            if r["company_n"]:
                firm[r["digits"]].add(r["company_n"][:6])
    shared = [k for k, v in who.items() if len(v) >= 3 and len(firm[k]) == 1]
    assert len(shared) >= 10


def test_gmail_variants(sample):
    d = sample[2]

    def gnorm(e):
        local, _, dom = e.lower().partition("@")
        return local.split("+")[0].replace(".", "") + "@gmail.com"

    kinds = Counter()
    for rs in d.by_entity.values():
        g = {r["email"] for r in rs if r["domain"] in ("gmail.com", "googlemail.com")}
        if len({gnorm(e) for e in g}) == 1 and len(g) > 1:
            for e in g:
                kinds["plus"] += "+" in e
                kinds["googlemail"] += e.lower().endswith("@googlemail.com")
            locs = {e.lower().split("@")[0].split("+")[0] for e in g}
            kinds["dots"] += len({x.replace(".", "") for x in locs}) < len(locs)
    assert kinds["plus"] >= 1 and kinds["googlemail"] >= 1 and kinds["dots"] >= 1, kinds


def test_phone_formats(sample):
    d = sample[2]
    phones = [r["phone"] for r in d.recs if r["phone"]]
    styles = {"paren": r"\(\d{3}\) \d{3}-\d{4}", "dots": r"\d{3}\.\d{3}\.\d{4}", "plus1": r"\+1 \d{3} \d{3} \d{4}",
              "e164": r"\+1\d{10}", "dash": r"\d{3}-\d{3}-\d{4}", "uk": r"\+44 .*|0\d{2,4} .*",
              "de": r"\+49 .*|0\d{2,3}[ /]\d+"}
    for name, pat in styles.items():
        assert sum(1 for p in phones if re.fullmatch(pat, p)) >= 5, name
    us = [p for p in phones if re.fullmatch(styles["paren"], p)]
    assert not any(p.startswith("(555)") for p in us)
    assert all(p[1] in "23456789" and p[6] in "23456789" for p in us)          # NANP: area / exchange
    # the same number is written differently in different records of one person
    assert sum(1 for a, b in d.pairs() if a["digits"] and a["digits"] == b["digits"] and a["phone"] != b["phone"]) > 50


def test_phones_are_valid_numbers(sample):
    pn = pytest.importorskip("phonenumbers")
    d = sample[2]
    region = {"United States": "US", "USA": "US", "US": "US", "United States of America": "US", "U.S.": "US",
              "United Kingdom": "GB", "UK": "GB", "England": "GB", "Great Britain": "GB", "U.K.": "GB",
              "Germany": "DE", "Deutschland": "DE", "DE": "DE", "France": "FR", "FR": "FR", "Spain": "ES",
              "España": "ES", "ES": "ES"}
    checked = bad = 0
    for r in d.crm:
        if r["Phone"] and r["Country"]:
            checked += 1
            num = pn.parse(r["Phone"], region[r["Country"]])
            bad += not (pn.is_valid_number(num) or any(
                pn.is_valid_number(pn.parse(r["Phone"], c)) for c in ("US", "GB", "DE", "FR", "ES")))
    assert checked > 1000 and bad / checked < 0.005, bad


def test_missing_values(sample):
    d = sample[2]
    for rows, cols, ids in ((d.crm, CRM_HEADER, "Contact ID"), (d.partner, PARTNER_HEADER, "id")):
        for c in cols:
            empty = sum(1 for r in rows if not r[c])
            if c == ids:
                assert empty == 0
            else:
                assert empty > 0, c
    rate = lambda rows, c: sum(1 for r in rows if not r[c]) / len(rows)  # noqa: E731
    assert rate(d.partner, "email_address") > rate(d.crm, "Email")
    assert rate(d.partner, "organization") > rate(d.crm, "Company")
    assert rate(d.partner, "phone_number") > rate(d.crm, "Phone")


def test_duplicates_within_each_file(sample):
    d = sample[2]
    for src in ("crm", "partner"):
        c = Counter(r["entity"] for r in d.recs if r["src"] == src)
        assert sum(1 for v in c.values() if v >= 2) >= 100
        assert any(v >= 3 for v in c.values())


# --- hard negatives ------------------------------------------------------------
def _name_owners(d):
    owners = defaultdict(set)
    for r in d.recs:
        if r["first"] and r["last"]:
            owners[(r["first"], r["last"])].add(r["entity"])
    return owners


def test_namesakes(sample):
    d = sample[2]
    owners = _name_owners(d)
    namesakes = [k for k, v in owners.items() if len(v) >= 2]
    assert len(namesakes) >= 20
    # different people: not sharing any e-mail address
    k = namesakes[0]
    mails = [{r["email_l"] for r in d.by_entity[e] if r["email_l"]} for e in owners[k]]
    assert not set.intersection(*mails) or len(mails) > 2


def test_father_and_son(sample):
    d = sample[2]
    owners = _name_owners(d)
    pairs = []
    for (f, l), ents in owners.items():
        if len(ents) < 2:
            continue
        jr = {e for e in ents if any(r["suffix"].lower().startswith("jr") for r in d.by_entity[e])}
        other = ents - jr
        if jr and other:
            pairs.append((f, l))
    assert len(pairs) >= 3, pairs
    assert any(re.search(r" Jr\.?$", r["Last Name"]) for r in d.crm)
    assert any(re.search(r"\b(Jr|Sr)\.?", r["full_name"]) for r in d.partner)


def test_spouses_share_a_mailbox(sample):
    d = sample[2]
    owners = defaultdict(set)
    for r in d.recs:
        if r["domain"] in FREE:
            owners[r["email_l"].replace("googlemail.com", "gmail.com")].add(r["entity"])
    hits = []
    for mail, ents in owners.items():
        if len(ents) == 2:
            a, b = (d.by_entity[e] for e in ents)
            fa = {r["first"] for r in a if r["first"]}
            fb = {r["first"] for r in b if r["first"]}
            la = {r["last"] for r in a if r["last"]}
            lb = {r["last"] for r in b if r["last"]}
            if fa and fb and not fa & fb and (la & lb or not la or not lb):
                hits.append(mail)
    assert len(hits) >= 3, hits


def test_role_explosion(tmp_path):
    gen.generate(2000, 3, tmp_path, role_explosion=0.3)
    for name, email_col, phone_col in (("crm.csv", "Email", "Phone"), ("partner.csv", "email_address",
                                                                       "phone_number")):
        _, rows = read(tmp_path / name)
        top_mail, n_mail = Counter(r[email_col].lower() for r in rows if r[email_col]).most_common(1)[0]
        top_phone, n_phone = Counter(digits(r[phone_col]) for r in rows if r[phone_col]).most_common(1)[0]
        assert 0.25 < n_mail / len(rows) < 0.36, (top_mail, n_mail / len(rows))
        assert 0.25 < n_phone / len(rows) < 0.36, (top_phone, n_phone / len(rows))
        assert top_mail.split("@")[0] in ROLE
    _, truth = read(tmp_path / "truth.csv")
    assert len(truth) == len(read(tmp_path / "crm.csv")[1]) + len(read(tmp_path / "partner.csv")[1])


def test_scaling_smoke(tmp_path):
    t = time.perf_counter()
    counts = gen.generate(20_000, 9, tmp_path)
    took = time.perf_counter() - t
    assert took < 20, took
    assert 15_000 < counts["crm_rows"] < 19_000
    assert 11_500 < counts["partner_rows"] < 15_000
    with open(tmp_path / "truth.csv", encoding="utf-8") as f:
        assert sum(1 for _ in f) - 1 == counts["crm_rows"] + counts["partner_rows"]


def test_report_runs(sample):
    res = gen.report(sample[1])
    assert res["crm_rows"] == len(sample[2].crm)
    assert res["true_pairs"] > 0
