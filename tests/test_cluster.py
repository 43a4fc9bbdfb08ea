import duckdb

from dedupe.cluster import cluster, connected_components


def _graph(links, n=12, dob=None, suffix=None):
    con = duckdb.connect()
    dob = dob or {}
    suffix = suffix or {}
    rows = ", ".join(f"({i}, {repr(dob[i]) if i in dob else 'NULL'}, "
                     f"{repr(suffix[i]) if i in suffix else 'NULL'})" for i in range(1, n + 1))
    con.execute(f"CREATE TABLE std AS SELECT * FROM (VALUES {rows}) t(rid, date_of_birth, name_generation)")
    con.execute("CREATE TABLE links (rid_l BIGINT, rid_r BIGINT, match_probability DOUBLE, strong BOOLEAN, "
                "must BOOLEAN DEFAULT false)")
    if links:
        con.executemany("INSERT INTO links (rid_l, rid_r, match_probability, strong) VALUES (?, ?, ?, ?)", links)
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


def _random_night(rng, n, links, dob, hashes):
    """One night's changes: links appear, vanish and change strength; records change their date of
    birth (and content hash), are deleted or added."""
    links = dict(links)
    for key in rng.sample(sorted(links), k=min(len(links), rng.choice([0, 0, 0, 1, 2]))):
        if rng.random() < 0.5:
            del links[key]
        else:
            p, strong = links[key]
            links[key] = (round(rng.random(), 3), not strong if rng.random() < 0.5 else strong)
    for _ in range(rng.choice([0, 0, 0, 1, 2])):
        a, b = sorted(rng.sample(range(1, n + 1), 2))
        links[(a, b)] = (round(rng.random(), 3), rng.random() < 0.7)
    for rid in rng.sample(range(1, n + 1), k=rng.choice([0, 1, 2])):
        dob[rid] = rng.choice([None, "1980-01-01", "1990-02-02"])
        hashes[rid] = f"h{rng.random()}"
    # every night moves probabilities (term frequencies move), which reorders the guard's re-split
    links = {k: (round(rng.random(), 3), s) for k, (p, s) in links.items()}
    return links, dob, hashes


def _load(con, present, links, dob, hashes, cannot):
    rows = [(r, dob.get(r), hashes[r]) for r in sorted(present)]
    con.execute("CREATE OR REPLACE TABLE std (rid BIGINT, date_of_birth VARCHAR, name_generation VARCHAR, "
                "content_hash VARCHAR)")
    con.executemany("INSERT INTO std VALUES (?, ?, NULL, ?)", rows)
    con.execute("CREATE OR REPLACE TABLE links (rid_l BIGINT, rid_r BIGINT, match_probability DOUBLE, "
                "strong BOOLEAN, must BOOLEAN)")
    kept = [(a, b, p, s, False) for (a, b), (p, s) in sorted(links.items()) if a in present and b in present]
    if kept:
        con.executemany("INSERT INTO links VALUES (?, ?, ?, ?, ?)", kept)
    con.execute("CREATE OR REPLACE TABLE cannot (rid_l BIGINT, rid_r BIGINT)")
    if cannot:
        con.executemany("INSERT INTO cannot VALUES (?, ?)", sorted(cannot))


def test_a_record_whose_date_of_birth_changed_is_re_clustered_though_no_link_changed():
    from dedupe.cluster import Basis

    con = duckdb.connect()
    chain = {(1, 2): (0.9, True), (2, 3): (0.9, True)}
    _load(con, {1, 2, 3}, chain, {1: "1980-01-01"}, {1: "a", 2: "a", 3: "a"}, set())
    cluster(con, "links", ("date_of_birth",), 5)
    assert _groups(con) == [(1, 2, 3)]
    con.execute("CREATE TABLE links_basis AS SELECT * FROM links")
    con.execute("CREATE TABLE clusters_basis AS SELECT c.*, s.content_hash FROM clusters c JOIN std s USING (rid)")
    # Record 3's export now carries another date of birth: 1 and 3 are two people.
    _load(con, {1, 2, 3}, chain, {1: "1980-01-01", 3: "1990-02-02"}, {1: "a", 2: "a", 3: "b"}, set())
    report = cluster(con, "links", ("date_of_birth",), 5,
                     basis=Basis("links_basis", "SELECT rid, cluster_key, flags, content_hash FROM clusters_basis"))
    assert _groups(con) in ([(1, 2)], [(2, 3)]) and report.conflict_splits == 1


