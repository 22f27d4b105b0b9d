"""An interrupted train stage goes on from its per-epoch checkpoint to the bytes an
uninterrupted run writes; a checkpoint made from other inputs is ignored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SPLIT = Path("data/blobs/split")
CHECKPOINT = Path(".cairn/checkpoints/blobs/last.pt")


def interrupt_after(epochs: int, real):
    """steps.train.train, but the run dies (as if killed) after ``epochs`` epochs."""

    def train(*args):
        on_epoch = args[5]

        def then_die(epoch, fitted):
            on_epoch(epoch, fitted)  # the flow's own callback writes the checkpoint
            if epoch.epoch == epochs:
                raise KeyboardInterrupt

        return real(*args[:5], then_die, *args[6:])

    return train


def test_an_interrupted_train_stage_resumes_from_its_checkpoint(blobs_repo, tmp_path, monkeypatch):
    from flows import train as stage

    monkeypatch.chdir(blobs_repo)
    real = stage.steps.train
    monkeypatch.setattr(stage.steps, "train", interrupt_after(4, real))
    with pytest.raises(KeyboardInterrupt):
        stage.train.fn("blobs", SPLIT, tmp_path / "killed")
    assert CHECKPOINT.exists() and not (tmp_path / "killed").exists()

    monkeypatch.setattr(stage.steps, "train", real)
    stage.train.fn("blobs", SPLIT, tmp_path / "resumed")
    assert json.loads(Path(".cairn/runs/train@blobs.json").read_text())["resumed_after_epoch"] == 4
    for name in ("model.safetensors", "model.json", "history.csv"):  # what `dvc repro` wrote, uninterrupted
        assert (tmp_path / "resumed" / name).read_bytes() == (blobs_repo / "data/blobs/train" / name).read_bytes()
    assert not CHECKPOINT.exists()  # finished: nothing left to resume


def killed_after_three_epochs(blobs_repo, tmp_path, monkeypatch) -> str:
    """Leave the checkpoint of a blobs training killed after epoch 3; its inputs' fingerprint.
    The working directory stays ``blobs_repo``."""
    from flows import train as stage

    monkeypatch.chdir(blobs_repo)
    monkeypatch.setattr(stage.steps, "train", interrupt_after(3, stage.steps.train))
    with pytest.raises(KeyboardInterrupt):
        stage.train.fn("blobs", SPLIT, tmp_path / "killed")
    monkeypatch.undo()
    monkeypatch.chdir(blobs_repo)
    return stage._fingerprint(SPLIT, stage.config.workload("blobs"), None)


def test_a_checkpoint_from_other_inputs_is_not_resumed(blobs_repo, tmp_path, monkeypatch):
    from flows import train as stage

    fingerprint = killed_after_three_epochs(blobs_repo, tmp_path, monkeypatch)
    assert stage._resumable(CHECKPOINT, fingerprint, "blobs") is not None
    assert stage._resumable(CHECKPOINT, "other inputs", "blobs") is None
    stage.train.fn("blobs", SPLIT, tmp_path / "again")  # same inputs: resumes, and cleans up
    assert not CHECKPOINT.exists()


def test_a_damaged_checkpoint_is_ignored_with_a_warning(blobs_repo, tmp_path, monkeypatch, caplog):
    from flows import train as stage

    fingerprint = killed_after_three_epochs(blobs_repo, tmp_path, monkeypatch)
    data = bytearray(CHECKPOINT.read_bytes())
    data[len(data) // 2] ^= 0x10  # one flipped bit in the tensors: still a readable zip
    CHECKPOINT.write_bytes(bytes(data))
    (CHECKPOINT.parent / ".last.pt.abc.tmp").write_bytes(b"half a checkpoint")  # a killed write
    with caplog.at_level("WARNING"):
        assert stage._resumable(CHECKPOINT, fingerprint, "blobs") is None
    assert "SHA-256 does not match" in caplog.text
    stage.train.fn("blobs", SPLIT, tmp_path / "fresh")  # from scratch: the uninterrupted bytes
    for name in ("model.safetensors", "model.json", "history.csv"):
        assert (tmp_path / "fresh" / name).read_bytes() == (blobs_repo / "data/blobs/train" / name).read_bytes()
    assert not list(CHECKPOINT.parent.glob(".last.pt.*"))
