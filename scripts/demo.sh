#!/usr/bin/env bash
# Sets up VMShadow and runs the main job (as root): a lab of three cloud sites with real RTTs, desktop VMs
# running real QEMU guests, the manager with its dashboard, and the research system's scenario — a desktop
# that follows its user when she starts a video, and a bulk download left where it is. Extra arguments go
# to `vmshadow demo` (e.g. --duration-s 600, --listen 0.0.0.0:8080, --json). Ctrl-C stops it cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
exec node dist/src/cli/main.js demo "$@"
