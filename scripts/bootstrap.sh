#!/usr/bin/env bash
# Installs everything the collection's own commands need on a fresh Debian 12
# machine: Debian packages for the simulated cluster and the venv .venv with the
# pinned Python toolchain (requirements.txt). Idempotent; safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(python3-venv python3-setuptools python3-wheel systemd-container debootstrap iproute2 iptables
              openssh-client rsync curl ca-certificates iputils-ping shellcheck)
missing=()
for pkg in "${apt_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    if [[ $EUID -ne 0 ]]; then
        echo "bootstrap: need root to install: ${missing[*]}" >&2
        exit 1
    fi
    echo "bootstrap: apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [[ ! -x .venv/bin/python || "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    echo "bootstrap: creating .venv from requirements.txt"
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -r requirements.txt
    echo "$want" > "$stamp"
fi
echo "bootstrap: ready ($(.venv/bin/ansible --version | head -1))"
