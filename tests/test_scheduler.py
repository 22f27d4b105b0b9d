"""The pipeline's scheduler (``Waves``) and ``python -m flows plan`` against an in-memory DVC.

``FakeDvc`` has the methods of the DVC adapter (flows/runtime/dvc_repo.py) that they use: a DAG, a
set of stale stages, a run-cache, and a record of what was removed, restored and committed, in
order. No subprocess, no Prefect server, no DVC repository: each test takes milliseconds. The
real DVC stays the judge in tests/test_prefect_pipeline.py and tests/test_dvc_repro.py, which
compare the pipeline's dvc.lock with `dvc repro`'s.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from flows.runtime import pipeline
from flows.runtime import plan as plan_module
from flows.runtime.pipeline import Waves
from steps.errors import BadInput, StageFailed

COMMAND = 'python -m flows "$DVC_STAGE"'


class FakeDvc:
    """An in-memory DVC: ``dag`` is {stage: [stages it depends on]} in plan order (what `dvc
    repro` would run first comes first); ``stale`` what DVC finds changed; ``cached`` what its
    run-cache can restore. Committing a stage makes the stages after it stale, as new outputs
    would. ``events`` records ('remove' | 'restore' | 'commit', stage) in order."""

    def __init__(self, dag: dict[str, list[str]], stale=(), cached=(), status=None):
        self.dag, self.stale, self.cached = dag, set(stale), set(cached)
        self._status = status or {}
        self.events: list[tuple[str, str]] = []
        self.lock: list[str] = []  # stages with a dvc.lock entry written
        self.pending: list[str] = []  # committed, entry not yet written (Dvc.write_lock)
        self.ordered: list[tuple[list[str], list[str]]] = []
        self.most_in_flight = 0  # most stages decided on (outputs removed) and not yet committed
        self.guard = threading.Lock()

    def _record(self, what: str, name: str) -> None:
        with self.guard:
            self.events.append((what, name))

    def done(self, what: str) -> list[str]:
        return [name for event, name in self.events if event == what]

    # the adapter's interface
    def addresses(self) -> list[str]:
        return list(self.dag)

    def plan(self, workloads: list[str] | None) -> list[str]:
        wanted = [n for n in self.dag if workloads is None or n.split("@")[-1] in workloads]
        closure: set[str] = set()
        todo = list(wanted)
        while todo:
            name = todo.pop()
            if name not in closure:
                closure.add(name)
                todo += self.dag[name]
        return [n for n in self.dag if n in closure]

    def upstream(self, name: str) -> list[str]:
        return list(self.dag[name])

    def command(self, name: str) -> str:
        return COMMAND

    def wdir(self, name: str) -> str:
        return "."

    def changed(self, name: str) -> bool:
        return name in self.stale

    def status(self, name: str) -> list:
        return self._status.get(name, [])

    def remove_outs(self, name: str) -> None:
        self._record("remove", name)
        self.most_in_flight = max(self.most_in_flight, len(self.done("remove")) - len(self.done("commit")))

    def restore(self, name: str, pull: bool) -> bool:
        if name not in self.cached:
            return False
        self._record("restore", name)
        return True

    def commit(self, name: str) -> None:
        assert threading.current_thread() is threading.main_thread(), "DVC is called from the coordinator only"
        self._record("commit", name)
        self.stale.discard(name)
        self.stale |= {n for n, ups in self.dag.items() if name in ups}  # new outputs: downstream is stale
        if name not in self.pending:
            self.pending.append(name)

    def write_lock(self) -> None:
        assert threading.current_thread() is threading.main_thread(), "DVC is called from the coordinator only"
        if self.pending:
            self._record("write", ",".join(self.pending))
        self.lock += [n for n in self.pending if n not in self.lock]
        self.pending = []

    def fetch_run_cache(self) -> bool:
        return False

    def lock_order(self) -> list[str]:
        return list(self.lock)

    def order_lock(self, before: list[str], plan: list[str]) -> None:
        self.ordered.append((before, plan))


class Runner:
    """The function that runs a stage locally: records starts and ends, how many ran at once,
    and fails the stages in ``fail`` with a one-line error (or raises the exception given). A
    stage first waits (5 s at most) until ``until[stage]()`` holds, or, with ``together``, for
    that many stages to reach the same point (a barrier), so a test does not depend on how fast
    threads start on a loaded machine; then it sleeps ``seconds[stage]`` (``default``)."""

    def __init__(self, seconds=None, fail=None, default=0.0, until=None, together: int = 0):
        self.seconds, self.fail, self.default = seconds or {}, fail or {}, default
        self.until = until or {}
        self.barrier = threading.Barrier(together) if together else None
        self.log: list[tuple[str, str]] = []
        self.running: set[str] = set()
        self.overlaps: list[set[str]] = []  # who was running whenever a stage started
        self.guard = threading.Lock()

    def __call__(self, argv: list[str]) -> dict:
        (name,) = argv
        with self.guard:
            self.running.add(name)
            self.overlaps.append(set(self.running))
            self.log.append(("start", name))
        if self.barrier:
            self.barrier.wait(timeout=5)
        ready = self.until.get(name, lambda: True)
        deadline = time.monotonic() + 5
        while not ready() and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(self.seconds.get(name, self.default))
        with self.guard:
            self.running.discard(name)
            self.log.append(("end", name))
        if name in self.fail:
            failure = self.fail[name]
            raise failure if isinstance(failure, BaseException) else BadInput(failure)
        return {}

    def started(self) -> list[str]:
        return [name for event, name in self.log if event == "start"]

    def most_at_once(self, which=lambda name: True) -> int:
        return max((len([n for n in seen if which(n)]) for seen in self.overlaps), default=0)


@pytest.fixture(autouse=True)
def _not_exclusive(monkeypatch):
    """Which model a workload trains is params.yaml's business: here no stage is exclusive
    unless a test says so."""
    monkeypatch.setattr(pipeline, "exclusive", lambda name: False)


CHAIN = {"ingest@a": [], "clean@a": ["ingest@a"], "split@a": ["clean@a"], "ingest@b": [], "clean@b": ["ingest@b"]}


def waves(dvc: FakeDvc, runner: Runner, jobs: int = 2, plan: list[str] | None = None) -> dict[str, str]:
    return Waves(dvc, plan or dvc.plan(None), {}, jobs, runner).run()


def test_only_stale_stages_run_and_fresh_ones_are_skipped():
    dvc, runner = FakeDvc(CHAIN, stale={"clean@a"}), Runner()
    outcome = waves(dvc, runner)
    assert outcome == {"ingest@a": "skipped", "clean@a": "ran", "split@a": "ran", "ingest@b": "skipped",
                       "clean@b": "skipped"}  # fmt: skip
    assert list(outcome) == list(CHAIN)  # in plan order, whatever order they finished in
    assert sorted(runner.started()) == ["clean@a", "split@a"]
    assert dvc.done("commit") == ["clean@a", "split@a"]
    assert dvc.done("remove") == ["clean@a", "split@a"]  # outputs go first, as in `dvc repro`
    assert dvc.ordered == [([], list(CHAIN))]  # new lock entries put in plan order


def test_nothing_stale_runs_nothing():
    dvc, runner = FakeDvc(CHAIN), Runner()
    assert set(waves(dvc, runner).values()) == {"skipped"}
    assert runner.log == [] and dvc.events == []


def test_a_stage_starts_only_after_its_upstream_stages_are_committed():
    dag = {"ingest@a": [], "ingest@b": [], "clean@a": ["ingest@a", "ingest@b"], "split@a": ["clean@a"]}
    dvc = FakeDvc(dag, stale={"ingest@a", "ingest@b"})
    both = lambda: {"ingest@a", "ingest@b"} <= set(runner.started())  # noqa: E731
    runner = Runner(seconds={"ingest@a": 0.02}, until={"ingest@a": both, "ingest@b": both})
    waves(dvc, runner, jobs=4)
    order = runner.log
    for name, ups in dag.items():
        for up in ups:
            assert order.index(("end", up)) < order.index(("start", name)), (up, name)
            assert dvc.events.index(("commit", up)) < dvc.events.index(("commit", name))
    assert runner.most_at_once() == 2  # the two ingests, together


def test_at_most_jobs_local_stages_run_at_once():
    dag = {f"ingest@w{i}": [] for i in range(6)}
    for jobs in (1, 2, 3):
        dvc, runner = FakeDvc(dag, stale=dag), Runner(default=0.005, together=jobs)
        outcome = waves(dvc, runner, jobs=jobs)
        assert set(outcome.values()) == {"ran"}
        assert runner.most_at_once() == jobs, jobs
        assert dvc.most_in_flight == jobs, jobs  # the scheduler, not only its thread pool, holds the line


def test_a_failing_stage_stops_new_starts_lets_running_ones_finish_and_raises_its_error():
    dag = {"ingest@a": [], "ingest@b": [], "clean@a": ["ingest@a"], "ingest@c": []}
    dvc = FakeDvc(dag, stale=dag)
    # ingest@a is still running when the scheduler has taken in ingest@b's failure
    runner = Runner(fail={"ingest@b": "data/b/raw: no such file"}, until={"ingest@a": lambda: scheduler.failed})
    scheduler = Waves(dvc, dvc.plan(None), {}, 2, runner)
    with pytest.raises(StageFailed) as failed:
        scheduler.run()
    assert str(failed.value) == "ingest@b failed: data/b/raw: no such file"
    assert "\n" not in str(failed.value)
    assert sorted(runner.started()) == ["ingest@a", "ingest@b"]  # clean@a and ingest@c never started
    assert ("end", "ingest@a") in runner.log  # the running one finished ...
    assert dvc.done("commit") == ["ingest@a"]  # ... and was committed; the failed one was not
    assert dvc.ordered  # the lock is still put in order


def test_an_unexpected_error_is_that_stages_failure_and_the_others_are_still_committed(caplog):
    dag = {"ingest@a": [], "ingest@b": [], "clean@a": ["ingest@a"], "ingest@c": []}
    dvc = FakeDvc(dag, stale=dag)
    # Not a CairnError: a library or OS error from inside the stage, while ingest@a still runs
    boom = PermissionError(13, "Permission denied", "data/b/ingest/x.parquet")
    runner = Runner(fail={"ingest@b": boom}, until={"ingest@a": lambda: scheduler.failed})
    scheduler = Waves(dvc, dvc.plan(None), {}, 2, runner)
    with caplog.at_level("ERROR", logger="cairn"), pytest.raises(StageFailed) as failed:
        scheduler.run()
    assert str(failed.value) == "ingest@b failed: PermissionError: [Errno 13] Permission denied: " \
        "'data/b/ingest/x.parquet'"  # fmt: skip
    assert ("end", "ingest@a") in runner.log
    assert dvc.done("commit") == ["ingest@a"]  # the stage beside it was committed
    assert sorted(runner.started()) == ["ingest@a", "ingest@b"]  # nothing new started
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert [r.getMessage() for r in errors] == [f"{failed.value}"]  # one line ...
    assert errors[0].exc_info and errors[0].exc_info[1] is boom  # ... with the traceback, once
    assert dvc.ordered


def test_an_error_while_deciding_or_restoring_a_stage_is_that_stages_failure():
    class Flaky(FakeDvc):
        def restore(self, name, pull):
            if name == "ingest@b":
                raise ConnectionError("remote storage: connection reset")
            return super().restore(name, pull)

    dag = {"ingest@a": [], "ingest@b": [], "clean@b": ["ingest@b"]}
    dvc = Flaky(dag, stale=dag)
    runner = Runner(default=0.01)
    with pytest.raises(StageFailed, match=r"^ingest@b failed: ConnectionError: remote storage: connection reset$"):
        Waves(dvc, dvc.plan(None), {}, 2, runner).run()
    assert runner.started() == ["ingest@a"]  # started before ingest@b was looked at, and finished ...
    assert dvc.done("commit") == ["ingest@a"]  # ... and committed


def test_after_a_failure_a_stage_on_a_work_pool_is_not_waited_for(monkeypatch):
    released = threading.Event()
    monkeypatch.setattr(pipeline, "hand_over", lambda dvc, name, pool: {"stage": name})
    # the worker takes "hours": it only ends when the test releases it (or after 30 s)
    monkeypatch.setattr(pipeline, "await_worker", lambda pool, parameters, timeout: released.wait(30))
    monkeypatch.setattr(pipeline, "bring_back", lambda dvc, name: None)
    monkeypatch.setattr(pipeline.config, "load", lambda: type("P", (), {"deploy": type("D", (), {
        "worker_timeout_seconds": 21600})()})())  # fmt: skip
    dag = {"train@gpu": [], "ingest@a": [], "ingest@b": []}
    dvc = FakeDvc(dag, stale=dag)
    runner = Runner(fail={"ingest@b": RuntimeError("CUDA error: out of memory")}, default=0.01)
    scheduler = Waves(dvc, dvc.plan(None), {"train@gpu": "gpu"}, 2, runner)
    started = time.monotonic()
    try:
        with pytest.raises(StageFailed, match="^ingest@b failed: RuntimeError: CUDA error: out of memory$"):
            scheduler.run()
        elapsed = time.monotonic() - started
    finally:
        released.set()
    assert elapsed < 10, elapsed  # not the worker's time (30 s here, 6 h by default)
    assert dvc.done("commit") == ["ingest@a"]  # the local stage beside it was committed
    assert scheduler.outcome["train@gpu"] == "left running"


def test_a_stage_on_a_work_pool_that_ends_while_local_ones_run_is_committed(monkeypatch):
    monkeypatch.setattr(pipeline, "hand_over", lambda dvc, name, pool: {"stage": name})
    monkeypatch.setattr(pipeline, "await_worker", lambda pool, parameters, timeout: None)
    monkeypatch.setattr(pipeline, "bring_back", lambda dvc, name: None)
    monkeypatch.setattr(pipeline.config, "load", lambda: type("P", (), {"deploy": type("D", (), {
        "worker_timeout_seconds": 60})()})())  # fmt: skip
    dag = {"train@gpu": [], "ingest@a": [], "ingest@b": []}
    dvc = FakeDvc(dag, stale=dag)
    worker_done = lambda: ("commit", "train@gpu") in dvc.events  # noqa: E731
    runner = Runner(fail={"ingest@b": "data/b/raw: no such file"}, until={"ingest@a": worker_done,
                                                                          "ingest@b": worker_done})  # fmt: skip
    with pytest.raises(StageFailed):
        Waves(dvc, dvc.plan(None), {"train@gpu": "gpu"}, 2, runner).run()
    assert sorted(dvc.done("commit")) == ["ingest@a", "train@gpu"]


def test_lock_entries_are_written_together_and_before_a_stage_that_reads_the_lock():
    dag = {"ingest@a": [], "clean@a": ["ingest@a"], "ingest@b": [], "train@a": ["clean@a"],
           "publish@a": ["train@a", "ingest@b"], "score@a": ["publish@a"]}  # fmt: skip
    dvc = FakeDvc(dag, stale={"ingest@a", "ingest@b"})
    seen: dict[str, list[str]] = {}
    runner = Runner(until={"publish@a": lambda: bool(seen.setdefault("publish@a", list(dvc.lock)))})
    waves(dvc, runner)
    assert set(seen["publish@a"]) == {"ingest@a", "clean@a", "ingest@b", "train@a"}  # on disk as it starts
    writes = dvc.done("write")
    assert len(writes) == 2  # before publish, and at the end: not one rewrite per stage
    assert writes[-1] == "publish@a,score@a" and sorted(dvc.lock) == sorted(dag)


def test_stages_committed_before_a_failure_reach_the_lock():
    dvc = FakeDvc(CHAIN, stale={"ingest@a", "ingest@b"})
    with pytest.raises(StageFailed):
        waves(dvc, Runner(fail={"clean@b": "clean@b: bad"}), jobs=1)
    assert dvc.pending == [] and {"ingest@a", "clean@a", "split@a", "ingest@b"} <= set(dvc.lock)


def test_a_stage_restored_from_the_run_cache_is_not_run():
    dvc, runner = FakeDvc(CHAIN, stale={"ingest@a"}, cached={"ingest@a", "split@a"}), Runner()
    outcome = waves(dvc, runner)
    assert outcome["ingest@a"] == "restored" and outcome["split@a"] == "restored" and outcome["clean@a"] == "ran"
    assert runner.started() == ["clean@a"]
    assert dvc.events[:3] == [("remove", "ingest@a"), ("restore", "ingest@a"), ("commit", "ingest@a")]
    assert dvc.done("commit") == ["ingest@a", "clean@a", "split@a"]


def test_exclusive_stages_never_overlap(monkeypatch):
    monkeypatch.setattr(pipeline, "exclusive", lambda name: name.startswith(("train@", "publish@")))
    dag = {"train@a": [], "train@b": [], "train@c": [], "ingest@a": [], "ingest@b": [], "publish@a": ["train@a"]}
    # the first wave (train@a and the ingests) waits until all three have started
    first = lambda: {"train@a", "ingest@a", "ingest@b"} <= set(runner.started())  # noqa: E731
    runner = Runner(default=0.005, until=dict.fromkeys(("train@a", "ingest@a", "ingest@b"), first))
    outcome = waves(FakeDvc(dag, stale=dag), runner, jobs=4)
    assert set(outcome.values()) == {"ran"}
    assert runner.most_at_once(pipeline.exclusive) == 1
    assert runner.most_at_once() >= 2  # the others still run beside them


def test_each_local_stage_runs_on_a_fresh_thread_that_ends_with_it():
    """No pooled stage threads: a thread that ran torch keeps an OpenMP team while it lives, and
    two such teams made libgomp sleep at its barriers, a torch fit 2.2x slower
    (flows/runtime/pipeline.py: _on_thread; bench/openmp_teams.py)."""
    threads: dict[str, threading.Thread] = {}
    inner = Runner()

    def runner(argv: list[str]) -> dict:
        threads[argv[0]] = threading.current_thread()
        return inner(argv)

    waves(FakeDvc(CHAIN, stale=set(CHAIN)), runner, jobs=2)
    assert set(threads) == set(CHAIN)
    assert len(set(map(id, threads.values()))) == len(CHAIN)  # one thread per stage
    deadline = time.monotonic() + 5
    while any(t.is_alive() for t in threads.values()) and time.monotonic() < deadline:
        time.sleep(0.01)  # a thread ends just after it hands back its stage's result
    assert not any(t.is_alive() for t in threads.values())
    assert threading.main_thread() not in threads.values()


def test_a_stage_own_process_picks_runs_apart_and_takes_no_turn_of_the_exclusive_ones(monkeypatch):
    """A big torch fit runs through ``run_apart`` (a child process, flows/runtime/pipeline.py:
    run_apart), not in this process: it holds none of this process's torch state, so an
    exclusive fit here starts beside it. Without ``run_apart`` (a tracked run) nothing is apart."""
    dag = {"split@a": [], "train@a": ["split@a"], "train@b": ["split@a"]}
    monkeypatch.setattr(pipeline, "own_process", lambda name: name == "train@a")
    monkeypatch.setattr(pipeline, "exclusive", lambda name: name.startswith("train@"))
    both = lambda: {"train@a", "train@b"} <= set(runner.started())  # noqa: E731
    runner = Runner(until={"train@a": both, "train@b": both})
    outcome = Waves(FakeDvc(dag, stale=set(dag)), list(dag), {}, 2, runner, run_apart=runner).run()
    assert outcome == dict.fromkeys(dag, "ran")
    assert runner.most_at_once(lambda name: name.startswith("train@")) == 2  # side by side
    inside = Runner()
    Waves(FakeDvc(dag, stale=set(dag)), list(dag), {}, 2, inside).run()
    assert inside.most_at_once(lambda name: name.startswith("train@")) == 1  # both exclusive here


def test_a_child_process_that_fails_is_its_stages_one_line_error(tmp_path, monkeypatch):
    """run_apart runs `python -m flows <address>`; a refusal comes back as the child's one-line
    error, not a traceback."""
    monkeypatch.chdir(tmp_path)  # no params.yaml here
    with pytest.raises(Exception) as refused:
        pipeline.run_apart(["train@nowhere"])
    assert "params.yaml" in str(refused.value) and "Traceback" not in str(refused.value), refused.value


def test_a_stage_that_is_not_a_flows_command_is_refused():
    class Other(FakeDvc):
        def command(self, name):
            return "python train.py"

    with pytest.raises(pipeline.UsageError, match="pipeline: stage 'ingest@a' runs 'python train.py'; expected"):
        waves(Other({"ingest@a": []}, stale={"ingest@a"}), Runner())


def test_plan_rows_say_what_runs_what_may_run_and_why(monkeypatch, tmp_path: Path):
    dag = {"ingest@a": [], "clean@a": ["ingest@a"], "split@a": ["clean@a"], "train@a": ["split@a"],
           "ingest@b": [], "clean@b": ["ingest@b"]}  # fmt: skip
    status = {"ingest@a": [{"changed deps": {"data/a/raw": "modified"}}],
              "train@a": [{"changed deps": {"params.yaml": {"workloads.a.model.epochs": "modified"}}}]}  # fmt: skip
    dvc = FakeDvc(dag, stale={"ingest@a", "train@a"}, status=status)
    timings = tmp_path / "timings.json"
    timings.write_text('{"ingest@a": 1.5, "train@a": 12.0}')
    monkeypatch.setattr(plan_module, "TIMINGS", timings)
    monkeypatch.setattr(plan_module, "ingest_files", lambda workload: {"compute": 2, "reuse": 5})
    rows = plan_module.plan(None, dvc)
    assert rows == [
        {"stage": "ingest@a", "will": "run", "why": ["dep data/a/raw modified"], "files": {"compute": 2, "reuse": 5},
         "last_seconds": 1.5},
        {"stage": "clean@a", "will": "run if", "why": ["ingest@a changes its outputs"],
         "partitions": {"compute": 2, "reuse": 5}, "last_seconds": None},
        {"stage": "split@a", "will": "run if", "why": ["clean@a changes its outputs"],
         "partitions": {"compute": 2, "reuse": 5}, "last_seconds": None},
        {"stage": "train@a", "will": "run", "why": ["param workloads.a.model.epochs modified"], "last_seconds": 12.0},
    ]  # fmt: skip
    assert dvc.events == []  # planning changes nothing
    assert plan_module.plan(["b"], dvc) == []
    assert "Nothing to run" in plan_module.render([])
    assert "2 stage(s) will run (about 14 s" in plan_module.render(rows)
