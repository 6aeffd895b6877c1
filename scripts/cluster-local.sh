#!/usr/bin/env bash
# A many-node Slurm cluster on this one machine: a login node and compute nodes, each in its own network,
# mount and UTS namespace (no containers, no systemd).
#
#   bash scripts/cluster-local.sh start             create the nodes and start the daemons; no-op when up
#   bash scripts/cluster-local.sh stop              kill every process on every node, remove the namespaces
#   bash scripts/cluster-local.sh status            daemons and `sinfo`; exit 0 only when every node is usable
#   bash scripts/cluster-local.sh scratch           print the shared scratch directory (same path everywhere)
#   bash scripts/cluster-local.sh exec NODE -- CMD  run CMD on NODE (login, node1..node6) with its hostname,
#                                                   network, /tmp and /var/tmp
#   bash scripts/cluster-local.sh addr NODE         print NODE's cluster address
#   bash scripts/cluster-local.sh kill-node NODE    SIGKILL every process on NODE (its slurmd included)
#   bash scripts/cluster-local.sh cut-node NODE     take NODE's link down (processes live on, unreachable)
#   bash scripts/cluster-local.sh heal-node NODE    bring the link up again (after kill-node: restart slurmd)
#
# The nodes:
#   login       192.0.2.10  slurmctld; sees the repository, /root and the venv (a user's home), shared scratch
#   node1..3    .11-.13     partition `shared` (default): home, repository and shared scratch visible
#   node4..6    .14-.16     partition `noshare` (the CHTC/OSG shape): /work, /root and the shared scratch are
#                           hidden (empty tmpfs); the node sees the system and its own /tmp and /var/tmp only
# Each node's interface is `cl0`, on a bridge inside a namespace of its own (hpc-sw). Addresses come from
# 192.0.2.0/24 (documentation block, RFC 5737) and no namespace has a default route: a node reaches the
# other nodes and its own loopback, nothing else; the host's own network and daemons are out of reach.
# /etc/hosts on every node names the cluster nodes; /etc/slurm is this cluster's config (bind mounts in
# each node's mount namespace), so plain `sbatch`/`srun` inside the cluster talk to this cluster only.
# Slurm: cluster `hpckit-cluster`, ports 6917 (slurmctld) / 6918 (slurmd), state and logs under $BASE,
# proctrack/linuxproc + task/none (cgroups cannot be split per node here). munged is the host's
# (scripts/slurm-local.sh starts it); its socket under /run is visible on every node.
# The single-node Slurm of scripts/slurm-local.sh (/etc/slurm, default ports, host network) is untouched.
set -euo pipefail

BASE="${CLUSTER_LOCAL_BASE:-/srv/hpckit-cluster}"
NODE_CPUS="${CLUSTER_LOCAL_CPUS:-2}"
NODE_MEM="${CLUSTER_LOCAL_MEM_MB:-2048}"
NET=192.0.2
SHARED=(node1 node2 node3)
NOSHARE=(node4 node5 node6)
COMPUTE=("${SHARED[@]}" "${NOSHARE[@]}")
NODES=(login "${COMPUTE[@]}")
NS="$BASE/ns"
RUN="$BASE/run"
SCRATCH="$BASE/scratch"
IFACE=cl0
CTLD_PORT=6917
SLURMD_PORT=6918

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { echo "cluster-local: $*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        log "must run as root (creates namespaces, starts daemons)"
        exit 1
    fi
}

known() { # known NODE
    local n
    for n in "${NODES[@]}"; do [ "$n" = "$1" ] && return 0; done
    log "no node '$1' (nodes: ${NODES[*]})"
    exit 2
}

addr_of() { # addr_of NODE -> 192.0.2.x
    case "$1" in
        login) echo "$NET.10" ;;
        node*) echo "$NET.$(( 10 + ${1#node} ))" ;;
    esac
}

is_noshare() { local n; for n in "${NOSHARE[@]}"; do [ "$n" = "$1" ] && return 0; done; return 1; }

alive() { # alive PIDFILE: its pid runs the daemon the file is named for (slurmd-node1.pid: slurmd);
    # a pid file from an earlier boot may name a process that has nothing to do with it
    local pid name
    name="$(basename "$1" .pid)"; name="${name%%-*}"
    [ -s "$1" ] && pid="$(cat "$1")" && [[ "$pid" =~ ^[0-9]+$ ]] \
        && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]
}

node_up() { # the node's namespaces exist
    [ -e "/run/netns/hpc-$1" ] && findmnt -n "$NS/$1.mnt" >/dev/null 2>&1
}

