#!/usr/bin/env bash
# A Dask cluster in cairn's image: a scheduler and N workers (one process, one thread each), each
# in its own container on the host's network, for `execution.dask_address`.
#   deploy/dask-containers.sh start [PORT] [N]     (defaults 8786, 2; prints tcp://127.0.0.1:PORT)
#   deploy/dask-containers.sh stop [PORT]
# Workers get every input as bytes from the coordinator (flows/fanout.py): nothing is mounted.
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:?usage: deploy/dask-containers.sh start|stop [PORT] [N]}
port=${2:-8786} n=${3:-2} image=${CAIRN_IMAGE:-cairn:cpu}
names() { docker ps -aq --filter "label=cairn.dask=$port"; }
case $action in
stop)
    ids=$(names); [ -z "$ids" ] || docker rm -f $ids >/dev/null ;;
start)
    deploy/docker-daemon.sh
    [ -z "$(names)" ] || { echo "deploy/dask-containers.sh: a cluster on port $port runs already" >&2; exit 1; }
    run() { docker run -d --rm --network host --label "cairn.dask=$port" --entrypoint dask "$image" "$@" >/dev/null; }
    run scheduler --host 127.0.0.1 --port "$port" --no-dashboard
    for i in $(seq "$n"); do
        run worker "tcp://127.0.0.1:$port" --nthreads 1 --no-dashboard --name "container-$i"
    done
    # Ready once every worker has registered with the scheduler.
    for _ in $(seq 120); do
        got=$("${BIN:-.venv/bin}/python" -c \
            "from distributed import Client; c = Client('tcp://127.0.0.1:$port', timeout=5); print(len(c.scheduler_info()['workers']))" \
            2>/dev/null || echo 0)
        [ "$got" = "$n" ] && { echo "tcp://127.0.0.1:$port"; exit 0; }
        sleep 1
    done
    echo "deploy/dask-containers.sh: $n workers did not register within 2 minutes" >&2; exit 1 ;;
*) echo "usage: deploy/dask-containers.sh start|stop [PORT] [N]" >&2; exit 2 ;;
esac
