#!/usr/bin/env bash
# Install and configure rootful podman + buildah + debootstrap for hpckit's container tests
# (and patchelf, which `hpckit pack` uses to relink the carried interpreter).
# Idempotent: safe to run again; only installs what is missing and rewrites the config in place.
#
# Facts this relies on (verified on the project's Debian 12 machines):
#  - crun rejects the kernel's hybrid cgroups here, so runtime = "runc";
#  - no systemd session: cgroup_manager = "cgroupfs", events_logger = "file";
#  - default ulimits are raised to 16384 (nofile, nproc) so pip and Python work inside;
#  - no container registry is reachable: netns = "none" by default and always --pull=never;
#  - `podman run --init` (hpckit's worker jobs) uses Debian's catatonit, so a worker that is PID 1 still
#    gets the SIGTERM of a cancelled job.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "podman-setup.sh: must run as root (rootful podman)" >&2
    exit 1
fi

need=()
for cmd_pkg in podman:podman buildah:buildah debootstrap:debootstrap runc:runc patchelf:patchelf catatonit:catatonit; do
    cmd=${cmd_pkg%%:*}; pkg=${cmd_pkg##*:}
    command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
# uidmap/fuse-overlayfs are not needed rootful; slirp is not needed with netns=none.
if [ ${#need[@]} -gt 0 ]; then
    echo "podman-setup.sh: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" ca-certificates >/dev/null
fi

mkdir -p /etc/containers
conf=/etc/containers/containers.conf
want=$(cat <<'CONF'
# written by hpckit scripts/podman-setup.sh
[containers]
netns = "none"
init_path = "/usr/bin/catatonit"
default_ulimits = [
  "nofile=16384:16384",
  "nproc=16384:16384",
]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
)
if [ ! -f "$conf" ] || [ "$(cat "$conf")" != "$want" ]; then
    [ -f "$conf" ] && cp "$conf" "$conf.hpckit-bak"
    printf '%s\n' "$want" > "$conf"
    echo "podman-setup.sh: wrote $conf"
fi

# A minimal policy so that local (imported) images are accepted.
if [ ! -f /etc/containers/policy.json ]; then
    printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' > /etc/containers/policy.json
fi

podman --version
buildah --version
podman info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupManager}} {{.Host.EventLogger}}'
