"""Command line: `python -m flows <stage> <workload> --<input> PATH ... --out PATH` (what dvc.yaml
runs), or `python -m flows pipeline [workload ...]` (the Prefect pipeline)."""

from __future__ import annotations

import logging
import sys

from steps import StepError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    from flows.stages import UsageError, run_stage

    try:
        if argv[:1] == ["pipeline"]:
            from flows.pipeline import run_pipeline

            run_pipeline(argv[1:] or None)
        else:
            run_stage(argv)
    except (StepError, UsageError) as err:
        # Bad input: one line that names the file, column and row, and a non-zero exit.
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
