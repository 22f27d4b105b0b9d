"""How often a `kill -9` during `dvc repro` leaves dvc.lock unusable, with and without cairn's hook.

    python bench/kill_lock.py [--trials N] [--stages S]

A scratch repository with S trivial stages (a foreach, so dvc.lock grows to cairn's size and
DVC rewrites all of it after each stage) is reproduced with `--force` and killed with SIGKILL
at a uniformly random moment of the run, N times with the venv's `dvc` (cairn's startup hook:
atomic writes) and N times with `python -m dvc` (the hook does not run: DVC's own in-place
rewrite). After each kill it counts a lock that DVC cannot read (empty, cut short) as lost; it
does not put the good copy back in between, so every trial starts from what the last one left.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from flows.runtime.lockfile import problem  # noqa: E402

BIN = Path(sys.executable).parent


def scratch_repo(root: Path, stages: int) -> None:
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([BIN / "dvc", "init", "-q"], cwd=root, check=True)
    subprocess.run([BIN / "dvc", "config", "core.analytics", "false"], cwd=root, check=True)
    items = [f"s{i:03d}" for i in range(stages)]
    # Long params and several outs per stage: a lock entry about as big as cairn's (~80 KB in all).
    (root / "params.yaml").write_text(yaml.safe_dump({"items": {i: {"note": "x" * 600} for i in items}}))
    (root / "dvc.yaml").write_text(
        yaml.safe_dump(
            {
                "stages": {
                    "make": {
                        "foreach": items,
                        "do": {
                            "cmd": "echo ${item} > out/${item}.txt",
                            "params": [{"params.yaml": ["items.${item}"]}],
                            "outs": ["out/${item}.txt"],
                        },
                    }
                }
            }
        )
    )
    (root / "out").mkdir()


def trial(root: Path, command: list[str], duration: float) -> str | None:
    """Kill one forced run at a random moment; what is wrong with the lock afterwards, if anything."""
    proc = subprocess.Popen([*command, "repro", "--force", "-q"], cwd=root, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    time.sleep(random.uniform(0.0, duration))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    lock = root / "dvc.lock"
    return problem(lock.read_text(errors="replace")) if lock.exists() else None


def main() -> None:
    cli = argparse.ArgumentParser()
    cli.add_argument("--trials", type=int, default=20)
    cli.add_argument("--stages", type=int, default=100)
    args = cli.parse_args()
    random.seed(7)
    for name, command in (
        ("venv dvc (cairn hook: atomic writes)", [str(BIN / "dvc")]),
        ("python -m dvc (no hook: in-place)", [sys.executable, "-m", "dvc"]),
    ):
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            scratch_repo(root, args.stages)
            start = time.perf_counter()
            subprocess.run([*command, "repro", "-q"], cwd=root, check=True, capture_output=True)
            duration = time.perf_counter() - start
            size = (root / "dvc.lock").stat().st_size
            lost = 0
            for _ in range(args.trials):
                if trial(root, command, duration):
                    lost += 1
                    (root / "dvc.lock").unlink()  # start the next trial from a readable state
            print(f"{name}: lock {size / 1024:.0f} KB, full run {duration:.1f} s; "
                  f"{args.trials} kills, {args.trials - lost} lock(s) intact, {lost} unusable")  # fmt: skip


if __name__ == "__main__":
    main()
