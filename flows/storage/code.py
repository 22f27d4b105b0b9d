"""The code a stage runs: the one definition shared by dvc.yaml's deps, datum keys and train's
checkpoint fingerprint.

A stage's code is its flow module (``flows/<stage>.py``) and everything of cairn's that it
imports, transitively (imports inside functions too), with the package ``__init__`` files on the
way. A package whose modules are loaded by name at run time (``steps.models``: a workload names
its model) counts whole. ``tests/test_structure.py`` checks that each stage's deps in dvc.yaml
are exactly this list, so DVC reruns a stage when, and only when, code it runs changes; datum
keys and the checkpoint fingerprint hash the same files, so editing a model leaves ingest's
stored partitions valid, and editing the server leaves every stage up to date.
"""

from __future__ import annotations

import ast
import hashlib
import threading
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the folder that holds flows/ and steps/
PACKAGES = ("flows", "steps")
LOADED_BY_NAME = ("steps/models",)  # folders that count whole (importlib by a params value)
# CPython 3.11 keeps ast.parse's recursion depth in interpreter-wide state: two threads parsing
# at once (the pipeline's stage threads, each working out its stage's code) can fail with
# "SystemError: AST constructor recursion depth mismatch" (python/cpython#106905; seen here in
# train@iris of a --jobs 2 run). One parse at a time.
_PARSING = threading.Lock()


def _imports(path: Path) -> set[str]:
    """The cairn modules ``path`` imports (``from a.b import c`` may name module a.b.c)."""
    out: set[str] = set()
    source = path.read_bytes()
    with _PARSING:
        tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return {m for m in out if m.split(".")[0] in PACKAGES}


def _files(module: str) -> list[str]:
    base = Path(*module.split("."))
    return [f.as_posix() for f in (base / "__init__.py", base.with_suffix(".py")) if (ROOT / f).is_file()]


@cache
def stage_code(stage: str) -> tuple[str, ...]:
    """The code deps of ``stage`` as dvc.yaml lists them: repository-relative paths, sorted; a
    folder of LOADED_BY_NAME stands for all of its files."""
    seen: set[str] = set()
    todo = [f"flows/{stage}.py"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for folder in LOADED_BY_NAME:
            if path.startswith(folder + "/"):
                todo += [p.relative_to(ROOT).as_posix() for p in (ROOT / folder).rglob("*.py")]
        todo += [f"{p.as_posix()}/__init__.py" for p in Path(path).parents if (ROOT / p / "__init__.py").is_file()]
        for module in _imports(ROOT / path):
            todo += _files(module)
    whole = {d for d in LOADED_BY_NAME if any(p.startswith(d + "/") for p in seen)}
    return tuple(sorted({p for p in seen if not any(p.startswith(d + "/") for d in whole)} | whole))


def files_of(paths: tuple[str, ...]) -> list[Path]:
    """The files that ``paths`` (files, and folders standing for their .py files) name."""
    out: list[Path] = []
    for path in paths:
        full = ROOT / path
        out += sorted(full.rglob("*.py")) if full.is_dir() else [full]
    return out


@cache
def digest(stage: str) -> str:
    """sha256 over the paths and bytes of the code ``stage`` runs."""
    h = hashlib.sha256()
    for path in files_of(stage_code(stage)):
        h.update(path.relative_to(ROOT).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()
