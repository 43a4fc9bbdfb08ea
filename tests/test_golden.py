from dedupe.golden import build_golden
from tests.pipeline_helpers import contacts_config, standardised

PEOPLE = {
    "crm": [{"id": "c1", "first_name": "Jon", "last_name": "Smith", "email": "jsmith@acme.com",
             "company": "Acme Inc", "phone": "", "updated_at": "2024-01-01"}],
    "partner": [{"id": "p1", "first_name": "Jonathan", "last_name": "Smith", "email": "j.smith@acmecorp.com",
                 "company": "AcmeCorp", "phone": "+1 212 555 0142", "country": "US", "updated_at": "2025-06-01"}],
}


def _clustered(config, cluster_id: str = "'G1'", flags: str = "NULL::VARCHAR"):
    """Standardised records put into clusters by SQL expressions over ``std``."""
    con = standardised(config)
    con.execute(f"CREATE TABLE cluster_ids AS SELECT rid, source, record_id, {cluster_id} AS cluster_id, "
                f"{flags} AS flags FROM std")
    return con


def _golden(tmp_path, extra=""):
    config = contacts_config(tmp_path, PEOPLE, extra_toml=extra)
    con = _clustered(config)
    assert build_golden(con, config) == {"recomputed": 1, "kept": 0}
    cur = con.execute("SELECT * FROM golden")
    return dict(zip([d[0] for d in cur.description], cur.fetchall()[0]))


def test_most_recent_record_wins_each_field_and_provenance_says_where_from(tmp_path):
    g = _golden(tmp_path)
    assert g["first_name"] == "Jonathan" and g["first_name_source"] == "partner"
    assert g["email"] == "j.smith@acmecorp.com" and g["email_record_id"] == "p1"
    assert g["phone"] == "+12125550142"  # E.164, from the only record that has one
    assert g["record_count"] == 2 and g["sources"] == "crm,partner"


def test_source_priority_can_override_recency_per_field(tmp_path):
    g = _golden(tmp_path, '[survivorship]\nsource_priority = ["crm", "partner"]\n'
                          '[survivorship.fields]\ncompany = ["source_priority"]\n')
    assert g["company"] == "Acme Inc" and g["company_source"] == "crm"
    assert g["email_source"] == "partner"  # other fields still follow the default rules


def test_most_frequent_takes_the_value_most_members_agree_on(tmp_path):
    people = {"crm": [
        {"id": "a", "first_name": "Ann", "last_name": "Lee", "company": "Globex", "updated_at": "2025-01-01"},
        {"id": "b", "first_name": "Ann", "last_name": "Lee", "company": "Globex", "updated_at": "2024-01-01"},
        {"id": "c", "first_name": "Ann", "last_name": "Lee", "company": "Initech", "updated_at": "2025-06-01"},
    ]}
    config = contacts_config(tmp_path, people, extra_toml='[survivorship.fields]\ncompany = ["most_frequent"]\n')
    con = _clustered(config)
    build_golden(con, config)
    company, source_record = con.execute("SELECT company, company_record_id FROM golden").fetchall()[0]
    # Two members say Globex, the most recent says Initech: the vote wins; ties go to record id.
    assert (company, source_record) == ("Globex", "a")


def _rows(con):
    cur = con.execute("SELECT * EXCLUDE (members_hash) FROM golden ORDER BY cluster_id")
    return cur.fetchall()


def test_incremental_golden_recomputes_only_changed_clusters_and_equals_a_full_rebuild(tmp_path):
    people = {"crm": [
        {"id": "a", "first_name": "Ann", "last_name": "Lee", "company": "Globex", "updated_at": "2025-01-01"},
        {"id": "b", "first_name": "Bob", "last_name": "Ray", "company": "Initech", "updated_at": "2025-01-01"},
        {"id": "c", "first_name": "Cy", "last_name": "Oh", "company": "Hooli", "updated_at": "2025-01-01"},
        {"id": "d", "first_name": "Di", "last_name": "Xu", "company": "Umbrella", "updated_at": "2025-01-01"},
    ]}
    config = contacts_config(tmp_path, people)
    con = _clustered(config, "'G-' || record_id")
    build_golden(con, config)
    # Next night: Bob's record changed (new content hash and company), Cy's record joined Ann's cluster.
    con.execute("UPDATE std SET company = 'Initrode', content_hash = 'changed' WHERE record_id = 'b'")
    con.execute("UPDATE cluster_ids SET cluster_id = 'G-a' WHERE record_id = 'c'")
    assert build_golden(con, config, full=False) == {"recomputed": 2, "kept": 1}  # Di's is unchanged
    incremental = _rows(con)
    assert build_golden(con, config, full=True) == {"recomputed": 3, "kept": 0}
    assert incremental == _rows(con)
    by_id = {r[0]: r for r in incremental}
    assert set(by_id) == {"G-a", "G-b", "G-d"} and by_id["G-a"][1] == 2  # Cy's old cluster is gone
    assert "Initrode" in by_id["G-b"]


