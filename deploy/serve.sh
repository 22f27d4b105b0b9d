#!/usr/bin/env bash
# A local Prefect server (SQLite, 127.0.0.1 only, secure by default: a generated auth string,
# CSRF on, CORS for its own UI only), cairn's deployments, and a process worker that runs them
# in this checkout, one run at a time. Ctrl-C stops the worker and the server.
#   deploy/serve.sh [port]        (make serve)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
PORT=${1:-4200}
export PATH="$PWD/$BIN:$PATH"
# PREFECT_API_URL, PREFECT_API_AUTH_STRING and the server's settings (flows/service/server.py).
eval "$(python -m flows server-env "$PORT")"

prefect server start --host 127.0.0.1 --port "$PORT" >.cairn-server.log 2>&1 &
server=$!
trap 'kill $server 2>/dev/null' EXIT
until python -c "import httpx; httpx.get('$PREFECT_API_URL/health').raise_for_status()" 2>/dev/null; do
  kill -0 $server 2>/dev/null || { echo "prefect server failed; see .cairn-server.log" >&2; exit 1; }
  sleep 1
done
echo "Prefect UI: http://127.0.0.1:$PORT  (API $PREFECT_API_URL)"
echo "The UI asks for the auth string in .cairn/prefect-auth. Other shells, to reach this server:"
echo "  export PREFECT_API_URL=$PREFECT_API_URL PREFECT_API_AUTH_STRING=\"\$(cat .cairn/prefect-auth)\""

pool=$(python -c "import yaml; print(yaml.safe_load(open('params.yaml'))['deploy']['work_pool'])")
python -m flows deployments
prefect work-pool create "$pool" --type process --overwrite >/dev/null
# Every deployment of this pool works in this one checkout under DVC's lock: one run at a time,
# the others wait in the queue (Scheduled) instead of failing on the lock.
prefect work-pool set-concurrency-limit "$pool" 1 >/dev/null
# Pools that deploy.remote_stages sends stages to (a GPU pool): created as process pools if
# missing, so `prefect deploy --all` succeeds; their workers run elsewhere, in their own clones.
for remote_pool in $(python -c "import yaml; print(*sorted(set((yaml.safe_load(open('params.yaml'))['deploy'].get('remote_stages') or {}).values())))"); do
  prefect work-pool inspect "$remote_pool" >/dev/null 2>&1 || prefect work-pool create "$remote_pool" --type process >/dev/null
  echo "work pool '$remote_pool': start its worker in its own clone: prefect worker start --pool $remote_pool"
done
prefect --no-prompt deploy --all
# New raw data as events: a file landing in a raw folder starts its workload's run at once.
python -m flows watch-files >.cairn-watch-files.log 2>&1 &
watcher=$!
trap 'kill $server $watcher 2>/dev/null' EXIT
prefect worker start --pool "$pool"
