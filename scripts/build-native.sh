#!/usr/bin/env bash
# Builds the native UDP receive path (native/udp_recv.c, a Node-API addon) into dist/native/udp_recv.node
# with plain gcc: no node-gyp, no download. The napi_* and uv_* symbols resolve from the running node
# binary when the addon is loaded. Needs gcc, libc6-dev and Node's headers in /usr/include/node
# (the nodejs package from NodeSource ships them; on Debian's own node: libnode-dev).
# Usage: scripts/build-native.sh [OUTDIR]   (default: dist/native under the repo)
# Without the addon the collector still works, on Node's dgram (src/telemetry/udp.ts says which path).
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${1:-"$REPO/dist/native"}
NODE_INCLUDE=${NODE_INCLUDE:-/usr/include/node}
SRC="$REPO/native/udp_recv.c"

die() { echo "build-native: $*" >&2; exit 1; }

command -v gcc >/dev/null 2>&1 || die "needs gcc (Debian packages: gcc libc6-dev), not found in PATH"
for h in node_api.h uv.h; do
  [ -f "$NODE_INCLUDE/$h" ] ||
    die "needs Node's headers: $NODE_INCLUDE/$h not found (install the nodejs package's headers, e.g. Debian's libnode-dev, or set NODE_INCLUDE)"
done
[ -f "$SRC" ] || die "source $SRC not found"

mkdir -p "$OUT"
# -fvisibility=hidden: only the module's registration is exported.
gcc -O2 -Wall -Wextra -Werror -std=gnu11 -shared -fPIC -fvisibility=hidden -I"$NODE_INCLUDE" \
  -o "$OUT/udp_recv.node.tmp" "$SRC" || die "gcc failed on $SRC"
mv -f "$OUT/udp_recv.node.tmp" "$OUT/udp_recv.node"
echo "build-native: built $OUT/udp_recv.node"
