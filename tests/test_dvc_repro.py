"""Integration: the real dvc.yaml on tiny data in a fresh git + DVC repo, run by `dvc repro` and by
the pipeline (whose dvc.lock is dvc repro's, byte for byte: the first test)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from conftest import HAS_AVX2, blobs_csv, make_repo, only_workloads, run

WORKLOADS = ("iris", "blobs", "sales", "loans", "forest", "digits")
STAGES = ("ingest", "clean", "split", "train", "evaluate", "publish", "promote")


def lock_sections(repo: Path) -> dict[str, str]:
    """``repo``'s dvc.lock as text, stage by stage: {stage: its entry's lines}."""
    sections: dict[str, str] = {}
    for line in (repo / "dvc.lock").read_text().splitlines(keepends=True):
        if line.startswith("  ") and not line.startswith("   "):  # "  train@iris:" opens an entry
            name = line.strip().rstrip(":")
        if sections or line.startswith("  "):
            sections[name] = sections.get(name, "") + line
    return sections


def test_the_pipeline_leaves_the_lock_of_dvc_repro(built_repo: Path, blobs_by_dvc_repro: Path):
    """Byte for byte: `dvc repro` ran each stage of blobs as its own process, one after the other,
    untracked; the pipeline (built_repo) ran the stages of all six workloads in one process, two
    at a time, in whatever order they finished, each a subflow tracked by a Prefect server, and
    wrote their lock entries together. A stage's entry hashes only its own deps, params keys and
    outs, so blobs' entries (torch training and score among them) are the same text in both."""
    reference = lock_sections(blobs_by_dvc_repro)
    assert sorted(reference) == sorted(f"{s}@blobs" for s in (*STAGES, "score"))
    ours = lock_sections(built_repo)
    assert {name: ours.get(name) for name in reference} == reference


def test_a_torch_fit_in_a_process_of_its_own_leaves_the_lock_of_dvc_repro(blobs_repo: Path, blobs_by_dvc_repro: Path):
    """With ``execution.fit_process: 0`` the untracked pipeline trains every torch fit as `python
    -m flows train@<workload>` in a child process, as `dvc repro` does (make run trains the MNIST
    models so: flows/runtime/pipeline.py, own_process). A copy of dvc repro's build without its
    trained model, in the workspace or DVC's caches: train@blobs runs again, in a child, and the
    lock is dvc repro's, entry for entry (execution is no stage's param: nothing else reruns)."""
    import shutil

    repo = blobs_repo
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["execution"] = params.get("execution", {}) | {"fit_process": 0}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.rmtree(repo / ".dvc" / "cache" / "runs")
    for out in yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["train@blobs"]["outs"]:
        (repo / ".dvc/cache/files/md5" / out["md5"][:2] / out["md5"][2:]).unlink()  # nothing to restore from
    shutil.rmtree(repo / "data/blobs/train")
    result = run([sys.executable, "-m", "flows", "pipeline", "--jobs", "2", "blobs"], repo)
    said = result.stdout + result.stderr
    outcome = json.loads(next(line for line in said.splitlines() if line.startswith("pipeline: {")).removeprefix(
        "pipeline: "))["stages"]  # fmt: skip
    assert {name for name, how in outcome.items() if how == "ran"} == {"train@blobs"}, outcome
    assert "train@blobs: in a process of its own" in said, said
    assert lock_sections(repo) == lock_sections(blobs_by_dvc_repro)


def test_every_stage_ran_and_the_lock_knows_it(built_repo: Path):
    lock = yaml.safe_load((built_repo / "dvc.lock").read_text())["stages"]
    every = [f"{s}@{w}" for s in STAGES for w in WORKLOADS] + ["score@blobs"]  # the one inbox: blobs
    assert sorted(lock) == sorted(every)
    assert run(["dvc", "status", "--json"], built_repo).stdout.strip() == "{}"


