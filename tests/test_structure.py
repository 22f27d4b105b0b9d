"""The project's own structure: layers, one name per stage everywhere, the documented commands."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml
from conftest import FILE_SECONDS, ROOT

from flows.runtime.stages import STAGE_INPUTS, STAGES, stage_flow, stage_paths
from flows.storage import code


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_steps_are_pure_they_never_import_flows_prefect_or_dvc():
    for path in (ROOT / "steps").rglob("*.py"):
        assert not imports(path) & {"flows", "prefect", "dvc", "os", "subprocess"}, path


def test_one_word_names_a_stage_everywhere():
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert tuple(dvc) == STAGES
    for name in STAGES:
        assert stage_flow(name).name == name
        assert (ROOT / "steps" / f"{name}.py").exists()
        deps = dvc[name]["do"]["deps"]
        assert f"flows/{name}.py" in deps and f"steps/{name}.py" in deps, name
        assert dvc[name]["do"]["cmd"] == 'python -m flows "$DVC_STAGE"'  # nothing from params.yaml


def test_the_paths_a_stage_uses_are_the_deps_and_outs_dvc_yaml_declares(monkeypatch):
    from dvc.repo import Repo

    monkeypatch.chdir(ROOT)
    with Repo(str(ROOT)) as repo:
        stages = list(repo.index.stages)
    assert stages
    for stage in stages:
        name, workload = stage.addressing.split("@")
        paths = stage_paths(name, workload)
        outs = [Path(o.def_path) for o in stage.outs]
        assert all(o == paths["out"] or paths["out"] in o.parents for o in outs), stage.addressing
        deps = [Path(d.def_path) for d in stage.deps]
        for what, path in paths.items():
            if what != "out":  # every input is declared, whole or file by file
                assert any(d == path or path in d.parents for d in deps), (stage.addressing, what)


def test_readme_names_the_two_commands_and_ci_runs_the_tests():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci/run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "\nrun:" in makefile and "\ntest:" in makefile


def test_the_files_that_go_out_first_are_test_files_here():
    """FILE_SECONDS orders the run; a renamed or removed file would silently go last."""
    assert set(FILE_SECONDS) <= {path.name for path in (ROOT / "tests").glob("test_*.py")}
    assert "--no-loadscope-reorder" in (ROOT / "Makefile").read_text()  # else xdist reorders them


def test_a_stages_code_deps_in_dvc_yaml_are_exactly_the_code_it_runs():
    """Not one file more (an edit elsewhere would rerun it) and not one less (an edit there would
    not): the list flows/storage/code.py computes, which datum keys and checkpoints hash too."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage, spec in stages.items():
        declared = {d for d in spec["do"]["deps"] if d.startswith(("flows/", "steps/"))}
        runs = set(code.stage_code(stage))
        assert declared == runs, (
            f"dvc.yaml: {stage} lists {sorted(declared - runs)} it does not run, "
            f"and runs {sorted(runs - declared)} it does not list"
        )


def test_no_stage_runs_the_service_the_cli_or_the_registry_listing():
    """Editing the server, the watcher, the CLI or the registry's table reruns nothing."""
    for stage in STAGES:
        runs = code.stage_code(stage)
        assert not [p for p in runs if p.startswith(("flows/service/", "flows/runtime/", "flows/cli.py"))], stage
        assert not [p for p in runs if p.startswith("flows/") and p.removeprefix("flows/").removesuffix(".py")
                    in set(STAGES) - {stage}], stage  # fmt: skip
    assert "steps/models" not in code.stage_code("ingest") + code.stage_code("clean") + code.stage_code("split")


