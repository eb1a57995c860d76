// The native UDP receive path (native/udp_recv.c, built by scripts/build-native.sh into
// dist/native/udp_recv.node): loaded once, checked for shape, typed. When it is missing or does not
// load, the answer is the reason, and the caller uses Node's dgram instead.
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/** An open native socket. `buffer` holds `slots` datagrams of up to `slotBytes` each; `meta` their metadata (see META). */
export interface NativeUdpHandle {
  readonly port: number;
  readonly address: string;
  readonly family: 4 | 6;
  /** What the kernel granted (SO_RCVBUF reads back double the request, as Linux keeps room for its bookkeeping). */
  readonly recvBufferBytes: number;
  /** True when SO_RCVBUFFORCE (root) set it past net.core.rmem_max. */
  readonly recvBufferForced: boolean;
  readonly buffer: ArrayBuffer;
  readonly meta: ArrayBuffer;
  readonly slots: number;
  readonly slotBytes: number;
}

/** Offsets of the int32 metadata words of one slot; a slot has `metaInts` of them. */
export const META = { length: 0, truncated: 1, family: 2, port: 3, addr0: 4 } as const;

export interface NativeUdpOpenOptions {
  /** A numeric IPv4 or IPv6 address. */
  host: string;
  port: number;
  recvBufferBytes?: number;
  /** 1 (default): as root, SO_RCVBUFFORCE sets the buffer past net.core.rmem_max; 0: SO_RCVBUF only, capped by it. */
  forceRecvBuffer?: 0 | 1;
  /** Datagrams per recvmmsg call (default 64). */
  slots?: number;
  /** Bytes per datagram slot (default 65,536: no UDP datagram is cut). */
  slotBytes?: number;
  /** recvmmsg calls per wakeup at most (default 16), so timers run under load. */
  maxBatches?: number;
}

/** An error from the addon: code is the errno name (EADDRINUSE), address "host:port" ("[v6]:port"). */
export interface NativeUdpError extends Error {
  code: string;
  errno?: number;
  syscall?: string;
  address?: string;
}

export interface NativeUdp {
  /** Binds and starts receiving; throws a NativeUdpError when the socket cannot be made or bound. */
  open(o: NativeUdpOpenOptions, onBatch: (count: number) => void, onError: (e: NativeUdpError) => void): NativeUdpHandle;
  /** Stops receiving and closes the socket; safe twice and from inside onBatch. */
  close(h: NativeUdpHandle): void;
  /** The text of a source address from a slot's metadata (family, then the four address words). */
  formatAddress(this: void, family: number, w0: number, w1: number, w2: number, w3: number): string;
  readonly metaInts: number;
}

export type NativeUdpLoad = { ok: true; addon: NativeUdp; path: string } | { ok: false; reason: string };

/** Where the build puts the addon, relative to this module (dist/src/telemetry/ → dist/native/). */
export const DEFAULT_NATIVE_UDP_PATH = fileURLToPath(new URL('../../native/udp_recv.node', import.meta.url));

const loaded = new Map<string, NativeUdpLoad>();

/** Loads the addon (once per path); a missing or broken one is a reason, not an exception. */
export function loadNativeUdp(path: string = DEFAULT_NATIVE_UDP_PATH): NativeUdpLoad {
  const known = loaded.get(path);
  if (known !== undefined) return known;
  let result: NativeUdpLoad;
  try {
    const m = createRequire(import.meta.url)(path) as Partial<NativeUdp> | null;
    if (m === null || typeof m !== 'object' || typeof m.open !== 'function' || typeof m.close !== 'function'
      || typeof m.formatAddress !== 'function' || m.metaInts !== 8) {
      result = { ok: false, reason: `${path} loaded but is not the udp_recv addon this code expects (rebuild with scripts/build-native.sh)` };
    } else {
      result = { ok: true, addon: m as NativeUdp, path };
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    result = {
      ok: false,
      reason: code === 'MODULE_NOT_FOUND'
        ? `${path} not found (built by scripts/build-native.sh, which needs gcc and Node's headers)`
        : `${path} failed to load: ${(e as Error).message}`,
    };
  }
  loaded.set(path, result);
  return result;
}