on() { # on NODE CMD...: run CMD in NODE's namespaces, in the caller's directory when the node sees it
    local n="$1"; shift
    nsenter --net="/run/netns/hpc-$n" --mount="$NS/$n.mnt" --uts="$NS/$n.uts" -- \
        /bin/sh -c 'cd "$0" 2>/dev/null || cd /; exec "$@"' "$PWD" "$@"
}

share_repo() { # the repository at its own path on the login and shared nodes, also when it lies below a
    # node-local /tmp or /var/tmp (a checkout under /tmp, as a CI clone may be): a link to the host's view of
    # it through a long-lived process of the host's mount namespace, munged (a bind mount cannot cross mount
    # namespaces, and /proc/1 is not ours to read here); refreshed at every `exec`
    case "$REPO/" in /tmp/*|/var/tmp/*) ;; *) return 0 ;; esac
    local n host
    host="/proc/$(cat /run/munge/munged.pid)/root"
    for n in login "${SHARED[@]}"; do
        node_up "$n" || continue
        nsenter --mount="$NS/$n.mnt" -- /bin/sh -ec "
            if [ -d '$REPO/hpckit' ]; then exit 0; fi
            rm -rf '$REPO'  # a stale link, or what an earlier link left in this node's own /tmp
            mkdir -p \"\$(dirname '$REPO')\"
            ln -s '$host$REPO' '$REPO'"
    done
}

write_config() {
    local n
    mkdir -p "$BASE/etc" "$BASE/state/ctld" "$BASE/log" "$RUN"
    {
        echo "# written by hpckit scripts/cluster-local.sh"
        echo "127.0.0.1 localhost"
        for n in "${NODES[@]}"; do echo "$(addr_of "$n") $n"; done
    } >"$BASE/etc/hosts"
    {
        echo "# written by hpckit scripts/cluster-local.sh: one login node, ${#COMPUTE[@]} compute nodes"
        echo "ClusterName=hpckit-cluster"
        echo "SlurmctldHost=login($(addr_of login))"
        echo "SlurmctldPort=$CTLD_PORT"
        echo "SlurmdPort=$SLURMD_PORT"
        echo "SlurmUser=root"
        echo "AuthType=auth/munge"
        echo "StateSaveLocation=$BASE/state/ctld"
        echo "SlurmdSpoolDir=$BASE/state/%n"
        echo "SlurmctldPidFile=$RUN/slurmctld.pid"
        echo "SlurmdPidFile=$RUN/slurmd-%n.pid"
        echo "SlurmctldLogFile=$BASE/log/slurmctld.log"
        echo "SlurmdLogFile=$BASE/log/slurmd-%n.log"
        echo "SlurmdParameters=config_overrides"
        echo "ReturnToService=2"
        echo "MpiDefault=none"
        echo "SchedulerType=sched/backfill"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_Core_Memory,CR_LLN"  # least-loaded node first: jobs spread over nodes
        echo "DefMemPerCPU=256"
        echo "JobCompType=jobcomp/none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "AccountingStorageType=accounting_storage/none"
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/none"
        echo "KillWait=5"
        echo "MinJobAge=120"
        echo "SlurmdTimeout=20"
        echo "MessageTimeout=5"
        for n in "${COMPUTE[@]}"; do
            echo "NodeName=$n NodeAddr=$(addr_of "$n") CPUs=$NODE_CPUS RealMemory=$NODE_MEM State=UNKNOWN"
        done
        echo "PartitionName=shared Nodes=$(IFS=,; echo "${SHARED[*]}") Default=YES MaxTime=INFINITE State=UP"
        echo "PartitionName=noshare Nodes=$(IFS=,; echo "${NOSHARE[*]}") Default=NO MaxTime=INFINITE State=UP"
    } >"$BASE/etc/slurm.conf"
    log "wrote $BASE/etc/slurm.conf"
}

ensure_ns_dir() {
    # unshare can keep a namespace alive by bind-mounting it onto a file only below a private mount.
    mkdir -p "$NS"
    if ! findmnt -n "$NS" >/dev/null 2>&1; then
        mount --bind "$NS" "$NS"
        mount --make-private "$NS"
    fi
}

ensure_switch() {
    [ -e /run/netns/hpc-sw ] || ip netns add hpc-sw
    ip -n hpc-sw link show br0 >/dev/null 2>&1 || ip -n hpc-sw link add br0 type bridge
    ip -n hpc-sw link set br0 up
}

ensure_node() { # ensure_node NODE: network namespace, veth to the switch, mount + UTS namespace
    local n="$1" a hide=""
    a="$(addr_of "$n")"
    [ -e "/run/netns/hpc-$n" ] || ip netns add "hpc-$n"
    if ! ip -n "hpc-$n" link show "$IFACE" >/dev/null 2>&1; then
        ip -n hpc-sw link del "v-$n" >/dev/null 2>&1 || true
        ip -n hpc-sw link add "v-$n" type veth peer name "$IFACE" netns "hpc-$n"
        ip -n hpc-sw link set "v-$n" master br0 up
        ip -n "hpc-$n" addr add "$a/24" dev "$IFACE"
        ip -n "hpc-$n" link set "$IFACE" up
        ip -n "hpc-$n" link set lo up
    fi
    findmnt -n "$NS/$n.mnt" >/dev/null 2>&1 && return 0
    mkdir -p "$BASE/nodes/$n/tmp" "$BASE/nodes/$n/var-tmp" "$BASE/state/$n"
    chmod 1777 "$BASE/nodes/$n/tmp" "$BASE/nodes/$n/var-tmp"
    touch "$NS/$n.mnt" "$NS/$n.uts"
    if is_noshare "$n"; then
        # What a CHTC/OSG execute node lacks: the user's home, the repository, any shared scratch.
        hide="for d in /work /root /home $SCRATCH; do [ -d \"\$d\" ] && mount -t tmpfs -o size=1m,mode=0755 none \"\$d\"; done"
    fi
    # Inside the node's network namespace (so the fresh sysfs lists its interfaces), a new mount + UTS
    # namespace kept alive by the bind mounts on $NS/NODE.{mnt,uts}. slurmd insists on seeing the cgroup
    # tree: the host's is moved onto the fresh sysfs (linuxproc tracking: slurmd does not write to it).
    nsenter --net="/run/netns/hpc-$n" -- unshare --mount="$NS/$n.mnt" --uts="$NS/$n.uts" --propagation private \
        /bin/sh -ec "
            hostname $n
            mkdir -p '$BASE/nodes/$n/cgroup'
            mount --rbind /sys/fs/cgroup '$BASE/nodes/$n/cgroup'
            umount -l /sys && mount -t sysfs sysfs /sys
            mount --move '$BASE/nodes/$n/cgroup' /sys/fs/cgroup
            mount --bind '$BASE/nodes/$n/tmp' /tmp
            mount --bind '$BASE/nodes/$n/var-tmp' /var/tmp
            mount --bind '$BASE/etc' /etc/slurm
            mount --bind '$BASE/etc/hosts' /etc/hosts
            $hide
        "
}

slurmd_alive() { alive "$RUN/slurmd-$1.pid"; }

# a node in one of these states is usable; planned: held by the backfill scheduler for a pending job (busy, up)
UP_STATES="idle|mixed|allocated|completing|planned"

nodes_ready() { # every compute node in one of UP_STATES in this cluster's sinfo
    local out
    out="$(on login timeout 5 sinfo -h -N -o '%N %T' 2>/dev/null)" || return 1
    [ "$(echo "$out" | grep -cE " ($UP_STATES)")" -ge "${#COMPUTE[@]}" ]
}

start() {
    need_root
    command -v slurmd >/dev/null || { log "slurmd is not installed: run scripts/slurm-local.sh start first"; exit 1; }
    alive /run/munge/munged.pid || { log "munged is not running: run scripts/slurm-local.sh start first"; exit 1; }
    local n all=1
    for n in "${NODES[@]}"; do node_up "$n" || all=0; done
    if [ $all = 1 ] && alive "$RUN/slurmctld.pid" && nodes_ready; then
        for n in "${COMPUTE[@]}"; do slurmd_alive "$n" || all=0; done
        if [ $all = 1 ]; then log "already up"; return 0; fi
    fi
    mkdir -p "$BASE" "$RUN" "$SCRATCH"
    chmod 1777 "$SCRATCH"
    alive "$RUN/slurmctld.pid" || write_config
    ensure_ns_dir
    ensure_switch
    for n in "${NODES[@]}"; do ensure_node "$n"; done
    # -c: clear previous state (no stale jobs from an earlier run)
    alive "$RUN/slurmctld.pid" || on login /usr/sbin/slurmctld -c
    for n in "${COMPUTE[@]}"; do
        slurmd_alive "$n" || on "$n" /usr/sbin/slurmd -N "$n"
    done
    local i
    for i in $(seq 300); do
        if nodes_ready; then
            on login sinfo -h -N -o '%N %P %T' | sed 's/^/cluster-local: up: /' >&2
            on login scontrol update nodename="$(IFS=,; echo "${COMPUTE[*]}")" state=resume >/dev/null 2>&1 || true
            return 0
        fi
        # a slurmd whose one registration was lost (a loaded machine) would wait for slurmctld's next ping
        # of an UNKNOWN node, minutes away: after 10 s and 30 s, restart the slurmd of every node not up yet
        if [ "$i" = 50 ] || [ "$i" = 150 ]; then restart_stalled; fi
        sleep 0.2
    done
    log "nodes did not become idle within 60 s; sinfo says:"
    on login sinfo -N -l >&2 || true
    for n in $(stalled_nodes); do
        log "$n: last lines of $BASE/log/slurmd-$n.log:"
        tail -n 15 "$BASE/log/slurmd-$n.log" >&2 2>/dev/null || true
    done
    log "last lines of $BASE/log/slurmctld.log:"
    tail -n 15 "$BASE/log/slurmctld.log" >&2 2>/dev/null || true
    exit 1
}

stalled_nodes() { # compute nodes sinfo does not show in one of UP_STATES (all when sinfo fails)
    local out n
    out="$(on login timeout 5 sinfo -h -N -o '%N %T' 2>/dev/null)" || out=""
    for n in "${COMPUTE[@]}"; do
        echo "$out" | grep -qE "^$n ($UP_STATES)\$" || echo "$n"
    done
}

restart_stalled() {
    local n pid
    for n in $(stalled_nodes); do
        log "$n has not registered: restarting its slurmd"
        if slurmd_alive "$n"; then
            pid="$(cat "$RUN/slurmd-$n.pid")"; kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        fi
        on "$n" /usr/sbin/slurmd -N "$n" || log "$n: slurmd did not start (see $BASE/log/slurmd-$n.log)"
    done
}

kill_node() { # SIGKILL every process in NODE's network namespace
    local pids
    for _ in 1 2 3; do
        pids="$(ip netns pids "hpc-$1" 2>/dev/null || true)"
        [ -z "$pids" ] && return 0
        # shellcheck disable=SC2086
        kill -9 $pids 2>/dev/null || true
        sleep 0.2
    done
}

stop() {
    need_root
    local n
    for n in "${NODES[@]}"; do
        [ -e "/run/netns/hpc-$n" ] && kill_node "$n"
        if [ -e "$NS/$n.mnt" ]; then umount "$NS/$n.mnt" 2>/dev/null || true; rm -f "$NS/$n.mnt"; fi
        if [ -e "$NS/$n.uts" ]; then umount "$NS/$n.uts" 2>/dev/null || true; rm -f "$NS/$n.uts"; fi
        [ -e "/run/netns/hpc-$n" ] && ip netns del "hpc-$n"
    done
    [ -e /run/netns/hpc-sw ] && ip netns del hpc-sw
    rm -f "$RUN"/*.pid
    log "stopped"
}

status() {
    local rc=0 n
    for n in "${NODES[@]}"; do
        if node_up "$n"; then
            local d="slurmd-$n"; [ "$n" = login ] && d=slurmctld
            if alive "$RUN/$d.pid"; then echo "$n $(addr_of "$n"): $d running (pid $(cat "$RUN/$d.pid"))"
            else echo "$n $(addr_of "$n"): $d not running"; rc=1; fi
        else
            echo "$n: no namespace"; rc=1
        fi
    done
    if [ $rc = 0 ] && nodes_ready; then on login sinfo -N -o '%N %P %T %c %m'; else echo "cluster: not ready"; rc=1; fi
    return $rc
}

cmd="${1:-}"
case "$cmd" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    restart) stop; start ;;
    scratch) echo "$SCRATCH" ;;
    addr) known "${2:-}"; addr_of "$2" ;;
    exec)
        need_root
        node="${2:-}"; known "$node"; shift 2
        [ "${1:-}" = "--" ] && shift
        [ $# -gt 0 ] || { log "usage: $0 exec NODE -- CMD..."; exit 2; }
        node_up "$node" || { log "$node is not up: run $0 start"; exit 1; }
        share_repo
        on "$node" "$@"
        ;;
    kill-node) need_root; known "${2:-}"; kill_node "$2"; log "killed every process on $2" ;;
    cut-node) need_root; known "${2:-}"; ip -n hpc-sw link set "v-$2" down; log "cut $2's link" ;;
    heal-node)
        need_root; known "${2:-}"
        ip -n hpc-sw link set "v-$2" up
        if [ "$2" != login ]; then
            # a fresh slurmd registers at once (slurmctld would otherwise wait for its next ping of a DOWN
            # node); running jobs live on in their slurmstepd
            if slurmd_alive "$2"; then
                pid="$(cat "$RUN/slurmd-$2.pid")"; kill "$pid"
                for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            fi
            on "$2" /usr/sbin/slurmd -N "$2"
            for _ in $(seq 100); do
                on login sinfo -h -n "$2" -o '%T' 2>/dev/null | grep -qE "^($UP_STATES)\$" && break
                sleep 0.2
            done
        fi
        log "healed $2: $(on login sinfo -h -n "$2" -o '%T' 2>/dev/null || true)"
        ;;
    *) echo "usage: $0 start|stop|status|scratch|addr NODE|exec NODE -- CMD|kill-node NODE|cut-node NODE|heal-node NODE" >&2
       exit 2 ;;
esac
