"""Faults while operating, tried for real: each ends in a clear state with no half-written
output, and a rerun completes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import blobs_csv, error_line, project_env, run


@pytest.fixture
def tiny_disk(workdir: Path):
    """``workdir``/data on a 256 KiB tmpfs (needs root, as in CI's container)."""
    data = workdir / "data"
    data.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(data)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield data
    subprocess.run(["umount", "-l", str(data)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_old_output_survives(workdir: Path, tiny_disk: Path):
    raw = workdir / "raw.csv"
    out = tiny_disk / "blobs/ingest"

    def ingest():
        cmd = [sys.executable, "-m", "flows", "ingest", "blobs", "--raw", str(raw), "--out", str(out)]
        return run(cmd, workdir, env=project_env(), check=False)

    raw.write_text(blobs_csv(50, seed=1))
    assert ingest().returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    raw.write_text(blobs_csv(40_000, seed=2))  # its Parquet does not fit in what is left
    result = ingest()
    assert result.returncode == 1
    assert error_line(result) == (
        f"error: no space left on the device of {out.parent} while writing ingest (the old output, if any, "
        "is untouched); free space and run again"
    )
    assert "Traceback" not in result.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old output, whole
    assert [p.name for p in out.parent.iterdir()] == ["ingest"]  # no temp folder left behind

    subprocess.run(["mount", "-o", "remount,size=64m", str(tiny_disk)], check=True)  # space freed
    assert ingest().returncode == 0
    assert (out / "raw.parquet").stat().st_size > 100_000
