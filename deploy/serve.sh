#!/usr/bin/env bash
# `make serve`: the secured local Prefect server (SQLite, 127.0.0.1 only), cairn's deployments, a
# process worker (one run at a time) and the file watcher, supervised by `python -m flows serve`
# (flows/service/serve.py): one per checkout, Ctrl-C or `make stop` stops the watcher and the
# worker before the server, logs appended under .cairn/logs/.
#   deploy/serve.sh [port]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
exec "$BIN/python" -m flows serve --port "${1:-4200}"
