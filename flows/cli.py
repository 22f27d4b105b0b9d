"""cairn's command line: `python -m flows COMMAND ...`; `python -m flows` alone lists the commands.

Built on argparse (no rich, no typer): a `dvc repro` stage process starts with this module, and
every import here is paid by every stage. Each command imports what it runs only when it runs.
A CairnError is printed as one line `error: ...` and exits with its class's code (bad input 1,
usage 2, busy 75, no space 74); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from flows.runtime.stages import STAGE_INPUTS, STAGES
from steps.errors import CairnError, UsageError


class Parser(argparse.ArgumentParser):
    """argparse whose usage errors are cairn's UsageError (exit 2, one line), not SystemExit."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}\nusage: {self.format_usage().removeprefix('usage: ').strip()}")


def _stage(args: argparse.Namespace) -> None:
    from flows.runtime.stages import run_stage

    options = [x for name in STAGE_INPUTS[args.command] for x in (f"--{name}", str(getattr(args, name)))]
    run_stage([args.command, args.workload, *options, "--out", str(args.out)])


def _pipeline(args: argparse.Namespace) -> None:
    from flows.runtime.pipeline import run_pipeline

    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"python -m flows pipeline: --jobs must be 1 or more, not {args.jobs}")
    run_pipeline(args.workloads or None, args.jobs)


def _plan(args: argparse.Namespace) -> None:
    from flows.runtime.plan import plan, render

    print(render(plan(args.workloads or None)))


def _registry_list(args: argparse.Namespace) -> None:
    from flows.service.registry import listing

    print(listing(args.workload))


def _registry_rollback(args: argparse.Namespace) -> None:
    from flows.service.registry import rollback

    chosen = rollback(args.workload, args.to)
    print(f"{args.workload}: v{chosen['version']} is the champion again ({chosen['reason']})")