def test_an_analysts_new_cannot_link_re_clusters_its_records_on_an_incremental_night():
    from dedupe.cluster import Basis

    con = duckdb.connect()
    chain = {(1, 2): (0.9, True), (2, 3): (0.8, True)}
    _load(con, {1, 2, 3}, chain, {}, {1: "a", 2: "a", 3: "a"}, set())
    cluster(con, "links", (), 5, cannot_links="SELECT * FROM cannot")
    con.execute("CREATE TABLE links_basis AS SELECT * FROM links")
    con.execute("CREATE TABLE clusters_basis AS SELECT c.*, s.content_hash FROM clusters c JOIN std s USING (rid)")
    _load(con, {1, 2, 3}, chain, {}, {1: "a", 2: "a", 3: "a"}, {(1, 3)})
    cluster(con, "links", (), 5, cannot_links="SELECT * FROM cannot",
            basis=Basis("links_basis", "SELECT rid, cluster_key, flags, content_hash FROM clusters_basis"))
    assert _groups(con) == [(1, 2)]


def test_incremental_clustering_equals_a_full_clustering_night_after_night():
    import random

    from dedupe.cluster import Basis

    partial = 0
    for seed in range(15):
        rng = random.Random(seed)
        n = 30
        links = {}
        for _ in range(35):
            a, b = sorted(rng.sample(range(1, n + 1), 2))
            links[(a, b)] = (round(rng.random(), 3), rng.random() < 0.7)
        dob = {r: rng.choice([None, None, "1980-01-01", "1990-02-02"]) for r in range(1, n + 1)}
        hashes = {r: "h0" for r in range(1, n + 1)}
        present, cannot = set(range(1, n + 1)), set()
        con = duckdb.connect()
        _load(con, present, links, dob, hashes, cannot)
        cluster(con, "links", ("date_of_birth",), 5, cannot_links="SELECT * FROM cannot")
        for night in range(3):
            # the basis: last night's links and clusters, with the content each record had
            con.execute("CREATE OR REPLACE TABLE links_basis AS SELECT * FROM links")
            con.execute("CREATE OR REPLACE TABLE clusters_basis AS SELECT c.*, s.content_hash "
                        "FROM clusters c JOIN std s USING (rid)")
            links, dob, hashes = _random_night(rng, n, links, dob, hashes)
            gone = set(rng.sample(sorted(present), k=rng.choice([0, 0, 1])))
            born = set(rng.sample(range(1, n + 1), k=rng.choice([0, 0, 1]))) - present
            present = (present - gone) | born
            for rid in born:
                hashes[rid] = f"new{night}"
            if rng.random() < 0.4:  # an analyst separates two records of one cluster, or relents
                big = con.execute("SELECT list(rid) FROM clusters SEMI JOIN std USING (rid) GROUP BY cluster_key "
                                  "HAVING count(*) > 2 ORDER BY cluster_key").fetchall()
                cannot = {tuple(sorted(rng.sample(rng.choice(big)[0], 2)))} if big else set()
            elif rng.random() < 0.4:
                cannot = set()
            _load(con, present, links, dob, hashes, cannot)
            cluster(con, "links", ("date_of_birth",), 5, cannot_links="SELECT * FROM cannot")
            full = con.execute("SELECT rid, cluster_key, flags FROM clusters ORDER BY rid").fetchall()
            report = cluster(con, "links", ("date_of_birth",), 5, cannot_links="SELECT * FROM cannot",
                             basis=Basis("links_basis", "SELECT rid, cluster_key, flags, content_hash "
                                                        "FROM clusters_basis"))
            incremental = con.execute("SELECT rid, cluster_key, flags FROM clusters ORDER BY rid").fetchall()
            assert incremental == full, (seed, night)
            partial += report.reclustered < len(present)
    assert partial > 20  # most nights re-cluster only part of the records
