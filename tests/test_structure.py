"""The project's own structure: layers, one name per stage everywhere, the documented commands."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml
from conftest import ROOT

from flows.execution.stages import STAGES, stage_flow, stage_paths


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


def _cairn_imports(path: Path) -> set[str]:
    """The flows/steps modules ``path`` imports (``from a.b import c`` may name module a.b.c)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m.split(".")[0] in ("flows", "steps")}


def _code_of(stage: str) -> set[Path]:
    """Every file of cairn's code that a stage's process runs: its flow module, what that imports,
    transitively, and the package __init__ files on the way."""
    seen: set[Path] = set()
    todo = [Path("flows") / f"{stage}.py"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        todo += [p / "__init__.py" for p in path.parents if (ROOT / p / "__init__.py").exists()]
        for module in _cairn_imports(ROOT / path):
            base = Path(*module.split("."))
            todo += [f for f in (base / "__init__.py", base.with_suffix(".py")) if (ROOT / f).exists()]
    return seen


def test_every_module_a_stage_runs_is_a_dep_so_a_code_change_reruns_it():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for stage, spec in stages.items():
        deps = [Path(d) for d in spec["do"]["deps"] if "$" not in d and not d.startswith("data/")]
        missing = sorted(str(f) for f in _code_of(stage) if not any(f == d or d in f.parents for d in deps))
        assert not missing, f"dvc.yaml: stage {stage} runs {missing} but does not list them as deps"


def test_every_model_that_trains_with_torch_is_exclusive_in_the_pipelines_waves():
    """torch's global RNG is seeded per fit and torch.onnx.export sets a global flag (a second
    export at once fails 'GLOBALS.in_onnx_export must be False'): each torch model says
    EXCLUSIVE, and the pipeline's waves train or export one at a time."""
    import importlib

    for path in sorted((ROOT / "steps/models").glob("*.py")):
        if path.stem in ("__init__", "torchnet"):
            continue
        module = importlib.import_module(f"steps.models.{path.stem}")
        uses_torch = any(getattr(v, "__name__", "").startswith(("torch", "steps.models.torchnet", "steps.models.mlp"))
                         for v in vars(module).values())  # fmt: skip
        assert getattr(module, "EXCLUSIVE", False) == uses_torch, path.stem
