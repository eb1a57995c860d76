#!/usr/bin/env bash
# Builds the lab desktop's X11 tools: OUTDIR/desktop-video (src/lab/desktop/video.c against Xlib).
# Usage: scripts/build-desktop-tools.sh [OUTDIR]   (default: .cache/desktop under the repo)
# Skips the work when the binary is newer than its source and this script. Needs gcc and libx11-dev
# (Debian: apt-get install -y --no-install-recommends gcc libc6-dev libx11-dev).
# Safe to run concurrently: a lock in OUTDIR serialises builds.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-"$REPO/.cache/desktop"}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SRC="$REPO/src/lab/desktop/video.c"
BIN="$OUT/desktop-video"

die() { echo "build-desktop-tools: $*" >&2; exit 1; }

up_to_date() {
  [ -x "$BIN" ] && [ "$BIN" -nt "$SRC" ] && [ "$BIN" -nt "$REPO/scripts/build-desktop-tools.sh" ]
}

if up_to_date; then echo "build-desktop-tools: $BIN is up to date"; exit 0; fi
command -v gcc >/dev/null 2>&1 || die "needs gcc (apt-get install -y --no-install-recommends gcc libc6-dev)"
[ -f /usr/include/X11/Xlib.h ] || die "needs the Xlib headers (apt-get install -y --no-install-recommends libx11-dev)"

exec 9>"$OUT/.lock"
flock -w 120 9 || die "another build holds $OUT/.lock for more than 120 s"
if up_to_date; then echo "build-desktop-tools: $BIN is up to date"; exit 0; fi

TMP="$BIN.tmp.$$"
trap 'rm -f "$TMP"' EXIT
gcc -O2 -Wall -Wextra -Werror -o "$TMP" "$SRC" -lX11
mv -f "$TMP" "$BIN"
echo "build-desktop-tools: built $BIN"
