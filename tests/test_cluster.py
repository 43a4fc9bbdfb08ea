import duckdb

from dedupe.cluster import cluster, connected_components


def _graph(links, n=12, dob=None, suffix=None):
    con = duckdb.connect()
    dob = dob or {}
    suffix = suffix or {}
    rows = ", ".join(f"({i}, {repr(dob[i]) if i in dob else 'NULL'}, "
                     f"{repr(suffix[i]) if i in suffix else 'NULL'})" for i in range(1, n + 1))
    con.execute(f"CREATE TABLE std AS SELECT * FROM (VALUES {rows}) t(rid, date_of_birth, name_generation)")
    con.execute("CREATE TABLE links (rid_l BIGINT, rid_r BIGINT, match_probability DOUBLE, strong BOOLEAN)")
    if links:
        con.executemany("INSERT INTO links VALUES (?, ?, ?, ?)", links)
    return con


def _groups(con):
    rows = con.execute("SELECT cluster_key, list(rid ORDER BY rid) FROM clusters GROUP BY 1").fetchall()
    return sorted(tuple(r[1]) for r in rows if len(r[1]) > 1)


def test_connected_components_follow_long_chains():
    con = duckdb.connect()
    con.execute("CREATE TABLE std AS SELECT range AS rid FROM range(1, 101)")
    con.execute("CREATE TABLE e AS SELECT range AS a, range + 1 AS b FROM range(1, 60)")
    connected_components(con, "SELECT a, b FROM e", "cc")
    labels = dict(con.execute("SELECT node, label FROM cc").fetchall())
    assert {labels[i] for i in range(1, 61)} == {1}
    assert labels[61] == 61 and labels[100] == 100


def test_single_weak_link_does_not_glue_two_groups():
    con = _graph([(1, 2, 0.99, True), (3, 4, 0.99, True), (2, 3, 0.6, False)])
    report = cluster(con, "links", ("date_of_birth",), 50)
    assert _groups(con) == [(1, 2), (3, 4)]
    assert report.weak_link_splits == 1
    flags = dict(con.execute("SELECT rid, flags FROM clusters").fetchall())
    assert flags[1] == "weak_link"


def test_two_weak_links_or_a_lone_record_do_merge():
    con = _graph([(1, 2, 0.99, True), (3, 4, 0.99, True), (2, 3, 0.6, False), (1, 4, 0.6, False),
                  (5, 6, 0.99, True), (6, 7, 0.6, False)])
    cluster(con, "links", ("date_of_birth",), 50)
    assert _groups(con) == [(1, 2, 3, 4), (5, 6, 7)]


def test_conflicting_birth_dates_split_a_transitive_chain_but_not_a_direct_link():
    # 1-2-3 chained; 1 and 3 have different dates of birth and no direct link: split at the weaker link.
    # 4-5 are linked directly despite a typo in the date: the model weighed that, keep them.
    con = _graph([(1, 2, 0.999, True), (2, 3, 0.99, True), (4, 5, 0.99, True)],
                 dob={1: "1950-01-01", 3: "1980-05-05", 4: "1970-01-01", 5: "1970-01-02"})
    report = cluster(con, "links", ("date_of_birth",), 50)
    assert _groups(con) == [(1, 2), (4, 5)]
    assert report.conflict_splits == 1


def test_father_and_son_never_share_a_cluster_through_a_chain():
    con = _graph([(1, 2, 0.999, True), (2, 3, 0.99, True)], suffix={1: "sr", 3: "jr"})
    cluster(con, "links", (), 50)
    assert _groups(con) == [(1, 2)]


def test_oversized_component_is_cut_to_max_size():
    links = [(i, i + 1, 0.99 - i / 1000, True) for i in range(1, 12)]
    con = _graph(links, n=12)
    report = cluster(con, "links", (), 5)
    sizes = [len(g) for g in _groups(con)]
    assert max(sizes) <= 5 and sum(sizes) == 12
    assert report.size_cap_splits == 1 and report.largest <= 5


def _graph_with_must(links, **kw):
    """Like _graph, with a fifth field per link: an analyst's must-link."""
    con = _graph([link[:4] for link in links], **kw)
    con.execute("ALTER TABLE links ADD COLUMN must BOOLEAN DEFAULT false")
    for a, b, _p, _strong, must in links:
        if must:
            con.execute("UPDATE links SET must = true WHERE rid_l = ? AND rid_r = ?", [a, b])
    return con


def test_an_analysts_must_links_hold_a_cluster_the_identifier_guard_would_split():
    # The analyst pinned 1-2-3 together knowing 1 and 3 disagree on a date of birth (a typo).
    con = _graph_with_must([(1, 2, 0.6, True, True), (2, 3, 0.999, True, True)],
                           dob={1: "1950-01-01", 3: "1950-01-10"})
    cluster(con, "links", ("date_of_birth",), 50)
    assert _groups(con) == [(1, 2, 3)]


def test_an_analysts_must_link_beats_a_stronger_model_link_and_only_a_cannot_link_stops_it():
    # cannot(1, 2) and must(2, 3); the model's 1-3 is stronger but goes after the must-link.
    con = _graph_with_must([(2, 3, 0.5, True, True), (1, 3, 1.0, True, False)])
    con.execute("CREATE TABLE cannot AS SELECT 1 AS rid_l, 2 AS rid_r")
    cluster(con, "links", ("date_of_birth",), 50, cannot_links="SELECT rid_l, rid_r FROM cannot")
    assert _groups(con) == [(2, 3)]
