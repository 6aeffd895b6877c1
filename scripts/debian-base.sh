#!/usr/bin/env bash
# Build (once) and import the local Debian base image used by hpckit's container builds and tests.
#
#   scripts/debian-base.sh [TAG]        default TAG: localhost/hpckit-debian:bookworm
#
# No container registry is reachable here, so the base image comes from
# `debootstrap --variant=minbase bookworm` against the machine's own Debian mirror, read from the apt
# sources at run time. The rootfs tarball is cached in $HPCKIT_CACHE (default /var/cache/hpckit), so a
# second run only re-imports it (or does nothing if the image already exists). Idempotent.
set -euo pipefail

TAG=${1:-localhost/hpckit-debian:bookworm}
SUITE=${HPCKIT_DEBIAN_SUITE:-bookworm}
CACHE=${HPCKIT_CACHE:-/var/cache/hpckit}
INCLUDE=python3,python3-venv,ca-certificates
TARBALL="$CACHE/debian-$SUITE-minbase-python3.tar"

if podman image exists "$TAG"; then
    echo "debian-base.sh: image $TAG already present"
    exit 0
fi

mirror() {
    # deb822 sources first (URIs: + Suites: containing $SUITE), then one-line sources.list.
    local f
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        awk -v suite="$SUITE" '
            /^[[:space:]]*#/ {next}
            /^[[:space:]]*$/ { if (uri != "" && ok && !sec) {print uri; exit} uri=""; ok=0; sec=0; next }
            tolower($1) == "uris:" { uri=$2; if (uri ~ /security/) sec=1 }
            tolower($1) == "suites:" { for (i=2;i<=NF;i++) if ($i == suite) ok=1 }
            END { if (uri != "" && ok && !sec) print uri }' "$f" | head -n1
    done
    local l
    for l in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$l" ] || continue
        awk -v suite="$SUITE" '$1 == "deb" { i=2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
            if ($(i+1) == suite && $i !~ /security/) { print $i; exit } }' "$l"
    done
}

if [ ! -s "$TARBALL" ]; then
    MIRROR=$(mirror | head -n1)
    if [ -z "$MIRROR" ]; then
        echo "debian-base.sh: no Debian mirror for $SUITE found in /etc/apt/sources.list{,.d/*}" >&2
        exit 1
    fi
    command -v debootstrap >/dev/null || { echo "debian-base.sh: debootstrap missing; run scripts/podman-setup.sh" >&2; exit 1; }
    mkdir -p "$CACHE"
    ROOT=$(mktemp -d "$CACHE/rootfs.XXXXXX")
    trap 'rm -rf "$ROOT" "$TARBALL.part"' EXIT
    echo "debian-base.sh: debootstrap --variant=minbase $SUITE from $MIRROR"
    debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOT" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
        || { tail -n 20 "$CACHE/debootstrap.log" >&2; exit 1; }
    rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/*
    tar -C "$ROOT" --numeric-owner -cf "$TARBALL.part" .
    mv "$TARBALL.part" "$TARBALL"
    rm -rf "$ROOT"
    trap - EXIT
fi

podman import --change 'CMD ["/bin/bash"]' --change 'ENV LANG=C.UTF-8' "$TARBALL" "$TAG" >/dev/null
echo "debian-base.sh: imported $TAG from $TARBALL"