def test_rows_reconcile_from_raw_to_split(built_repo: Path):
    report = json.loads((built_repo / "data/blobs/clean/report.json").read_text())
    assert report == {
        "rows_in": 150,
        "rows_kept": 149,
        "rows_quarantined": 1,
        "quarantined_by_reason": {"missing value": 1},
        "duplicate_rows_kept": 0,
        "blank_lines_skipped": 0,
    }
    quarantined = pq.read_table(built_repo / "data/blobs/clean/quarantine.parquet").to_pylist()
    # data row 4 of part-1.csv is on line 5, below the header
    assert [(q["key"], q["reason"]) for q in quarantined] == [("part-1.csv:5", "missing or NaN value in column 'f1'")]
    split = json.loads((built_repo / "data/blobs/split/report.json").read_text())
    assert sum(s["rows"] for s in split.values()) == 149
    # two raw partitions, two ingested partitions
    assert sorted(p.name for p in (built_repo / "data/blobs/ingest").glob("*.parquet")) == [
        "part-1.parquet",
        "part-2.parquet",
    ]


def test_metrics_are_dvc_metrics(built_repo: Path):
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], built_repo).stdout)
    files = next(iter(shown.values()))["data"]
    accuracy = files["data/blobs/evaluate/metrics.json"]["data"]["accuracy"]
    assert accuracy > 0.9
    assert files["data/iris/evaluate/metrics.json"]["data"]["accuracy"] > 0.8
    assert "setosa" in files["data/iris/evaluate/details.json"]["data"]["per_class"]


def test_published_model_card_and_lineage_trace_back_to_raw(built_repo: Path):
    publish = built_repo / "data/iris/publish"
    assert sorted(p.name for p in publish.iterdir()) == [
        "lineage.json",
        "model.json",
        "model.onnx",
        "model.safetensors",
        "model_card.md",
    ]
    assert (built_repo / "data/loans/publish/coefficients.json").exists()
    assert (built_repo / "data/sales/publish/coefficients.json").exists()
    assert (built_repo / "data/digits/publish/encoder.onnx").exists()
    lineage = json.loads((publish / "lineage.json").read_text())
    lock = yaml.safe_load((built_repo / "dvc.lock").read_text())["stages"]
    raw = {d["path"]: d["md5"] for d in lock["ingest@iris"]["deps"]}["data/iris/raw"]
    assert lineage["stages"]["ingest"]["deps"] == {"data/iris/raw": raw}
    # The data chain, hash for hash as dvc.lock has it, and only what publish declares as deps:
    # no code hashes, no loss history or figures, no git revision (the registry's record of a
    # promotion: a commit does not change publish's bytes).
    declared = {d["path"] for d in lock["publish@iris"]["deps"] if not d["path"].startswith(("flows/", "steps/"))}

    def read_by_publish(path: str) -> bool:
        return any(path == d or path.startswith(d + "/") for d in declared)

    for stage, record in lineage["stages"].items():
        for kind in ("deps", "outs"):
            entry = {d["path"]: d["md5"] for d in lock[f"{stage}@iris"][kind]}
            assert record[kind] == {p: h for p, h in entry.items() if read_by_publish(p)}, (stage, kind)
    assert set(lineage["stages"]["train"]["outs"]) == {
        f"data/iris/train/{n}" for n in ("model.safetensors", "model.json")
    }
    assert lineage["stages"]["clean"]["outs"] == {"data/iris/clean/rows": lock["split@iris"]["deps"][0]["md5"]}
    assert "git_revision" not in lineage
    head = run(["git", "rev-parse", "HEAD"], built_repo).stdout.strip()
    registered = json.loads((built_repo / "registry/iris/index.json").read_text())["versions"]
    assert [v["git_revision"] for v in registered] == [head]
    assert lineage["checks"]["ONNX (onnxruntime)"]["label_agreement"] == 1.0
    card = (publish / "model_card.md").read_text()
    assert "# Model card: iris" in card and "| accuracy |" in card
    # what fixes the bytes of a trained model, recorded with it
    kernels = json.loads((publish / "model.json").read_text())["kernels"]
    assert {k: v for k, v in kernels.items() if k != "cpu_isa"} == {"device": "cpu", "threads": 2}
    if HAS_AVX2:
        assert kernels["cpu_isa"] == "AVX2"


