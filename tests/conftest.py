"""Shared fixtures: tiny tables for unit tests, and tiny cairn repositories for DVC and Prefect."""

from __future__ import annotations

import copy
import fcntl
import functools
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml

# OpenMP threads that wait for work sleep instead of spinning, in every process of the test run
# (project_env passes it on): three pytest workers on two cores run torch next to each other, and
# spinning threads take the CPU the others need. Three 400-epoch iris trains at once on 2 cores:
# 46.4 s and 91 s of CPU spinning, 11.5 s and 22 s sleeping; one alone 6.8 s against 7.6 s. The
# same bytes either way (the wait policy changes no arithmetic): docs/benchmarks.md.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import flows  # noqa: F401 - before any test imports torch: it pins the CPU kernels (flows/__init__.py)
from flows import config

ROOT = Path(__file__).resolve().parent.parent
# Tests run offline: no telemetry calls from Prefect's test server.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

IRIS_SCHEMA = {
    "key": None,
    "label": "species",
    "features": ["sepal_length", "sepal_width", "petal_length", "petal_width"],
    "image": None,
    "range": [0.0, 100.0],
}


def _has_avx2() -> bool:
    try:
        return "avx2" in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


# cairn pins AVX2 kernels on x86-64 (flows/__init__.py); a CPU without AVX2 (ARM, say) cannot
# have them, so the tests that assert them skip there and say why in the run's summary.
HAS_AVX2 = _has_avx2()
needs_avx2 = pytest.mark.skipif(not HAS_AVX2, reason="this CPU has no AVX2: the kernels cairn pins do not exist here")


def blobs_csv(rows: int, seed: int, bad: dict[int, str] | None = None) -> str:
    """A CSV of three well-separated classes in 2 features; ``bad`` replaces row i's f1 text."""
    rng = np.random.default_rng(seed)
    lines = ["f1,f2,kind"]
    for i in range(rows):
        c = i % 3
        f1, f2 = rng.normal([c * 5.0 + 10, 20 - c * 4.0], 0.6)
        text = (bad or {}).get(i + 1, f"{f1:.3f}")
        lines.append(f"{text},{f2:.3f},{'abc'[c]}")
    return "\n".join(lines) + "\n"


BLOBS_SCHEMA = {"key": None, "label": "kind", "features": ["f1", "f2"], "image": None, "range": [0.0, 100.0]}
# Sections as a stage hands them to a step: through params' typed model, defaults filled in.
TINY_MODEL = config.model_settings(name="mlp", hidden=[8], dropout=0.0, normalize="feature")
TINY_TRAIN = config.Train(
    seed=1,
    device="cpu",
    epochs=15,
    batch_size=16,
    optimizer="adam",
    lr=0.02,
    weight_decay=0.0,
    schedule="cosine",
    monitor="val_loss",
    patience=5,
).model_dump()


def blobs_sets(rows: int) -> dict:
    """Train / val / test tables of ``rows`` clean blobs rows, through the real steps."""
    from steps import clean, ingest, split

    table = ingest.from_csv(blobs_csv(rows, seed=0).encode(), "p.csv", BLOBS_SCHEMA)
    kept = clean.clean(table, BLOBS_SCHEMA, clean_params(0.0)).kept
    return split.split(kept, "kind", {"seed": 1, "val": 0.2, "test": 0.2, "test_partition": None})


