#!/usr/bin/env bash
# Stages on a Docker work pool: create the pool and its deployment, then run a Docker worker.
#   deploy/docker-pool.sh POOL REMOTE REPO...
# POOL: the pool that deploy.remote_stages names (e.g. `train@iris: docker`); REMOTE: the folder of
# the project's default DVC remote; REPO: each repository a container may clone (the coordinator's
# `origin`, or its checkout). Needs cairn's image (`make image`) and the Prefect API the pipeline
# uses (PREFECT_API_URL, PREFECT_API_AUTH_STRING). The containers run as the image's user (uid
# 1000): REMOTE is made writable for its group (below).
# The worker runs in the foreground; Ctrl-C stops it.
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: deploy/docker-pool.sh POOL REMOTE REPO..." >&2; exit 2; }
pool=$1 remote=$2
shift 2
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
deploy/docker-daemon.sh
docker image inspect "${CAIRN_IMAGE:-cairn:cpu}" >/dev/null 2>&1 \
    || { echo "deploy/docker-pool.sh: no image ${CAIRN_IMAGE:-cairn:cpu}; run \`make image\` first" >&2; exit 1; }
# The image's user (group 1000) writes where root's pushes made folders: the remote is group
# 1000's, setgid, and the project's DVC remote has `shared: group` (`dvc remote modify NAME shared
# group`), so DVC makes every folder 2775 and every file 0664 there.
mkdir -p "$remote"
chgrp -R 1000 "$remote" && chmod -R g+rwX "$remote" && find "$remote" -type d -exec chmod g+s {} +
"$BIN/python" -c 'import sys; from flows.runtime.workers import create_docker_pool as c; c(sys.argv[2], tuple(sys.argv[4:]), sys.argv[3], sys.argv[1])' \
    "${CAIRN_IMAGE:-cairn:cpu}" "$pool" "$remote" "$@"
exec "$BIN/prefect" worker start --pool "$pool" --type docker
