#!/usr/bin/env bash
# The base of cairn's image: Debian bookworm with python3 (3.11), its venv module and git.
#   deploy/base-image.sh [tag]      (default cairn-base:bookworm; nothing to do if it exists)
# Where a registry answers, debian:bookworm-slim is pulled and the three packages added with apt;
# where none does (this machine), the same packages are bootstrapped from the Debian mirror apt
# already uses (debootstrap --variant=minbase, about a minute) and `docker import`ed. Either way
# the interpreter is Debian's python3 of bookworm, so the image is the same everywhere.
set -euo pipefail
tag=${1:-cairn-base:bookworm}
packages=python3,python3-venv,git
say() { echo "deploy/base-image.sh: $*" >&2; }

docker image inspect "$tag" >/dev/null 2>&1 && exit 0

if timeout 20 docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
    say "building $tag from debian:bookworm-slim"
    printf 'FROM debian:bookworm-slim\nRUN apt-get update && apt-get install -y --no-install-recommends %s && rm -rf /var/lib/apt/lists/*\n' \
        "${packages//,/ }" | docker build -q -t "$tag" - >/dev/null
    exit 0
fi

# No registry: debootstrap from the mirror of apt's sources (deb.debian.org unless configured).
mirror=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
    | head -1 | tr -d ' ') || true
mirror=${CAIRN_DEBIAN_MIRROR:-${mirror:-http://deb.debian.org/debian}}
command -v debootstrap >/dev/null 2>&1 || (apt-get install -y -q debootstrap || (apt-get update -q && \
    apt-get install -y -q debootstrap)) >/dev/null
rootfs=$(mktemp -d /var/tmp/cairn-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
say "no registry answers; debootstrap bookworm from $mirror into $rootfs"
debootstrap --variant=minbase --include="$packages" bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
    || { say "debootstrap failed: $(tail -3 "$rootfs.log")"; exit 1; }
rm -f "$rootfs.log"
# Not part of an image: downloaded packages, apt lists, logs.
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/tmp/*
tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["bash"]' - "$tag" >/dev/null
say "built $tag ($(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
