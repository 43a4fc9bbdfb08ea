"""Quality against ground truth: pairwise precision, recall and F1, blocking recall, worst errors.

Reads a finished run's ``clusters.csv`` and ``pairs.parquet`` and a truth file with columns
``source, record_id, entity_id``. Records missing from the truth count as their own entity.

Pairwise metrics count record pairs: a predicted pair is two records in one cluster, a true pair two
records of one entity. They are computed by counting (``n(n-1)/2`` per cluster x entity cell), never
by listing pairs, so they scale to millions of records. Within-source pairs (duplicates inside one
export) and across-source pairs (links between exports) are reported separately.

``review_oracle`` answers "what if every review pair were judged correctly?": clusters are rebuilt
from the ``match`` pairs plus the review pairs that are true matches. It measures how much the judge
can add, and the review band's size says what it would cost.
"""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

from dedupe.cluster import connected_components
from dedupe.columns import sql_literal
from dedupe.ingest import InputError


def _prf(tp: int, predicted: int, true: int) -> dict:
    precision = tp / predicted if predicted else 1.0
    recall = tp / true if true else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 5), "recall": round(recall, 5), "f1": round(f1, 5),
            "true_positive_pairs": tp, "predicted_pairs": predicted, "true_pairs": true}


def _pair_metrics(con: duckdb.DuckDBPyConnection, assignment: str) -> dict:
    """Metrics for ``assignment(source, record_id, cluster_id, entity_id)``."""
    def pairs(group: str) -> int:
        return con.execute(f"SELECT coalesce(sum(n * (n - 1) / 2), 0)::BIGINT FROM "
                           f"(SELECT count(*) AS n FROM {assignment} GROUP BY {group})").fetchall()[0][0]

    tp, pred, true = pairs("cluster_id, entity_id"), pairs("cluster_id"), pairs("entity_id")
    tp_w = pairs("cluster_id, entity_id, source")
    pred_w, true_w = pairs("cluster_id, source"), pairs("entity_id, source")
    return {
        "all": _prf(tp, pred, true),
        "within_source": _prf(tp_w, pred_w, true_w),
        "across_sources": _prf(tp - tp_w, pred - pred_w, true - true_w),
    }


def load_truth(con: duckdb.DuckDBPyConnection, truth: Path) -> None:
    if not truth.is_file():
        raise InputError(f"{truth}: truth file not found")
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE truth AS SELECT CAST(source AS VARCHAR) AS source, "
                    f"CAST(record_id AS VARCHAR) AS record_id, CAST(entity_id AS VARCHAR) AS entity_id "
                    f"FROM read_csv({sql_literal(truth)}, header = true, all_varchar = true)")
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0]
        raise InputError(f"{truth}: cannot read truth (needs columns source, record_id, entity_id): "
                         f"{first}") from None
    # A record listed twice would be counted twice (and under two entities, in both): every score
    # would be wrong without a sign of it.
    repeated = con.execute("""SELECT source, record_id, count(*) FROM truth GROUP BY ALL HAVING count(*) > 1
                              ORDER BY source, record_id LIMIT 1""").fetchall()
    if repeated:
        source, record_id, n = repeated[0]
        raise InputError(f"{truth}: record ({source}, {record_id}) is listed {n} times; "
                         f"each record must appear once")


