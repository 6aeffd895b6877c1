#!/usr/bin/env bash
# Start, stop or inspect two local XRootD servers ("sites") for the remote-data tests (no systemd needed).
#
#   bash scripts/xrootd-local.sh start     install if missing, start site1 and site2; no-op when both answer
#   bash scripts/xrootd-local.sh stop      stop site1 and site2 (by pid file)
#   bash scripts/xrootd-local.sh status    one line per site: NAME PORT BASE_URL; exit 0 only when both answer
#   bash scripts/xrootd-local.sh start-one NAME PORT [DIR]   one more instance (tests: kill/SIGSTOP targets),
#                                          exporting DIR (default: site1's copy of data/); prints its base URL
#   bash scripts/xrootd-local.sh stop-one NAME               stop it (SIGCONT first, in case it is frozen)
#                                          and remove its run directory
#
# Debian's xrootd-server (5.5.3) refuses to run as root: each daemon runs as the `xrootd` user the
# package creates (`-R xrootd`). Each site exports its own copy of the repository's data/ under
# $XROOTD_LOCAL_ROOT/<site>/data, so a file is at root://127.0.0.1:PORT/$XROOTD_LOCAL_ROOT/<site>/data/<f>.
# XRootD listens on every interface (it has no bind-address option), but `xrd.allow` refuses every client
# that is not 127.0.0.1/localhost: connections from any other address are rejected at accept.
set -euo pipefail

ROOT="${XROOTD_LOCAL_ROOT:-/var/lib/hpckit-xrootd}"
RUN="${XROOTD_LOCAL_RUN:-/run/hpckit-xrootd}"
read -r -a PORTS <<<"${XROOTD_LOCAL_PORTS:-11094 11095}"
SITES=(site1 site2)
REPO_DATA="$(cd "$(dirname "$0")/.." && pwd)/data"
PKGS=(xrootd-server xrootd-client)

log() { echo "xrootd-local: $*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        log "must run as root (installs packages, starts daemons as the xrootd user)"
        exit 1
    fi
}

alive() { # alive PIDFILE: its pid runs xrootd (a pid file from an earlier boot may name another process)
    local pid
    [ -s "$1" ] && pid="$(cat "$1")" && [[ "$pid" =~ ^[0-9]+$ ]] \
        && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = xrootd ]
}

answers() { # answers PORT DIR: the server lists DIR within 10 s
    command -v xrdfs >/dev/null 2>&1 || return 1
    XRD_REQUESTTIMEOUT=5 XRD_TIMEOUTRESOLUTION=1 XRD_CONNECTIONRETRY=1 \
        timeout 10 xrdfs "127.0.0.1:$1" stat "$2" >/dev/null 2>&1
}

install_packages() {
    local missing=()
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        local apt=(apt-get -o DPkg::Lock::Timeout=600)
        if ! "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >/tmp/xrootd-local-apt.log 2>&1; then
            "${apt[@]}" update >>/tmp/xrootd-local-apt.log 2>&1
            "${apt[@]}" install -y --no-install-recommends "${missing[@]}" >>/tmp/xrootd-local-apt.log 2>&1 \
                || { log "apt-get install failed, see /tmp/xrootd-local-apt.log"; exit 1; }
        fi
    fi
    id xrootd >/dev/null 2>&1 || { log "the xrootd-server package did not create the xrootd user"; exit 1; }
}

