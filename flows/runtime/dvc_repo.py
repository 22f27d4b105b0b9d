"""The one adapter over DVC's Python API: every call cairn makes into DVC in-process goes through
``Dvc``, which speaks in stage addresses ('train@iris'), never in DVC's Stage objects.

The pipeline's scheduler (flows/runtime/pipeline.py: ``Waves``), ``python -m flows plan``
(flows/runtime/plan.py), the coordinator side of worker pools (flows/runtime/workers.py) and the
watcher (flows/service/deployments.py) take a ``Dvc``; tests pass an in-memory fake with the same
methods (tests/test_scheduler.py) and run in milliseconds. DVC's command line (`dvc repro`,
`dvc push` on a worker) is not this module's: those are subprocesses.

Two uses of DVC's internals stay in flows/runtime/lockfile.py, because they are about the
dvc.lock file rather than the repository: ``adapt_dvc`` patches DVC's serializer so every DVC
write is atomic (``dvc.utils.serialize._common._dump_data``) and its YAML is parsed less
(``_yaml.parse_yaml_for_update`` for dvc.lock, ``_yaml.parse_yaml``), and ``order_stages``
rewrites the lock's entry order through DVC's own ``modify_yaml``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from flows.runtime import lockfile
from flows.tracking import log
from steps.errors import Busy


class Dvc:
    """A DVC repository, opened by ``Dvc.open`` (or ``Dvc.reading``), or wrapping a ``dvc.repo.Repo``.
    (The module is not called dvc.py: Prefect, loading a flow by its file, puts its folder on
    sys.path, where a dvc.py would shadow DVC's own package.)"""

    def __init__(self, repo: Any):
        self.repo = repo
        self._graph: Any = None
        self._by_address: dict[str, Any] = {}
        self._unwritten: dict[str, Any] = {}  # committed stages whose dvc.lock entries wait (commit)

    @classmethod
    @contextlib.contextmanager
    def open(cls, what: str) -> Iterator[Dvc]:
        """The DVC repository of the working directory, locked for the block (after putting back a
        good dvc.lock if a kill broke it), with DVC's writes made atomic. Another run holding the
        lock is a one-line Busy error: runs from deployments queue on the work pool's concurrency
        limit of 1 instead."""
        from dvc.lock import LockError
        from dvc.repo import Repo, lock_repo

        lockfile.recover()
        lockfile.adapt_dvc()
        try:
            with Repo(".") as repo, lock_repo(repo):
                lockfile.snapshot()
                dvc = cls(repo)
                try:
                    yield dvc
                finally:
                    dvc.write_lock()  # what was committed reaches dvc.lock, whatever stopped the block
        except LockError:
            raise Busy(
                f"{what}: another DVC command or pipeline run holds the lock on this checkout (.dvc/tmp/lock); "
                "wait for it to finish, or run in a separate clone that shares the DVC remote"
            ) from None

    @classmethod
    @contextlib.contextmanager
    def reading(cls) -> Iterator[Dvc]:
        """The DVC repository of the working directory under DVC's lock, as `dvc status` takes it
        (DVC reads stage status under its lock): nothing recovered, nothing written."""
        from dvc.repo import Repo, lock_repo

        with Repo(".") as repo, lock_repo(repo):
            yield cls(repo)

    # The DAG -----------------------------------------------------------------------------

    @property
    def graph(self) -> Any:
        """DVC's active graph (frozen stages cut from their dependencies), read once: the stages
        the rest of this object speaks of are those of that one reading, as in `dvc repro`."""
        if self._graph is None:
            from dvc.repo.reproduce import get_active_graph

            self._graph = get_active_graph(self.repo.index.graph)
            self._by_address = {s.addressing: s for s in self._graph}
        return self._graph

    def _stage(self, address: str) -> Any:
        self.graph  # noqa: B018 (reads the graph once)
        return self._by_address[address]

    def addresses(self) -> list[str]:
        """Every stage of the active graph."""
        return [s.addressing for s in self.graph]

    def stages(self) -> list[str]:
        """Every stage of dvc.yaml, in DVC's index order."""
        return [s.addressing for s in self.repo.index.stages]

    def plan(self, workloads: list[str] | None) -> list[str]:
        """The stages of ``workloads`` (None: all) and everything upstream, in the order `dvc repro`
        would take them."""
        from dvc.repo.reproduce import plan_repro

        targets = [s for s in self.graph if workloads is None or s.addressing.split("@")[-1] in workloads]
        return [s.addressing for s in plan_repro(self.graph, targets)]

    def upstream(self, address: str) -> list[str]:
        """The stages ``address`` depends on directly (DVC's edges point to dependencies)."""
        return [s.addressing for s in self.graph.successors(self._stage(address))]

    def command(self, address: str) -> str:
        return self._stage(address).cmd

    def wdir(self, address: str) -> str:
        return self._stage(address).wdir

    def dep_paths(self, address: str) -> list[str]:
        """``address``'s dependencies as dvc.yaml names them."""
        return [str(d.def_path) for d in self._stage(address).deps]

    def dep_status(self, address: str, path: str) -> dict[str, str]:
        """DVC's status of ``address``'s dependency ``path`` (as dvc.yaml names it): {file: 'new' |
        'modified' | 'deleted'}, {} when it is unchanged or no dependency of the stage."""
        stage = next(s for s in self.repo.index.stages if s.addressing == address)
        out: dict[str, str] = {}
        for dep in stage.deps:
            if dep.def_path == path:
                out.update(dep.status())
        return out

    # A stage's state ---------------------------------------------------------------------

    def changed(self, address: str) -> bool:
        """Whether DVC finds ``address`` stale (a dep, param, output or its command changed)."""
        return self._stage(address).changed()

    def status(self, address: str) -> list:
        """DVC's status entries of ``address`` (`dvc status`), [] when it is up to date."""
        return self._stage(address).status().get(address, [])

    def remove_outs(self, address: str) -> None:
        """Remove ``address``'s outputs, as `dvc repro` does before it runs or restores a stage."""
        self._stage(address).remove_outs(ignore_remove=False, force=False)

    def restore(self, address: str, pull: bool) -> bool:
        """Restore ``address``'s outputs from DVC's run-cache (fetching the data from the remote
        when ``pull``); False when the run-cache has no entry for its inputs."""
        from dvc.stage.cache import RunCacheNotFoundError

        stage = self._stage(address)
        try:
            self.repo.stage_cache.restore(stage, pull=pull)
        except RunCacheNotFoundError:
            return False
        except TypeError:
            # DVC saves a run-cache entry by creating its folder, then moving the entry file in:
            # a kill between the two leaves an empty folder, on which DVC's restore raises
            # TypeError (it joins the folder with the newest of no files: None). An empty folder
            # holds nothing to restore: it goes, and the stage is a miss. (A half-written temp
            # file in such a folder DVC itself reads as corrupt, removes and misses.)
            if not self._drop_empty_run_cache_folders():
                raise
            return False
        return True

    def _drop_empty_run_cache_folders(self) -> list[Path]:
        """Remove the run-cache entry folders that hold no entry; the ones removed."""
        runs = Path(self.repo.stage_cache.cache_dir)
        empty = [f for f in runs.glob("*/*") if f.is_dir() and not any(f.iterdir())] if runs.is_dir() else []
        for folder in empty:
            log().warning("run-cache: %s is empty (a run killed while DVC saved it): removed", folder)
            folder.rmdir()
        return empty

    def commit(self, address: str) -> None:
        """`dvc commit --force` ``address``: its outputs into DVC's cache and its run-cache entry
        now, as `dvc repro` writes them; its dvc.lock entry at the next ``write_lock`` (at the
        latest when the repository is closed). Each rewrite of dvc.lock parses and dumps the whole
        file (about a second for 51 stages on 2 cores), so a run writes the entries of the stages
        done since the last write together. A run killed before that write loses nothing: the
        next run restores those stages from the run-cache."""
        stage = self._stage(address)
        stage.save()  # hashes deps and outs, saves the run-cache entry
        stage.commit(relink=True)
        self._unwritten[address] = stage

    def write_lock(self) -> None:
        """Write the dvc.lock entries of the stages committed since the last write, as one
        rewrite. The lock as it is before DVC rewrites it is kept first (lockfile.snapshot)."""
        if not self._unwritten:
            return
        lockfile.snapshot()
        by_file: dict[str, list] = {}
        for stage in self._unwritten.values():
            by_file.setdefault(stage.dvcfile.path, []).append(stage)
        for stages in by_file.values():
            stages[0].dvcfile.dump_stages(stages, update_pipeline=False)
        self._unwritten.clear()

    def lock_order(self) -> list[str]:
        """dvc.lock's stage entries in file order."""
        return lockfile.stage_order()

    def order_lock(self, before: list[str], plan: list[str]) -> None:
        """Put dvc.lock's entries in the order `dvc repro` leaves them (lockfile.order_stages)."""
        lockfile.order_stages(before, plan)

    # The remote --------------------------------------------------------------------------

    @property
    def root(self) -> str:
        return self.repo.root_dir

    def has_remote(self) -> bool:
        """Whether the project has a default DVC remote."""
        return bool(self.repo.config["core"].get("remote"))

    def fetch_run_cache(self) -> bool:
        """Fetch the run-cache entries (not the data) of the default DVC remote, if there is one, so
        stages that workers reproduced restore here without running. True when there is a remote."""
        if not self.has_remote():
            return False
        try:
            self.repo.stage_cache.pull(None)
        except Exception as err:  # an unreachable remote must not stop a local run
            log().warning("pipeline: could not fetch DVC's run-cache from the remote (%s); stages run here", err)
            return False
        return True

    def pull_run_cache(self) -> None:
        """Fetch the run-cache entries of the default DVC remote; its errors are raised."""
        self.repo.stage_cache.pull(None)

    def push(self, addresses: list[str]) -> int:
        """Push the outputs of ``addresses`` to the default DVC remote."""
        return self.repo.push(targets=addresses)


def transient_errors() -> tuple[type, ...]:
    """DVC's own errors: worth retrying a transfer with the remote after."""
    from dvc.exceptions import DvcException

    return (DvcException,)


def no_run_cache_entry(err: BaseException) -> bool:
    """Whether ``err`` is DVC saying its run-cache has no entry: an answer, not a fault."""
    from dvc.stage.cache import RunCacheNotFoundError

    return isinstance(err, RunCacheNotFoundError)
