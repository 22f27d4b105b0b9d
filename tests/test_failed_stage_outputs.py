"""What a failed stage leaves of its old output, as the README says: run by hand
(`python -m flows ingest@blobs`) the old output is untouched; under `dvc repro`, and in the
pipeline flow, which does as `dvc repro` does, DVC deletes a stage's outputs before it runs the
command, so a refusal leaves them deleted and dvc.lock as it was, and `dvc checkout <stage>`
brings back the last good outputs from DVC's cache. The refused partition is
tests/corpus/missing-column.csv, a file without the column f2 that the blobs schema names."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from conftest import run

CORPUS = Path(__file__).parent / "corpus"
REFUSAL = "error: ingest: part-9.csv has no column 'f2' named by schema.features in params.yaml; it has: f1, kind"


def _digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def test_a_refused_partition_keeps_or_deletes_the_old_output_as_the_readme_says(blobs_repo: Path):
    repo, out = blobs_repo, blobs_repo / "data/blobs/ingest"
    good, lock = _digests(out), (blobs_repo / "dvc.lock").read_text()
    assert good
    shutil.copyfile(CORPUS / "missing-column.csv", repo / "data/blobs/raw/part-9.csv")  # ingest refuses it

    by_hand = run([sys.executable, "-m", "flows", "ingest@blobs"], repo, check=False)
    assert by_hand.returncode == 1 and REFUSAL in by_hand.stderr.splitlines(), by_hand.stderr
    assert _digests(out) == good  # the old output, byte for byte

    under_dvc = run(["dvc", "repro", "ingest@blobs"], repo, check=False)
    assert under_dvc.returncode != 0 and REFUSAL in under_dvc.stdout + under_dvc.stderr
    assert not out.exists()  # DVC removed it before the stage ran
    assert (repo / "dvc.lock").read_text() == lock  # the last good run's entry

    run(["dvc", "checkout", "ingest@blobs"], repo)  # the README's way back
    assert _digests(out) == good

    pipeline = run([sys.executable, "-m", "flows", "pipeline", "blobs"], repo, check=False)
    assert pipeline.returncode == 1 and "ingest@blobs failed: ingest: part-9.csv has no column 'f2'" in \
        pipeline.stderr, pipeline.stderr  # fmt: skip
    assert not out.exists()  # removed first, as dvc repro does
    assert (repo / "dvc.lock").read_text() == lock
    run(["dvc", "checkout", "ingest@blobs"], repo)
    assert _digests(out) == good
