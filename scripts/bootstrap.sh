#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian 12 machine (as root) and is quick when all is there:
# the Debian packages the lab, tests and demo run for real, and the npm dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
quiet=false
[ "${1:-}" = "--quiet" ] && quiet=true
say() { $quiet || echo "bootstrap: $*"; }

debian_packages=(
  mariadb-server mariadb-client mariadb-backup btrfs-progs sysbench zstd mydumper percona-toolkit
  cloud-init hyperfine systemd util-linux procps psmisc e2fsprogs xfsprogs prometheus-node-exporter
)
# Commands whose absence means a package is missing; dpkg-query alone misses half-removed installs.
required_commands=(mariadbd mariadb mariadb-backup mkfs.btrfs btrfs sysbench zstd mydumper myloader cloud-init hyperfine systemd-analyze losetup prometheus-node-exporter)

missing=()
for pkg in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
for cmd in "${required_commands[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$cmd" >/dev/null 2>&1 || missing+=("cmd:$cmd")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing Debian packages (${missing[*]}); run as root or install them with apt-get" >&2
    exit 1
  fi
  say "installing Debian packages: ${missing[*]}"
  # The lab starts its own servers; the distribution's mariadb service must not start on install.
  policy_rc=/usr/sbin/policy-rc.d
  created_policy=false
  if [ ! -e "$policy_rc" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy_rc" && chmod +x "$policy_rc" && created_policy=true
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${debian_packages[@]}" >/dev/null
  $created_policy && rm -f "$policy_rc"
fi

lock_stamp=node_modules/.package-lock.json
if [ ! -d node_modules ] || [ ! -f "$lock_stamp" ] || [ package-lock.json -nt "$lock_stamp" ]; then
  say "installing npm dependencies (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error
fi
say "ready"
