"""Operations on the model registry from the command line: the listing and a rollback.

Apart from flows/registry.py on purpose: train (warm start), promote and score read the registry,
and DVC reruns a stage when a file it imports changes; a new column in the listing must not make
every model stale.
"""

from __future__ import annotations

from pathlib import Path

from flows.registry import BadInput, folder, locked, now, point_champion, read_index, registry_root, serve_to


def rollback(workload: str, to: int | None = None) -> dict:
    """Make version ``to`` (default: the champion before the current one) the champion again:
    ``champion`` then serves it, and the index logs when and from which version."""
    if to is not None and (not isinstance(to, int) or to < 1):
        raise BadInput(f"registry: --to {to!r} is not a version number (1, 2, ...)")
    if not (folder(workload) / "index.json").exists():
        raise BadInput(f"registry: {workload} has no registered models; see `python -m flows registry list`")
    with locked(workload) as index:
        promoted = [v for v in index["versions"] if v["status"] in ("champion", "retired")]
        if to is None:
            earlier = [v["version"] for v in promoted if v["version"] < (index["champion"] or 0)]
            if not earlier:
                raise BadInput(f"registry: {workload} has no earlier champion to roll back to")
            to = max(earlier)
        chosen = next((v for v in promoted if v["version"] == to), None)
        if chosen is None:
            raise BadInput(f"registry: {workload} has no promoted version v{to}; see `python -m flows registry list`")
        before = index["champion"]
        for v in index["versions"]:
            if v["status"] == "champion":
                v["status"] = "retired"
        chosen["status"] = "champion"
        index["champion"] = to
        point_champion(workload, to)
        index["events"].append(
            {"at": now(), "event": "rollback", "version": to, "reason": f"rolled back from v{before}"}
        )
    served = Path("data") / workload / "promote"
    if served.is_dir():  # this checkout's copy of what serves: `dvc repro` then sees it changed
        serve_to(workload, served)
    return chosen


def listing(workload: str | None = None) -> str:
    """The registry as a table: workload, version, status (champion = serving), when, metric on
    which holdout, reason; then each workload's dated log of changes."""
    root = registry_root()
    names = [workload] if workload else sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []
    lines = [f"{'workload':<10} {'version':>7}  {'status':<9} {'registered':<20} {'metric':<22} {'holdout':<9} reason"]
    events = []
    for name in names:
        index = read_index(name)
        for v in index["versions"]:
            ((metric, value),) = v["metric"].items()
            version, score = f"v{v['version']}", f"{metric} {value:.6g}"
            status = "champion" if v["status"] == "champion" else v["status"]
            rows = f"{v['holdout']['rows']} rows" if "holdout" in v else "?"
            lines.append(f"{name:<10} {version:>7}  {status:<9} {v.get('registered_at', '?'):<20} {score:<22} "
                         f"{rows:<9} {v['reason']}")  # fmt: skip
        events += [f"{e['at']}  {name} v{e['version']} {e['event']}: {e['reason']}" for e in index["events"]]
        if index["champion"]:
            events.append(f"serving: {name} v{index['champion']} ({folder(name) / 'champion'})")
    return "\n".join(lines + ([""] + events if events else []))