def test_incremental_golden_sees_a_flag_change_in_a_two_member_cluster(tmp_path):
    people = {"crm": [
        {"id": "a", "first_name": "Ann", "last_name": "Lee", "company": "Globex", "updated_at": "2025-01-01"},
        {"id": "b", "first_name": "Ann", "last_name": "Lee", "company": "Initech", "updated_at": "2025-01-02"},
    ]}
    config = contacts_config(tmp_path, people)
    con = _clustered(config, flags="'weak_link'")
    build_golden(con, config)
    # Next night the weak link is confirmed: same members, no flag. (An even number of members is
    # where a per-member digest of the flag would cancel out.)
    con.execute("UPDATE cluster_ids SET flags = NULL")
    assert build_golden(con, config, full=False) == {"recomputed": 1, "kept": 0}
    assert con.execute("SELECT flags FROM golden").fetchall() == [(None,)]


def test_incremental_golden_sees_a_new_standardisation_of_unchanged_records(tmp_path):
    config = contacts_config(tmp_path, PEOPLE)
    con = _clustered(config)
    build_golden(con, config)
    # A new version of the rules re-standardises std: display values move, record content does not.
    con.execute("UPDATE std SET email = upper(email)")
    build_golden(con, config, full=False)
    assert con.execute("SELECT email FROM golden").fetchall() == [("J.SMITH@ACMECORP.COM",)]


def test_nightly_edits_go_to_a_small_delta_until_it_is_compacted_and_always_equal_a_full_rebuild(tmp_path):
    import duckdb

    from dedupe.state import ensure_schema

    people = {"crm": [{"id": k, "first_name": k.upper() + "nn", "last_name": "Lee", "company": "Globex",
                       "updated_at": "2025-01-01"} for k in "abcdefgh"]}
    config = contacts_config(tmp_path, people)
    con = _clustered(config, "'G-' || record_id")
    build_golden(con, config)

    def full_rebuild_rows():
        other = duckdb.connect()
        ensure_schema(other)
        for table in ("std", "cluster_ids"):
            other.register("t", con.sql(f"SELECT * FROM {table}").to_arrow_table())
            other.execute(f"CREATE TABLE {table} AS SELECT * FROM t")
            other.unregister("t")
        build_golden(other, config)
        return _rows(other)

    def side_rows():
        return con.execute("SELECT (SELECT count(*) FROM golden_delta), (SELECT count(*) FROM golden_dropped)"
                           ).fetchall()[0]

    for night, (record, company) in enumerate([("a", "Initech"), ("a", "Hooli"), ("b", "Umbrella")]):
        con.execute(f"UPDATE std SET company = '{company}', content_hash = 'v{night}' WHERE record_id = '{record}'")
        assert build_golden(con, config, full=False) == {"recomputed": 1, "kept": 7}
        assert _rows(con) == full_rebuild_rows()
        if night < 2:
            assert side_rows() == (1, 1)  # the base is untouched: one new row, one row hidden
    # The third night took the side tables past a quarter of the base: written out as the new base.
    assert side_rows() == (0, 0)
    assert con.execute("SELECT count(*) FROM golden_base").fetchall()[0][0] == 8


def test_a_state_whose_golden_is_a_plain_table_is_rebuilt_into_the_split_layout(tmp_path):
    config = contacts_config(tmp_path, PEOPLE)
    con = _clustered(config)
    build_golden(con, config)
    expected = _rows(con)
    # What states written before the base/delta split hold: one table named golden.
    con.execute("CREATE TABLE golden_old AS SELECT * FROM golden")
    con.execute("DROP VIEW golden")
    for table in ("golden_base", "golden_delta", "golden_dropped"):
        con.execute(f"DROP TABLE {table}")
    con.execute("ALTER TABLE golden_old RENAME TO golden")
    assert build_golden(con, config, full=False) == {"recomputed": 1, "kept": 0}
    assert _rows(con) == expected
    assert con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = 'golden'").fetchall()[0][0] == 1
