"""Kills between the two steps of a two-step change: a rollback (the registry's index, then its
``champion`` link) and a folder output's swap (old aside, new in). A kill is a child process
that ends with ``os._exit`` at the second step, so no ``finally`` or ``except`` runs; then the
state it left and what the next run makes of it are checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from flows import registry
from flows.service import registry as service_registry
from flows.storage import files

ROOT = Path(__file__).resolve().parent.parent

# Runs ``code`` in a child whose os.replace / Path.rename ends the process (exit 9, no cleanup)
# when it is about to put something at a path named KILL_AT.
KILLER = """
import os, sys
from pathlib import Path
KILL_AT = sys.argv[1]
real_replace, real_rename = os.replace, Path.rename
def replace(src, dst, *args, **kwargs):
    if os.path.basename(dst) == KILL_AT:
        os._exit(9)
    return real_replace(src, dst, *args, **kwargs)
def rename(self, target):
    if os.path.basename(target) == KILL_AT:
        os._exit(9)
    return real_rename(self, target)
os.replace, Path.rename = replace, rename
"""


def killed_at(name: str, code: str, cwd: Path, env: dict[str, str] | None = None) -> None:
    """Run ``code`` in a child process killed when it is about to put something at ``name``."""
    child_env = os.environ | {"PYTHONPATH": str(ROOT)} | (env or {})
    script = KILLER + textwrap.dedent(code)
    done = subprocess.run([sys.executable, "-c", script, name], cwd=cwd, env=child_env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 9, f"the child was not killed at {name}: {done.returncode} {done.stderr[-2000:]}"


def _two_versions(root: Path, monkeypatch) -> None:
    """iris with v1 (retired) and v2, the champion, that the link serves, in a registry at
    ``root``, which is also the working directory (a rollback rewrites data/iris/promote there)."""
    monkeypatch.setenv("CAIRN_REGISTRY", str(root))
    monkeypatch.chdir(root)
    for n in (1, 2):
        (root / "iris" / f"v{n}").mkdir(parents=True)
        (root / "iris" / f"v{n}" / "model.onnx").write_text(f"model {n}")
    versions = [{"version": n, "status": s, "reason": "r", "metric": {"accuracy": 0.9}, "registered_at": "t"}
                for n, s in ((1, "retired"), (2, "champion"))]  # fmt: skip
    (root / "iris" / "index.json").write_text(json.dumps({"champion": 2, "versions": versions, "events": []}))
    registry.point_champion("iris", 2)


def _champions(root: Path) -> tuple[int, int]:
    """(the champion the index names, the version the link serves)."""
    index = json.loads((root / "iris" / "index.json").read_text())
    return index["champion"], int(os.readlink(root / "iris" / "champion").removeprefix("v"))


@pytest.mark.parametrize("kill_at", ["index.json", "champion"])
def test_a_rollback_killed_midway_never_serves_what_the_index_does_not_name(tmp_path, monkeypatch, kill_at):
    _two_versions(tmp_path, monkeypatch)
    code = "from flows.service import registry\nregistry.rollback('iris', 1)\n"
    killed_at(kill_at, code, tmp_path, {"CAIRN_REGISTRY": str(tmp_path)})
    index, served = _champions(tmp_path)
    # whatever the kill interrupted, the link serves the version the index calls the champion, or
    # the one it just retired; never one the index has not (yet) recorded as champion
    if kill_at == "index.json":  # killed before the index said v1: v2 must still serve
        assert (index, served) == (2, 2)
    else:  # the index says v1, the link was not swapped yet
        assert (index, served) == (1, 2)
    # the next change to the registry repairs the link when it takes the lock, even one refused
    with pytest.raises(RuntimeError, match="refused"), registry.locked("iris"):
        raise RuntimeError("refused")
    index, served = _champions(tmp_path)
    assert served == index
    assert (tmp_path / "iris" / "champion" / "model.onnx").read_text() == f"model {index}"
    assert service_registry.rollback("iris", 2)["version"] == 2  # and the registry works on
    assert _champions(tmp_path) == (2, 2)


def test_a_failed_index_write_leaves_the_champion_link_alone(tmp_path, monkeypatch):
    _two_versions(tmp_path, monkeypatch)

    def full(path, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(registry, "write_json", full)
    with pytest.raises(OSError, match="No space left"):
        service_registry.rollback("iris", 1)
    assert _champions(tmp_path) == (2, 2)


def _output(path: Path, text: str) -> None:
    with files.replace_dir(path) as tmp:
        (tmp / "part.txt").write_text(text)


def test_a_folder_swap_killed_between_its_renames_is_restored_by_the_next_run(tmp_path):
    out = tmp_path / "ingest"
    _output(out, "old")
    code = f"""
    from pathlib import Path
    from flows.storage import files
    with files.replace_dir(Path({str(out)!r})) as tmp:
        (tmp / "part.txt").write_text("new")
    """
    killed_at("ingest", code, tmp_path)  # the old folder is aside, the new one not yet in
    assert not out.exists() and (tmp_path / ".ingest.old" / "part.txt").read_text() == "old"

    # the next run fails: the old output is back, nothing is left beside it
    with pytest.raises(RuntimeError, match="the stage refused its input"):
        with files.replace_dir(out):
            raise RuntimeError("the stage refused its input")
    assert (out / "part.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ingest"]

    # and a run that succeeds swaps the new one in
    killed_at("ingest", code, tmp_path)
    _output(out, "newer")
    assert (out / "part.txt").read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ingest"]


def test_a_folder_swap_whose_second_rename_fails_puts_the_old_output_back(tmp_path, monkeypatch):
    out = tmp_path / "clean"
    _output(out, "old")
    real = Path.rename

    def rename(self, target):
        if Path(target).name == "clean" and self.name != ".clean.old":  # the new folder moving in
            raise PermissionError(13, "Permission denied", str(target))
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(PermissionError):
        _output(out, "new")
    monkeypatch.undo()
    assert (out / "part.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean"]
