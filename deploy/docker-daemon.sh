#!/usr/bin/env bash
# Make sure a Docker daemon answers, starting one if it can:
#   deploy/docker-daemon.sh            exit 0 once `docker info` works
# As root without a daemon: installs Debian's docker.io with apt when dockerd is missing, then
# starts `dockerd --iptables=false --bridge=none` in the background (log: /var/log/cairn-dockerd.log).
# No bridge network: containers use `--network host` (cairn's scripts and work pool do).
# Anything else (not root, apt or dockerd failing) exits 69 with one line that says why, which the
# container tests print as their skip reason.
set -euo pipefail
say() { echo "deploy/docker-daemon.sh: $*" >&2; }

docker info >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ]; then
    say "no Docker daemon answers and starting one needs root (uid $(id -u))"; exit 69
fi
if ! command -v dockerd >/dev/null 2>&1; then
    (apt-get install -y -q docker.io || (apt-get update -q && apt-get install -y -q docker.io)) >/tmp/cairn-apt-docker.log 2>&1 \
        || { say "apt-get install docker.io failed: $(tail -1 /tmp/cairn-apt-docker.log)"; exit 69; }
fi
if ! command -v docker >/dev/null 2>&1; then
    say "dockerd is installed but no docker client is on PATH"; exit 69
fi
log=/var/log/cairn-dockerd.log
nohup dockerd --iptables=false --bridge=none >>"$log" 2>&1 &
pid=$!
for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && exit 0
    kill -0 "$pid" 2>/dev/null || { say "dockerd exited: $(tail -1 "$log")"; exit 69; }
    sleep 0.5
done
say "dockerd (pid $pid) did not answer within 30 s: $(tail -1 "$log")"; exit 69
