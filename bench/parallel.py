"""Stages at once: the cold pipeline of every workload in params.yaml with `--jobs 2` against
`--jobs 1` and against plain `dvc repro`, in the same run, and the dvc.lock each leaves.

    python bench/parallel.py [--jobs 1 2] [--workloads iris loans ...]

Each variant runs in its own fresh clone of this checkout's HEAD (no outputs, no DVC cache, no
datum store: everything computes) with this venv first on PATH, untracked (no Prefect API),
one after the other so they never share the CPU. It prints the wall times, both ratios, and
whether the locks are byte-identical.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def clone(where: Path, workloads: list[str] | None) -> Path:
    subprocess.run(["git", "clone", "-q", str(ROOT), str(where)], check=True)
    if workloads:
        import yaml

        params = yaml.safe_load((where / "params.yaml").read_text())
        params["workloads"] = {k: v for k, v in params["workloads"].items() if k in workloads}
        (where / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (where / "dvc.lock").unlink(missing_ok=True)
    return where


def timed(cmd: list[str], cwd: Path) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    start = time.perf_counter()
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd}:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def main() -> None:
    cli = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cli.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    cli.add_argument("--workloads", nargs="*", help="default: every workload of params.yaml")
    args = cli.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="cairn-parallel-"))
    variants = {"dvc repro": ["dvc", "repro"]} | {
        f"pipeline --jobs {j}": [sys.executable, "-m", "flows", "pipeline", "--jobs", str(j)] for j in args.jobs
    }
    seconds, locks = {}, {}
    for name, cmd in variants.items():
        repo = clone(scratch / name.replace(" ", "_").replace("-", ""), args.workloads)
        seconds[name] = round(timed(cmd, repo), 1)
        locks[name] = (repo / "dvc.lock").read_text()
        print(f"{name:>20}: {seconds[name]:8.1f} s", flush=True)
    base = f"pipeline --jobs {args.jobs[0]}"
    result = {
        "seconds": seconds,
        "speedup vs " + base: {k: round(seconds[base] / v, 2) for k, v in seconds.items()},
        "speedup vs dvc repro": {k: round(seconds["dvc repro"] / v, 2) for k, v in seconds.items()},
        "same dvc.lock bytes": len(set(locks.values())) == 1,
        "cpus": os.cpu_count(),
    }
    print(json.dumps(result, indent=2))
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
