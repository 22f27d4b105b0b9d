"""dvc.lock survives a kill: DVC writes it atomically, and a broken one gets its last good copy back.

DVC rewrites dvc.lock in place after every stage (about 0.4 s for 80 KB of YAML here); a
process killed in that window leaves it empty or cut short, and every DVC command then fails
with "'./dvc.lock' validation failed". Two defences:

* ``atomic_dvc_writes`` makes DVC write its files by temp file, fsync and rename, so a kill
  leaves the old lock whole. The pipeline flow and the watcher turn it on in their process;
  ``make setup`` installs a startup hook (``install_dvc_hook``) that turns it on in every `dvc`
  command of the venv, `dvc repro` included.
* Every stage process and every pipeline run keeps a copy of the lock as it was when it started
  (DVC had just read it, so it was good). When the lock is broken anyway (a `dvc` from outside
  the venv was killed, a disk filled up), the hook, the pipeline flow, the watcher and
  `python -m flows recover` put that copy back and say so. A stage whose entry is lost that
  way is stale again and comes back from DVC's run-cache (saved before the lock is written)
  or runs again.

Two more changes make DVC's YAML cheaper wherever the first is on: ``fast_lock_updates`` (DVC
rewrites dvc.lock from its safe parse, not a round-trip one) and ``shared_yaml_parses`` (a text,
params.yaml above all, is parsed once, not once per stage and check). ``adapt_dvc`` turns on all
three.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import sysconfig
from pathlib import Path
from typing import Any

import yaml

from flows.storage.files import load_yaml, remove_leftovers, write_atomic
from steps import BadInput

LOCK = Path("dvc.lock")
GOOD = Path(".cairn") / "dvc.lock.good"


def problem(text: str) -> str | None:
    """Why ``text`` is not a usable dvc.lock, or None when it is."""
    if not text.strip():
        return "it is empty"
    try:
        data = load_yaml(text)
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
    if good.exists() and good.read_bytes() == data:  # kept already: no need to parse it
        return
    if problem(data.decode(errors="replace")) is None:
        write_atomic(good, data)


def stage_order(lock: Path = LOCK) -> list[str]:
    """The stage entries of ``lock`` in file order ([] when there is none or it is broken)."""
    text = lock.read_text() if lock.exists() else ""
    return [] if problem(text) else list(load_yaml(text)["stages"])


def order_stages(before: list[str], plan: list[str], lock: Path = LOCK) -> None:
    """Put ``lock``'s entries in the order `dvc repro` leaves them: those there before the run
    (``before``) keep their place, new ones follow in plan order. DVC appends an entry when it
    first commits a stage, so stages finishing in any order (the pipeline's waves) would
    otherwise give a lock that differs in bytes, not in content. Rewritten through DVC's own
    YAML round trip: every entry keeps its exact text."""
    current = stage_order(lock)
    new = [n for n in plan if n in current and n not in before]
    wanted = [n for n in before if n in current] + new + [n for n in current if n not in before and n not in new]
    if wanted == current:
        return
    from dvc.utils.serialize import modify_yaml

    adapt_dvc()
    with modify_yaml(str(lock)) as data:
        for name in wanted:
            data["stages"][name] = data["stages"].pop(name)


def recover(lock: Path = LOCK, good: Path = GOOD) -> bool:
    """Put the last good copy back when ``lock`` is broken; True when it did. Raises BadInput
    when the lock is broken and there is no good copy to put back."""
    if not lock.exists():
        return False
    why = problem(lock.read_text(errors="replace"))
    if why is None:
        return False
    if not good.exists() or problem(good.read_text(errors="replace")) is not None:
        raise BadInput(
            f"{lock} is unusable ({why}) and there is no good copy in {good}; "
            f"`git checkout {lock}` brings back the committed one"
        )
    write_atomic(lock, good.read_bytes())
    stages = len(load_yaml(good.read_text())["stages"])
    logging.getLogger("cairn").warning(
        "%s was unusable (%s: a run was killed while DVC wrote it); put back the last good copy from %s "
        "(%d stages); stages done after it come back from DVC's run-cache or run again",
        lock, why, good, stages,
    )  # fmt: skip
    return True


def atomic_dvc_writes() -> None:
    """From now on, this process's DVC writes dvc.lock, dvc.yaml and its other YAML/JSON/TOML
    files by temp file, fsync and rename instead of rewriting them in place."""
    from dvc.utils.serialize import _common, _json, _toml, _yaml

    in_place = _common._dump_data
    if getattr(in_place, "cairn_atomic", False):
        return

    def dump_atomic(path, data, dumper, fs=None, **dumper_args):
        if fs is not None and getattr(fs, "protocol", None) != "local":
            return in_place(path, data, dumper, fs=fs, **dumper_args)
        # Serialize in memory (dvc.lock is tens of KB), then the one atomic write cairn uses everywhere.
        text = io.StringIO()
        dumper(data, text, **dumper_args)
        write_atomic(Path(os.fspath(path)), text.getvalue())

    dump_atomic.cairn_atomic = True
    # Each serializer module imported the function by name: replace it everywhere.
    for module in (_common, _json, _toml, _yaml):
        module._dump_data = dump_atomic


def fast_lock_updates() -> None:
    """From now on, this process's DVC reads dvc.lock for an update (every commit of a stage
    rewrites it) with its safe loader instead of its round-trip one. The round trip keeps the
    comments and quoting a person wrote, and is pure Python: 1.21 s of CPU for a 161 KB lock,
    against 0.21 s (libyaml's parser; both YAML 1.2, so the same values). dvc.lock is DVC's own
    output, and DVC's dump of what the safe loader reads is the file, byte for byte (every
    lock left by a full test run, 432 of 432; tests/test_lockfile.py checks the project's)."""
    from dvc.utils.serialize import _yaml

    round_trip = _yaml.parse_yaml_for_update
    if getattr(round_trip, "cairn_fast", False):
        return

    def parse_for_update(text: str, path: str) -> Any:
        if os.path.basename(os.fspath(path)) == LOCK.name:
            return _yaml.parse_yaml(text, path)
        return round_trip(text, path)  # dvc.yaml and .dvc files: a person's, comments kept

    parse_for_update.cairn_fast = True  # type: ignore[attr-defined]
    # modify_yaml, which every dvc.lock rewrite goes through, looks the parser up at each call.
    _yaml.parse_yaml_for_update = parse_for_update


def shared_yaml_parses(keep: int = 4) -> None:
    """From now on, this process's DVC parses a YAML text it parsed before from a copy of that
    parse: params.yaml, parsed again for every stage DVC checks and four or five times for each
    stage it commits (10 ms each for the project's; a copy takes 0.24 ms). Keyed by the text, so
    an edited file is parsed anew; a copy, as DVC's callers may change what they get. The
    ``keep`` texts used last are kept."""
    import copy
    import threading

    from dvc.utils.serialize import _yaml

    parse = _yaml.parse_yaml
    if getattr(parse, "cairn_shared", False):
        return
    parsed: dict[tuple[str, str], Any] = {}
    guard = threading.Lock()  # the pipeline asks DVC from several threads

    def parse_yaml(text: str, path: str, typ: str = "safe") -> Any:
        # Not a round trip (its result carries the text's comments and layout), nor dvc.lock,
        # whose text changes with every rewrite: keeping it would only cost copies.
        if typ != "safe" or os.path.basename(os.fspath(path)) == LOCK.name:
            return parse(text, path, typ)
        key = (text, os.fspath(path))
        with guard:
            if key in parsed:
                parsed[key] = parsed.pop(key)  # the most recently used last
            else:
                if len(parsed) >= keep:
                    parsed.pop(next(iter(parsed)))  # the least recently used
                parsed[key] = parse(text, path, typ)
            return copy.deepcopy(parsed[key])

    parse_yaml.cairn_shared = True  # type: ignore[attr-defined]
    _yaml.parse_yaml = parse_yaml  # load_yaml, and so DVC's params reads, look it up at each call


def adapt_dvc() -> None:
    """cairn's changes to DVC, in this process: its writes are atomic (atomic_dvc_writes),
    dvc.lock is rewritten without a round-trip parse (fast_lock_updates), and a YAML text is
    parsed once (shared_yaml_parses)."""
    atomic_dvc_writes()
    fast_lock_updates()
    shared_yaml_parses()


def _repo_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / ".dvc").is_dir():
            return folder
    return None


