"""clean's parse_column on realistic loan cells: column-wise (now) against every cell in Python
(before; the reference in tests/test_parse_column.py), and a bare anchor, in the same run.

    python bench/parse.py [--rows 300000] [--rounds 3]

The cells are the `loans` built-in source's ('720-724', '13.5%', '$12,000.00', blanks, 'n/a',
garbage) with ``--rows`` rows, read as text; a `number` column is the loan amounts written plain
('12000.0'). The bare anchor is Arrow's cast to float64 of each column's values written plain:
the least any reading of those cells costs. Best of ``--rounds``; both readings must agree.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from test_parse_column import bits, reference  # noqa: E402

from steps import clean, sources  # noqa: E402


def best(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    cli = argparse.ArgumentParser()
    cli.add_argument("--rows", type=int, default=300_000)
    cli.add_argument("--rounds", type=int, default=3)
    args = cli.parse_args()
    loans = yaml.safe_load((ROOT / "params.yaml").read_text())["workloads"]["loans"]
    data = sources.loans(loans["source"] | {"rows": args.rows})
    names = ["fico_range", "int_rate", "loan_amount", "annual_income"]
    text = {c: pa.string() for c in names}
    skip = pv.ParseOptions(invalid_row_handler=lambda row: "skip")  # malformed lines: ingest's to count
    convert = pv.ConvertOptions(column_types=text, include_columns=names)
    table = pv.read_csv(io.BytesIO(data), parse_options=skip, convert_options=convert)
    columns = {c: (table.column(c).to_pylist(), loans["schema"]["parse"][c]) for c in names}
    amounts = clean.parse_column(columns["loan_amount"][0], "loan_amount", "money")[0].to_pylist()
    columns["amount_number"] = ([None if v is None else repr(v) for v in amounts], "number")
    print(f"{args.rows} rows of the loans source, best of {args.rounds}")
    print("| column | kind | cells | before s | now s | before / now | bare cast s | now / bare |")
    print("|---|---|---|---|---|---|---|---|")
    total_old = total_new = 0.0
    for name, (values, kind) in columns.items():
        new, new_reasons = clean.parse_column(values, name, kind)
        old, old_reasons = reference(values, name, kind)
        assert bits(new) == bits(old) and new_reasons == old_reasons, f"{name}: the two readings differ"
        plain = pa.array([None if v is None else repr(v) for v in new.to_pylist()], pa.string())
        t_old = best(lambda: reference(values, name, kind), args.rounds)  # noqa: B023
        t_new = best(lambda: clean.parse_column(values, name, kind), args.rounds)  # noqa: B023
        t_bare = best(lambda: pc.cast(plain, pa.float64()), args.rounds)  # noqa: B023
        total_old, total_new = total_old + t_old, total_new + t_new
        row = f"| {name} | {kind} | {len(values)} | {t_old:.3f} | {t_new:.3f} | {t_old / t_new:.1f}x"
        print(f"{row} | {t_bare:.4f} | {t_new / t_bare:.0f}x |")
    print(f"all columns: before {total_old:.2f} s, now {total_new:.2f} s, {total_old / total_new:.1f}x faster")


if __name__ == "__main__":
    main()
