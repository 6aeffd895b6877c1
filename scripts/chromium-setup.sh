#!/usr/bin/env bash
# Install Debian's headless-capable Chromium, used by the report tests to open report.html as a person would.
#
#   bash scripts/chromium-setup.sh          install if missing (idempotent), then check it renders a page
#   bash scripts/chromium-setup.sh status   exit 0 only when chromium is installed and renders a page
#
# The check renders a one-line page with --headless --dump-dom (no network is needed or used).
set -euo pipefail

log() { echo "chromium-setup: $*" >&2; }

works() {
    command -v chromium >/dev/null 2>&1 || return 1
    local dir page out
    dir="$(mktemp -d)"
    page="$dir/check.html"
    echo '<!DOCTYPE html><p id="ok">chromium-setup-ok</p>' >"$page"
    out="$(timeout 60 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$dir/profile" \
        --dump-dom "file://$page" 2>/dev/null || true)"
    rm -rf "$dir"
    [[ "$out" == *chromium-setup-ok* ]]
}

install() {
    dpkg-query -W -f='${Status}' chromium 2>/dev/null | grep -q "install ok installed" && return 0
    if [ "$(id -u)" -ne 0 ]; then
        log "chromium is missing and installing it needs root: sudo apt-get install chromium"
        exit 1
    fi
    log "installing chromium"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends chromium >/tmp/chromium-setup-apt.log 2>&1; then
        apt-get -o DPkg::Lock::Timeout=600 update >>/tmp/chromium-setup-apt.log 2>&1
        apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends chromium >>/tmp/chromium-setup-apt.log 2>&1 \
            || { log "apt-get install failed, see /tmp/chromium-setup-apt.log"; exit 1; }
    fi
}

case "${1:-start}" in
    start|install)
        install
        works || { log "chromium is installed but does not render a page headless"; exit 1; }
        log "chromium $(chromium --version 2>/dev/null | awk '{print $2}') renders pages headless"
        ;;
    status)
        works && log "ok" || { log "not usable; run: bash scripts/chromium-setup.sh"; exit 1; }
        ;;
    *)
        echo "usage: $0 [start|status]" >&2
        exit 2
        ;;
esac