def guard_dvc_command() -> None:
    """What the startup hook runs at the start of every `dvc` command: put back a broken
    dvc.lock (saying so on stderr), remove what a killed atomic write left, make writes atomic,
    and put the venv first on PATH so that `.venv/bin/dvc repro` runs each stage's `python` from
    the same venv without activating it."""
    venv_bin = os.path.dirname(sys.executable)
    if os.environ.get("PATH", "").split(os.pathsep)[0] != venv_bin:
        os.environ["PATH"] = os.pathsep.join([venv_bin, os.environ.get("PATH", "")])
    root = _repo_root(Path.cwd())
    try:
        if root is not None:
            remove_leftovers(root / LOCK)
            recover(root / LOCK, root / GOOD)
    except BadInput as err:
        print(f"cairn: {err}", file=sys.stderr)  # DVC's own error follows; nothing was changed
    adapt_dvc()


HOOK = "cairn-dvc-guard.pth"
# A .pth line that starts with "import" runs at every interpreter start of the venv: it costs
# one basename comparison unless the program is `dvc`.
HOOK_LINE = (
    "import os, sys; os.path.basename((sys.argv or [''])[0]) == 'dvc' "
    "and __import__('flows.runtime.lockfile', fromlist=['_']).guard_dvc_command()\n"
)


def install_dvc_hook() -> Path:
    """Install the startup hook into this interpreter's site-packages (`make setup` calls it)."""
    hook = Path(sysconfig.get_paths()["purelib"]) / HOOK
    write_atomic(hook, HOOK_LINE)
    return hook