def tiny_params() -> dict:
    """params.yaml for a tiny repo: the real entries with little data and few epochs, and
    two user workloads: a CSV folder (blobs) and a Parquet file of 8×8 digit images."""
    workloads = yaml.safe_load((ROOT / "params.yaml").read_text())["workloads"]
    real = workloads["iris"]
    iris = copy.deepcopy(real)
    iris["train"] |= {"epochs": 30, "patience": 10}
    blobs = copy.deepcopy(real)
    blobs["raw"] = "data/blobs/raw"
    blobs["schema"] = BLOBS_SCHEMA
    blobs["clean"] = clean_params(0.1)
    blobs["split"] = {"seed": 3, "val": 0.2, "test": 0.25, "test_partition": None}
    blobs["train"] |= {"epochs": 20, "patience": 10}
    sales = copy.deepcopy(workloads["sales"])
    sales["source"]["rows"] = 600
    sales["train"]["epochs"] = 10
    loans = copy.deepcopy(workloads["loans"])
    loans["source"]["rows"] = 900
    loans["train"]["epochs"] = 10
    forest = copy.deepcopy(workloads["forest"])
    forest["source"]["rows"] = 900
    forest["model"]["trees"] = 10
    digits = copy.deepcopy(workloads["mnist-ae"])
    digits["raw"] = "data/digits/raw/digits.parquet"
    digits["schema"]["image"] = {"column": "pixels", "shape": [8, 8]}
    digits["split"] = {"seed": 3, "val": 0.2, "test": 0.2, "test_partition": None}
    digits["model"]["hidden"] = [32, 16]
    digits["train"] |= {"epochs": 12, "batch_size": 32, "lr": 0.005}
    deploy = yaml.safe_load((ROOT / "params.yaml").read_text())["deploy"]
    return {"deploy": deploy, "score": {"blobs": {"inbox": "data/blobs/inbox"}},
            "workloads": {"iris": iris, "blobs": blobs, "sales": sales, "loans": loans, "forest": forest,
                          "digits": digits}}  # fmt: skip


def only_workloads(*names: str) -> dict:
    """tiny_params with only the workloads ``names``: a smaller DAG for a focused test."""
    params = tiny_params()
    params["workloads"] = {name: params["workloads"][name] for name in names}
    params["score"] = {name: inbox for name, inbox in params["score"].items() if name in names}
    return params


def digits_parquet(path: Path) -> None:
    """scikit-learn's 8×8 digits as a user's Parquet file of images (pixels scaled to [0, 1])."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = pa.FixedSizeListArray.from_arrays(pa.array((digits.data / 16).astype(np.float32).ravel()), 64)
    pq.write_table(pa.table({"digit": digits.target, "pixels": pixels}), path)


def run(cmd: list[str], cwd: Path, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env or project_env(), capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def project_env(**extra: str) -> dict[str, str]:
    """The environment for subprocesses: this venv's python first on PATH, no Prefect API."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PREFECT_HOME"] = str(Path(os.environ.get("TMPDIR", "/tmp")) / "cairn-test-prefect")
    # A test server does not register the block types of every installed Prefect collection
    # (prefect-docker, -kubernetes, -dask) at its start: cairn uses no blocks, and importing them
    # took 1.7 s of the 9-10 s of CPU a server took to answer, for each of the run's dozen servers.
    env["PREFECT_SERVER_REGISTER_BLOCKS_ON_START"] = "false"
    # Nor does it import those collections at all: the start's check of whether the block types
    # changed since the last start (the memo) imports them first, even with the registration off
    # (prefect/server/api/server.py: _memoize_block_auto_registration), and prefect-kubernetes
    # alone takes 1.8 s. Measured: 7.0-7.4 s of CPU to answer with the memo, 4.5-6.2 without.
    env["PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION"] = "false"
    return env | extra


