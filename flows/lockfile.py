"""dvc.lock survives a kill: the last good copy is kept and put back when DVC's is broken.

DVC rewrites dvc.lock in place after every stage (about 0.4 s for 80 KB of YAML here); a
process killed in that window leaves it empty or cut short, and every DVC command then fails
with "'./dvc.lock' validation failed". Every stage process and every pipeline run keeps a copy
of the lock as it was when it started (DVC had just read it, so it was good), and the pipeline
flow, the watcher and `python -m flows recover` (which `make run` calls before `dvc repro`) put
that copy back when the lock is broken. A stage whose entry is lost that way is stale again and
comes back from DVC's run-cache (saved before the lock is written) or runs again.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from flows.common import InputError, log, write_atomic

LOCK = Path("dvc.lock")
GOOD = Path(".cairn") / "dvc.lock.good"


def problem(text: str) -> str | None:
    """Why ``text`` is not a usable dvc.lock, or None when it is."""
    if not text.strip():
        return "it is empty"
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        return f"it is not valid YAML ({str(err).splitlines()[0]})"
    if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
        return "it has no 'stages' mapping"
    return None


def snapshot(lock: Path = LOCK, good: Path = GOOD) -> None:
    """Keep a copy of ``lock`` if it is usable and differs from the copy kept."""
    if not lock.exists():
        return
    data = lock.read_bytes()
    if problem(data.decode(errors="replace")) is None and (not good.exists() or good.read_bytes() != data):
        write_atomic(good, data)


def recover(lock: Path = LOCK, good: Path = GOOD) -> bool:
    """Put the last good copy back when ``lock`` is broken; True when it did. Raises InputError
    when the lock is broken and there is no good copy to put back."""
    if not lock.exists():
        return False
    why = problem(lock.read_text(errors="replace"))
    if why is None:
        return False
    if not good.exists() or problem(good.read_text(errors="replace")) is not None:
        raise InputError(
            f"{lock} is unusable ({why}) and there is no good copy in {good}; "
            f"`git checkout {lock}` brings back the committed one"
        )
    write_atomic(lock, good.read_bytes())
    stages = len(yaml.safe_load(good.read_text())["stages"])
    log().warning(
        "%s was unusable (%s: a run was killed while DVC wrote it); put back the last good copy from %s "
        "(%d stages); stages done after it come back from DVC's run-cache or run again",
        lock, why, good, stages,
    )  # fmt: skip
    return True
