"""Command line: `python -m flows <stage> <workload> --<input> PATH ... --out PATH` (what dvc.yaml
runs), `python -m flows pipeline [--jobs N] [workload ...]` (the Prefect pipeline, champion gate included),
`python -m flows promote <workload> --split PATH --publish PATH --out PATH` (the champion gate
alone), and
`python -m flows registry list|rollback` (the model registry), `python -m flows deployments`
(prefect.yaml from params.yaml), `python -m flows server-env PORT` (the secure server's settings
as shell exports, for deploy/serve.sh) and `python -m flows recover` (a dvc.lock broken by a
kill gets its last good copy back; `make run` calls it before `dvc repro`) and
`python -m flows plan [workload ...]` (what the next run will do and why), `python -m flows
prune [--days N] [--dry-run]` (datums no run has used for N days, default 7, out of .cairn/),
`python -m flows watch-files` (new raw data as Prefect events that start the workloads'
deployments; `make serve` runs it) and `python -m flows install-dvc-hook` (every `dvc`
command of this venv writes dvc.lock atomically and puts back a broken one; `make setup` calls
it)."""

from __future__ import annotations

import logging
import sys

from flows.execution.files import NoSpace
from steps import StepError


def registry(argv: list[str]) -> None:
    """`registry list [WORKLOAD]` prints the versions; `registry rollback WORKLOAD [--to N]`."""
    import argparse

    from flows.operations import registry

    cli = argparse.ArgumentParser(prog="python -m flows registry")
    sub = cli.add_subparsers(dest="command", required=True)
    sub.add_parser("list").add_argument("workload", nargs="?")
    back = sub.add_parser("rollback")
    back.add_argument("workload")
    back.add_argument("--to", type=int, help="the version to make champion (default: the previous champion)")
    args = cli.parse_args(argv)
    if args.command == "list":
        print(registry.listing(args.workload))
    else:
        chosen = registry.rollback(args.workload, args.to)
        print(f"{args.workload}: v{chosen['version']} is the champion again ({chosen['reason']})")


def prune(argv: list[str]) -> None:
    """`prune [--days N] [--dry-run]`: the datum store (.cairn/datums/) without what no run used."""
    import argparse

    from flows.execution import datums

    cli = argparse.ArgumentParser(prog="python -m flows prune")
    cli.add_argument("--days", type=float, default=7.0, help="keep datums used in the last N days (default 7)")
    cli.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")
    args = cli.parse_args(argv)
    if args.days < 0:
        cli.error(f"--days must be 0 or more, not {args.days}")
    counts = datums.prune(args.days, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{datums.ROOT}: {verb} {counts['removed']} datum(s) unused for {args.days:g} day(s), "
          f"{counts['bytes_freed'] / 2**20:.1f} MB; kept {counts['kept']}")  # fmt: skip


def pipeline_args(argv: list[str]) -> tuple[list[str] | None, int | None]:
    """`pipeline [--jobs N] [WORKLOAD ...]`: (workloads or None for all, jobs or None)."""
    import argparse

    cli = argparse.ArgumentParser(prog="python -m flows pipeline")
    cli.add_argument("--jobs", "-j", type=int, help="stages at once (default: execution.jobs in params.yaml)")
    cli.add_argument("workloads", nargs="*")
    args = cli.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        cli.error(f"--jobs must be 1 or more, not {args.jobs}")
    return args.workloads or None, args.jobs


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from flows.execution.stages import UsageError, run_stage

    try:
        if argv[:1] == ["pipeline"]:
            from flows.execution.pipeline import run_pipeline

            run_pipeline(*pipeline_args(argv[1:]))
        elif argv[:1] == ["registry"]:
            registry(argv[1:])
        elif argv == ["deployments"]:
            from flows.operations.deployments import write_prefect_yaml

            print(f"wrote {write_prefect_yaml()}")
        elif argv[:1] == ["server-env"] and len(argv) == 2 and argv[1].isdigit():
            from flows.operations.server import shell_exports

            print(shell_exports(int(argv[1])))
        elif argv == ["recover"]:
            from flows.execution.lockfile import recover

            print("dvc.lock: put back the last good copy" if recover() else "dvc.lock: fine")
        elif argv[:1] == ["plan"]:
            from flows.execution.plan import plan, render

            print(render(plan(argv[1:] or None)))
        elif argv[:1] == ["prune"]:
            prune(argv[1:])
        elif argv == ["watch-files"]:
            from flows.operations.deployments import watch_files

            watch_files()
        elif argv == ["install-dvc-hook"]:
            from flows.execution.lockfile import install_dvc_hook

            print(f"installed {install_dvc_hook()}")
        else:
            run_stage(argv)
    except (StepError, UsageError) as err:
        # Bad input: one line that names the file, column and row, and a non-zero exit.
        print(f"error: {err}", file=sys.stderr)
        return 1
    except NoSpace as err:
        print(f"error: {err.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
