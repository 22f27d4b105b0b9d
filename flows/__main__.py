"""`python -m flows ...`: see flows/cli.py, or run `python -m flows --help`."""

import sys

from flows.cli import main

if __name__ == "__main__":
    sys.exit(main())
