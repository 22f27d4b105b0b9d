#!/usr/bin/env bash
# `make image`: build cairn's worker image from ./Dockerfile.
#   deploy/image.sh [tag]           (default cairn:cpu)
# Starts a Docker daemon if it can (deploy/docker-daemon.sh), builds the base where none exists
# (deploy/base-image.sh), gives the build this machine's CA bundle and local wheel folders (pip's
# find-links: the pinned torch CPU wheel) in .cairn/image/, and labels the image with a hash of
# requirements.lock and the Dockerfile (cairn.deps) so a test can tell whether an image has the
# right dependencies without building.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-cairn:cpu}
base=${CAIRN_BASE_IMAGE:-cairn-base:bookworm}

deploy/docker-daemon.sh
deploy/base-image.sh "$base"

ctx=.cairn/image
rm -rf "$ctx" && mkdir -p "$ctx/wheels"
cert=${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}
cert=${cert:-/etc/ssl/certs/ca-certificates.crt}
cp "$cert" "$ctx/ca-certificates.crt"
links="${PIP_FIND_LINKS:-} $(python3 -m pip config get global.find-links 2>/dev/null || true)"
for dir in $links; do
    [ -d "$dir" ] || continue
    for wheel in "$dir"/*.whl; do
        [ -e "$wheel" ] && { ln -f "$wheel" "$ctx/wheels/" 2>/dev/null || cp "$wheel" "$ctx/wheels/"; }
    done
done

deps=$(cat requirements.lock Dockerfile | sha256sum | cut -c1-16)
# Host networking: the daemon runs without a bridge (deploy/docker-daemon.sh), and pip reaches the
# registry the way the host does.
nice -n 10 docker build --network host --build-arg BASE="$base" --label cairn.deps="$deps" -t "$tag" .
echo "deploy/image.sh: built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'), deps $deps)"
