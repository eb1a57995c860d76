#!/usr/bin/env bash
# Sets up VMShadow and runs the main job: a simulated day of a multi-region desktop cloud built from
# real latency data, reported in the terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >&2
node dist/src/cli/main.js demo "$@"
