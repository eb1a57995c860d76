#!/usr/bin/env bash
# Installs what VMShadow needs on a fresh Debian 12 machine with Node 20 (run as root), then builds it.
set -euo pipefail
cd "$(dirname "$0")/.."

# Debian packages the code and its tests use: real flow exporters and the reference collectors; QEMU (TCG)
# for real guests and live migration; iproute2 and ethtool for the lab's namespaces and WAN links; openssl
# for the migration CA; gcc, libc6-dev and cpio to build the tiny test guest; Xvnc, xterm, xdotool and
# libx11-dev for the lab's remote desktops (a real VNC server and a small Xlib video player); nftables for
# the proxy's address rewriting between subnets; haproxy as the proxy benchmark's reference; postgresql for
# the replicated store (the tests start their own server); chromium for the dashboard's browser tests.
APT_PACKAGES=(softflowd pmacct nfdump qemu-system-x86 qemu-utils iproute2 iputils-ping procps ethtool openssl gcc libc6-dev cpio tigervnc-standalone-server xterm xdotool libx11-dev haproxy nftables postgresql chromium)

apt_install() {
  [ "$#" -gt 0 ] || return 0
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ "${#missing[@]}" -gt 0 ] || return 0
  # Another apt may hold the dpkg lock for a while on a fresh machine: retry.
  for i in $(seq 1 30); do
    if DEBIAN_FRONTEND=noninteractive apt-get update -q && \
       DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; then
      return 0
    fi
    echo "apt-get failed (attempt $i), retrying in 10 s" >&2
    sleep 10
  done
  echo "could not install: ${missing[*]}" >&2
  return 1
}

apt_install "${APT_PACKAGES[@]}"

node -e 'const [M]=process.versions.node.split(".").map(Number); if (M < 20) { console.error("VMShadow needs Node 20 or later, found " + process.version); process.exit(1); }'
npm ci --no-audit --no-fund
npm run build
