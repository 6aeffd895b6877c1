#!/usr/bin/env bash
# Start, stop or inspect a single-node Slurm on this machine (no systemd needed).
#
#   bash scripts/slurm-local.sh start    install if missing, configure, start; no-op when already up
#   bash scripts/slurm-local.sh stop     stop the daemons this script started (by pid file)
#   bash scripts/slurm-local.sh status   print daemon pids and `sinfo`; exit 0 only when the node is usable
#
# Everything binds to 127.0.0.1. The node advertises SLURM_LOCAL_CPUS CPUs (default 8, more than the real
# ones, via SlurmdParameters=config_overrides) and at most the memory `slurmd -C` reports. It uses cgroup v1
# process tracking and memory enforcement where the v1 controllers are mounted, and falls back to
# proctrack/linuxproc + task/none (memory not enforced, SIGTERM-ignoring children survive scancel) otherwise.
# Debian's slurm-wlm-torque provides `qsub`/`qstat`/`qdel` over Slurm (used by the PBS tests).
set -euo pipefail

CPUS="${SLURM_LOCAL_CPUS:-8}"
PARTITION="${SLURM_LOCAL_PARTITION:-debug}"
RUN=/run/slurm-local
CONF=/etc/slurm/slurm.conf
PKGS=(slurmctld slurmd slurm-client slurm-wlm-torque munge)

log() { echo "slurm-local: $*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        log "must run as root (installs packages, writes /etc/slurm, starts daemons)"
        exit 1
    fi
}

alive() { # alive PIDFILE: its pid runs the daemon the file is named for (slurmd-node1.pid: slurmd);
    # a pid file from an earlier boot may name a process that has nothing to do with it
    local pid name
    name="$(basename "$1" .pid)"; name="${name%%-*}"
    [ -s "$1" ] && pid="$(cat "$1")" && [[ "$pid" =~ ^[0-9]+$ ]] \
        && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]
}

node_ready() {
    command -v sinfo >/dev/null 2>&1 || return 1
    local state
    state="$(timeout 5 sinfo -h -N -n "$(hostname -s)" -o '%T' 2>/dev/null | head -n1)" || return 1
    case "$state" in
        idle*|mixed*|allocated*|completing*|planned*) return 0 ;;  # planned: held for a pending job (busy, up)
        *) return 1 ;;
    esac
}

install_packages() {
    local missing=()
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >/tmp/slurm-local-apt.log 2>&1; then
        apt-get -o DPkg::Lock::Timeout=600 update >>/tmp/slurm-local-apt.log 2>&1
        apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends "${missing[@]}" >>/tmp/slurm-local-apt.log 2>&1 \
            || { log "apt-get install failed, see /tmp/slurm-local-apt.log"; exit 1; }
    fi
}

cgroup_v1_ok() {
    # The v1 controllers Slurm's cgroup/v1 plugin needs: freezer (proctrack), cpuset + memory (task).
    local c
    for c in freezer cpuset memory; do
        [ -d "/sys/fs/cgroup/$c" ] || return 1
    done
    [ -w /sys/fs/cgroup/memory ] || return 1
    return 0
}

