"""dedupe vs Splink 5 on the same data in the same run: wall time, peak memory, pairwise quality.

    python bench/vs_splink.py --people 135000            # about 2 x 100k records (crm ~111k, partner ~88k)
    python bench/vs_splink.py --people 20000 --seed 5    # the development set the "tuned" profile was chosen on
    python bench/vs_splink.py --profiles tuned           # one Splink set-up only

Run it with the project's interpreter (the one dedupe is installed in). Steps:

1. Splink lives in its own venv, ``bench/.venv-splink``, created here from
   ``bench/requirements-splink.txt`` when missing or when that file changed; it is never a
   dependency of dedupe.
2. ``fixtures/generate.py`` writes crm.csv, partner.csv and truth.csv into
   ``bench/data/vs_splink_people<N>_seed<S>/``.
3. dedupe runs exactly as in ``bench/pipeline_bench.py`` (its config and measured child process).
4. For each Splink profile (``PROFILES``), this file runs again in the Splink venv with
   ``--splink-worker``: it reads the same two CSVs, maps both to one schema with the light cleaning
   a Splink user would do (``prepare``), links and dedupes them with Splink, and writes
   ``clusters.csv`` and ``pairs.parquet`` in dedupe's output schema into ``splink_<profile>/``.
5. Every output folder is scored by the same function, ``dedupe.evaluate.evaluate``: pairwise
   precision/recall/F1 counted from ``clusters.csv`` against the generator's truth (n(n-1)/2 per
   cluster x entity cell), blocking recall from ``pairs.parquet`` (every scored candidate pair, for
   both tools; Splink's rows carry ``decision`` = match when p >= the profile's threshold).

Wall time is the whole child process for every tool (interpreter start to exit: reading the CSVs,
preparing, training, linking, clustering, writing outputs); dedupe also builds golden records, which
Splink does not. Peak RSS is the child's own ``ru_maxrss``. Results go to
bench/results/vs_splink_<N>.json and .md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
SPLINK_VENV = BENCH / ".venv-splink"
REQUIREMENTS = BENCH / "requirements-splink.txt"
SWEEP = (0.5, 0.9, 0.95, 0.99, 0.999)  # thresholds re-clustered from Splink's pairs, for information
U_MAX_PAIRS = 1e7               # random pairs for Splink's u estimate (its docs: 1e7 "often adequate")


# ----------------------------------------------------------------------------------------------
# Splink worker: runs inside bench/.venv-splink (splink, duckdb, pandas; no dedupe).
# ----------------------------------------------------------------------------------------------

COUNTRY = {  # the spellings found in the crm export's Country column, to ISO codes like partner's
    "united states": "us", "united states of america": "us", "usa": "us", "us": "us", "u.s.": "us",
    "u.s.a.": "us", "america": "us",
    "united kingdom": "gb", "uk": "gb", "u.k.": "gb", "great britain": "gb", "england": "gb",
    "scotland": "gb", "wales": "gb", "gb": "gb",
    "germany": "de", "deutschland": "de", "de": "de",
    "france": "fr", "fr": "fr",
    "spain": "es", "espana": "es", "españa": "es", "es": "es",
}
TITLES = {"dr", "mr", "mrs", "ms", "miss", "prof"}
SUFFIXES = {"jr", "sr", "ii", "iii", "iv", "phd", "md", "esq"}
PARTICLES = {"van", "von", "de", "der", "den", "da", "di", "del", "la", "le", "du", "dos", "st"}


# Two Splink set-ups, each run in its own process and reported side by side:
# * "issue": the settings the issue describes, out of the box (EmailComparison, exact phone and city),
#   clustered at match probability 0.5.
# * "tuned": what a careful Splink user reaches after looking at the false links of "issue" on a
#   development set (2 x 15k records: --people 20000 --seed 5, never the benchmark's seed):
#   EmailComparison's username levels count "maria.suarez@a" = "maria.suarez@b" as strong evidence,
#   so namesakes link; shared office lines and city/company agreement link colleagues. So: exact
#   e-mail only (term-frequency adjusted), term-frequency adjustment on phone, no city (partner has
#   none, and within the crm it mostly says "same office"), threshold 0.95. F1 on the development
#   set went from 0.51 ("issue") to 0.94.
PROFILES = {
    "issue": {"email": "EmailComparison", "phone_tf": False, "city": True, "threshold": 0.5},
    "tuned": {"email": "exact_tf", "phone_tf": True, "city": False, "threshold": 0.95},
}


def splink_settings(profile: str) -> dict:
    """The Splink settings dictionary for a profile: link_and_dedupe over the two exports."""
    import splink.comparison_library as cl
    from splink import block_on

    prof = PROFILES[profile]
    email = (cl.EmailComparison("email") if prof["email"] == "EmailComparison"
             else cl.ExactMatch("email").configure(term_frequency_adjustments=True))
    phone = cl.ExactMatch("phone")
    if prof["phone_tf"]:
        phone = phone.configure(term_frequency_adjustments=True)
    comparisons = [
        cl.NameComparison("first_name"),       # exact (tf-adjusted) / JW >= .92 / .88 / .70 / else
        cl.NameComparison("last_name"),
        email,
        phone,
        cl.JaroWinklerAtThresholds("company", [0.9, 0.7]),
        *([cl.ExactMatch("city")] if prof["city"] else []),
        cl.ExactMatch("country"),
    ]
    return {
        "link_type": "link_and_dedupe",
        "unique_id_column_name": "unique_id",
        "blocking_rules_to_generate_predictions": [
            block_on("email"),
            block_on("phone"),
            block_on("last_name", "substr(first_name, 1, 1)"),
        ],
        "comparisons": comparisons,
        "retain_intermediate_calculation_columns": False,
        "retain_matching_columns": False,
    }


def describe_profile(profile: str, seed: int) -> dict:
    prof = PROFILES[profile]
    return {
        "link_type": "link_and_dedupe",
        "blocking": ["email", "phone", "last_name + substr(first_name, 1, 1)"],
        "comparisons": [
            "NameComparison(first_name)", "NameComparison(last_name)",
            "EmailComparison(email)" if prof["email"] == "EmailComparison"
            else "ExactMatch(email), term-frequency adjusted",
            "ExactMatch(phone)" + (", term-frequency adjusted" if prof["phone_tf"] else ""),
            "JaroWinklerAtThresholds(company, [0.9, 0.7])",
            *(["ExactMatch(city)"] if prof["city"] else []),
            "ExactMatch(country)"],
        "training": [
            "estimate_probability_two_random_records_match([first+last+email, first+last+phone], recall=0.7)",
            f"estimate_u_using_random_sampling(max_pairs={U_MAX_PAIRS:.0e}, seed={seed})",
            "estimate_parameters_using_expectation_maximisation(block_on(first_name, last_name))",
            "estimate_parameters_using_expectation_maximisation(block_on(email))"],
        "predict": "every candidate pair scored (no threshold), as dedupe scores every candidate",
        "cluster": f"cluster_pairwise_predictions_at_threshold(p >= {prof['threshold']})",
        "cleaning": "lower/trim/collapse spaces, NFKD accent fold; partner full_name split with plain "
                    "string rules ('First [M.] Last', 'Last, First', titles/suffixes dropped, "
                    "particles kept); phone digits only, last 9; crm country names mapped to ISO codes; "
                    "partner has no city",
    }


def _clean(s):
    """Lower-case, trim, collapse spaces, fold accents (NFKD, drop marks); '' -> null."""
    s = (s.astype("string").str.strip().str.lower().str.replace(r"\s+", " ", regex=True)
         .str.normalize("NFKD").str.encode("ascii", "ignore").str.decode("ascii"))
    return s.where(s.str.len() > 0, None)


def _phone(s):
    """Digits only, then the last 9 digits: drops +1 / +44 / trunk 0 prefixes so formats meet."""
    d = s.astype("string").str.replace(r"\D", "", regex=True).str[-9:]
    return d.where(d.str.len() >= 7, None)


def _split_full_name(full: str | None) -> tuple[str | None, str | None]:
    """'first [middle] last' or 'last, first [middle]', titles and suffixes dropped (already cleaned)."""
    if full is None:
        return None, None
    if "," in full:
        last, _, rest = full.partition(",")
        rest_tokens = [t for t in rest.replace(".", " ").split() if t not in SUFFIXES and t not in TITLES]
        last_tokens = [t for t in last.replace(".", " ").split() if t not in TITLES]
        return (rest_tokens[0] if rest_tokens else None), (" ".join(last_tokens) or None)
    tokens = [t.strip(".") for t in full.split()]
    tokens = [t for t in tokens if t]
    while tokens and tokens[0] in TITLES:
        tokens = tokens[1:]
    while len(tokens) > 1 and tokens[-1] in SUFFIXES:
        tokens = tokens[:-1]
    if not tokens:
        return None, None
    if len(tokens) == 1:
        return None, tokens[0]
    first, rest = tokens[0], tokens[1:]
    start = len(rest) - 1          # last name = last token, plus any particles before it
    while start > 0 and rest[start - 1] in PARTICLES:
        start -= 1
    return first, " ".join(rest[start:])


def prepare(data: Path):
    """Both exports mapped to one schema, as a Splink user would: (crm, partner) DataFrames."""
    import pandas as pd

    crm = pd.read_csv(data / "crm.csv", dtype=str, keep_default_na=False)
    partner = pd.read_csv(data / "partner.csv", dtype=str, keep_default_na=False)
    crm_df = pd.DataFrame({
        "unique_id": crm["Contact ID"],
        "first_name": _clean(crm["First Name"]),
        "last_name": _clean(crm["Last Name"]),
        "email": _clean(crm["Email"]),
        "phone": _phone(crm["Phone"]),
        "company": _clean(crm["Company"]),
        "city": _clean(crm["City"]),
        "country": _clean(crm["Country"]).map(COUNTRY.get, na_action="ignore"),
    })
    names = _clean(partner["full_name"])
    split = [_split_full_name(None if pd.isna(v) else v) for v in names]
    partner_df = pd.DataFrame({
        "unique_id": partner["id"],
        "first_name": pd.Series([f for f, _ in split], dtype="string"),
        "last_name": pd.Series([last for _, last in split], dtype="string"),
        "email": _clean(partner["email_address"]),
        "phone": _phone(partner["phone_number"]),
        "company": _clean(partner["organization"]),
        "city": pd.Series([None] * len(partner), dtype="string"),  # the partner export has no city
        "country": _clean(partner["country_code"]),
    })
    for df in (crm_df, partner_df):
        for col in df.columns:
            df[col] = df[col].astype("string")
    return crm_df, partner_df


def splink_worker(data: Path, out: Path, profile: str, seed: int) -> None:
    import logging
    import resource

    import duckdb
    import splink
    from splink import DuckDBAPI, Linker, block_on

    threshold = PROFILES[profile]["threshold"]
    out.mkdir(parents=True, exist_ok=True)
    stages: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        stages[name] = round(now - t, 2)
        t = now

    crm_df, partner_df = prepare(data)
    lap("read_and_clean")

    con = duckdb.connect()
    db_api = DuckDBAPI(con)
    sdf_crm = db_api.register(crm_df, dataset_display_name="crm")
    sdf_partner = db_api.register(partner_df, dataset_display_name="partner")
    linker = Linker([sdf_crm, sdf_partner], splink_settings(profile), log_level=logging.WARNING)
    lap("register")

    # Prior from deterministic rules (Splink's documented route), u from random pairs, m by EM.
    linker.training.estimate_probability_two_random_records_match(
        [block_on("first_name", "last_name", "email"), block_on("first_name", "last_name", "phone")],
        recall=0.7)
    linker.training.estimate_u_using_random_sampling(max_pairs=U_MAX_PAIRS, seed=seed)
    lap("train_u")
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("first_name", "last_name"))
    linker.training.estimate_parameters_using_expectation_maximisation(block_on("email"))
    lap("train_em")

    predictions = linker.inference.predict()   # every candidate pair, scored
    lap("predict")
    clusters = linker.clustering.cluster_pairwise_predictions_at_threshold(
        predictions, threshold_match_probability=threshold)
    lap("cluster")

    def lit(p: Path) -> str:
        return "'" + str(p).replace("'", "''") + "'"

    # dedupe's output schema, so that dedupe.evaluate reads both tools' outputs the same way.
    con.execute(f"""COPY (SELECT source_dataset_l AS source_l, CAST(unique_id_l AS VARCHAR) AS record_id_l,
                                 source_dataset_r AS source_r, CAST(unique_id_r AS VARCHAR) AS record_id_r,
                                 match_probability, match_weight,
                                 CASE WHEN match_probability >= {threshold} THEN 'match'
                                      ELSE 'non_match' END AS decision,
                                 'model' AS decided_by
                          FROM {predictions.physical_name})
                    TO {lit(out / 'pairs.parquet')} (FORMAT parquet)""")
    con.execute(f"""COPY (SELECT source_dataset AS source, CAST(unique_id AS VARCHAR) AS record_id,
                                 CAST(cluster_id AS VARCHAR) AS cluster_id
                          FROM {clusters.physical_name} ORDER BY source, record_id)
                    TO {lit(out / 'clusters.csv')} (FORMAT csv, HEADER)""")
    linker.misc.save_model_to_json(str(out / "model.json"), overwrite=True)
    lap("write_outputs")

    stats = {
        "profile": profile, "splink_version": splink.__version__, "duckdb_version": duckdb.__version__,
        "stages_s": stages, "records": {"crm": len(crm_df), "partner": len(partner_df)},
        "probability_two_random_records_match":
            linker._settings_obj._probability_two_random_records_match,  # noqa: SLF001
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
    }
    (out / "splink_stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# Orchestrator: runs in the project's venv.
# ----------------------------------------------------------------------------------------------

def ensure_splink_venv() -> Path:
    """bench/.venv-splink with requirements-splink.txt installed; rebuilt when that file changes."""
    py = SPLINK_VENV / "bin" / "python"
    stamp = SPLINK_VENV / "requirements.sha256"
    want = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if py.exists() and stamp.exists() and stamp.read_text().strip() == want:
        return py
    print(f"setting up {SPLINK_VENV.relative_to(ROOT)} from {REQUIREMENTS.relative_to(ROOT)} ...", flush=True)
    if not py.exists():
        base = getattr(sys, "_base_executable", None) or "python3"
        subprocess.run([base, "-m", "venv", str(SPLINK_VENV)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-r", str(REQUIREMENTS)], check=True)
    stamp.write_text(want + "\n")
    return py


def run_splink(splink_py: Path, data: Path, profile: str, seed: int, env: dict) -> tuple[float, dict]:
    """One Splink profile in its own child process: (wall seconds, the worker's stats)."""
    out = data / f"splink_{profile}"
    for f in ("clusters.csv", "pairs.parquet", "splink_stats.json"):
        (out / f).unlink(missing_ok=True)
    log_path = data / f"splink_{profile}.log"
    start = time.perf_counter()
    with open(log_path, "w") as log:
        done = subprocess.run([str(splink_py), __file__, "--seed", str(seed), "--splink-worker", profile,
                               str(data), str(out)], env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"Splink worker ({profile}) failed ({done.returncode}); log {log_path}:\n"
                 f"{log_path.read_text()[-3000:]}")
    return wall, json.loads((out / "splink_stats.json").read_text())


def threshold_sweep(out: Path, truth: Path) -> dict:
    """Splink's pairs re-clustered (connected components, as Splink clusters) at other thresholds.

    Not timed and not the headline: choosing the threshold on the benchmark's own truth is an
    oracle. Scored with the same ``dedupe.evaluate.evaluate``."""
    import shutil

    import duckdb

    from dedupe.cluster import connected_components
    from dedupe.evaluate import evaluate

    con = duckdb.connect()
    con.execute(f"""CREATE TEMP TABLE nodes AS SELECT row_number() OVER (ORDER BY source, record_id) AS rid,
                    source, record_id FROM read_csv('{out / "clusters.csv"}', all_varchar = true)""")
    con.execute(f"""CREATE TEMP TABLE edges AS SELECT a.rid AS a, b.rid AS b, p.match_probability AS p
                    FROM read_parquet('{out / "pairs.parquet"}') p
                    JOIN nodes a ON a.source = p.source_l AND a.record_id = p.record_id_l
                    JOIN nodes b ON b.source = p.source_r AND b.record_id = p.record_id_r""")
    sweep = {}
    for thr in SWEEP:
        connected_components(con, f"SELECT a, b FROM edges WHERE p >= {thr}", "cc",
                             nodes="SELECT rid AS node FROM nodes")
        tmp = out / f"sweep_{thr}"
        tmp.mkdir(exist_ok=True)
        con.execute(f"""COPY (SELECT n.source, n.record_id, CAST(c.label AS VARCHAR) AS cluster_id
                              FROM nodes n JOIN cc c ON c.node = n.rid)
                        TO '{tmp / "clusters.csv"}' (FORMAT csv, HEADER)""")
        (tmp / "pairs.parquet").unlink(missing_ok=True)
        (tmp / "pairs.parquet").symlink_to(out / "pairs.parquet")
        ev = evaluate(tmp, truth)
        sweep[str(thr)] = {**{k: ev["model_and_judge"]["all"][k] for k in ("precision", "recall", "f1")},
                           "largest_cluster": ev["clusters"]["largest_cluster"]}
        shutil.rmtree(tmp)
    con.close()
    return sweep


def dedupe_code() -> dict:
    """Which dedupe was measured: the package's folder, and the repo's HEAD if that folder is in it."""
    import dedupe

    pkg = Path(dedupe.__file__).resolve().parent
    info: dict = {"package": str(pkg)}
    if pkg.parent == ROOT:
        def git(*a: str) -> str:
            return subprocess.run(["git", "-C", str(ROOT), *a], capture_output=True, text=True).stdout.strip()
        info["commit"] = git("rev-parse", "--short", "HEAD")
        info["uncommitted_changes_in_dedupe"] = bool(git("status", "--porcelain", "--", "dedupe"))
    return info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=135_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--profiles", default="issue,tuned",
                        help=f"Splink set-ups to run, comma-separated, from {sorted(PROFILES)}")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds of (dedupe, each Splink profile); times and RSS are medians")
    parser.add_argument("--keep-data", action="store_true", help="keep the generated CSVs")
    parser.add_argument("--splink-worker", nargs=3, metavar=("PROFILE", "DATA", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.splink_worker:
        profile, data_dir, out_dir = args.splink_worker
        splink_worker(Path(data_dir), Path(out_dir), profile, args.seed)
        return

    profiles = [p.strip() for p in args.profiles.split(",") if p.strip()]
    unknown = [p for p in profiles if p not in PROFILES]
    if unknown or not profiles:
        parser.error(f"--profiles: unknown {unknown}; choose from {sorted(PROFILES)}")

    sys.path.insert(0, str(BENCH))
    from pipeline_bench import CONFIG, _run, _run_measured  # the same measured dedupe run

    from dedupe.evaluate import evaluate

    name = f"vs_splink_people{args.people}_seed{args.seed}"
    data = BENCH / "data" / name
    results = BENCH / "results"
    results.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    splink_py = ensure_splink_venv()

    print(f"generating --people {args.people} --seed {args.seed} ...", flush=True)
    gen_wall, _ = _run([sys.executable, str(ROOT / "fixtures" / "generate.py"), "--people", str(args.people),
                        "--seed", str(args.seed), "--out", str(data)], env)
    truth = data / "truth.csv"

    # Rounds: dedupe (exactly as pipeline_bench runs it), then each Splink profile, each alone in its
    # own child process; repeated rounds interleave the tools so that background load hits them alike.
    config = data / "bench.toml"
    config.write_text(CONFIG.format(name=name), encoding="utf-8")
    dedupe_out = data / "out"
    walls: dict[str, list[float]] = {"dedupe": [], **{p: [] for p in profiles}}
    rsss: dict[str, list[int]] = {"dedupe": [], **{p: [] for p in profiles}}
    stats: dict[str, dict] = {}
    for r in range(args.repeat):
        (dedupe_out / "state.duckdb").unlink(missing_ok=True)  # a first night, not a rerun
        print(f"[round {r + 1}/{args.repeat}] dedupe run ...", flush=True)
        wall, rss = _run_measured(["run", str(config)], env, data / "rss.txt")
        walls["dedupe"].append(round(wall, 2))
        rsss["dedupe"].append(rss)
        for profile in profiles:
            print(f"[round {r + 1}/{args.repeat}] splink run ({profile}) ...", flush=True)
            wall, stats[profile] = run_splink(splink_py, data, profile, args.seed, env)
            walls[profile].append(round(wall, 2))
            rsss[profile].append(stats[profile]["peak_rss_mib"])
    report = json.loads((dedupe_out / "run_report.json").read_text())

    def side(key: str, ev: dict, stages: dict) -> dict:
        return {"wall_s": statistics.median(walls[key]), "wall_s_runs": walls[key],
                "peak_rss_mib": int(statistics.median(rsss[key])), "peak_rss_mib_runs": rsss[key],
                "candidate_pairs": ev["blocking"]["candidate_pairs"],
                "blocking_recall": ev["blocking"]["recall"],
                "pairwise": ev["model_and_judge"], "largest_cluster": ev["clusters"]["largest_cluster"],
                "predicted_clusters": ev["clusters"]["predicted_clusters"], "stages_s_last_run": stages}

    print("evaluating ...", flush=True)
    d_eval = evaluate(dedupe_out, truth)
    dd = side("dedupe", d_eval, report["timings_s"])
    d_f1 = dd["pairwise"]["all"]["f1"]

    splink: dict[str, dict] = {}
    for profile in profiles:
        out = data / f"splink_{profile}"
        sp = side(profile, evaluate(out, truth), stats[profile]["stages_s"])
        sp["settings"] = describe_profile(profile, args.seed)
        sp["threshold"] = PROFILES[profile]["threshold"]
        sp["probability_two_random_records_match"] = stats[profile]["probability_two_random_records_match"]
        sp["threshold_sweep_oracle"] = threshold_sweep(out, truth)
        time_ratio = sp["wall_s"] / dd["wall_s"]
        sp["ratios"] = {"splink_time_over_dedupe": round(time_ratio, 2),
                        "splink_rss_over_dedupe": round(sp["peak_rss_mib"] / dd["peak_rss_mib"], 2),
                        "f1_dedupe_minus_splink": round(d_f1 - sp["pairwise"]["all"]["f1"], 5)}
        sp["acceptance_met"] = bool(time_ratio >= 3 and d_f1 >= sp["pairwise"]["all"]["f1"])
        splink[profile] = sp
    splink_version = stats[profiles[0]]["splink_version"]

    result = {
        "name": name, "people": args.people, "seed": args.seed, "cpus": os.cpu_count(),
        "records": report["records"], "records_total": report["records_total"],
        "generate_s": round(gen_wall, 2), "rounds": args.repeat, "true_pairs": d_eval["model_and_judge"]["all"]["true_pairs"],
        "splink_version": splink_version, "dedupe_code": dedupe_code(),
        "acceptance": "issue 6: on 2 x 100k, >= 3x faster than Splink in the same run, at equal or "
                      "better pairwise F1 (checked against each Splink set-up: splink.<profile>.acceptance_met)",
        "dedupe": dd, "splink": splink,
    }
    (results / f"vs_splink_{args.people}.json").write_text(json.dumps(result, indent=2) + "\n",
                                                           encoding="utf-8")
    md = markdown(result)
    (results / f"vs_splink_{args.people}.md").write_text(md, encoding="utf-8")
    print(md)
    if not args.keep_data:
        for f in ("crm.csv", "partner.csv"):
            (data / f).unlink(missing_ok=True)


def markdown(r: dict) -> str:
    sides = [("dedupe", r["dedupe"])] + [
        (f"Splink `{p}` (p >= {s['threshold']})", s) for p, s in r["splink"].items()]

    def row(label: str, fmt) -> str:
        return f"| {label} | " + " | ".join(fmt(s) for _, s in sides) + " |"

    def prf(part: str):
        return lambda s: "{precision:.4f} / {recall:.4f} / {f1:.4f}".format(**s["pairwise"][part])

    median = f", median of {r['rounds']} rounds" if r["rounds"] > 1 else ""

    def spread(runs: list) -> str:
        return f" ({min(runs):,g}-{max(runs):,g})" if len(runs) > 1 else ""

    def ratio(key: str, fmt: str):
        return lambda s: format(s["ratios"][key], fmt) if "ratios" in s else "-"

    lines = [
        f"# dedupe vs Splink {r['splink_version']}: {r['name']}",
        "",
        f"{r['records_total']:,} records (crm {r['records']['crm']:,}, partner {r['records']['partner']:,}), "
        f"{r['true_pairs']:,} true pairs, {r['cpus']} CPUs; all tools in one run of `bench/vs_splink.py`, "
        "one child process each.",
        "",
        "dedupe code: " + ", ".join(f"{k} {v}" for k, v in r["dedupe_code"].items()),
        "",
        "| | " + " | ".join(n for n, _ in sides) + " |",
        "|---|" + "---|" * len(sides),
        row("wall time (whole child process)" + median, lambda s: f"{s['wall_s']:.1f} s" + spread(s["wall_s_runs"])),
        row("peak RSS" + median, lambda s: f"{s['peak_rss_mib']:,} MiB" + spread(s["peak_rss_mib_runs"])),
        row("candidate pairs", lambda s: f"{s['candidate_pairs']:,}"),
        row("blocking recall", lambda s: f"{s['blocking_recall']:.4f}"),
        row("pairwise P / R / F1", prf("all")),
        row("&nbsp;&nbsp;within sources", prf("within_source")),
        row("&nbsp;&nbsp;across sources", prf("across_sources")),
        row("predicted clusters", lambda s: f"{s['predicted_clusters']:,}"),
        row("largest cluster", lambda s: f"{s['largest_cluster']}"),
        row("Splink time / dedupe time", ratio("splink_time_over_dedupe", ".2f")),
        row("Splink RSS / dedupe RSS", ratio("splink_rss_over_dedupe", ".2f")),
        row("F1 dedupe - Splink", ratio("f1_dedupe_minus_splink", "+.4f")),
        row("issue 6 target met (>= 3x faster, F1 >=)",
            lambda s: ("yes" if s["acceptance_met"] else "**no**") if "acceptance_met" in s else "-"),
        "",
        "Stages (seconds, last round):",
        "",
    ]
    for n, s in sides:
        lines.append(f"- {n}: " + ", ".join(f"{k} {v:.1f}" for k, v in s["stages_s_last_run"].items()))
    lines += ["", "Splink F1 if its pairs were clustered at other thresholds (oracle: picked on this "
              "run's truth, not timed):", ""]
    for p, s in r["splink"].items():
        lines.append(f"- `{p}`: " + ", ".join(
            f"p >= {t}: P {v['precision']:.3f} R {v['recall']:.3f} F1 {v['f1']:.4f} (largest {v['largest_cluster']})"
            for t, v in s["threshold_sweep_oracle"].items()))
    lines += ["", "Both tools are scored by `dedupe.evaluate.evaluate` on their `clusters.csv` and "
              "`pairs.parquet` (every scored candidate pair). dedupe runs offline without the LLM judge; its "
              "wall time also covers golden records. Splink settings: see `splink.<profile>.settings` in the "
              "JSON and `PROFILES` in `bench/vs_splink.py`.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
