"""cairn's one exception tree. The command line prints any of them as one line and exits with
the class's code; anything else is a bug and keeps its traceback.

    CairnError                 root: something cairn refused or could not do, said in a sentence
    ├── BadInput (ValueError)  data, params or paths the user must fix; names file, column, row
    │   ├── IngestError        a raw file that cannot be read as the schema in params.yaml says
    │   ├── CleanError         data too broken to clean: more bad rows than params allow
    │   └── UsageError         a command line cairn does not understand (exit 2, as argparse)
    ├── Busy                   another run holds the checkout's lock: try again later (exit 75)
    ├── StageFailed            a stage of the pipeline failed (its own error is in its log)
    ├── WorkerFailed           a stage could not run on a worker, or not come back from one
    └── NoSpace (OSError)      the disk filled while writing an output; nothing was replaced (74)
"""

from __future__ import annotations


class CairnError(Exception):
    """Root of every error cairn raises on purpose."""

    exit_code = 1


class BadInput(CairnError, ValueError):
    """Input a stage cannot work with. The message names the file, column and row where known."""


class IngestError(BadInput):
    """Raw data that cannot be read as the schema in params.yaml says it should."""


class CleanError(BadInput):
    """Data too broken to clean: more bad rows than params allow, or none at all."""


class UsageError(BadInput):
    """A command line that names no known command or stage, or lacks an option."""

    exit_code = 2


class Busy(CairnError):
    """The checkout is locked by another run."""

    exit_code = 75  # EX_TEMPFAIL: the same command later will work


class StageFailed(CairnError):
    """A stage of the pipeline refused its input or failed: the stage's one-line error."""


class WorkerFailed(CairnError):
    """A stage could not be reproduced on a worker, or its result not restored here."""


class NoSpace(CairnError, OSError):
    """The disk (or quota) filled up while writing an output: nothing was replaced."""

    exit_code = 74  # EX_IOERR

    def __str__(self) -> str:
        return self.strerror or super().__str__()
