"""A partitioned corpus of dirty loan exports at a chosen size, written outside git.

    python bench/corpus.py OUT --size-mb 1024 [--partitions 200] [--seed 5]
    python bench/corpus.py OUT --rows 10000000 [--partitions 100]

Each partition is the `loans` built-in source (FICO ranges, '12.5%', '$12,000.00', blanks,
'n/a', duplicates, repeated headers, malformed lines) with its own seed, as `part-NNNN.csv`,
so a workload pointed at OUT (`raw: OUT`, the loans schema) reads it as real exports. The
same arguments give the same bytes. Each file is written whole (a temporary name, then a
rename), so a stopped run is resumed by running it again: files already there are kept.
Prints the files, rows and bytes written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from steps import sources  # noqa: E402


def main() -> None:
    cli = argparse.ArgumentParser()
    cli.add_argument("out", type=Path)
    cli.add_argument("--size-mb", type=float, default=1024)
    cli.add_argument("--partitions", type=int, default=200)
    cli.add_argument("--seed", type=int, default=5)
    cli.add_argument("--rows", type=int, help="rows in all (instead of --size-mb)")
    args = cli.parse_args()
    settings = yaml.safe_load((ROOT / "params.yaml").read_text())["workloads"]["loans"]["source"]
    args.out.mkdir(parents=True, exist_ok=True)
    target = args.size_mb * 1e6 / args.partitions
    probe = sources.loans(settings | {"rows": 2000, "seed": args.seed})
    rows = max(1, args.rows // args.partitions if args.rows else int(target / (len(probe) / 2000)))
    total = 0
    for i in range(args.partitions):
        path = args.out / f"part-{i:04d}.csv"
        if path.exists():
            total += path.stat().st_size
            continue
        data = sources.loans(settings | {"rows": rows, "seed": args.seed * 100_000 + i})
        partial = path.with_suffix(".csv.partial")
        partial.write_bytes(data)
        partial.replace(path)
        total += len(data)
    print(f"{args.partitions} partitions of {rows} rows, {total / 1e6:.0f} MB in {args.out}")


if __name__ == "__main__":
    main()
