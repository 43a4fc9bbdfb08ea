from dedupe.blocking import block
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
