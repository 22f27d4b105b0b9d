"""The model registry: no registration lost between processes, a dated log of every change,
the champion link says what serves, bad names and broken indexes are one-line errors."""

from __future__ import annotations

import json
import multiprocessing
import time

import pytest

from flows import registry
from flows.service import registry as service_registry
from steps.errors import BadInput


def _register(root: str, n: int) -> None:
    import os

    os.environ["CAIRN_REGISTRY"] = root
    with registry.locked("iris") as index:
        version = max((v["version"] for v in index["versions"]), default=0) + 1
        time.sleep(0.05)  # read-modify-write with room for another process to interleave
        index["versions"].append({"version": version, "writer": n})


def test_concurrent_changes_never_lose_a_registration(tmp_path, monkeypatch):
    monkeypatch.setenv("CAIRN_REGISTRY", str(tmp_path))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_register, args=(str(tmp_path), n)) for n in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    versions = registry.read_index("iris")["versions"]
    assert sorted(v["version"] for v in versions) == [1, 2, 3, 4, 5, 6]
    assert sorted(v["writer"] for v in versions) == [0, 1, 2, 3, 4, 5]


def test_rollback_is_logged_and_the_champion_link_follows(tmp_path, monkeypatch):
    monkeypatch.setenv("CAIRN_REGISTRY", str(tmp_path))
    monkeypatch.chdir(tmp_path)  # a rollback rewrites data/iris/promote of the working directory
    for n in (1, 2):
        (tmp_path / "iris" / f"v{n}").mkdir(parents=True)
        (tmp_path / "iris" / f"v{n}" / "model.onnx").write_text(f"model {n}")
    versions = [{"version": n, "status": s, "reason": "r", "metric": {"accuracy": 0.9}, "registered_at": "t"}
                for n, s in ((1, "retired"), (2, "champion"))]  # fmt: skip
    (tmp_path / "iris" / "index.json").write_text(json.dumps({"champion": 2, "versions": versions}))
    assert service_registry.rollback("iris")["version"] == 1
    assert (tmp_path / "iris" / "champion" / "model.onnx").read_text() == "model 1"  # what serves
    event = registry.read_index("iris")["events"][-1]
    assert event["event"] == "rollback" and event["version"] == 1 and event["reason"] == "rolled back from v2"
    assert "serving: iris v1" in service_registry.listing("iris")


def test_bad_names_versions_and_indexes_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("CAIRN_REGISTRY", str(tmp_path))
    with pytest.raises(BadInput, match="registry: workload '../../etc' is not a valid name"):
        service_registry.rollback("../../etc")
    with pytest.raises(BadInput, match=r"registry: --to -1 is not a version number"):
        service_registry.rollback("iris", -1)
    (tmp_path / "iris").mkdir()
    (tmp_path / "iris" / "index.json").write_text('{"champion": 1, "versi')  # cut short
    with pytest.raises(BadInput, match=r"registry: .*iris/index.json is unreadable \("):
        registry.read_index("iris")