def test_datum_keys_hash_the_stages_own_code(tmp_path, monkeypatch):
    """A copy of the code with one edit in a model: ingest's key is the same, score's is not."""
    import shutil

    from flows.storage import datums

    copy = tmp_path / "repo"
    for package in ("flows", "steps"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    before = {s: datums.key(s, "a.csv", b"x", {}) for s in ("ingest", "score")}
    monkeypatch.setattr(code, "ROOT", copy)
    code.stage_code.cache_clear()
    code.digest.cache_clear()
    try:
        mlp = copy / "steps/models/mlp.py"
        mlp.write_text(mlp.read_text() + "# an edit\n")
        after = {s: datums.key(s, "a.csv", b"x", {}) for s in ("ingest", "score")}
    finally:
        code.stage_code.cache_clear()
        code.digest.cache_clear()
    assert after["ingest"] == before["ingest"]
    assert after["score"] != before["score"]


def test_the_command_lines_inputs_are_the_stage_flows_parameters():
    import inspect

    for name in STAGES:
        params = list(inspect.signature(stage_flow(name).fn).parameters)
        assert tuple(params[1:-1]) == STAGE_INPUTS[name] and params[0] == "workload" and params[-1] == "out", name


def test_every_model_whose_fit_draws_dropout_is_exclusive_in_the_pipelines_waves():
    """A torch fit with dropout draws its masks from torch's global generator from start to end,
    so the pipeline's waves train one such model at a time: a model whose fit runs torchnet's
    loop with settings that can hold dropout says so through ``exclusive`` (torchnet.exclusive).
    Fits without dropout (the autoencoder, logistic regression, an MLP at dropout 0) run side by
    side; a model that only exports through torch (linear) is never exclusive."""
    import importlib
    import inspect

    from steps.models import torchnet

    for path in sorted((ROOT / "steps/models").glob("*.py")):
        if path.stem in ("__init__", "torchnet"):
            continue
        module = importlib.import_module(f"steps.models.{path.stem}")
        source = inspect.getsource(module)
        builds_dropout = "nn.Dropout(" in source
        assert (getattr(module, "exclusive", None) is torchnet.exclusive) == builds_dropout, path.stem
        # and one whose fit runs the loop says TORCH_LOOP: a big fit then trains in a process of
        # its own (flows/runtime/pipeline.py: own_process)
        fit = inspect.getsource(module.fit)
        fits_with_torch = "torchnet.fit(" in fit or "mlp.fit(" in fit
        assert getattr(module, "TORCH_LOOP", False) == fits_with_torch, path.stem
    assert torchnet.exclusive({"dropout": 0.3}) and not torchnet.exclusive({"dropout": 0.0})


def test_the_layers_hold_and_the_check_fails_when_a_stage_flow_imports_another(tmp_path):
    """import-linter's contracts (pyproject.toml) on the code as it is, then on a copy in which
    publish imports evaluate: the first passes, the second is refused naming the import."""
    import os
    import shutil
    import subprocess
    import sys

    lint = Path(sys.executable).parent / "lint-imports"
    env = os.environ | {"PYTHONPATH": str(tmp_path)}
    for package in ("flows", "steps"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    ok = subprocess.run([lint, "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout
    publish = tmp_path / "flows/publish.py"
    publish.write_text(publish.read_text() + "\nimport flows.evaluate  # noqa\n")
    broken = subprocess.run([lint, "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert broken.returncode != 0
    assert "flows.publish -> flows.evaluate" in broken.stdout


def test_the_committed_metrics_record_is_of_the_committed_lock():
    """data/metrics.json (what `python -m flows drift` tells a fresh clone the committed models
    scored) holds, for every evaluate stage of dvc.lock, the metrics of the bytes the lock names:
    a lock regenerated without its record fails here."""
    import json

    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"]
    hashes = {
        name.split("@")[1]: out["md5"]
        for name, entry in lock.items()
        if name.startswith("evaluate@")
        for out in entry["outs"]
        if out["path"].endswith("/metrics.json")
    }
    record = json.loads((ROOT / "data/metrics.json").read_text())
    assert {workload: entry["md5"] for workload, entry in record.items()} == hashes
