"""dvc.lock survives a kill in the middle of DVC's rewrite: the last good copy comes back."""

from __future__ import annotations

import sys
import textwrap

import pytest
import yaml
from conftest import make_repo, only_workloads, run

from flows import lockfile
from flows.common import InputError


def test_a_broken_lock_gets_its_last_good_copy_back(tmp_path):
    lock, good = tmp_path / "dvc.lock", tmp_path / "good"
    lock.write_text("schema: '2.0'\nstages:\n  ingest@iris: {cmd: x}\n")
    lockfile.snapshot(lock, good)
    assert good.read_text() == lock.read_text()
    assert not lockfile.recover(lock, good)  # fine: nothing to do
    for broken in ("", "schema: '2.0'\nstages:\n  ingest@iris: {cmd", "[]"):
        lock.write_text(broken)
        lockfile.snapshot(lock, good)  # a broken lock never replaces the good copy
        assert lockfile.recover(lock, good)
        assert lock.read_text() == good.read_text()
    good.unlink()
    lock.write_text("")
    with pytest.raises(InputError, match=r"dvc.lock is unusable \(it is empty\) and there is no good copy"):
        lockfile.recover(lock, good)


KILL_DURING_LOCK_WRITE = textwrap.dedent("""
    import os, signal, sys
    from dvc.utils.serialize import _common

    def half_then_die(path, data, dumper, fs=None, **kwargs):
        if str(path).endswith("dvc.lock"):
            with open(path, "w") as f:  # DVC's own in-place rewrite, cut short by a kill
                f.write("schema: '2.0'\\nstages:\\n  ")
                f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, data, dumper, fs=fs, **kwargs)

    real, _common._dump_data = _common._dump_data, half_then_die
    from dvc.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
def test_a_kill_while_dvc_writes_the_lock_is_recovered(tmp_path):
    repo = make_repo(tmp_path / "repo", only_workloads("blobs"))
    run(["dvc", "repro", "split@blobs"], repo)
    expected = (repo / "dvc.lock").read_text()
    run(["dvc", "repro", "train@blobs"], repo)
    reference = yaml.safe_load((repo / "dvc.lock").read_text())
    (repo / "dvc.lock").write_text(expected)  # train@blobs stale again; its run is in the run-cache
    run(["dvc", "checkout", "-q", "--force"], repo, check=False)

    killed = run([sys.executable, "-c", KILL_DURING_LOCK_WRITE, "repro", "--force", "train@blobs"], repo, check=False)
    assert killed.returncode == -9
    assert "validation failed" in run(["dvc", "status"], repo, check=False).stderr  # what a user met before

    recovered = run([sys.executable, "-m", "flows", "recover"], repo)
    assert "put back the last good copy" in recovered.stdout + recovered.stderr
    run(["dvc", "repro", "train@blobs"], repo)
    assert yaml.safe_load((repo / "dvc.lock").read_text()) == reference  # the bytes of an uninterrupted run
    assert run(["dvc", "status", "--json", "train@blobs"], repo).stdout.strip() == "{}"
