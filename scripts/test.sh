#!/usr/bin/env bash
# Sets up VMShadow and runs every test: type-aware lint, the unit/property/CLI tests, and a quick
# pass of the benchmarks (their full runs are `vmshadow bench placement`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run lint
npm test
node dist/src/cli/main.js bench placement --quick
