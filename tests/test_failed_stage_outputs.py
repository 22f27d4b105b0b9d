"""What a failed stage leaves of its old output, as the README says: run by hand
(`python -m flows ingest@blobs`) the old output is untouched; under `dvc repro` DVC deletes a
stage's outputs before it runs the command, so a refusal leaves them deleted and dvc.lock as it
was, and `dvc checkout <stage>` brings back the last good outputs from DVC's cache."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from conftest import run


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def test_a_refused_partition_keeps_or_deletes_the_old_output_as_the_readme_says(blobs_repo: Path):
    repo, out = blobs_repo, blobs_repo / "data/blobs/ingest"
    good, lock = _digests(out), (blobs_repo / "dvc.lock").read_text()
    assert good
    (repo / "data/blobs/raw/part-9.csv").write_text("f1,kind\n1.0,a\n")  # no column f2: ingest refuses

    by_hand = run([sys.executable, "-m", "flows", "ingest@blobs"], repo, check=False)
    assert by_hand.returncode == 1 and "f2" in by_hand.stderr
    assert _digests(out) == good  # the old output, byte for byte

    under_dvc = run(["dvc", "repro", "ingest@blobs"], repo, check=False)
    assert under_dvc.returncode != 0 and "f2" in under_dvc.stdout + under_dvc.stderr
    assert not out.exists()  # DVC removed it before the stage ran
    assert (repo / "dvc.lock").read_text() == lock  # the last good run's entry

    run(["dvc", "checkout", "ingest@blobs"], repo)  # the README's way back
    assert _digests(out) == good