def _prune(args: argparse.Namespace) -> None:
    from flows.storage import datums

    if args.days < 0:
        raise UsageError(f"python -m flows prune: --days must be 0 or more, not {args.days}")
    counts = datums.prune(args.days, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    print(f"{datums.ROOT}: {verb} {counts['removed']} datum(s) unused for {args.days:g} day(s), "
          f"{counts['bytes_freed'] / 2**20:.1f} MB; kept {counts['kept']}"
          + (f"; {counts['damaged']} damaged removed (see `python -m flows verify`)" if counts["damaged"] else "")
          + ("" if args.dry_run else ", verified"))  # fmt: skip


def _verify(args: argparse.Namespace) -> None:
    from flows import config
    from flows.storage import datums
    from flows.storage.raw import sha256

    under = None
    if args.workloads:
        params = config.load()
        under = []
        for name in args.workloads:
            entry = params.workload(name)
            under += [Path("data") / name, Path(entry.raw)] + ([params.inbox(name)] if name in params.score else [])
    damaged = datums.scrub(args.dry_run)
    checked, wrong, stale = datums.verify_hashes(sha256, under, args.dry_run)
    done = "reported only (--dry-run)" if args.dry_run else "removed"
    print(f"{datums.ROOT}: checked every stored datum's sizes and sha256: {len(damaged)} damaged"
          + (f", {done}" if damaged else ""))  # fmt: skip
    for folder, partition, problem in damaged:
        print(f"  damaged: {folder} (partition {partition}): {problem}")
    done = "reported only (--dry-run)" if args.dry_run else "forgotten, and the files' mtimes set to now"
    print(f"{datums.STATE}: checked {checked} remembered file hash(es): {len(wrong)} wrong"
          + (f", {done}" if wrong else "")
          + (f"; {stale} stale (the file gone or changed since) " + ("to forget" if args.dry_run else "forgotten")
             if stale else ""))  # fmt: skip
    for path, problem in wrong:
        print(f"  wrong: {path}: {problem}")
    if damaged or wrong:
        raise SystemExit(1)


def _recover(args: argparse.Namespace) -> None:
    from flows.runtime.lockfile import recover

    print("dvc.lock: put back the last good copy" if recover() else "dvc.lock: fine")


def _drift(args: argparse.Namespace) -> None:
    from flows.runtime.drift import summary

    if line := summary():
        print(line)


def _install_dvc_hook(args: argparse.Namespace) -> None:
    from flows.runtime.lockfile import install_dvc_hook

    print(f"installed {install_dvc_hook()}")


def _deployments(args: argparse.Namespace) -> None:
    from flows.service.deployments import write_prefect_yaml

    print(f"wrote {write_prefect_yaml()}")


def _watch_files(args: argparse.Namespace) -> None:
    from flows.service.deployments import watch_files

    watch_files()


def _server_env(args: argparse.Namespace) -> None:
    from flows.service.server import shell_exports

    print(shell_exports(args.port))


def _serve(args: argparse.Namespace) -> None:
    from flows.service import serve

    code = {"serve": lambda: serve.serve(args.port), "stop": serve.stop, "status": serve.status}[args.command]()
    if code:
        raise SystemExit(code)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return int(text)


def parser() -> Parser:
    """The whole command line: one subcommand per stage and per operation, each with --help."""
    cli = Parser(
        prog="python -m flows",
        description="cairn: a versioned ML pipeline (ingest -> clean -> split -> train -> evaluate -> publish "
        "-> promote, and score). `python -m flows STAGE@WORKLOAD` runs one stage as dvc.yaml does.",
        epilog="Run `python -m flows COMMAND --help` for a command's options.",
    )
    sub = cli.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)

    def command(name: str, run: Callable[[argparse.Namespace], None], summary: str) -> Parser:
        cmd = sub.add_parser(name, help=summary, description=summary)
        cmd.set_defaults(run=run)
        return cmd

    for stage in STAGES:
        cmd = command(stage, _stage, f"run stage {stage} on the paths given (`{stage}@WORKLOAD`: as dvc.yaml does)")
        cmd.add_argument("workload")
        for name in STAGE_INPUTS[stage]:
            cmd.add_argument(f"--{name}", type=Path, required=True, help=f"input: {name}")
        cmd.add_argument("--out", type=Path, required=True, help="the stage's output folder")

    cmd = command("pipeline", _pipeline, "bring every stage up to date as a Prefect flow, several at once")
    cmd.add_argument("--jobs", "-j", type=int, help="stages at once (default: execution.jobs in params.yaml)")
    cmd.add_argument("workloads", nargs="*", metavar="WORKLOAD", help="default: every workload")

    cmd = command("plan", _plan, "say what the next run will do and why, running nothing")
    cmd.add_argument("workloads", nargs="*", metavar="WORKLOAD", help="default: every workload")

    registry = command("registry", lambda a: registry.print_help(), "the model registry: versions and champion")
    verbs = registry.add_subparsers(dest="verb", metavar="VERB", parser_class=Parser)
    listing = verbs.add_parser("list", help="every version of one or all workloads", description="the versions")
    listing.add_argument("workload", nargs="?")
    listing.set_defaults(run=_registry_list)
    back = verbs.add_parser("rollback", help="make an earlier version the champion again",
                            description="make an earlier version the champion again")  # fmt: skip
    back.add_argument("workload")
    back.add_argument("--to", type=int, help="the version to make champion (default: the previous champion)")
    back.set_defaults(run=_registry_rollback)

    cmd = command("prune", _prune, "remove datums (.cairn/datums/) that no run used for N days")
    cmd.add_argument("--days", type=float, default=7.0, help="keep datums used in the last N days (default 7)")
    cmd.add_argument("--dry-run", action="store_true", help="say what would go, remove nothing")

    about = ("check every stored datum (.cairn/datums/) and remembered file hash (.cairn/state.sqlite) against "
             "the bytes; remove what is damaged (exit 1 when anything was)")  # fmt: skip
    cmd = command("verify", _verify, about)
    cmd.add_argument("workloads", nargs="*", metavar="WORKLOAD",
                     help="check only the remembered hashes of these workloads' files (the datum store, shared by "
                     "content between workloads, is checked whole); default: every file")  # fmt: skip
    cmd.add_argument("--dry-run", action="store_true", help="report what is damaged, remove nothing")

    command("recover", _recover, "put back the last good dvc.lock if a kill left it broken")
    command("drift", _drift, "say whether the outputs are the committed bytes, and the metrics if not (make run)")
    command("install-dvc-hook", _install_dvc_hook, "make every dvc command of this venv write dvc.lock atomically")
    command("deployments", _deployments, "write prefect.yaml (deployments, schedules) from params.yaml")
    command("watch-files", _watch_files, "start workload runs when raw data arrives (make serve runs it)")
    cmd = command("server-env", _server_env, "the secured Prefect server's settings as shell exports")
    cmd.add_argument("port", type=_port)
    cmd = command("serve", _serve, "run the Prefect server, deployments, a worker and the file watcher (make serve)")
    cmd.add_argument("--port", type=_port, default=4200, help="the server's port on 127.0.0.1 (default 4200)")
    command("stop", _serve, "stop the `serve` of this checkout (make stop)")
    command("status", _serve, "say whether `serve` runs in this checkout, where, and if its server answers")
    return cli


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        if argv and "@" in argv[0]:  # STAGE@WORKLOAD: what dvc.yaml runs, with DVC_STAGE
            from flows.runtime.stages import run_stage

            run_stage(argv)
            return 0
        cli = parser()
        if not argv:
            cli.print_help()
            return 0
        args = cli.parse_args(argv)
        args.run(args)
    except CairnError as err:
        # One line that names what is wrong and where; the exit code says what kind of error.
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    return 0