def test_evaluate_publish_and_score_of_the_same_inputs_are_the_same_bytes_whatever_dvc_lock_and_git_hold(
    built_copy: Path,
):
    """Issue #29: evaluate, publish and score are functions of their declared deps. What dvc.lock
    says of anything else (upstream code hashes, train's loss history, evaluate's figures, which
    differ in bytes on another CPU) and the git history do not reach their outputs: each run
    again after they changed writes the same bytes. (Before, lineage.json copied every upstream
    entry.)"""
    import hashlib

    repo = built_copy
    stages = ("evaluate@iris", "publish@iris", "publish@sales", "score@blobs")

    def written(name: str) -> dict[Path, bytes]:  # the stage's output folder, data/<workload>/<stage>
        stage, workload = name.split("@")
        return {
            p.relative_to(repo): p.read_bytes() for p in (repo / "data" / workload / stage).rglob("*") if p.is_file()
        }

    outputs = {name: written(name) for name in stages}
    whole = yaml.safe_load((repo / "dvc.lock").read_text())
    lock = whole["stages"]
    declared = {d["path"] for name in stages for d in lock[name]["deps"]}

    def read_by_them(path: str) -> bool:  # a declared dep of one of them, or within one
        return any(path == d or path.startswith(d + "/") for d in declared)

    changed = 0
    for entry in lock.values():
        for record in entry.get("deps", []) + entry.get("outs", []):
            if record.get("md5") and not read_by_them(record["path"]):
                # another hash, as another CPU or another code edit would leave
                record["md5"] = hashlib.md5(record["md5"].encode()).hexdigest() + record["md5"][32:]
                changed += 1
    assert changed > 100
    (repo / "dvc.lock").write_text(yaml.safe_dump(whole, sort_keys=False))
    run(["git", "add", "dvc.lock"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "another revision"], repo)
    for name, files in outputs.items():
        run([sys.executable, "-m", "flows", name], repo)  # the stage's command, as DVC runs it
        again = written(name)
        assert again.keys() == files.keys(), name
        assert [path for path in files if again[path] != files[path]] == [], name


def test_published_files_say_how_to_use_them_without_cairn(built_repo: Path):
    import hashlib

    import onnx

    loans = built_repo / "data/loans/publish"
    contract = json.loads((loans / "coefficients.json").read_text())["input"]
    assert contract["label"] == "defaulted"
    by_column = {c["column"]: c for c in contract["columns"]}
    assert by_column["fico_range"]["rule"] == "the middle of a range: '700-704' -> 702.0; a single number stays itself"
    assert by_column["loan_amount"]["kind"] == "money"
    assert "purpose=credit_card" in by_column["purpose"]["one_hot"]
    assert "a level not seen in training gives all zeros" in contract["one_hot"]
    assert "## From a raw record to the input" in (loans / "model_card.md").read_text()

    meta = {p.key: p.value for p in onnx.load(str(loans / "model.onnx")).metadata_props}
    assert meta["workload"] == "loans" and meta["label"] == "defaulted"
    assert json.loads(meta["classes"]) == json.loads((loans / "model.json").read_text())["classes"]
    assert json.loads(meta["input_contract"]) == contract
    assert meta["lineage_sha256"] == hashlib.sha256((loans / "lineage.json").read_bytes()).hexdigest()

    predictions = (built_repo / "data/loans/evaluate/predictions.csv").read_text().splitlines()
    assert predictions[0].split(",")[:3] == ["key", "actual", "predicted"] and predictions[0].count("p_") == 2
    assert predictions[1].startswith("loans.csv:")  # the row's key: its line in the raw file


def test_nothing_changed_means_nothing_runs(built_copy: Path):
    out = run(["dvc", "repro"], built_copy)
    assert "Running stage" not in out.stdout
    assert out.stdout.count("didn't change, skipping") == len(STAGES) * len(WORKLOADS) + 1  # and score@blobs


