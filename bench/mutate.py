"""Turn one night's exports into the next night's: change, add and delete a share of records.

    python bench/mutate.py DIR [--changed 0.01] [--added 0.005] [--deleted 0.002] [--seed 1]

Rewrites DIR/crm.csv and DIR/partner.csv in place (and DIR/truth.csv to match). Changed records get
a new job title / phone / email domain or a typo in the name, as a CRM sees night to night; added
records are new people or new duplicates of existing ones; deleted records are dropped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

ID = {"crm": "Contact ID", "partner": "id"}
CHANGE = {"crm": ["Job Title", "Phone", "Email", "Last Name"], "partner": ["phone_number", "email_address", "full_name"]}


def _typo(value: str, rng: np.random.Generator) -> str:
    if not isinstance(value, str) or len(value) < 3:
        return value
    i = int(rng.integers(1, len(value) - 1))
    return value[:i] + value[i + 1] + value[i] + value[i + 2:]


def mutate(folder: Path, changed: float, added: float, deleted: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    truth = pd.read_csv(folder / "truth.csv", dtype=str)
    counts = {}
    new_truth = []
    for source in ("crm", "partner"):
        df = pd.read_csv(folder / f"{source}.csv", dtype=str, keep_default_na=False)
        n = len(df)
        order = rng.permutation(n)
        n_del, n_chg, n_add = int(n * deleted), int(n * changed), int(n * added)
        drop = df.index[order[:n_del]]
        change = df.index[order[n_del:n_del + n_chg]]
        for row in change:
            col = CHANGE[source][int(rng.integers(0, len(CHANGE[source])))]
            df.at[row, col] = _typo(df.at[row, col], rng) if col in ("Last Name", "full_name") else (
                df.at[row, col] + "x" if col in ("Email", "email_address") and "@" not in df.at[row, col]
                else _typo(df.at[row, col], rng))
        # New records: copies of existing ones (duplicates of known people) under new ids.
        sample = df.loc[df.index[order[n_del + n_chg:n_del + n_chg + n_add]]].copy()
        old_ids = sample[ID[source]].tolist()
        sample[ID[source]] = [f"{i}-N{seed}" for i in old_ids]
        entity = dict(zip(truth.loc[truth.source == source, "record_id"], truth.loc[truth.source == source, "entity_id"]))
        new_truth += [(source, new, entity[old]) for new, old in zip(sample[ID[source]], old_ids)]
        dropped = set(df.loc[drop, ID[source]])
        df = pd.concat([df.drop(index=drop), sample], ignore_index=True)
        df.to_csv(folder / f"{source}.csv", index=False)
        truth = truth[~((truth.source == source) & truth.record_id.isin(dropped))]
        counts[source] = {"deleted": n_del, "changed": n_chg, "added": n_add, "records": len(df)}
    truth = pd.concat([truth, pd.DataFrame(new_truth, columns=["source", "record_id", "entity_id"])])
    truth.to_csv(folder / "truth.csv", index=False)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--added", type=float, default=0.005)
    parser.add_argument("--deleted", type=float, default=0.002)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(mutate(args.folder, args.changed, args.added, args.deleted, args.seed))


if __name__ == "__main__":
    main()
