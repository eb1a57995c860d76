#!/usr/bin/env bash
# Runs every test file: most two at a time; the two lab scenarios (each a whole lab with QEMU desktops, Xvnc
# and timing assertions) afterwards, one at a time, so that they do not share the two cores with each other.
set -euo pipefail
cd "$(dirname "$0")/.."
SERIAL=(dist/src/lab/e2e.test.js dist/src/cli/live-demo.test.js)
mapfile -t ALL < <(find dist/src -name '*.test.js' | sort)
PARALLEL=()
for f in "${ALL[@]}"; do
  case " ${SERIAL[*]} " in *" $f "*) ;; *) PARALLEL+=("$f") ;; esac
done
node --test --test-concurrency=2 "${PARALLEL[@]}"
node --test --test-concurrency=1 "${SERIAL[@]}"
