"""Writes that survive a kill: an output is either its old self (or absent) or complete.

Standard library only: DVC's startup hook (flows/runtime/lockfile.py) imports this in every `dvc`
command, where pandas or pyarrow would cost time for nothing.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from steps.errors import NoSpace


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp/mkdtemp make private (0600/0700) files; outputs get what the user's umask says.
UMASK = _umask()


def remove_leftovers(path: Path) -> list[Path]:
    """Remove the temp files and folders (``.<name>.*``) that a killed write of ``path`` left
    beside it. Only for paths one process writes at a time (a stage's own outputs)."""
    found = sorted(path.parent.glob(f".{path.name}.*")) if path.parent.exists() else []
    for leftover in found:
        shutil.rmtree(leftover) if leftover.is_dir() and not leftover.is_symlink() else leftover.unlink()
    if found:
        logging.getLogger("cairn").info("removed %d leftover(s) of an interrupted write: %s", len(found),
                                        ", ".join(p.name for p in found))  # fmt: skip
    return found


NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


@contextlib.contextmanager
def _space_for(path: Path) -> Iterator[None]:
    """Turn a full disk while writing ``path`` into NoSpace, one line that names the output."""
    try:
        yield
    except OSError as err:
        if err.errno not in NO_SPACE or isinstance(err, NoSpace):
            raise
        message = (f"no space left on the device of {path.parent} while writing {path.name} (the old output, "
                   "if any, is untouched); free space and run again")  # fmt: skip
        raise NoSpace(err.errno, message) from None


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write ``path`` so that it is either absent/old or complete: temp file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with _space_for(path):
            os.fchmod(fd, 0o666 & ~UMASK)
            with os.fdopen(fd, "wb") as f:
                f.write(data.encode() if isinstance(data, str) else data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def staged(path: Path) -> Iterator[Path]:
    """A temp file beside ``path`` for an output written in steps (a Parquet file partition by
    partition); it becomes ``path`` only when the block succeeds and ``commit`` says so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o666 & ~UMASK)
    os.close(fd)
    tmp = Path(name)
    try:
        with _space_for(path):
            yield tmp
    finally:
        tmp.unlink(missing_ok=True)


def commit(tmp: Path, path: Path) -> None:
    """Put a staged file in place: fsync, rename."""
    with _space_for(path):
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)


def load_yaml(text: str) -> Any:
    """``text`` as ``yaml.safe_load`` reads it (the same resolver, so the same types), parsed by
    libyaml's C parser where PyYAML has it: a dvc.lock of 161 KB in 0.06 s of CPU, not 0.47."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))


def write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


@contextlib.contextmanager
def replace_dir(path: Path) -> Iterator[Path]:
    """Build a folder output in a temp folder beside it; swap it in only if the block succeeds.

    A failed or killed stage leaves the old folder (or none), never a half-written one. The swap
    is two renames (old aside to ``.<name>.old``, new in): an error between puts the old one
    back at once, and a kill between is repaired by the next write of ``path``, which restores
    ``.<name>.old`` before removing what a killed run left beside it.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.with_name(f".{path.name}.old")
    restore_aside(path)
    remove_leftovers(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}."))
    os.chmod(tmp, 0o777 & ~UMASK)
    try:
        with _space_for(path):
            yield tmp
        if path.exists():
            path.rename(old)
        try:
            tmp.rename(path)
        except BaseException:
            restore_aside(path)
            raise
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def restore_aside(path: Path) -> bool:
    """Put back ``.<name>.old``, the old folder output a swap had moved aside, when ``path``
    itself is missing (the swap was killed between its two renames); True when it did."""
    old = path.with_name(f".{path.name}.old")
    if path.exists() or path.is_symlink() or not old.is_dir():
        return False
    old.rename(path)
    logging.getLogger("cairn").warning("%s: restored the previous output that an interrupted swap had left "
                                       "as %s", path, old.name)  # fmt: skip
    return True