def make_repo(path: Path, params: dict | None = None) -> Path:
    """A fresh git + DVC repository holding cairn's code, dvc.yaml and the tiny params (or ``params``)."""
    path.mkdir(parents=True, exist_ok=True)
    for item in ("flows", "steps", "dvc.yaml"):
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, path / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, path / item)
    (path / "params.yaml").write_text(yaml.safe_dump(params or tiny_params(), sort_keys=False))
    (path / "data/iris/raw").mkdir(parents=True)
    shutil.copy(ROOT / "data/iris/raw/source.json", path / "data/iris/raw/source.json")
    (path / "data/blobs/raw").mkdir(parents=True)
    (path / "data/blobs/raw/part-1.csv").write_text(blobs_csv(90, seed=1, bad={4: "NaN"}))
    (path / "data/blobs/raw/part-2.csv").write_text(blobs_csv(60, seed=2))
    (path / "data/blobs/inbox").mkdir(parents=True)  # new rows to score (flows/score.py)
    (path / "data/blobs/inbox/new-1.csv").write_text(blobs_csv(20, seed=11, bad={3: "NaN"}))
    for name in ("sales", "loans"):
        (path / f"data/{name}/raw").mkdir(parents=True)
        shutil.copy(ROOT / f"data/{name}/raw/source.json", path / f"data/{name}/raw/source.json")
    (path / "data/digits/raw").mkdir(parents=True)
    digits_parquet(path / "data/digits/raw/digits.parquet")
    (path / ".gitignore").write_text(".cairn/\n__pycache__/\nregistry/\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run(["git", "init", "-q"], path)
    dvc_init(path)
    run(git + ["add", "-A"], path)
    # A fixed date: two repos made from the same files get the same commit, as two clones would.
    date = "2026-01-01T00:00:00+00:00"
    run(
        git + ["commit", "-qm", "tiny cairn"],
        path,
        env=project_env(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date),
    )
    return path


@functools.cache
def _dvc_initialised() -> Path:
    """What `dvc init` and `make init`'s `dvc config core.analytics false` (no daemon per
    command) leave in a git repository, made once per pytest process: two DVC commands that
    cost 0.7 s of CPU per repository otherwise."""
    template = Path(tempfile.mkdtemp(prefix="dvc-init-"))
    run(["git", "init", "-q"], template)
    run(["dvc", "init", "-q"], template)
    run(["dvc", "config", "core.analytics", "false"], template)
    shutil.rmtree(template / ".git")
    return template


def dvc_init(repo: Path) -> None:
    """`dvc init` in the git repository ``repo``, analytics off (_dvc_initialised)."""
    template = _dvc_initialised()
    shutil.copytree(template / ".dvc", repo / ".dvc")  # not the template folder: its mode is mkdtemp's 0700
    shutil.copy(template / ".dvcignore", repo / ".dvcignore")


def copy_repo(src: Path, dest: Path) -> Path:
    """A copy of the repository ``src`` at ``dest``, as a clone with its DVC cache and datum store
    would be (links kept as links): the cheap start of a test that changes a built repository."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]) -> Path:
    """The repository ``build`` makes in an empty folder, made once per test run: the first pytest
    worker (xdist) to ask builds it, the others wait for it, and nobody changes it after. Tests
    copy it (``copy_repo``), so the same tiny pipeline is not run again and again."""
    base = factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "built-once"
    shared.mkdir(exist_ok=True)
    repo, done = shared / name, shared / f"{name}.done"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the worker dies
        if not done.exists():
            shutil.rmtree(repo, ignore_errors=True)  # half built by a worker that died
            build(repo)
            done.touch()
    return repo


def build_key(*parts: object) -> str:
    """A short name for a build made of ``parts`` (files, params, targets)."""
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


def from_scratch(factory: pytest.TempPathFactory, params: dict, files: dict[str, str], target: str,
                 remove: tuple[str, ...] = ()) -> Path:  # fmt: skip
    """The reference a grown repository is compared with: a fresh repo with ``params``, its raw and
    inbox files changed as ``files`` ({path: text}) and ``remove`` say, then `dvc repro ``target```.
    Memoised for the test run: tests that grow the same data share one reference."""

    def build(repo: Path) -> None:
        make_repo(repo, params)
        for path in remove:
            (repo / path).unlink()
        for path, text in files.items():
            (repo / path).write_text(text)
        run(["dvc", "repro", target], repo)

    return built_once(factory, "scratch-" + build_key(params, files, target, remove), build)


def lock_entries(repo: Path, like: Path) -> tuple[dict, dict]:
    """``repo``'s dvc.lock entries for the stages ``like``'s lock has, and ``like``'s: a grown
    repository against its from-scratch reference, stage for stage."""
    theirs = yaml.safe_load((like / "dvc.lock").read_text())["stages"]
    ours = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    return {name: ours.get(name) for name in theirs}, theirs


def reference_entries(repo: Path, request: pytest.FixtureRequest) -> tuple[dict, dict]:
    """``repo``'s dvc.lock entries and those of the same stages in ``built_repo`` (a from-scratch
    run of the tiny params, whose lock is `dvc repro`'s): a stage's entry hashes only its own deps, params keys and
    outs, so a repository of some of the tiny workloads, with the same data, has the same
    entries. Asked for at the end of a test (request.getfixturevalue), so the shared build, made
    once per run, stands in for a `dvc repro` of the test's own."""
    ours = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    reference = yaml.safe_load((request.getfixturevalue("built_repo") / "dvc.lock").read_text())["stages"]
    return ours, {name: reference.get(name) for name in ours}


def _full_build(repo: Path) -> None:
    # The pipeline in one process, as `make run` does, not 43 stage processes (the largest cost
    # of the test run otherwise), tracked by a real Prefect server, secured as `make serve`
    # secures it: every stage a subflow, with its artifacts. The server's database and what the
    # run printed stay beside the repository (built_run), for the tests of what Prefect
    # recorded; the lock is that of an untracked `dvc repro` (tests/test_dvc_repro.py's first
    # test), so one build serves both.
    from flows.service.server import server_env

    make_repo(repo)
    home = repo.parent / f"{repo.name}-prefect"
    shutil.rmtree(home, ignore_errors=True)  # half made by a worker that died
    home.mkdir()
    env = project_env(PREFECT_HOME=str(home), **server_env(free_port(), "cairn:test-secret"))
    server = start_server(home, env)
    try:
        result = run([sys.executable, "-m", "flows", "pipeline", "--jobs", "2"], repo, env=env)
    finally:
        stop(server)
    (home / "pipeline.log").write_text(result.stdout + result.stderr)


def _blobs_repro(repo: Path) -> None:
    make_repo(repo, only_workloads("blobs"))
    out = run(["dvc", "repro"], repo)
    assert '"files_reused": 0' in out.stdout + out.stderr  # the first run computes everything


# An empty Prefect database after its migrations (seed_database).
def _migrated_db(folder: Path) -> None:
    folder.mkdir(parents=True)
    run([str(Path(sys.executable).parent / "prefect"), "server", "database", "upgrade", "-y"], folder,
        env=project_env(PREFECT_HOME=str(folder)))  # fmt: skip


AHEAD = {"prefect_server": ("prefect-db", _migrated_db), "blobs_repo": ("blobs", _blobs_repro),
         "blobs_by_dvc_repro": ("blobs", _blobs_repro),
         "built_repo": ("built", _full_build), "built_run": ("built", _full_build)}  # fmt: skip


def pytest_collection_finish(session: pytest.Session) -> None:
    """Which shared repositories the selected tests need (build_ahead starts those only)."""
    needed = set().union(*(item.fixturenames for item in session.items)) if session.items else set()
    session.config.stash[BUILD_AHEAD] = list(dict.fromkeys(AHEAD[name] for name in AHEAD if name in needed))


# Seconds each file's tests took in a full `make test` (3 workers on 2 cores, the wall time of its
# tests summed, docs/benchmarks.md). xdist gives a worker a whole file at a time, in collection
# order (`--no-loadscope-reorder`; its default orders files by their number of tests): the longest
# go first, so the run does not end with one worker in a long file while the others idle. A file
# not listed is short and goes after these.
FILE_SECONDS = {
    "test_deployments.py": 308, "test_dvc_repro.py": 307, "test_remote.py": 168, "test_faults.py": 157,
    "test_pipeline_reruns.py": 101, "test_datum_integrity.py": 99, "test_fanout.py": 94,
    "test_service_serve.py": 92, "test_datums.py": 71, "test_score.py": 60, "test_ui.py": 56,
    "test_user_data.py": 52, "test_prefect_pipeline.py": 46, "test_train.py": 41, "test_lockfile.py": 39,
    "test_drift.py": 38, "test_service_arrival.py": 37, "test_security.py": 26, "test_cli_errors.py": 19,
    "test_failed_stage_outputs.py": 17, "test_parse_column.py": 12, "test_user_files.py": 5,
}  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first (FILE_SECONDS), each file's tests in their own order."""
    items.sort(key=lambda item: -FILE_SECONDS.get(item.path.name, 0))  # a stable sort


BUILD_AHEAD = pytest.StashKey[list]()
_FACTORY: list[pytest.TempPathFactory] = []  # the session's, for seed_database


@pytest.fixture(scope="session", autouse=True)
def build_ahead(request: pytest.FixtureRequest, tmp_path_factory) -> None:
    """Start building the shared repositories the selected tests need in the background at the
    start of the run: the tests that need none go on meanwhile, instead of a worker idling while
    another builds. (built_once's lock makes the first builder the only one; a test that needs
    one waits for it as before, and builds it again, failing with the reason, if this failed.)"""
    import threading

    _FACTORY[:] = [tmp_path_factory]
    wanted = request.config.stash.get(BUILD_AHEAD, [])

    def build() -> None:
        for name, builder in wanted:
            try:
                built_once(tmp_path_factory, name, builder)
            except BaseException:  # noqa: BLE001 - reported by the test that needs it
                return

    if wanted:
        tmp_path_factory.getbasetemp()  # made here, not raced for by the thread
        threading.Thread(target=build, daemon=True, name="build-ahead").start()


@pytest.fixture(scope="session")
def built_repo(tmp_path_factory) -> Path:
    """A tiny repo after a full run of every stage (the pipeline, tracked), built once per test
    run and copied once per pytest worker. Tests read it; a test that changes it takes
    ``built_copy``."""
    return copy_repo(built_once(tmp_path_factory, "built", _full_build), tmp_path_factory.mktemp("built") / "repo")


@pytest.fixture(scope="session")
def built_run(tmp_path_factory) -> Path:
    """What tracked built_repo's pipeline run, read only: the Prefect server's home (its
    prefect.db) and pipeline.log, what the run printed."""
    return built_once(tmp_path_factory, "built", _full_build).parent / "built-prefect"


@pytest.fixture
def built_copy(built_repo: Path, tmp_path: Path) -> Path:
    """A copy of ``built_repo`` of the test's own."""
    return copy_repo(built_repo, tmp_path / "repo")


@pytest.fixture(scope="session")
def blobs_by_dvc_repro(tmp_path_factory) -> Path:
    """The blobs workload alone after a full `dvc repro`, each stage its own process, one after the
    other (the build blobs_repo copies): read only, the reference the pipeline's lock entries are
    compared with, byte for byte."""
    return built_once(tmp_path_factory, "blobs", _blobs_repro)


@pytest.fixture
def blobs_repo(tmp_path_factory, tmp_path: Path) -> Path:
    """A repo of the blobs workload alone after a full `dvc repro` (ingest to score), a copy of
    the test's own: built once per test run."""
    return copy_repo(built_once(tmp_path_factory, "blobs", _blobs_repro), tmp_path / "grown")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_database(home: Path) -> None:
    """Give the server of ``home`` (its PREFECT_HOME) a copy of an empty database that Prefect's
    migrations have already run on, made once per test run: a server then starts in about 4 s of
    CPU instead of 10 (measured: `prefect server start` on an empty folder against a migrated
    one). The server still runs its migrations, which find nothing to do."""
    if _FACTORY and not (home / "prefect.db").exists():  # outside pytest (bench/), the server migrates its own
        template = built_once(_FACTORY[0], "prefect-db", _migrated_db)
        shutil.copy(template / "prefect.db", home / "prefect.db")


def start_server(home: Path, env: dict[str, str]) -> subprocess.Popen:
    """Prefect's server as `make serve` runs it (flows/service/prefect_server.py: `prefect server
    start`'s app, with cairn's Host check and IMMEDIATE SQLite writes) on ``env``'s port, its log
    in ``home``/server.log, once it answers. Without the Prefect command line's imports it
    answers after 5-6 s of CPU, where `prefect server start` took 7 (both without block
    registration, docs/benchmarks.md)."""
    if "PREFECT_SERVER_DATABASE_CONNECTION_URL" not in env:
        seed_database(Path(env["PREFECT_HOME"]))
    log = open(home / "server.log", "w")
    env = {"PREFECT_SERVER_API_HOST": "127.0.0.1"} | env
    proc = subprocess.Popen([sys.executable, "-m", "flows.service.prefect_server"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            httpx.get(f"{env['PREFECT_API_URL']}/health").raise_for_status()
            return proc
        except httpx.HTTPError:
            time.sleep(1)
    proc.kill()
    pytest.fail(f"prefect server did not start: {(home / 'server.log').read_text()[-2000:]}")


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """A real `prefect server start` on loopback with its own SQLite database, secured as
    `make serve` secures it (flows/service/server.py: auth string, CSRF, CORS); yields the environment
    that points a subprocess at it (its log is ``PREFECT_HOME``/server.log)."""
    from flows.service.server import server_env

    home = tmp_path_factory.mktemp("prefect-home")
    env = project_env(PREFECT_HOME=str(home), **server_env(free_port(), "cairn:test-secret"))
    proc = start_server(home, env)
    yield env
    stop(proc)


def stop(proc: subprocess.Popen) -> None:
    """Stop a server or worker: SIGTERM, and SIGKILL if it is still busy after 30 s (a worker
    finishes its flow runs first)."""
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)


def stop_worker(proc: subprocess.Popen) -> None:
    """Stop a Prefect process worker whose runs are over: SIGKILL. On SIGTERM or SIGINT `prefect
    worker start` (3.8) forwards the signal and waits: it had not exited 40 s later on an idle
    pool (measured), so stop() would wait out its 30 s for nothing."""
    proc.kill()
    proc.wait(30)


def api(env: dict[str, str]) -> httpx.Client:
    """An HTTP client of the server ``env`` points at, as Prefect's own client talks to it:
    the auth string, and a CSRF token fetched for this client."""
    import base64
    import uuid

    auth = base64.b64encode(env["PREFECT_API_AUTH_STRING"].encode()).decode()
    # Prefect's own client waits 60 s for an answer (PREFECT_API_REQUEST_TIMEOUT), not httpx's 5:
    # a server busy with a pipeline's flow runs on 2 shared cores can take longer than 5 s.
    client = httpx.Client(base_url=env["PREFECT_API_URL"] + "/", headers={"Authorization": f"Basic {auth}"},
                          timeout=60)  # fmt: skip
    me = str(uuid.uuid4())
    token = client.get("csrf-token", params={"client": me})
    if token.status_code == 200:
        client.headers.update({"Prefect-Csrf-Token": token.json()["token"], "Prefect-Csrf-Client": me})
    return client


def create_process_pool(env: dict[str, str], name: str, concurrency_limit: int | None = None) -> None:
    """`prefect work-pool create NAME --type process` (and `set-concurrency-limit`) through the
    API of the server ``env`` points at, as `make serve` makes its pool (flows/service/serve.py):
    each command is a Prefect process of 1.6-3.8 s of CPU. (tests/test_remote.py runs the command
    the README gives for a GPU machine.)"""
    from prefect.workers.process import ProcessWorker

    body = {"name": name, "type": "process", "base_job_template": ProcessWorker.get_default_base_job_template()}
    if concurrency_limit is not None:
        body["concurrency_limit"] = concurrency_limit
    api(env).post("work_pools/", json=body).raise_for_status()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with cairn's code and the tiny params.yaml, for running stages by their command line."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(tiny_params()))
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    shutil.copytree(ROOT / "steps", tmp_path / "steps")
    return tmp_path


def error_line(result: subprocess.CompletedProcess) -> str:
    """The one 'error: ...' line a failed command printed (and it printed exactly one)."""
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def clean_params(share: float, **settings) -> dict:
    """The clean section as the clean stage hands it to its step: at most ``share`` bad rows, the
    other ``settings`` as given or params' defaults."""
    return config.Clean(max_quarantined=share, **settings).model_dump()