copy_data() { # copy_data SITE: (re)copy data/*.root where they differ; readable by the xrootd user
    local dest="$ROOT/$1/data" f
    mkdir -p "$dest"
    for f in "$REPO_DATA"/*.root; do
        cmp -s "$f" "$dest/$(basename "$f")" || cp "$f" "$dest/"
    done
    chmod 755 "$ROOT" "$ROOT/$1" "$dest"
    chmod 644 "$dest"/*.root
}

write_config() { # write_config NAME PORT DIR
    local dir="$RUN/$1"
    mkdir -p "$dir/admin"
    cat >"$dir/xrootd.cfg" <<EOF
# written by hpckit scripts/xrootd-local.sh
all.export $3
xrd.port $2
xrd.allow host 127.0.0.1
xrd.allow host localhost
all.adminpath $dir/admin
all.pidpath $dir/admin
EOF
    chown -R xrootd:xrootd "$dir"
}

start_instance() { # start_instance NAME PORT DIR
    local name="$1" port="$2" dir="$3" pidfile="$RUN/$1/xrootd.pid" log_file="$RUN/$1/xrootd.log"
    [[ "$name" =~ ^[A-Za-z0-9_-]+$ ]] || { log "bad instance name: $name"; exit 2; }
    [[ "$port" =~ ^[0-9]+$ ]] || { log "bad port for $name: $port"; exit 2; }
    if alive "$pidfile" && answers "$port" "$dir"; then
        log "$name already up on port $port (pid $(cat "$pidfile"))"
        return 0
    fi
    if alive "$pidfile"; then
        stop_instance "$name"
    fi
    if ss -Hltn "sport = :$port" 2>/dev/null | grep -q .; then
        log "$name: port $port is already in use by another process"
        exit 1
    fi
    # Up to three tries, each from an empty run directory: a run directory left from an earlier boot
    # holds admin/ state and pid files whose pid a new process may now carry, and one such start in CI
    # exited non-zero without a word; the daemon's own log (-l) says why, so a failure shows it.
    local try
    for try in 1 2 3; do
        rm -rf "${RUN:?}/$name"
        write_config "$name" "$port" "$dir"
        if xrootd -b -R xrootd -c "$RUN/$name/xrootd.cfg" -l "$log_file" -s "$pidfile" >>"$RUN/$name/start.log" 2>&1; then
            for _ in $(seq 100); do
                if alive "$pidfile" && answers "$port" "$dir"; then
                    log "$name up on port $port (pid $(cat "$pidfile")), exporting $dir"
                    return 0
                fi
                sleep 0.2
            done
            log "$name did not answer on port $port within 20 s (try $try)"
        else
            log "$name: xrootd refused to start (try $try)"
        fi
        tail -n 20 "$RUN/$name/start.log" "$log_file"* >&2 2>/dev/null || true
        stop_instance "$name"
        sleep 2
    done
    log "$name: no xrootd on port $port after 3 tries; its output is above"
    exit 1
}

stop_instance() { # stop_instance NAME: SIGCONT (a test may have frozen it), SIGTERM, then SIGKILL
    local pidfile="$RUN/$1/xrootd.pid" pid
    if alive "$pidfile"; then
        pid="$(cat "$pidfile")"
        kill -CONT "$pid" 2>/dev/null || true
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
        log "stopped $1 ($pid)"
    fi
    rm -f "$pidfile"
}

base_url() { # base_url PORT DIR
    echo "root://127.0.0.1:$1/$2"
}

start() {
    need_root
    install_packages
    local i
    for i in 0 1; do
        copy_data "${SITES[$i]}"
        start_instance "${SITES[$i]}" "${PORTS[$i]}" "$ROOT/${SITES[$i]}/data"
    done
    status >/dev/null || { status; exit 1; }
}

stop() {
    need_root
    local s
    for s in "${SITES[@]}"; do stop_instance "$s"; done
}

status() {
    local rc=0 i name
    for i in 0 1; do
        name="${SITES[$i]}"
        if alive "$RUN/$name/xrootd.pid" && answers "${PORTS[$i]}" "$ROOT/$name/data"; then
            echo "$name ${PORTS[$i]} $(base_url "${PORTS[$i]}" "$ROOT/$name/data")"
        else
            echo "$name: not running" >&2
            rc=1
        fi
    done
    return $rc
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    restart) stop; start ;;
    start-one)
        need_root
        [ $# -ge 3 ] || { echo "usage: $0 start-one NAME PORT [DIR]" >&2; exit 2; }
        install_packages
        dir="${4:-$ROOT/site1/data}"
        [ -d "$dir" ] || { copy_data site1; }
        start_instance "$2" "$3" "$dir"
        base_url "$3" "$dir"
        ;;
    stop-one)
        need_root
        [ $# -ge 2 ] || { echo "usage: $0 stop-one NAME" >&2; exit 2; }
        [[ "$2" =~ ^[A-Za-z0-9_-]+$ ]] || { log "bad instance name: $2"; exit 2; }
        stop_instance "$2"
        rm -rf "${RUN:?}/$2"  # its config, log and admin files: a test instance leaves nothing behind
        ;;
    *) echo "usage: $0 start|stop|status|restart|start-one NAME PORT [DIR]|stop-one NAME" >&2; exit 2 ;;
esac
