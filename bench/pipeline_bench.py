"""End-to-end benchmark: generate 2 CRM exports, run the whole pipeline, measure time, memory, quality.

    python bench/pipeline_bench.py --people 135000            # about 2 x 100k records
    python bench/pipeline_bench.py --people 135000 --seed 3 --role-explosion 0.3

Each run generates the fixtures (seeded) into bench/data/, writes a config next to them, runs
``dedupe run`` in a child process (so its peak RSS is measured alone), then ``dedupe evaluate``
against the generator's truth. Results go to bench/results/<name>.json and a Markdown table
(bench/results/<name>.md). The LLM judge is off (no key): this measures the offline pipeline.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = """[project]
name = "{name}"
output_dir = "out"

[[sources]]
name = "crm"
path = "crm.csv"
id = "Contact ID"
date_format = "%m/%d/%Y %H:%M"
[sources.columns]
first_name = "First Name"
last_name = "Last Name"
email = "Email"
company = "Company"
title = "Job Title"
phone = "Phone"
city = "City"
country = "Country"
updated_at = "Last Modified"

[[sources]]
name = "partner"
path = "partner.csv"
id = "id"
[sources.columns]
full_name = "full_name"
email = "email_address"
company = "organization"
phone = "phone_number"
country = "country_code"
updated_at = "updated"

[judge]
backend = "none"
"""


# Runs the CLI and, on exit, writes the process's own peak RSS (KiB) to the file named first.
MEASURED_CLI = ("import atexit, resource, sys; out = sys.argv.pop(1); "
                "atexit.register(lambda: open(out, 'w').write(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))); "
                "sys.argv[0] = 'dedupe'; from dedupe.cli import main; main()")


def _run(cmd: list[str], env: dict) -> tuple[float, str]:
    """Run a child; return (wall seconds, stdout)."""
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return wall, done.stdout


def _run_measured(args: list[str], env: dict, rss_file: Path) -> tuple[float, int]:
    """Run ``dedupe ARGS`` in a child; return (wall seconds, the child's peak RSS in MiB)."""
    wall, _ = _run([sys.executable, "-c", MEASURED_CLI, str(rss_file), *args], env)
    return wall, int(rss_file.read_text()) // 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=135_000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--role-explosion", type=float, default=0.0)
    parser.add_argument("--name", default=None)
    parser.add_argument("--keep-data", action="store_true", help="keep the generated CSVs")
    args = parser.parse_args()
    name = args.name or f"people{args.people}_seed{args.seed}" + (
        f"_role{args.role_explosion}" if args.role_explosion else "")
    data = ROOT / "bench" / "data" / name
    results = ROOT / "bench" / "results"
    results.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    py = sys.executable

    gen_wall, _ = _run([py, str(ROOT / "fixtures" / "generate.py"), "--people", str(args.people),
                           "--seed", str(args.seed), "--out", str(data),
                           "--role-explosion", str(args.role_explosion)], env)
    config = data / "bench.toml"
    config.write_text(CONFIG.format(name=name), encoding="utf-8")
    state = data / "out" / "state.duckdb"
    if state.exists():
        state.unlink()  # a benchmark measures a first night, not a rerun

    wall, peak_mib = _run_measured(["run", str(config)], env, data / "rss.txt")
    report = json.loads((data / "out" / "run_report.json").read_text())
    _run([py, "-m", "dedupe.cli", "evaluate", str(config), "--truth", str(data / "truth.csv")], env)
    evaluation = json.loads((data / "out" / "evaluation.json").read_text())

    result = {
        "name": name, "people": args.people, "seed": args.seed, "role_explosion": args.role_explosion,
        "cpus": os.cpu_count(), "records": report["records"], "records_total": report["records_total"],
        "generate_s": round(gen_wall, 2), "pipeline_wall_s": round(wall, 2), "peak_rss_mib": peak_mib,
        "stage_s": report["timings_s"], "candidate_pairs": report["blocking"]["candidate_pairs"],
        "capped_blocks": report["blocking"]["capped_blocks"],
        "capped_examples": report["blocking"]["capped_examples"][:5],
        "zones": report["zones_before_judge"], "review_per_100_records": report["review_per_100_records"],
        "largest_cluster": report["clusters"]["largest"],
        "quality_model": evaluation["model_and_judge"]["all"],
        "quality_review_oracle": evaluation["review_oracle"]["all"],
        "blocking_recall": evaluation["blocking"]["recall"],
    }
    (results / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    stages = " | ".join(f"{k} {v:.1f}s" for k, v in report["timings_s"].items())
    q, o = result["quality_model"], result["quality_review_oracle"]
    md = (f"| run | records | wall | peak RSS | candidates | review/100 | P / R / F1 (model) | "
          f"F1 (review oracle) | blocking recall |\n|---|---|---|---|---|---|---|---|---|\n"
          f"| {name} | {result['records_total']:,} | {wall:.1f} s | {peak_mib:,} MiB | "
          f"{result['candidate_pairs']:,} | {result['review_per_100_records']} | "
          f"{q['precision']:.4f} / {q['recall']:.4f} / {q['f1']:.4f} | {o['f1']:.4f} | "
          f"{result['blocking_recall']:.4f} |\n\nStages: {stages}\n")
    (results / f"{name}.md").write_text(md, encoding="utf-8")
    print(md)
    if not args.keep_data:
        for f in ("crm.csv", "partner.csv"):
            (data / f).unlink(missing_ok=True)


if __name__ == "__main__":
    main()
