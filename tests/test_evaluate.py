import csv

import duckdb
import pytest

from dedupe.evaluate import evaluate
from dedupe.ingest import InputError


def _write(path, header, rows):
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


@pytest.fixture()
def run_dir(tmp_path):
    # Truth: e1 = {a:1, b:1, b:2}, e2 = {a:2, b:3}, e3 = {a:3}
    _write(tmp_path / "truth.csv", ["source", "record_id", "entity_id"],
           [["a", "1", "e1"], ["b", "1", "e1"], ["b", "2", "e1"], ["a", "2", "e2"], ["b", "3", "e2"], ["a", "3", "e3"]])
    # Predicted: {a:1, b:1} {b:2} {a:2, b:3, a:3}
    _write(tmp_path / "clusters.csv", ["source", "record_id", "cluster_id"],
           [["a", "1", "X"], ["b", "1", "X"], ["b", "2", "Y"], ["a", "2", "Z"], ["b", "3", "Z"], ["a", "3", "Z"]])
    con = duckdb.connect()
    con.execute(f"""COPY (SELECT * FROM (VALUES
        ('a', '1', 'b', '1', 0.99, 'match'), ('a', '1', 'b', '2', 0.6, 'review'),
        ('a', '2', 'b', '3', 0.99, 'match'), ('a', '2', 'a', '3', 0.99, 'match'))
        t(source_l, record_id_l, source_r, record_id_r, match_probability, decision))
        TO '{tmp_path / "pairs.parquet"}' (FORMAT parquet)""")
    return tmp_path


def test_pairwise_metrics_blocking_recall_and_oracle(run_dir):
    r = evaluate(run_dir, run_dir / "truth.csv")
    allm = r["model_and_judge"]["all"]
    # true pairs: e1 has 3, e2 has 1 -> 4; predicted: X 1 + Z 3 -> 4; correct: (a1,b1), (a2,b3) -> 2
    assert (allm["true_pairs"], allm["predicted_pairs"], allm["true_positive_pairs"]) == (4, 4, 2)
    assert allm["precision"] == 0.5 and allm["recall"] == 0.5
    within = r["model_and_judge"]["within_source"]
    assert (within["true_pairs"], within["predicted_pairs"], within["true_positive_pairs"]) == (1, 1, 0)  # (b1, b2) true; (a2, a3) predicted
    assert r["blocking"]["true_pairs_in_candidates"] == 3 and r["blocking"]["true_pairs"] == 4
    # judging the review pair (a1, b2) correctly adds it: e1 fully joined, recall 4/4... minus (b1,b2) via transitivity
    oracle = r["review_oracle"]["all"]
    assert oracle["true_positive_pairs"] == 4
    assert r["worst_false_merges"][0]["cluster_id"] == "Z"
    assert r["worst_misses"][0]["entity_id"] == "e1"


def test_missing_truth_file_is_a_clear_error(run_dir):
    with pytest.raises(InputError, match="truth file not found"):
        evaluate(run_dir, run_dir / "nope.csv")


def test_a_record_listed_twice_in_the_truth_is_refused_rather_than_counted_twice(run_dir):
    with (run_dir / "truth.csv").open("a", newline="") as f:
        csv.writer(f).writerow(["b", "2", "e2"])
    with pytest.raises(InputError, match=r"record \(b, 2\) is listed 2 times"):
        evaluate(run_dir, run_dir / "truth.csv")


def test_a_truth_file_that_labels_none_of_the_records_is_refused(run_dir):
    _write(run_dir / "other.csv", ["source", "record_id", "entity_id"], [["crm", "1", "e1"]])
    with pytest.raises(InputError, match="labels none of the run's records"):
        evaluate(run_dir, run_dir / "other.csv")
