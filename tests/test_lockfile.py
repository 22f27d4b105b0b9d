"""dvc.lock survives a kill in the middle of DVC's rewrite: DVC writes it atomically, and a broken
one gets its last good copy back, under plain `dvc` commands too."""

from __future__ import annotations

import json
import sys
import sysconfig
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, make_repo, only_workloads, run

from flows.runtime import lockfile
from steps import BadInput


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
    with pytest.raises(BadInput, match=r"dvc.lock is unusable \(it is empty\) and there is no good copy"):
        lockfile.recover(lock, good)


def test_dvc_rewrites_the_lock_from_its_fast_parse_to_the_same_bytes():
    """lockfile.fast_lock_updates: DVC's update of dvc.lock parses it with its safe loader, whose
    result DVC dumps to the very bytes it read (the project's lock: every kind of entry, params
    of every type); other YAML files keep the round trip, and with it their comments."""
    from dvc.utils.serialize import _yaml

    lockfile.fast_lock_updates()
    text = (ROOT / "dvc.lock").read_text()
    parsed = _yaml.parse_yaml_for_update(text, "dvc.lock")
    assert type(parsed) is dict  # the safe loader's, not a round-trip CommentedMap
    assert _yaml.dumps_yaml(parsed) == text
    kept = _yaml.parse_yaml_for_update("stages:  # a note\n  a: {cmd: x}\n", "dvc.yaml")
    assert "# a note" in _yaml.dumps_yaml(kept)


# What shared_yaml_parses does for DVC's params reads: how often DVC's parser runs for three
# reads of params.yaml, the second after the first's result was changed, the third after an edit.
SHARED_PARSES = textwrap.dedent("""
    import json, sys
    from dvc.fs import LocalFileSystem
    from dvc.utils.serialize import _yaml, load_path
    from flows.runtime import lockfile

    calls = []
    real = _yaml.parse_yaml  # counted below; the call of the test itself is not
    _yaml.parse_yaml = lambda text, path, typ="safe": calls.append(path) or real(text, path, typ)
    lockfile.shared_yaml_parses()
    fs, params = LocalFileSystem(), sys.argv[1]
    original = real(open(params).read(), params)
    first = load_path(params, fs)
    first["changed"] = True
    second = load_path(params, fs)
    with open(params, "a") as f:
        f.write("more: 1\\n")
    third = load_path(params, fs)
    print(json.dumps({"parses": len(calls), "change seen": "changed" in second,
                      "second as parsed": second == original,
                      "edit seen": third.get("more")}))
""")


def test_dvc_parses_a_params_text_once_and_hands_out_copies(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(only_workloads("blobs")))
    out = json.loads(run([sys.executable, "-c", SHARED_PARSES, str(params)], tmp_path).stdout)
    assert out == {"parses": 2, "change seen": False, "second as parsed": True, "edit seen": 1}


def test_the_dvc_hook_installs_into_site_packages_and_names_a_module_that_exists(tmp_path, monkeypatch):
    """What `make setup` runs, into a stand-in site-packages (not the developer's venv)."""
    import importlib.util
    import re

    monkeypatch.setattr(sysconfig, "get_paths", lambda: {"purelib": str(tmp_path)})
    hook = lockfile.install_dvc_hook()
    assert hook == tmp_path / lockfile.HOOK and hook.read_text() == lockfile.HOOK_LINE
    (module,) = re.findall(r"__\('([\w.]+)'", lockfile.HOOK_LINE)
    assert importlib.util.find_spec(module) is not None, module


# DVC's own in-place rewrite, as a `dvc` without cairn's hook does it, cut short by a kill.
KILL_DURING_IN_PLACE_WRITE = textwrap.dedent("""
    import os, signal, sys
    from dvc.utils.serialize import _common

    def half_then_die(path, data, dumper, fs=None, **kwargs):
        if str(path).endswith("dvc.lock"):
            with open(path, "w") as f:
                f.write("schema: '2.0'\\nstages:\\n  ")
                f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(path, data, dumper, fs=fs, **kwargs)

    real, _common._dump_data = _common._dump_data, half_then_die
    from dvc.cli import main
    sys.exit(main(sys.argv[1:]))
""")

