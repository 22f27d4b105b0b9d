"""Growing with data: ingest, clean and split of one appended partition against a cold run of
those stages over the corpus, and a bare pyarrow CSV -> Parquet loop over the same files, in the
same run.

    python bench/datums.py CORPUS [--append-seed 99]

CORPUS is a folder of partitions from bench/corpus.py (outside git). In a scratch folder with
cairn's code and a `big` workload (the loans schema, raw: CORPUS) it times:

1. cold: `python -m flows ingest big`, then `clean big` and `split big`, with an empty datum
   store (every partition parsed and checked);
2. append: one more partition (the first's size, another seed) and the same three commands
   again (every other partition reused from `.cairn/datums/`);
3. append after a code edit: a comment added to steps/models/mlp.py (code ingest, clean and
   split do not run), then one more partition and the three commands again: it must cost what
   the plain append costs, not a cold run (datum keys hash only the code a stage runs);
4. bare: `pyarrow.csv.read_csv` + `pyarrow.parquet.write_table` per file, malformed lines
   dropped without a count, no checks.

Each is a child process; GNU time measures its peak RSS. The appended file goes
with the scratch folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from steps import sources  # noqa: E402

BARE = """
import sys, pathlib, pyarrow.csv as c, pyarrow.parquet as q
out = pathlib.Path(sys.argv[2]); out.mkdir(exist_ok=True)
for f in sorted(pathlib.Path(sys.argv[1]).glob("*.csv")):
    skip = c.ParseOptions(invalid_row_handler=lambda row: "skip")  # dirty lines: dropped, uncounted
    q.write_table(c.read_csv(f, parse_options=skip), out / (f.stem + ".parquet"), compression="zstd")
"""


def timed(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of ``cmd``, the RSS as GNU time measures the child."""
    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return seconds, int(result.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    cli = argparse.ArgumentParser()
    cli.add_argument("corpus", type=Path)
    cli.add_argument("--append-seed", type=int, default=99)
    args = cli.parse_args()
    corpus = args.corpus.resolve()
    files = sorted(corpus.glob("*.csv"))
    size = sum(f.stat().st_size for f in files)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    loans = params["workloads"]["loans"]
    with tempfile.TemporaryDirectory(prefix="cairn-datums-") as tmp:
        work = Path(tmp)
        shutil.copytree(ROOT / "flows", work / "flows")
        shutil.copytree(ROOT / "steps", work / "steps")
        # Inside the scratch repository (params refuse raw paths outside it): hard links, no copy.
        (work / "corpus").mkdir()
        for f in files:
            try:
                os.link(f, work / "corpus" / f.name)
            except OSError:
                shutil.copy2(f, work / "corpus" / f.name)
        big = {**loans, "raw": "corpus", "source": None}
        (work / "params.yaml").write_text(yaml.safe_dump({"deploy": params["deploy"], "workloads": {"big": big}}))
        flows = [sys.executable, "-m", "flows"]
        stages = {
            "ingest": [*flows, "ingest", "big", "--raw", "corpus", "--out", "out/ingest"],
            "clean": [*flows, "clean", "big", "--ingested", "out/ingest", "--out", "out/clean"],
            "split": [*flows, "split", "big", "--clean", "out/clean/rows", "--out", "out/split"],
        }
        cold = {name: timed(cmd, work) for name, cmd in stages.items()}
        extra = work / "corpus" / "part-append.csv"
        rows = sum(1 for _ in files[0].open()) - 1
        extra.write_bytes(sources.loans(loans["source"] | {"rows": rows, "seed": args.append_seed}))
        append = {name: timed(cmd, work) for name, cmd in stages.items()}
        mlp = work / "steps/models/mlp.py"
        mlp.write_text(mlp.read_text() + "\n# an edit that ingest, clean and split do not run\n")
        second = work / "corpus" / "part-append2.csv"
        second.write_bytes(sources.loans(loans["source"] | {"rows": rows, "seed": args.append_seed + 1}))
        edited = {name: timed(cmd, work) for name, cmd in stages.items()}
        extra.unlink()
        second.unlink()
        bare, bare_rss = timed([sys.executable, "-c", BARE, str(work / "corpus"), str(work / "bare")], work)
    mb = size / 1e6
    print(f"corpus: {len(files)} partitions, {mb:.0f} MB ({corpus})")
    print("| stage | cold s | append s | append / cold | cold peak RSS (MB) | append peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    for name in cold:
        (c, c_rss), (a, a_rss) = cold[name], append[name]
        print(f"| {name} | {c:.1f} | {a:.1f} | {a / c:.1%} | {c_rss:.0f} | {a_rss:.0f} |")
    c, a = sum(v[0] for v in cold.values()), sum(v[0] for v in append.values())
    e = sum(v[0] for v in edited.values())
    print(
        f"| all three | {c:.1f} | {a:.1f} | {a / c:.1%} | {max(v[1] for v in cold.values()):.0f} | "
        f"{max(v[1] for v in append.values()):.0f} |"
    )
    print(f"append after editing steps/models/mlp.py: {e:.1f} s = {e / a:.2f} x the plain append, {e / c:.1%} of cold")
    print(
        f"bare pyarrow CSV -> Parquet loop: {bare:.1f} s, {mb / bare:.1f} MB/s, {bare_rss:.0f} MB peak; "
        f"cold ingest {mb / cold['ingest'][0]:.1f} MB/s = {bare / cold['ingest'][0]:.2f} x the bare loop"
    )


if __name__ == "__main__":
    main()
