import random

import duckdb

from dedupe.blocking import block
from dedupe.state import ensure_schema, get_meta, set_meta
from tests.pipeline_helpers import contacts_config, rid, standardised


def _pairs(con):
    return {tuple(r) for r in con.execute("SELECT rid_l, rid_r FROM candidates").fetchall()}


def test_nickname_and_surname_make_a_candidate_and_strangers_do_not(tmp_path):
    config = contacts_config(tmp_path, {
        "crm": [{"id": "1", "first_name": "Jonathan", "last_name": "Smith", "email": "jsmith@acme.com"}],
        "partner": [{"id": "a", "first_name": "Jon", "last_name": "Smith", "email": "j.smith@acmecorp.com"},
                    {"id": "b", "first_name": "Mary", "last_name": "Jones", "email": "mj@globex.com"}],
    })
    con = standardised(config)
    report = block(con, config.blocking.rules, max_block_size=100)
    jon = (rid(con, "crm", "1"), rid(con, "partner", "a"))
    assert jon in _pairs(con)
    assert report.candidate_pairs == 1


def test_oversized_block_is_capped_and_reported_but_other_rules_still_pair(tmp_path):
    # 30 colleagues share info@ and the office line; two of them are one person (Liz/Elizabeth Ng).
    rows = [{"id": f"c{i}", "first_name": f"Person{i}", "last_name": f"Surname{i}",
             "email": "info@globex.com", "phone": "+1 212 555 0100", "country": "US"} for i in range(30)]
    rows.append({"id": "liz1", "first_name": "Elizabeth", "last_name": "Ng", "email": "info@globex.com",
                 "phone": "+1 212 555 0100", "country": "US"})
    rows.append({"id": "liz2", "first_name": "Liz", "last_name": "Ng", "email": "info@globex.com",
                 "phone": "+1 212 555 0100", "country": "US"})
    config = contacts_config(tmp_path, {"crm": rows})
    con = standardised(config)
    report = block(con, config.blocking.rules, max_block_size=10)
    capped = {(c.rule, c.key) for c in report.capped}
    assert ("email_key", "info@globex.com") in capped
    assert any(c.rule == "phone" and c.records == 32 for c in report.capped)
    assert "email_key=info@globex.com: 32 records, capped" in [str(c) for c in report.capped]
    pairs = _pairs(con)
    # 32 records would be 496 pairs through the shared mailbox; capped, only name keys pair people.
    assert len(pairs) < 20
    assert (rid(con, "crm", "liz1"), rid(con, "crm", "liz2")) in pairs


def test_pairs_are_unique_ordered_and_tagged_with_the_first_rule(tmp_path):
    config = contacts_config(tmp_path, {
        "crm": [{"id": "1", "first_name": "Ann", "last_name": "Lee", "email": "ann@x.com", "phone": "2125550101"}],
        "partner": [{"id": "2", "first_name": "Ann", "last_name": "Lee", "email": "ann@x.com", "phone": "2125550101"}],
    })
    con = standardised(config)
    report = block(con, config.blocking.rules, max_block_size=100)
    rows = con.execute("SELECT rid_l, rid_r, rule FROM candidates").fetchall()
    assert len(rows) == 1 and rows[0][0] < rows[0][1]
    assert rows[0][2] == 0  # email_key is the first default rule
    assert report.pairs_per_rule == {"email_key": 1}


def test_rules_on_fields_no_source_maps_are_skipped(tmp_path):
    config = contacts_config(tmp_path, {"crm": [{"id": "1", "first_name": "A", "last_name": "B"}]},
                             extra_toml='[blocking]\nrules = [["postcode"], ["field:nosuch"], ["last_name"]]\n')
    con = standardised(config)
    report = block(con, config.blocking.rules, max_block_size=100)
    assert report.skipped_rules == ["field:nosuch"]


def _random_std(con, rids, version):
    """A std table over ``rids`` whose blocking values come from small pools, so blocks are full
    and often cross the cap; ``version`` maps rid -> content version (a new one changes values)."""
    rows = []
    for r in sorted(rids):
        pick = random.Random(f"{r}:{version[r]}")
        rows.append((r, f"h{version[r]}", pick.choice(["a@x.com", "b@x.com", "c@x.com", None]),
                     pick.choice(["+1", "+2", "+3", None]), pick.choice(["smith", "jones", "ng"]),
                     pick.choice(["j", "m"]), pick.sample(["john", "jack", "mary"], k=pick.randint(1, 2))))
    con.execute("CREATE OR REPLACE TABLE std (rid BIGINT, content_hash VARCHAR, email_key VARCHAR, phone VARCHAR, "
                "last_clean VARCHAR, first_initial VARCHAR, first_family VARCHAR[])")
    con.executemany("INSERT INTO std VALUES (?, ?, ?, ?, ?, ?, ?)", rows)


def test_incremental_blocking_equals_a_full_blocking_night_after_night():
    rules = (("email_key",), ("phone",), ("last_name", "first_initial"), ("first_family",))
    for seed in range(12):
        rng = random.Random(seed)
        nightly, rebuilt = duckdb.connect(), duckdb.connect()  # one blocks night after night, one afresh
        rids = set(range(1, 31))
        version = {r: 0 for r in range(1, 60)}
        for con in (nightly, rebuilt):
            ensure_schema(con)
            _random_std(con, rids, version)
        block(nightly, rules, max_block_size=6)
        for night in range(5):
            for r in rng.sample(sorted(rids), k=rng.choice([0, 1, 2, 3])):
                version[r] += 1
            gone = set(rng.sample(sorted(rids), k=rng.choice([0, 0, 1, 2])))
            born = set(rng.sample(range(31, 60), k=rng.choice([0, 1, 3]))) - rids
            rids = (rids - gone) | born
            for con in (nightly, rebuilt):
                _random_std(con, rids, version)
            incremental = block(nightly, rules, max_block_size=6, full=False)
            full = block(rebuilt, rules, max_block_size=6, full=True)
            got, want = (c.execute("SELECT * FROM candidates ORDER BY ALL").fetchall() for c in (nightly, rebuilt))
            assert got == want, (seed, night)
            assert sorted(map(str, incremental.capped)) == sorted(map(str, full.capped))
            assert incremental.pairs_per_rule == full.pairs_per_rule


def test_a_state_last_blocked_by_older_code_is_blocked_afresh():
    # A rolled-back deploy: code from before ``candidates`` was kept blocks one night (patching
    # the parts, not ``candidates``, and writing its own signature); the next night must not
    # patch a stale ``candidates`` table.
    con = duckdb.connect()
    ensure_schema(con)
    _random_std(con, set(range(1, 20)), {r: 0 for r in range(1, 20)})
    rules = (("email_key",), ("phone",))
    block(con, rules, max_block_size=6)
    set_meta(con, "blocking_signature", repr((rules, 6, get_meta(con, "standardise_signature"))))
    assert block(con, rules, max_block_size=6, full=False).changes_since is None
    assert block(con, rules, max_block_size=6, full=False).changes_since is not None