def evaluate(output_dir: Path, truth: Path, worst: int = 10) -> dict:
    # One published run, resolved once: a run publishing meanwhile must not mix two runs' files.
    latest = output_dir / "latest"
    run_dir = latest.resolve() if latest.is_symlink() else output_dir
    clusters = run_dir / "clusters.csv"
    pairs = run_dir / "pairs.parquet"
    for p in (clusters, pairs):
        if not p.is_file():
            raise InputError(f"{p}: not found; run `dedupe run` first")
    con = duckdb.connect()
    load_truth(con, truth)
    con.execute(f"CREATE TEMP TABLE clusters AS SELECT * FROM read_csv({sql_literal(clusters)}, all_varchar = true)")
    con.execute(f"CREATE TEMP VIEW pairs AS SELECT * FROM read_parquet({sql_literal(pairs)})")
    con.execute("""
        CREATE TEMP TABLE assignment AS
        SELECT c.source, c.record_id, c.cluster_id,
               coalesce(t.entity_id, 'unlabelled:' || c.source || ':' || c.record_id) AS entity_id
        FROM clusters c LEFT JOIN truth t USING (source, record_id)""")
    labelled = con.execute("SELECT count(*) FROM clusters SEMI JOIN truth USING (source, record_id)").fetchall()[0][0]
    if not labelled:
        raise InputError(f"{truth}: labels none of the run's records; check its source names and record ids")
    result: dict = {"model_and_judge": _pair_metrics(con, "assignment")}

    # Blocking recall: true pairs that became candidates.
    # Both orders of every true pair, so a candidate matches whichever way round it was written.
    con.execute("""
        CREATE TEMP TABLE true_pairs AS
        SELECT a.source AS source_l, a.record_id AS record_id_l, b.source AS source_r, b.record_id AS record_id_r
        FROM assignment a JOIN assignment b ON a.entity_id = b.entity_id
         AND (a.source <> b.source OR a.record_id <> b.record_id)""")
    con.execute("""
        CREATE TEMP TABLE labelled_pairs AS
        SELECT p.*, t.source_l IS NOT NULL AS is_true
        FROM pairs p LEFT JOIN true_pairs t USING (source_l, record_id_l, source_r, record_id_r)""")
    n_true = con.execute("SELECT count(*) // 2 FROM true_pairs").fetchall()[0][0]
    found = con.execute("SELECT count(*) FROM labelled_pairs WHERE is_true").fetchall()[0][0]
    result["blocking"] = {"candidate_pairs": con.execute("SELECT count(*) FROM pairs").fetchall()[0][0],
                          "true_pairs": n_true, "true_pairs_in_candidates": found,
                          "recall": round(found / n_true, 5) if n_true else 1.0}
    zones = con.execute("""SELECT decision, count(*), count(*) FILTER (WHERE is_true)
                           FROM labelled_pairs GROUP BY 1 ORDER BY 1""").fetchall()
    result["zones"] = {d: {"pairs": n, "true_matches": t} for d, n, t in zones}

    # Oracle for the review band.
    con.execute("""
        CREATE TEMP TABLE nodes AS
        SELECT row_number() OVER (ORDER BY source, record_id) AS rid, source, record_id, entity_id
        FROM assignment""")
    connected_components(con, """
        SELECT a.rid AS a, b.rid AS b FROM labelled_pairs p
        JOIN nodes a ON a.source = p.source_l AND a.record_id = p.record_id_l
        JOIN nodes b ON b.source = p.source_r AND b.record_id = p.record_id_r
        WHERE p.decision = 'match' OR (p.decision = 'review' AND p.is_true)""",
        "oracle_cc", nodes="SELECT rid AS node FROM nodes")
    con.execute("""CREATE TEMP TABLE oracle AS SELECT n.source, n.record_id, CAST(o.label AS VARCHAR) AS cluster_id,
                   n.entity_id FROM nodes n JOIN oracle_cc o ON o.node = n.rid""")
    result["review_oracle"] = _pair_metrics(con, "oracle")
    records = con.execute("SELECT count(*) FROM assignment").fetchall()[0][0]
    review = result["zones"].get("review", {}).get("pairs", 0)
    result["review_pairs_per_100_records"] = round(100 * review / max(records, 1), 3)

    sizes = con.execute("""SELECT count(DISTINCT cluster_id), max(n) FROM
                           (SELECT cluster_id, count(*) AS n FROM assignment GROUP BY 1)""").fetchall()[0]
    result["clusters"] = {
        "records": records, "predicted_clusters": sizes[0], "largest_cluster": sizes[1],
        "true_entities": con.execute("SELECT count(DISTINCT entity_id) FROM assignment").fetchall()[0][0],
    }
    result["worst_false_merges"] = [
        {"cluster_id": c, "records": n, "entities": e, "members": m}
        for c, n, e, m in con.execute(f"""
            SELECT cluster_id, count(*) AS n, count(DISTINCT entity_id) AS e,
                   list(source || ':' || record_id || '=' || entity_id ORDER BY entity_id, record_id)[1:8]
            FROM assignment GROUP BY cluster_id HAVING count(DISTINCT entity_id) > 1
            ORDER BY e DESC, n DESC, cluster_id LIMIT {worst}""").fetchall()]
    result["worst_misses"] = [
        {"entity_id": ent, "records": n, "clusters": k, "members": m}
        for ent, n, k, m in con.execute(f"""
            SELECT entity_id, count(*) AS n, count(DISTINCT cluster_id) AS k,
                   list(source || ':' || record_id || '->' || cluster_id ORDER BY cluster_id, record_id)[1:8]
            FROM assignment GROUP BY entity_id HAVING count(DISTINCT cluster_id) > 1
            ORDER BY k DESC, n DESC, entity_id LIMIT {worst}""").fetchall()]
    con.close()
    return result


def format_evaluation(result: dict) -> str:
    def row(label: str, m: dict) -> str:
        return (f"  {label:<16} precision {m['precision']:.4f}  recall {m['recall']:.4f}  "
                f"F1 {m['f1']:.4f}  (true {m['true_pairs']:,}, predicted {m['predicted_pairs']:,})")

    lines = ["pairwise, as clustered:"]
    for k, v in result["model_and_judge"].items():
        lines.append(row(k, v))
    lines.append("pairwise, if every review pair were judged correctly:")
    for k, v in result["review_oracle"].items():
        lines.append(row(k, v))
    b = result["blocking"]
    lines.append(f"blocking recall:  {b['recall']:.4f} ({b['true_pairs_in_candidates']:,} of "
                 f"{b['true_pairs']:,} true pairs among {b['candidate_pairs']:,} candidates)")
    zones = ", ".join(f"{d} {v['pairs']:,} ({v['true_matches']:,} true)" for d, v in result["zones"].items())
    lines.append(f"zones:            {zones}; review per 100 records: {result['review_pairs_per_100_records']}")
    c = result["clusters"]
    lines.append(f"clusters:         {c['predicted_clusters']:,} predicted, {c['true_entities']:,} true "
                 f"entities, largest {c['largest_cluster']}")
    if result["worst_false_merges"]:
        lines.append("worst false merges:")
        lines += [f"  {m['cluster_id']}: {m['records']} records of {m['entities']} entities: "
                  f"{', '.join(m['members'])}" for m in result["worst_false_merges"][:5]]
    if result["worst_misses"]:
        lines.append("worst misses:")
        lines += [f"  {m['entity_id']}: {m['records']} records in {m['clusters']} clusters: "
                  f"{', '.join(m['members'])}" for m in result["worst_misses"][:5]]
    return "\n".join(lines)


def write_evaluation(output_dir: Path, result: dict) -> Path:
    path = output_dir / "evaluation.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


__all__ = ["evaluate", "format_evaluation", "write_evaluation"]
