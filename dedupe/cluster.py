"""Clustering: connected components of accepted links, in DuckDB, with a guard against over-merging.

Links come in two strengths: **strong** (decided ``match`` by the model, the judge or an analyst)
and **weak** (``review`` pairs linked only because they clear the fallback threshold). Transitive
closure over weak links is how one ambiguous pair chains two people together, so:

1. *Strong groups* are the connected components of strong links.
2. Two strong groups joined by exactly **one** weak link, both with at least two records, are not
   merged (``weak_link`` flag): a cluster must not be held together by a single weak link. Two or
   more weak links, or a lone record attaching by one, are accepted.
3. Components are then checked for **identifier conflicts** (two members with different
   non-null personal identifiers, such as dates of birth, or Sr vs Jr) and for size above
   ``max_size``. Such components - few by construction - are re-clustered greedily: links are
   added strongest first, and a link that would put conflicting identifiers or more than
   ``max_size`` records into one cluster is skipped (flags ``identifier_conflict`` /
   ``size_cap``).

Connected components use iterated min-label propagation in SQL (a few passes: the diameter of
record-linkage graphs is small).

Output: table ``clusters(rid, cluster_key, flags)`` where ``cluster_key`` is the smallest rid of the
cluster and ``flags`` lists what the guard did to it, and table ``reclustered(rid)``: the records
clustered this run (all of them, unless incremental).

**Incremental.** Everything above is local to one connected component of the link graph, so a
night only re-clusters the part of the graph its changes can reach (``Basis``): the *seeds* are
records that are new or whose content changed, both ends of every link that appeared, vanished or
changed strength since the basis, both ends of analysts' cannot-links, and members of clusters the
guard re-split (a link's probability orders the greedy re-split, and it moves without the link's
strength moving when a shared-contact flag of one of its records does). The *region* is every record a chain of current links reaches from a seed. A
component outside it has the same records, the same links and the same identifiers as in the
basis (a removed link would have seeded its ends), so its clusters are the basis's; the region is
clustered from scratch. Incremental and full clustering give the same table, by construction and
by test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import duckdb

from dedupe.columns import registered


@dataclass(frozen=True)
class Basis:
    """A previous clustering to start from: ``links`` is the table it clustered, ``clusters`` SQL
    yielding ``(rid, cluster_key, flags, content_hash)`` for every record it clustered, with the
    content hash each record had then. Both must come from the same run."""
    links: str
    clusters: str


@dataclass
class ClusterReport:
    clusters: int = 0
    singletons: int = 0
    largest: int = 0
    weak_link_splits: int = 0
    conflict_splits: int = 0
    size_cap_splits: int = 0
    iterations: int = 0
    flagged: dict[str, int] = field(default_factory=dict)
    reclustered: int = 0  # records clustered this run (all of them unless incremental)


def connected_components(con: duckdb.DuckDBPyConnection, edges: str, out_table: str,
                         nodes: str = "SELECT rid AS node FROM std") -> int:
    """Label every node with the smallest node id of its component; return the passes needed.

    Edges must join nodes of ``nodes``. Only nodes with an edge take part in the passes (most
    records have no link at all); the others are their own component."""
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _cc_edges AS
        SELECT a AS src, b AS dst FROM ({edges}) WHERE a <> b
        UNION SELECT b, a FROM ({edges}) WHERE a <> b""")
    con.execute("CREATE OR REPLACE TEMP TABLE _cc_labels AS SELECT DISTINCT src AS node, src AS label FROM _cc_edges")
    # A label never grows, so the sum of labels stays the same exactly when no label changed: one
    # scan of the new labels instead of a join with the old ones.
    label_sum = con.execute("SELECT sum(label) FROM _cc_labels").fetchall()[0][0]
    passes = 0
    while True:
        passes += 1
        # Each pass takes the smallest label among a node and its neighbours; pointer jumping
        # (label of my label) halves the remaining distance in chains.
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _cc_next AS
            WITH hop AS (
                SELECT e.src AS node, min(l.label) AS label
                FROM _cc_edges e JOIN _cc_labels l ON l.node = e.dst GROUP BY e.src
            ), merged AS (
                SELECT l.node, least(l.label, coalesce(h.label, l.label)) AS label
                FROM _cc_labels l LEFT JOIN hop h ON h.node = l.node
            )
            SELECT m.node, least(m.label, coalesce(j.label, m.label)) AS label
            FROM merged m LEFT JOIN merged j ON j.node = m.label""")
        previous_sum, label_sum = label_sum, con.execute("SELECT sum(label) FROM _cc_next").fetchall()[0][0]
        con.execute("DROP TABLE _cc_labels")
        con.execute("ALTER TABLE _cc_next RENAME TO _cc_labels")
        if label_sum == previous_sum:
            break
    con.execute(f"""CREATE OR REPLACE TEMP TABLE {out_table} AS
                    SELECT n.node, coalesce(l.label, n.node) AS label
                    FROM ({nodes}) n LEFT JOIN _cc_labels l USING (node)""")
    con.execute("DROP TABLE _cc_labels")
    con.execute("DROP TABLE _cc_edges")
    return passes


def _identifier_sql(identifiers: tuple[str, ...], std_columns: set[str]) -> list[str]:
    """Per identifier, the std expression whose differing non-null values mean different people."""
    exprs = []
    for f in identifiers:
        col = f"{f}_clean" if f"{f}_clean" in std_columns else f
        if col in std_columns:
            exprs.append(f"CAST({col} AS VARCHAR)")
    # Father and son: the generational part of a suffix is an identifier too.
    if "name_generation" in std_columns:
        exprs.append("name_generation")
    return exprs


def _differ(x: tuple, y: tuple) -> bool:
    return any(a is not None and b is not None and a != b for a, b in zip(x, y))


def _greedy_split(edges: list[tuple], ident: dict[int, tuple], max_size: int,
                  cannot: frozenset[tuple[int, int]] = frozenset()) -> tuple[dict[int, int], bool, bool]:
    """Union-find over edges strongest first, refusing unions that conflict or grow too large.

    Edges are ``(a, b, strength)`` or ``(a, b, strength, must)``. A conflict is two members with
    differing identifiers that are *not* linked directly: a direct link already weighed that
    disagreement (a typo in a date of birth), a transitive chain did not. An analyst's must-link
    (``must``) goes first and is refused only by a cannot-link: the analyst saw the identifiers and
    the size, and their decisions win. Returns (node -> root, any conflict refused, any size
    refused). Runs only on the few suspect components, so the loops stay small.
    """
    parent = {n: n for n in ident}
    members = {n: [n] for n in ident}
    linked = {(min(e[0], e[1]), max(e[0], e[1])) for e in edges}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def conflicting(ga: list[int], gb: list[int], must: bool) -> bool:
        return any((min(x, y), max(x, y)) in cannot or
                   (not must and _differ(ident[x], ident[y]) and (min(x, y), max(x, y)) not in linked)
                   for x in ga for y in gb)

    conflict_refused = size_refused = False
    for a, b, _p, must in sorted(((*e[:3], len(e) > 3 and bool(e[3])) for e in edges),
                                 key=lambda e: (not e[3], -e[2], e[0], e[1])):
        ra, rb = find(a), find(b)
        if ra == rb:
            continue
        if not must and len(members[ra]) + len(members[rb]) > max_size:
            size_refused = True
            continue
        if conflicting(members[ra], members[rb], must):
            conflict_refused = True
            continue
        root, other = (ra, rb) if ra < rb else (rb, ra)
        parent[other] = root
        members[root] += members.pop(other)
    return {n: find(n) for n in ident}, conflict_refused, size_refused


_NO_CANNOT_LINKS = "SELECT NULL::BIGINT AS rid_l, NULL::BIGINT AS rid_r WHERE false"


def cluster(con: duckdb.DuckDBPyConnection, links: str, identifiers: tuple[str, ...],
            max_size: int, cannot_links: str | None = None, basis: Basis | None = None) -> ClusterReport:
    """Cluster ``links(rid_l, rid_r, match_probability, strong, must)`` into table ``clusters``.

    ``must`` marks an analyst's must-link: the guard's re-split keeps it whatever the identifiers
    or the size say (only a cannot-link stops it).

    ``cannot_links`` is SQL yielding ``(rid_l, rid_r)`` pairs an analyst separated: a component
    holding both is re-clustered so they end apart, whatever chain of links joined them.

    With a ``basis``, only the region its changes can reach is clustered; every other record
    keeps its basis cluster (see the module's docstring). The split counters of the report then
    count this run's region; ``clusters``, ``largest`` and ``flagged`` always describe the whole."""
    cannot_links = cannot_links or _NO_CANNOT_LINKS
    if basis is None:
        report = _cluster_nodes(con, links, "SELECT rid AS node FROM std", identifiers, max_size, cannot_links)
        con.execute("CREATE OR REPLACE TEMP TABLE reclustered AS SELECT rid FROM clusters")
        report.reclustered = con.execute("SELECT count(*) FROM reclustered").fetchall()[0][0]
    else:
        report = _cluster_changed_region(con, links, identifiers, max_size, cannot_links, basis)
    stats = con.execute("""
        SELECT count(*), count(*) FILTER (WHERE n = 1), max(n)
        FROM (SELECT cluster_key, count(*) AS n FROM clusters GROUP BY cluster_key)""").fetchall()[0]
    report.clusters, report.singletons, report.largest = stats
    report.flagged = dict(con.execute("""
        SELECT flags, count(DISTINCT cluster_key) FROM clusters WHERE flags IS NOT NULL
        GROUP BY flags ORDER BY flags""").fetchall())
    return report


def _cluster_changed_region(con: duckdb.DuckDBPyConnection, links: str, identifiers: tuple[str, ...],
                            max_size: int, cannot_links: str, basis: Basis) -> ClusterReport:
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _seeds AS
        WITH previous AS ({basis.clusters}),
        changed_links AS (
            SELECT coalesce(n.rid_l, b.rid_l) AS rid_l, coalesce(n.rid_r, b.rid_r) AS rid_r
            FROM {links} n FULL JOIN {basis.links} b ON b.rid_l = n.rid_l AND b.rid_r = n.rid_r
            WHERE n.rid_l IS NULL OR b.rid_l IS NULL OR n.strong <> b.strong OR n.must <> b.must)
        SELECT s.rid FROM std s LEFT JOIN previous p ON p.rid = s.rid
        WHERE p.rid IS NULL OR p.content_hash IS DISTINCT FROM s.content_hash
           OR p.flags LIKE '%identifier_conflict%' OR p.flags LIKE '%size_cap%'
        UNION SELECT rid_l FROM changed_links UNION SELECT rid_r FROM changed_links
        UNION SELECT rid_l FROM ({cannot_links}) UNION SELECT rid_r FROM ({cannot_links})""")
    # The region: everything a chain of current links reaches from a seed, one hop per pass.
    con.execute("CREATE OR REPLACE TEMP TABLE _region AS SELECT rid FROM _seeds SEMI JOIN std USING (rid)")
    con.execute("CREATE OR REPLACE TEMP TABLE _frontier AS SELECT rid FROM _region")
    while con.execute("SELECT count(*) FROM _frontier").fetchall()[0][0]:
        con.execute(f"""
            CREATE OR REPLACE TEMP TABLE _frontier AS
            SELECT DISTINCT n.rid FROM (
                SELECT k.rid_r AS rid FROM {links} k JOIN _frontier f ON f.rid = k.rid_l
                UNION ALL SELECT k.rid_l FROM {links} k JOIN _frontier f ON f.rid = k.rid_r) n
            ANTI JOIN _region r ON r.rid = n.rid""")
        con.execute("INSERT INTO _region SELECT rid FROM _frontier")
    report = _cluster_nodes(con, f"(SELECT * FROM {links} WHERE rid_l IN (SELECT rid FROM _region))",
                            "SELECT rid AS node FROM _region", identifiers, max_size, cannot_links)
    report.reclustered = con.execute("SELECT count(*) FROM _region").fetchall()[0][0]
    con.execute(f"""
        INSERT INTO clusters
        SELECT p.rid, p.cluster_key, p.flags FROM ({basis.clusters}) p
        SEMI JOIN std s ON s.rid = p.rid ANTI JOIN _region r ON r.rid = p.rid""")
    con.execute("DROP TABLE _seeds")
    con.execute("DROP TABLE _frontier")
    con.execute("DROP TABLE IF EXISTS reclustered")
    con.execute("ALTER TABLE _region RENAME TO reclustered")
    return report


def _cluster_nodes(con: duckdb.DuckDBPyConnection, links: str, nodes: str, identifiers: tuple[str, ...],
                   max_size: int, cannot_links: str) -> ClusterReport:
    """Cluster the records of ``nodes`` (closed under ``links``) into table ``clusters``."""
    report = ClusterReport()
    std_columns = {r[0] for r in con.execute("DESCRIBE std").fetchall()}

    # 1. strong groups
    report.iterations += connected_components(
        con, f"SELECT rid_l AS a, rid_r AS b FROM {links} WHERE strong", "strong_groups", nodes=nodes)
    # 2. weak links between groups: accept unless a single link joins two real groups
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE group_links AS
        WITH sizes AS (SELECT label, count(*) AS n FROM strong_groups GROUP BY label),
        weak AS (
            SELECT least(gl.label, gr.label) AS g1, greatest(gl.label, gr.label) AS g2
            FROM {links} k
            JOIN strong_groups gl ON gl.node = k.rid_l
            JOIN strong_groups gr ON gr.node = k.rid_r
            WHERE NOT k.strong AND gl.label <> gr.label
        )
        SELECT g1, g2, count(*) AS links,
               count(*) >= 2 OR least(s1.n, s2.n) = 1 AS accepted
        FROM weak JOIN sizes s1 ON s1.label = g1 JOIN sizes s2 ON s2.label = g2
        GROUP BY g1, g2, s1.n, s2.n""")
    report.weak_link_splits = con.execute(
        "SELECT count(*) FROM group_links WHERE NOT accepted").fetchall()[0][0]
    report.iterations += connected_components(
        con, "SELECT g1 AS a, g2 AS b FROM group_links WHERE accepted", "group_components",
        nodes="SELECT DISTINCT label AS node FROM strong_groups")
    con.execute("""
        CREATE OR REPLACE TEMP TABLE components AS
        SELECT s.node AS rid, c.label AS component
        FROM strong_groups s JOIN group_components c ON c.node = s.label""")

    # 3. identifier conflicts and oversize components
    ident = _identifier_sql(identifiers, std_columns)
    ident_cols = ", ".join(f"{e} AS id{i}" for i, e in enumerate(ident))
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE component_members AS
        SELECT c.component, s.rid, {ident_cols}, count(*) OVER (PARTITION BY c.component) AS n
        FROM components c JOIN std s ON s.rid = c.rid""")
    differ = " OR ".join(f"(a.id{i} <> b.id{i})" for i in range(len(ident)))
    # Conflicting members not linked directly; self-join only components within the size cap.
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE suspect_components AS
        SELECT DISTINCT component FROM component_members WHERE n > {max_size}
        UNION
        SELECT DISTINCT a.component
        FROM component_members a
        JOIN component_members b ON a.component = b.component AND a.rid < b.rid
        WHERE a.n <= {max_size} AND a.n > 2 AND ({differ})
          AND NOT EXISTS (SELECT 1 FROM {links} k WHERE k.rid_l = a.rid AND k.rid_r = b.rid)
        UNION
        SELECT DISTINCT a.component FROM ({cannot_links}) x
        JOIN components a ON a.rid = x.rid_l JOIN components b ON b.rid = x.rid_r
        WHERE a.component = b.component""")
    suspects = con.execute("SELECT count(*) FROM suspect_components").fetchall()[0][0]
    con.execute("CREATE OR REPLACE TEMP TABLE resplit (rid BIGINT, component BIGINT, flag VARCHAR)")
    if suspects:
        cannot = frozenset(tuple(r) for r in con.execute(cannot_links).fetchall())
        members = con.execute(f"""
            SELECT c.component, s.rid, {', '.join(ident)}
            FROM components c JOIN suspect_components x USING (component) JOIN std s ON s.rid = c.rid
            ORDER BY c.component, s.rid""").fetchall()
        edges = con.execute(f"""
            SELECT c.component, k.rid_l, k.rid_r, k.match_probability + CASE WHEN k.strong THEN 1 ELSE 0 END,
                   k.must
            FROM {links} k JOIN components c ON c.rid = k.rid_l
            JOIN components c2 ON c2.rid = k.rid_r AND c2.component = c.component
            JOIN suspect_components x ON x.component = c.component
            ORDER BY c.component""").fetchall()
        by_component: dict[int, dict] = {}
        for comp, rid, *ids in members:
            by_component.setdefault(comp, {"ident": {}, "edges": []})["ident"][rid] = tuple(ids)
        for comp, a, b, p, is_must in edges:
            by_component[comp]["edges"].append((a, b, p, is_must))
        rows = []
        for comp, data in by_component.items():
            roots, conflict, oversize = _greedy_split(data["edges"], data["ident"], max_size, cannot)
            flag = "identifier_conflict" if conflict else ("size_cap" if oversize else None)
            report.conflict_splits += int(conflict)
            report.size_cap_splits += int(oversize and not conflict)
            rows += [(rid, root, flag) for rid, root in roots.items()]
        # One hand-over: executemany costs a statement per row.
        columns = {"rid": [r[0] for r in rows], "component": [r[1] for r in rows], "flag": [r[2] for r in rows]}
        with registered(con, "resplit_new", columns, {"rid": "BIGINT", "component": "BIGINT", "flag": "VARCHAR"}):
            con.execute("INSERT INTO resplit SELECT * FROM resplit_new")

    con.execute("""
        CREATE OR REPLACE TEMP TABLE clusters AS
        WITH assigned AS (
            SELECT c.rid, coalesce(r.component, c.component) AS component, r.flag
            FROM components c LEFT JOIN resplit r USING (rid)
        ), keyed AS (
            SELECT rid, min(rid) OVER (PARTITION BY component) AS cluster_key, flag,
                   component
            FROM assigned
        ), weak AS (
            SELECT DISTINCT sg.label AS g FROM group_links gl
            JOIN strong_groups sg ON sg.label IN (gl.g1, gl.g2) WHERE NOT gl.accepted
        )
        SELECT k.rid, k.cluster_key,
               nullif(concat_ws(',', max(k.flag) OVER (PARTITION BY k.cluster_key),
                      CASE WHEN max(CASE WHEN w.g IS NOT NULL THEN 1 ELSE 0 END)
                                OVER (PARTITION BY k.cluster_key) = 1 THEN 'weak_link' END), '') AS flags
        FROM keyed k
        LEFT JOIN strong_groups sg ON sg.node = k.rid
        LEFT JOIN weak w ON w.g = sg.label
        ORDER BY k.rid""")
    for t in ("strong_groups", "group_links", "group_components", "components",
              "suspect_components", "component_members", "resplit"):
        con.execute(f"DROP TABLE IF EXISTS {t}")
    return report


__all__ = ["cluster", "connected_components", "Basis", "ClusterReport"]
