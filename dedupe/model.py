"""The probabilistic model: Fellegi-Sunter with u from random pairs, m from anchor pairs (EM where
there are too few), the prior by EM, and term-frequency adjustment of exact matches.

* **u** (P(level | different people)) is counted on a seeded random sample of record pairs, which
  are almost all non-matches. Estimating u this way, rather than by EM, is what keeps EM stable
  (Splink's approach).
* **m** (P(level | same person)) is counted on *anchor pairs*: candidates that agree exactly on
  three identity fields other than the one being estimated (for the email's m: first name, last
  name and phone). Plain EM on CRM data finds "same company" rather than "same person" (company,
  office line, city and country move together; measured: pairwise F1 0.42 on the demo), and
  anchors pin m to people. A comparison with fewer than ``MIN_ANCHOR_PAIRS`` anchors gets its m
  from the EM below (``[model] m_from_anchors = false`` uses EM for all).
* The remaining m and the **prior** are fitted by EM over *all* record pairs, of
  which only the candidates are materialised: a pair that no blocking rule produced disagrees on
  every blocking key, so its match posterior is taken as zero. The prior is therefore the share of
  matches among all ``n(n-1)/2`` pairs, not among candidates. This matters: non-matching
  candidates agree on their blocking key by construction, so an EM confined to candidates, with u
  from random pairs, explains every candidate as a match and degenerates to a prior of 1.
  Candidates are aggregated first to distinct agreement patterns in DuckDB, so an iteration costs
  microseconds whatever the number of pairs.
* **Term frequencies.** An exact match on a common value (``john``, ``info@acme.com``, an office
  main line shared by forty colleagues) is weaker evidence than on a rare one. For comparisons with
  a ``tf_column``, the exact level's Bayes factor uses ``m / tf(value)`` instead of ``m / u``, where
  ``tf(value)`` is the value's share among records. The boost for rare values is capped
  (``MAX_TF_BOOST``) so a typo-unique value cannot outweigh everything else. The shares are
  counted when the model is trained and kept with it (``freeze_term_frequencies``), so an
  unchanged pair keeps its score from night to night.

* **Across nights** (``stored_or_trained``, ``score_pairs``): the model is trained once (first
  night, new comparisons or settings, new standardisation rules, ``--retrain``) and stored in the
  state with its term frequencies; a pair's score is kept until the model or the frequencies
  change, so a night scores only the pairs it compared again.

Everything is deterministic: the u sample comes from a seeded generator, EM starts from fixed values.
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from dataclasses import dataclass, field

import duckdb
import numpy as np

from dedupe import state
from dedupe.columns import registered
from dedupe.compare import Comparison, compare, signature as comparison_signature
from dedupe.config import Config, ModelSettings

MAX_TF_BOOST = 10.0  # the exact level's Bayes factor may grow at most 10x for a rare value
MIN_PROBABILITY = 1e-6  # floor for m and u, so log weights stay finite


@dataclass
class ModelParams:
    prior: float
    m: dict[str, dict[int, float]]
    u: dict[str, dict[int, float]]
    labels: dict[str, dict[int, str]] = field(default_factory=dict)
    em_iterations: int = 0
    u_sample_pairs: int = 0
    anchored: list[str] = field(default_factory=list)  # comparisons whose m came from anchor pairs

    def weight(self, comparison: str, level: int) -> float:
        """log2 Bayes factor of one comparison level (0 for a missing value)."""
        if level < 0:
            return 0.0
        return math.log2(self.m[comparison][level] / self.u[comparison][level])

    def as_dict(self) -> dict:
        return {
            "prior": self.prior,
            "em_iterations": self.em_iterations,
            "u_sample_pairs": self.u_sample_pairs,
            "m_from_anchors": self.anchored,
            "comparisons": {
                name: [{"level": lv, "label": self.labels.get(name, {}).get(lv, str(lv)),
                        "m": self.m[name][lv], "u": self.u[name][lv],
                        "weight": self.weight(name, lv)} for lv in sorted(self.m[name], reverse=True)]
                for name in self.m
            },
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2)

    def to_state(self) -> str:
        """Everything needed to score again, for the state DB (JSON keys are strings)."""
        return json.dumps({"prior": self.prior, "m": self.m, "u": self.u,
                           "labels": self.labels, "em_iterations": self.em_iterations,
                           "u_sample_pairs": self.u_sample_pairs, "anchored": self.anchored})

    @classmethod
    def from_state(cls, text: str) -> "ModelParams":
        d = json.loads(text)

        def levels(table: dict) -> dict:
            return {name: {int(k): v for k, v in lv.items()} for name, lv in table.items()}

        return cls(prior=d["prior"], m=levels(d["m"]), u=levels(d["u"]),
                   labels=levels(d["labels"]), em_iterations=d["em_iterations"],
                   u_sample_pairs=d["u_sample_pairs"], anchored=d["anchored"])


def _levels(c: Comparison) -> list[int]:
    return list(range(c.exact_level, -1, -1))


def _smoothed(counts: dict[int, float], levels: list[int]) -> dict[int, float]:
    """Normalise counts to probabilities with add-one-half smoothing (no level is ever impossible)."""
    total = sum(counts.get(lv, 0.0) for lv in levels) + 0.5 * len(levels)
    return {lv: max((counts.get(lv, 0.0) + 0.5) / total, MIN_PROBABILITY) for lv in levels}


def estimate_u(con: duckdb.DuckDBPyConnection, comparisons: list[Comparison],
               settings: ModelSettings) -> tuple[dict[str, dict[int, float]], int]:
    rids = con.execute("SELECT rid FROM std ORDER BY rid").fetchnumpy()["rid"].astype(np.int64)
    n = len(rids)
    max_pairs = n * (n - 1) // 2
    size = int(min(settings.u_sample_pairs, max_pairs))
    rng = np.random.default_rng(settings.seed)
    # Draw record positions with replacement (rids have gaps where records were deleted).
    a = rids[rng.integers(0, n, size=size)]
    b = rids[rng.integers(0, n, size=size)]
    keep = a != b
    with registered(con, "_u_pairs", {"rid_l": np.minimum(a, b)[keep], "rid_r": np.maximum(a, b)[keep]}):
        con.execute("CREATE OR REPLACE TEMP TABLE u_pairs AS SELECT * FROM _u_pairs")
    compare(con, comparisons, "u_pairs", "u_levels")
    u: dict[str, dict[int, float]] = {}
    for c in comparisons:
        counts = dict(con.execute(f"SELECT {c.name}, count(*) FROM u_levels WHERE {c.name} >= 0 "
                                  f"GROUP BY 1").fetchall())
        u[c.name] = _smoothed(counts, _levels(c))
    sampled = int(keep.sum())
    con.execute("DROP TABLE u_pairs")
    con.execute("DROP TABLE u_levels")
    return u, sampled


def _initial_m(c: Comparison) -> dict[int, float]:
    # Matches mostly agree exactly; the rest spread over the partial levels, little on "different".
    levels = _levels(c)
    partial = [lv for lv in levels if 0 < lv < c.exact_level]
    m = {c.exact_level: 0.8, 0: 0.05}
    for lv in partial:
        m[lv] = 0.15 / len(partial)
    if not partial:
        m[c.exact_level] = 0.95
    return m


def estimate_m(con: duckdb.DuckDBPyConnection, comparisons: list[Comparison], table: str,
               u: dict[str, dict[int, float]], settings: ModelSettings,
               total_pairs: int | None = None,
               fixed_m: dict[str, dict[int, float]] | None = None) -> tuple[dict, float, int]:
    """EM over distinct agreement patterns of ``table``; returns (m, prior, iterations).

    ``total_pairs`` is the number of pairs in the population the prior refers to (all record
    pairs); by default, the rows of ``table``. Comparisons in ``fixed_m`` keep those m values."""
    fixed_m = fixed_m or {}
    names = [c.name for c in comparisons]
    # Ordered, because floating-point sums depend on order and GROUP BY's order is not fixed: the
    # same data must give bit-identical parameters (the model is frozen and compared across runs).
    rows = con.execute(f"SELECT {', '.join(names)}, count(*) FROM {table} GROUP BY ALL ORDER BY ALL").fetchall()
    if not rows:
        return {c.name: fixed_m.get(c.name) or _initial_m(c) for c in comparisons}, settings.prior or 0.01, 0
    patterns = np.array([r[:-1] for r in rows], dtype=np.int64)
    counts = np.array([r[-1] for r in rows], dtype=np.float64)
    population = float(total_pairs or counts.sum())

    m = {c.name: fixed_m.get(c.name) or _initial_m(c) for c in comparisons}
    # Start from "a few percent of candidates are matches"; EM moves it from there.
    prior = settings.prior if settings.prior is not None else \
        min(max(0.05 * counts.sum() / population, 1e-12), 0.5)
    iterations = 0
    for iterations in range(1, settings.em_max_iterations + 1):
        # E step: the match probability of each pattern.
        log_m = np.zeros(len(rows))
        log_u = np.zeros(len(rows))
        for j, c in enumerate(comparisons):
            col = patterns[:, j]
            for lv in _levels(c):
                sel = col == lv
                log_m[sel] += math.log(m[c.name][lv])
                log_u[sel] += math.log(u[c.name][lv])
        logit = math.log(prior / (1 - prior)) + log_m - log_u
        p = 1.0 / (1.0 + np.exp(-np.clip(logit, -700, 700)))
        # M step.
        weighted = counts * p
        new_m = {}
        for j, c in enumerate(comparisons):
            col = patterns[:, j]
            level_mass = {lv: float(weighted[col == lv].sum()) for lv in _levels(c)}
            new_m[c.name] = fixed_m.get(c.name) or _smoothed(level_mass, _levels(c))
        new_prior = prior if settings.prior is not None else \
            float(min(max(weighted.sum() / population, 1e-12), 1 - 1e-6))
        change = max(abs(new_m[n][lv] - m[n][lv]) for n in new_m for lv in new_m[n])
        change = max(change, abs(math.log(new_prior / prior)))
        m, prior = new_m, new_prior
        if change < settings.em_tolerance:
            break
    return m, prior, iterations


# Comparisons that identify a person. Anchor pairs agree exactly on several of them.
IDENTITY_COMPARISONS = ("first_name", "last_name", "email", "phone", "date_of_birth")
MIN_ANCHOR_PAIRS = 30


def estimate_m_from_anchors(con: duckdb.DuckDBPyConnection, comparisons: list[Comparison], table: str,
                            identity: list[str]) -> dict[str, dict[int, float]]:
    """m per comparison, counted on the pairs that agree exactly on three other identity fields.

    Leaving the comparison itself out of the anchor condition is what makes the count honest: a
    pair anchored on first name + last name + phone says how often the *same person's* two emails
    agree. Comparisons with fewer than MIN_ANCHOR_PAIRS anchors are left out (EM fits them).
    """
    by_name = {c.name: c for c in comparisons}
    m: dict[str, dict[int, float]] = {}
    for c in comparisons:
        others = [by_name[n] for n in identity if n in by_name and n != c.name]
        if len(others) < 2:
            continue
        need = min(3, len(others))
        agree = " + ".join(f"CAST({o.name} = {o.exact_level} AS INTEGER)" for o in others)
        counts = dict(con.execute(f"SELECT {c.name}, count(*) FROM {table} "
                                  f"WHERE {c.name} >= 0 AND {agree} >= {need} GROUP BY 1").fetchall())
        if sum(counts.values()) >= MIN_ANCHOR_PAIRS:
            m[c.name] = _smoothed(counts, _levels(c))
    return m


def train(con: duckdb.DuckDBPyConnection, comparisons: list[Comparison], table: str,
          settings: ModelSettings, identifiers: tuple[str, ...] = ()) -> ModelParams:
    """u from random pairs; m from anchor pairs where there are enough, else EM; prior by EM."""
    u, sampled = estimate_u(con, comparisons, settings)
    n = con.execute("SELECT count(*) FROM std").fetchall()[0][0]
    identity = list(IDENTITY_COMPARISONS) + [f for f in identifiers if f not in IDENTITY_COMPARISONS]
    anchored = estimate_m_from_anchors(con, comparisons, table, identity) if settings.m_from_anchors else {}
    m, prior, iterations = estimate_m(con, comparisons, table, u, settings, total_pairs=n * (n - 1) // 2,
                                      fixed_m=anchored)
    return ModelParams(prior=prior, m=m, u=u, labels={c.name: c.level_labels for c in comparisons},
                       em_iterations=iterations, u_sample_pairs=sampled,
                       anchored=sorted(anchored))


def _weight_case(c: Comparison, params: ModelParams) -> str:
    # Literals are typed DOUBLE: DuckDB would otherwise read them as DECIMALs of mismatched scales.
    branches = " ".join(f"WHEN {lv} THEN {params.weight(c.name, lv)!r}::DOUBLE" for lv in _levels(c))
    return f"(CASE c.{c.name} {branches} ELSE 0.0 END)"


def freeze_term_frequencies(con: duckdb.DuckDBPyConnection, comparisons: list[Comparison],
                            tf_adjustment: bool = True) -> None:
    """Store each term-frequency comparison's value shares (table ``tf_<name>``) with the model.

    Frozen, like the m and u: a pair's score then depends only on its own two records, so a night
    re-scores only the pairs it compared again, and an unchanged pair keeps its score (a share
    recounted every night would move nearly every score a little). A value first seen after
    training has no share and gets no adjustment. ``--retrain`` counts them again."""
    for c in comparisons:
        con.execute(f"DROP TABLE IF EXISTS tf_{c.name}")
        if c.tf_column and tf_adjustment:
            con.execute(f"""
                CREATE TABLE tf_{c.name} AS
                SELECT {c.tf_column} AS value, count(*) / sum(count(*)) OVER () AS tf
                FROM std WHERE {c.tf_column} IS NOT NULL GROUP BY {c.tf_column}""")


def frozen_term_frequencies(con: duckdb.DuckDBPyConnection, comparisons: list[Comparison],
                            tf_adjustment: bool = True) -> bool:
    """Whether every ``tf_<name>`` table ``score_sql`` needs exists."""
    return all(state.has_table(con, f"tf_{c.name}") for c in comparisons if c.tf_column and tf_adjustment)


def score_sql(comparisons: list[Comparison], params: ModelParams, levels_table: str,
              tf_adjustment: bool = True, where: str = "true") -> str:
    """SQL for ``(rid_l, rid_r, match_weight, match_probability)`` of the rows of ``levels_table``
    matching ``where``, with the frozen term frequencies (``freeze_term_frequencies``)."""
    terms = [f"{math.log2(params.prior / (1 - params.prior))!r}::DOUBLE"]
    joins = []
    tf_comparisons = [c for c in comparisons if c.tf_column and tf_adjustment]
    for c in comparisons:
        terms.append(_weight_case(c, params))
    if tf_comparisons:
        joins.append("JOIN std l ON l.rid = c.rid_l")
    for c in tf_comparisons:
        u_exact = params.u[c.name][c.exact_level]
        joins.append(f"LEFT JOIN tf_{c.name} ON tf_{c.name}.value = l.{c.tf_column} AND c.{c.name} = {c.exact_level}")
        # log2(u_exact / tf): negative for common values, capped positive for rare ones. (DuckDB's
        # least() skips NULLs, so the no-exact-match case must be spelled out.)
        terms.append(f"(CASE WHEN tf_{c.name}.tf IS NULL THEN 0.0 ELSE least(log2({u_exact!r}::DOUBLE "
                     f"/ tf_{c.name}.tf), {math.log2(MAX_TF_BOOST)!r}::DOUBLE) END)")
    return f"""
        SELECT rid_l, rid_r, match_weight,
               1.0 / (1.0 + pow(2.0, -greatest(least(match_weight, 60), -60))) AS match_probability
        FROM (SELECT c.rid_l, c.rid_r, {' + '.join(terms)} AS match_weight
              FROM {levels_table} c {' '.join(joins)} WHERE {where})"""


# --------------------------------------------------------------------------------------------
# across nights: the model is trained once, stored in the state and reused, and so are the scores


def stored_or_trained(con: duckdb.DuckDBPyConnection, config: Config, comparisons: list[Comparison],
                      retrain: bool = False) -> tuple[ModelParams, bool]:
    """The stored model if it was trained for these comparisons and settings, else a new one.

    The model is trained once (first night, config change, new standardisation rules, or
    ``--retrain``) and then reused, so that a night's scores do not move because the training
    sample did, and an incremental run and a ``--full`` rebuild score every pair identically.
    """
    # New standardisation rules change what the levels see, so they retrain too.
    signature = "|".join([comparison_signature(comparisons), repr(config.model), repr(config.cluster.identifiers),
                          state.get_meta(con, "standardise_signature") or ""])
    stored = state.get_meta(con, "model_params")
    if stored and not retrain and state.get_meta(con, "model_signature") == signature:
        if not frozen_term_frequencies(con, comparisons, config.model.tf_adjustment):
            # a model stored by code that counted them every night: count them once, now
            recount_term_frequencies(con, config, comparisons)
        return ModelParams.from_state(stored), False
    params = train(con, comparisons, "comparisons", config.model, identifiers=config.cluster.identifiers)
    # One transaction: a kill must leave the old model with its term frequencies or the new with its.
    recount_term_frequencies(con, config, comparisons, params, signature)
    return params, True


def recount_term_frequencies(con: duckdb.DuckDBPyConnection, config: Config, comparisons: list[Comparison],
                             params: ModelParams | None = None, signature: str | None = None) -> None:
    """Count the term frequencies (and store a newly trained model) in one transaction. Every count
    gets a new ``term_frequencies_id``, part of the scores' signature: scores made with other
    frequencies are never kept (a retrain can give the same weights but new frequencies)."""
    with state.transaction(con):
        freeze_term_frequencies(con, comparisons, config.model.tf_adjustment)
        state.crash_point("term_frequencies")
        state.set_meta(con, "term_frequencies_id", uuid.uuid4().hex)
        if params is not None:
            state.set_meta(con, "model_params", params.to_state())
            state.set_meta(con, "model_signature", signature)


def score_pairs(con: duckdb.DuckDBPyConnection, config: Config, comparisons: list[Comparison],
                params: ModelParams) -> dict[str, int]:
    """Scores for the stored pairs that have none (new since last night), or for every pair when
    the model changed; return how many were scored and kept."""
    signature = hashlib.sha256((params.to_state() + repr(config.model.tf_adjustment)
                                + (state.get_meta(con, "term_frequencies_id") or "")).encode()).hexdigest()[:16]
    total = con.execute("SELECT count(*) FROM comparisons").fetchall()[0][0]
    if (state.column_type(con, "comparisons", "match_probability")
            and state.get_meta(con, "scores_signature") == signature):
        todo = con.execute("SELECT count(*) FROM comparisons WHERE match_probability IS NULL").fetchall()[0][0]
        if todo < total // 2:
            scores = score_sql(comparisons, params, "comparisons", config.model.tf_adjustment,
                               where="c.match_probability IS NULL")
            con.execute(f"""
                UPDATE comparisons c SET match_weight = s.match_weight, match_probability = s.match_probability
                FROM ({scores}) s WHERE c.rid_l = s.rid_l AND c.rid_r = s.rid_r""")
            return {"scored": todo, "kept": total - todo}
    levels = ", ".join(f"c.{name}" for name in ["rid_l", "rid_r", "key_l", "key_r"] + [k.name for k in comparisons])
    scores = score_sql(comparisons, params, "comparisons", config.model.tf_adjustment)
    with state.transaction(con):
        con.execute(f"""
            CREATE OR REPLACE TABLE comparisons AS
            SELECT {levels}, s.match_weight, s.match_probability
            FROM comparisons c JOIN ({scores}) s ON s.rid_l = c.rid_l AND s.rid_r = c.rid_r""")
        state.set_meta(con, "scores_signature", signature)
    return {"scored": total, "kept": 0}


__all__ = ["ModelParams", "train", "score_sql", "freeze_term_frequencies", "frozen_term_frequencies",
           "estimate_u", "estimate_m", "MAX_TF_BOOST", "stored_or_trained", "recount_term_frequencies",
           "score_pairs"]
