"""Why the pipeline runs each local stage on a fresh thread (flows/runtime/pipeline.py: _on_thread).

    python bench/openmp_teams.py [--rounds 3] [--rows 20000]

Each thread that runs a parallel torch op becomes the master of an OpenMP team whose workers
live as long as it does. Once a process holds more libgomp threads than it has cores, libgomp
stops spinning at its barriers and sleeps on a futex instead, and a small-batch torch fit, which
crosses thousands of barriers a second, slows down. This trains one epoch of the MNIST
autoencoder's shape (784-250-50-250-784, batch 64, fused Adam, random pixels) on a fresh thread,
in a fresh process per try, after:

- ``none``: nothing else ran torch;
- ``pooled``: two threads of a live thread pool ran a torch op (the pipeline's stage threads
  before, when the pool kept them);
- ``main``: the main thread ran a torch op (its team lives as long as the process);
- ``exited``: two threads ran a torch op and ended (the pipeline's stage threads now).

The modes take turns, ``--rounds`` times, since this machine's speed drifts by minutes; the
median seconds per epoch of each mode is printed with its ratio to ``none``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

MODES = ("none", "pooled", "main", "exited")

TRY = """
import concurrent.futures as cf, sys, threading, time
sys.path.insert(0, {root!r})
import flows  # noqa: F401 - the kernel pins of every cairn process
import torch
from torch import nn

torch.manual_seed(0)
x = torch.rand({rows}, 784)

def epoch() -> float:
    net = nn.Sequential(nn.Linear(784, 250), nn.ReLU(), nn.Linear(250, 50), nn.ReLU(), nn.Linear(50, 250),
                        nn.ReLU(), nn.Linear(250, 784), nn.Sigmoid())
    opt = torch.optim.Adam(net.parameters(), lr=0.002, fused=True)
    started = time.perf_counter()
    for i in range(0, len(x), 64):
        batch = x[i : i + 64]
        loss = nn.functional.mse_loss(net(batch), batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - started

def torch_op() -> None:
    (torch.rand(512, 512) @ torch.rand(512, 512)).sum()
    time.sleep(0.2)  # both pool threads take one each

mode = {mode!r}
if mode == "main":
    torch_op()
elif mode in ("pooled", "exited"):
    pool = cf.ThreadPoolExecutor(2)
    for future in [pool.submit(torch_op) for _ in range(2)]:
        future.result()
    if mode == "exited":
        pool.shutdown(wait=True)
seconds = []
fit = threading.Thread(target=lambda: seconds.append(epoch()))
fit.start()
fit.join()
print(seconds[0])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rows", type=int, default=20000)
    args = parser.parse_args()
    root = str(Path(__file__).resolve().parents[1])
    seconds: dict[str, list[float]] = {mode: [] for mode in MODES}
    for _ in range(args.rounds):
        for mode in MODES:
            code = TRY.format(root=root, rows=args.rows, mode=mode)
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            seconds[mode].append(float(out.split()[-1]))
    base = statistics.median(seconds["none"])
    print(f"one epoch of {args.rows} rows at batch 64, {args.rounds} tries each (median, all tries):")
    for mode, tries in seconds.items():
        median = statistics.median(tries)
        print(f"  {mode:7} {median:6.2f} s  {median / base:4.2f}x   {' '.join(f'{t:.2f}' for t in tries)}")


if __name__ == "__main__":
    main()