# What the hook does in every `dvc` of the venv, killed halfway through serializing the lock.
KILL_DURING_ATOMIC_WRITE = textwrap.dedent("""
    import os, signal, sys
    from flows.runtime import lockfile
    from dvc.utils.serialize import _yaml

    lockfile.atomic_dvc_writes()

    def half_then_die(data, stream):
        if "stages" in data:
            stream.write("schema: '2.0'\\nstages:\\n  ")
            stream.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real(data, stream)

    real, _yaml._dump = _yaml._dump, half_then_die
    from dvc.cli import main
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.slow
def test_a_kill_while_dvc_writes_the_lock_loses_nothing(tmp_path):
    repo = make_repo(tmp_path / "repo", only_workloads("blobs"))
    run(["dvc", "repro", "split@blobs"], repo)
    expected = (repo / "dvc.lock").read_text()
    run(["dvc", "repro", "train@blobs"], repo)
    reference = yaml.safe_load((repo / "dvc.lock").read_text())

    def train_stale_again():  # its run stays in the run-cache
        (repo / "dvc.lock").write_text(expected)
        run(["dvc", "checkout", "-q", "--force"], repo, check=False)

    # With the hook, the lock is written beside and renamed: a kill leaves the old one whole.
    train_stale_again()
    killed = run([sys.executable, "-c", KILL_DURING_ATOMIC_WRITE, "repro", "--force", "train@blobs"], repo, check=False)
    assert killed.returncode == -9
    assert (repo / "dvc.lock").read_text() == expected
    # Killed while serializing: the lock is written in memory first, so nothing is on disk yet.
    # A kill during the file write itself leaves a temp file: the next dvc command removes it.
    (repo / ".dvc.lock.abc123.tmp").write_text("schema: '2.0'\nstages:\n  ")
    status = run(["dvc", "status", "train@blobs"], repo)
    assert not list(repo.glob(".dvc.lock.*"))
    assert "changed" in status.stdout  # train@blobs is simply stale

    # Without it (a dvc from outside the venv), the lock is cut short; the next plain `dvc`
    # command of the venv puts the last good copy back and says so.
    train_stale_again()
    killed = run(
        [sys.executable, "-c", KILL_DURING_IN_PLACE_WRITE, "repro", "--force", "train@blobs"], repo, check=False
    )
    assert killed.returncode == -9
    assert problem_of(repo) is not None
    status = run(["dvc", "status"], repo)
    assert "was unusable (" in status.stderr and "put back the last good copy" in status.stderr
    assert problem_of(repo) is None

    run(["dvc", "repro", "train@blobs"], repo)
    assert yaml.safe_load((repo / "dvc.lock").read_text()) == reference  # the bytes of an uninterrupted run
    assert run(["dvc", "status", "--json", "train@blobs"], repo).stdout.strip() == "{}"

    (repo / "dvc.lock").write_text("")  # `python -m flows recover`, which `make run` calls, does the same
    recovered = run([sys.executable, "-m", "flows", "recover"], repo)
    assert "put back the last good copy" in recovered.stdout + recovered.stderr


def problem_of(repo: Path) -> str | None:
    return lockfile.problem((repo / "dvc.lock").read_text())


def test_the_venvs_dvc_runs_stages_with_the_venvs_python_without_activation(tmp_path):
    run(["git", "init", "-q"], tmp_path)
    dvc = str(Path(sys.executable).parent / "dvc")
    run([dvc, "init", "-q"], tmp_path)
    (tmp_path / "dvc.yaml").write_text(
        'stages:\n  which:\n    cmd: python -c "import sys; print(sys.prefix)" > out.txt\n    outs: [out.txt]\n'
    )
    bare = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}  # as `.venv/bin/dvc repro` from a fresh shell
    run([dvc, "repro", "-q"], tmp_path, env=bare)
    assert (tmp_path / "out.txt").read_text().strip() == sys.prefix