write_config() {
    local host real_mem mem cgroup_mode
    host="$(hostname -s)"
    real_mem="$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -n1)"
    real_mem="${real_mem:-2048}"
    # Leave a margin below what slurmd -C reports so slurmd never marks the node invalid.
    mem=$(( real_mem * 9 / 10 ))
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm "$RUN"
    chown slurm:slurm /var/spool/slurmctld /var/log/slurm 2>/dev/null || true
    if cgroup_v1_ok; then
        cgroup_mode=cgroup
        cat >/etc/slurm/cgroup.conf <<EOF
# written by hpckit scripts/slurm-local.sh
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
ConstrainCores=yes
ConstrainRAMSpace=yes
ConstrainSwapSpace=no
EOF
    else
        cgroup_mode=linuxproc
        log "cgroup v1 controllers (freezer, cpuset, memory) not found under /sys/fs/cgroup:"
        log "falling back to proctrack/linuxproc + task/none: --mem is NOT enforced and children"
        log "that ignore SIGTERM survive scancel"
        rm -f /etc/slurm/cgroup.conf
    fi
    {
        echo "# written by hpckit scripts/slurm-local.sh ($cgroup_mode mode)"
        echo "ClusterName=hpckit"
        echo "SlurmctldHost=${host}(127.0.0.1)"
        echo "SlurmUser=slurm"
        echo "AuthType=auth/munge"
        echo "StateSaveLocation=/var/spool/slurmctld"
        echo "SlurmdSpoolDir=/var/spool/slurmd"
        echo "SlurmctldPidFile=$RUN/slurmctld.pid"
        echo "SlurmdPidFile=$RUN/slurmd.pid"
        echo "SlurmctldLogFile=/var/log/slurm/slurmctld.log"
        echo "SlurmdLogFile=/var/log/slurm/slurmd.log"
        echo "SlurmdParameters=config_overrides"
        echo "ReturnToService=2"
        echo "MpiDefault=none"
        echo "SchedulerType=sched/backfill"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_Core_Memory"
        echo "DefMemPerCPU=512"
        echo "JobCompType=jobcomp/none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "AccountingStorageType=accounting_storage/none"
        echo "KillWait=5"
        echo "MinJobAge=300"
        echo "SlurmdTimeout=60"
        if [ "$cgroup_mode" = cgroup ]; then
            echo "ProctrackType=proctrack/cgroup"
            echo "TaskPlugin=task/cgroup,task/affinity"
        else
            echo "ProctrackType=proctrack/linuxproc"
            echo "TaskPlugin=task/none"
        fi
        echo "NodeName=${host} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${mem} State=UNKNOWN"
        echo "PartitionName=${PARTITION} Nodes=${host} Default=YES MaxTime=INFINITE State=UP"
    } >"$CONF"
    log "wrote $CONF (NodeName=$host CPUs=$CPUS RealMemory=$mem partition=$PARTITION, $cgroup_mode)"
}

start_munge() {
    if alive /run/munge/munged.pid; then return 0; fi
    mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    chmod 0755 /run/munge
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    if command -v runuser >/dev/null; then
        runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
    else
        su -s /bin/sh munge -c '/usr/sbin/munged --pid-file=/run/munge/munged.pid'
    fi
    for _ in $(seq 50); do alive /run/munge/munged.pid && return 0; sleep 0.1; done
    log "munged did not start"; exit 1
}

start() {
    need_root
    if alive "$RUN/slurmctld.pid" && alive "$RUN/slurmd.pid" && node_ready; then
        log "already up"
        return 0
    fi
    install_packages
    mkdir -p "$RUN"
    if ! { alive "$RUN/slurmctld.pid" || alive "$RUN/slurmd.pid"; }; then
        write_config
    fi
    start_munge
    if ! alive "$RUN/slurmctld.pid"; then
        # -c: clear previous state (no stale jobs from an earlier run)
        /usr/sbin/slurmctld -c
    fi
    if ! alive "$RUN/slurmd.pid"; then
        /usr/sbin/slurmd
    fi
    for _ in $(seq 100); do
        if node_ready; then
            log "up: $(sinfo -h -N -o '%N %P %T %c CPUs %m MB' | head -n1)"
            return 0
        fi
        sleep 0.2
    done
    log "node did not become idle within 20 s; sinfo says:"
    sinfo -N -l >&2 || true
    log "see /var/log/slurm/slurmctld.log and /var/log/slurm/slurmd.log"
    exit 1
}

stop_one() { # stop_one NAME PIDFILE
    local pid
    if alive "$2"; then
        pid="$(cat "$2")"
        kill "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        log "stopped $1 ($pid)"
    fi
    rm -f "$2"
}

stop() {
    need_root
    stop_one slurmd "$RUN/slurmd.pid"
    stop_one slurmctld "$RUN/slurmctld.pid"
    stop_one munged /run/munge/munged.pid
}

status() {
    local rc=0 name f
    for name in munged slurmctld slurmd; do
        case $name in munged) f=/run/munge/munged.pid ;; *) f="$RUN/$name.pid" ;; esac
        if alive "$f"; then echo "$name: running (pid $(cat "$f"))"; else echo "$name: not running"; rc=1; fi
    done
    if node_ready; then sinfo -N -o '%N %P %T %c %m'; else echo "node: not ready"; rc=1; fi
    return $rc
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    restart) stop; start ;;
    *) echo "usage: $0 start|stop|status|restart" >&2; exit 2 ;;
esac