def test_a_param_change_is_seen_only_by_the_stages_that_read_it(built_copy: Path):
    params = yaml.safe_load((built_copy / "params.yaml").read_text())
    params["workloads"]["blobs"]["train"]["lr"] = 0.02
    (built_copy / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro", "--dry"], built_copy).stdout
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    # --dry lists the stages whose own deps or params changed: train reads train.lr,
    # publish records all of the workload's params in its model card.
    assert ran == {"train@blobs", "publish@blobs"}


def test_each_task_reports_its_own_metrics(built_repo: Path):
    def metrics(w):
        return json.loads((built_repo / f"data/{w}/evaluate/metrics.json").read_text())

    assert {"rmse", "mae", "r2", "rmse_sgd"} <= set(metrics("sales"))
    assert {"roc_auc", "precision", "recall", "threshold"} <= set(metrics("loans"))
    assert metrics("forest")["roc_auc"] > 0.6
    assert metrics("digits")["mse"] < 0.05  # a constant image scores about 0.1
    slices = json.loads((built_repo / "data/loans/evaluate/details.json").read_text())["slices"]["purpose"]
    assert "small_business" in slices
    loans = json.loads((built_repo / "data/loans/clean/report.json").read_text())
    assert loans["rows_in"] == loans["rows_kept"] + loans["rows_quarantined"] and loans["rows_quarantined"] > 0
    assert (built_repo / "data/loans/clean/pairplot.png").read_bytes().startswith(b"\x89PNG")


def test_a_user_points_a_workload_at_their_own_parquet_with_dvc_exp_run(tmp_path: Path):
    """Issue 3's promise, through DVC's own experiment command: a new file, label and features,
    set on the command line; the same stages run and the experiment records the params."""
    import pyarrow as pa
    from conftest import blobs_csv, make_repo

    repo = make_repo(tmp_path / "repo", only_workloads("blobs"))  # the one workload the experiment runs
    rows = [line.split(",") for line in blobs_csv(120, seed=5).splitlines()[1:]]
    own = pa.table({"width": [float(r[0]) for r in rows], "height": [float(r[1]) for r in rows],
                    "shape": [r[2] for r in rows]})  # fmt: skip
    (repo / "data/mine").mkdir(parents=True)
    pq.write_table(own, repo / "data/mine/shapes.parquet")
    run(["git", "add", "data/mine"], repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "my own data"], repo)
    run(["dvc", "exp", "run", "-n", "mine", "publish@blobs",
         "-S", "workloads.blobs.raw=data/mine/shapes.parquet",
         "-S", "workloads.blobs.schema.label=shape",
         "-S", "workloads.blobs.schema.features=[width,height]"], repo)  # fmt: skip
    spec = json.loads((repo / "data/blobs/publish/model.json").read_text())
    assert spec["feature_names"] == ["width", "height"] and spec["classes"] == ["a", "b", "c"]
    lineage = json.loads((repo / "data/blobs/publish/lineage.json").read_text())
    assert "data/mine/shapes.parquet" in lineage["stages"]["ingest"]["deps"]
    shown = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    assert "mine" in json.dumps(shown) and "data/mine/shapes.parquet" in json.dumps(shown)


def test_raw_data_tracked_by_dvc_comes_back_with_an_old_revision(tmp_path: Path):
    """README "Version your raw data": `dvc add` the raw folder, and an old revision's model can be
    reproduced after the raw file was overwritten."""
    repo = make_repo(tmp_path / "repo", only_workloads("blobs"))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    raw = repo / "data/blobs/raw"

    def track_and_commit(message: str) -> None:
        run(["dvc", "add", "-q", "data/blobs/raw"], repo)
        run(git + ["add", "data/blobs/raw.dvc", "data/blobs/.gitignore"], repo)
        run(git + ["commit", "-qm", message], repo)

    run(git + ["rm", "-r", "-q", "--cached", "data/blobs/raw"], repo)
    track_and_commit("raw data in DVC")
    run(["dvc", "repro", "ingest@blobs"], repo)
    first = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["ingest@blobs"]
    old_bytes = (raw / "part-2.csv").read_bytes()

    (raw / "part-2.csv").write_text(blobs_csv(70, seed=9))  # the user overwrites an export
    track_and_commit("new export")
    run(["dvc", "repro", "ingest@blobs"], repo)
    assert yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["ingest@blobs"] != first

    run(["git", "checkout", "-q", "HEAD~1"], repo)
    run(["dvc", "checkout", "-q", "data/blobs/raw.dvc"], repo)
    assert (raw / "part-2.csv").read_bytes() == old_bytes
    run(["dvc", "repro", "ingest@blobs"], repo)
    assert yaml.safe_load((repo / "dvc.lock").read_text())["stages"]["ingest@blobs"] == first


