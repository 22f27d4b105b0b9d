"""Which kernel settings give which bytes (#29): train a workload again under each setting a
CPU family would get, on this one machine, and compare its weights with the checkout's.

    python bench/kernels.py REPO [--workloads iris loans]

REPO is a checkout after `make run` (its data/<w>/split and data/<w>/train exist). For each
setting, its params.yaml, flows/, steps/ and data/<w>/split are copied into a temp folder and
`python -m flows train@<w>` runs there with the setting's environment (or params change); the
md5 of model.safetensors is printed with whether it equals REPO's. The settings:

- MKL's instruction caps (`MKL_ENABLE_INSTRUCTIONS`: what MKL would pick on an older CPU) and
  its conditional bitwise reproducibility modes (`MKL_CBWR`);
- ATen's and oneDNN's caps (cairn pins AVX2; `CAIRN_CPU_ISA=native` lifts the pin, `default`
  is ATen's unvectorised kernels);
- one training thread instead of `train.threads` (2).

A setting whose bytes equal the default's is one this machine cannot tell apart; a CPU that gets
that setting by itself (MKL picks by vendor and model) would then train the committed bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

SETTINGS: dict[str, dict[str, str]] = {
    "default (cairn's pins)": {},
    "MKL_ENABLE_INSTRUCTIONS=SSE4_2": {"MKL_ENABLE_INSTRUCTIONS": "SSE4_2"},
    "MKL_ENABLE_INSTRUCTIONS=AVX": {"MKL_ENABLE_INSTRUCTIONS": "AVX"},
    "MKL_ENABLE_INSTRUCTIONS=AVX2": {"MKL_ENABLE_INSTRUCTIONS": "AVX2"},
    "MKL_ENABLE_INSTRUCTIONS=AVX512": {"MKL_ENABLE_INSTRUCTIONS": "AVX512"},
    "MKL_CBWR=COMPATIBLE": {"MKL_CBWR": "COMPATIBLE"},
    "MKL_CBWR=AVX2": {"MKL_CBWR": "AVX2"},
    "MKL_CBWR=AVX2,STRICT": {"MKL_CBWR": "AVX2,STRICT"},
    "MKL_CBWR=AVX512": {"MKL_CBWR": "AVX512"},
    "CAIRN_CPU_ISA=native (ATen, oneDNN uncapped)": {"CAIRN_CPU_ISA": "native"},
    "CAIRN_CPU_ISA=default (ATen unvectorised)": {"CAIRN_CPU_ISA": "default"},
    "train.threads=1": {"threads": "1"},
}


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def train(repo: Path, workload: str, setting: dict[str, str]) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("flows", "steps"):
            shutil.copytree(repo / name, work / name, ignore=shutil.ignore_patterns("__pycache__"))
        params = yaml.safe_load((repo / "params.yaml").read_text())
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MKL_", "PREFECT_"))}
        env |= {k: v for k, v in setting.items() if k != "threads"}
        if "threads" in setting:
            params["workloads"][workload]["train"]["threads"] = int(setting["threads"])
        (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        shutil.copytree(repo / f"data/{workload}/split", work / f"data/{workload}/split")
        subprocess.run([sys.executable, "-m", "flows", f"train@{workload}"], cwd=work, env=env, check=True,
                       capture_output=True)  # fmt: skip
        return md5(work / f"data/{workload}/train/model.safetensors")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repo", type=Path, help="a checkout after `make run`")
    parser.add_argument("--workloads", nargs="+", default=["iris", "loans"])
    args = parser.parse_args()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    print(f"cpu: {cpu}; python {platform.python_version()}")
    for workload in args.workloads:
        committed = md5(args.repo / f"data/{workload}/train/model.safetensors")
        print(f"\n{workload}: the checkout's weights {committed[:8]}")
        print("| setting | model.safetensors md5 | = checkout |")
        print("|---|---|---|")
        for name, setting in SETTINGS.items():
            got = train(args.repo, workload, setting)
            print(f"| {name} | {got[:8]} | {'yes' if got == committed else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