def test_an_edit_reruns_the_stages_that_run_the_edited_file_and_no_other(built_copy):
    """On a copy of the built repository: editing the server, the registry's listing and the CLI
    leaves every stage up to date; editing a model makes train and what follows it stale, never
    ingest, clean or split (whose stored partitions stay valid too: same datum keys)."""
    repo = built_copy
    for path in ("flows/service/server.py", "flows/service/registry.py", "flows/cli.py", "flows/runtime/pipeline.py"):
        (repo / path).write_text((repo / path).read_text() + "\n# an edit\n")
    assert json.loads(run(["dvc", "status", "--json"], repo).stdout) == {}

    mlp = repo / "steps/models/mlp.py"
    mlp.write_text(mlp.read_text() + "\n# an edit\n")
    stale = {name.partition("@")[0] for name in json.loads(run(["dvc", "status", "--json"], repo).stdout)}
    assert stale == {"train", "evaluate", "publish", "promote", "score"}


def test_a_pipeline_killed_before_it_wrote_the_lock_loses_no_stage(tmp_path: Path, request):
    """The pipeline writes dvc.lock entries together (flows/runtime/dvc_repo.py: Dvc.commit): a
    `kill -9` after stages were committed but before their entries were written leaves them in
    DVC's run-cache, and the next run restores them instead of running them again."""
    import subprocess
    import time

    from conftest import project_env, reference_entries

    repo = make_repo(tmp_path / "repo", only_workloads("blobs"))
    log = tmp_path / "first.log"
    with log.open("w") as out:
        first = subprocess.Popen([sys.executable, "-u", "-m", "flows", "pipeline", "blobs"], cwd=repo,
                                 env=project_env(), stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.monotonic() + 120
    # split runs only once ingest and clean are committed; publish would write the lock first
    while "split@blobs: {" not in log.read_text() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.05)
    first.kill()
    first.wait()
    assert "split@blobs: {" in log.read_text(), log.read_text()
    assert not (repo / "dvc.lock").exists()  # nothing written yet: the kill came first
    again = run([sys.executable, "-m", "flows", "pipeline", "blobs"], repo)
    said = next(line for line in (again.stdout + again.stderr).splitlines() if line.startswith("pipeline: {"))
    outcome = json.loads(said.removeprefix("pipeline: "))["stages"]
    assert outcome["ingest@blobs"] == outcome["clean@blobs"] == "restored", outcome
    ours, reference = reference_entries(repo, request)
    assert ours == reference
    assert run(["dvc", "status", "--json"], repo).stdout.strip() == "{}"


def test_an_empty_run_cache_entry_left_by_a_kill_is_a_miss_not_a_crash(blobs_repo: Path, request, monkeypatch):
    """DVC saves a run-cache entry by making its folder, then moving the entry file in; a kill
    between the two (seen once in the kill test above) left an empty folder on which the next
    restore raised TypeError. The pipeline takes it for a miss and runs the stage."""
    from conftest import reference_entries
    from dvc.repo import Repo
    from dvc.stage.cache import _get_stage_hash

    from flows.runtime.dvc_repo import Dvc

    repo = blobs_repo
    monkeypatch.chdir(repo)  # DVC addresses stages relative to the working folder
    with Repo(".") as dvc:
        stage = Dvc(dvc)._stage("split@blobs")
        folder = Path(dvc.stage_cache._get_cache_dir(_get_stage_hash(stage)))
    for entry in folder.iterdir():
        entry.unlink()  # as if the kill came after DVC's makedirs, before its move
    run(["rm", "-rf", "data/blobs/split", "dvc.lock"], repo)
    again = run([sys.executable, "-m", "flows", "pipeline", "blobs"], repo)
    outcome = json.loads(next(line for line in (again.stdout + again.stderr).splitlines()
                              if line.startswith("pipeline: {")).removeprefix("pipeline: "))["stages"]  # fmt: skip
    assert outcome["ingest@blobs"] == "restored" and outcome["split@blobs"] == "ran", outcome
    ours, reference = reference_entries(repo, request)
    assert ours == reference
