// A checksummed, sequence-numbered stream for proving that a TCP session through the proxy lost, duplicated,
// reordered or corrupted nothing. The client sends frames to an echo server (through whatever sits between)
// and verifies every frame that comes back; it reports what it verified, anything wrong, and the longest
// stall (the longest wait for the next verified frame while frames were outstanding).
//
// Frame (big endian): magic 'VMSS' | stream id u32 | seq u32 | payload length u32 | crc32 u32 | payload.
// The crc covers stream id, seq, length and payload; the payload is a pattern derived from (stream, seq).
//
// Also a CLI, for running either end inside a network namespace:
//   node dist/src/testing/stream-check.js echo   --host H --port P
//   node dist/src/testing/stream-check.js client --host H --port P [--seconds S] [--interval-ms I]
//        [--frame-bytes B] [--window-bytes W] [--stream-id N] [--progress-ms M] [--stall-timeout-ms T]
// Each prints JSON lines: the echo server {"event":"listening",...}; the client {"event":"connected"},
// {"event":"progress",...} every M ms, and finally {"event":"result",...}. SIGTERM makes the client stop
// sending early and finish as if its time were up.
import type { ChildProcess } from 'node:child_process';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { crc32 } from 'node:zlib';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

export const FRAME_MAGIC = 0x564d5353;
export const HEADER_BYTES = 20;
export const MAX_PAYLOAD_BYTES = 1 << 20;
/** Gaps remembered for telling a late frame (reordered) from a repeated one (duplicated). */
const MAX_TRACKED_GAPS = 100_000;

function fillPattern(buf: Uint8Array, streamId: number, seq: number): void {
  let x = (Math.imul(seq, 0x9e3779b1) ^ Math.imul(streamId, 0x85ebca6b) ^ 0x5bd1e995) >>> 0;
  for (let i = 0; i < buf.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    buf[i] = x & 255;
  }
}

/** One frame: header and payload. */
export function encodeFrame(streamId: number, seq: number, payloadBytes: number): Buffer {
  if (!Number.isInteger(payloadBytes) || payloadBytes < 0 || payloadBytes > MAX_PAYLOAD_BYTES) throw new RangeError(`payloadBytes must be 0–${MAX_PAYLOAD_BYTES}, got ${payloadBytes}`);
  const buf = Buffer.allocUnsafe(HEADER_BYTES + payloadBytes);
  buf.writeUInt32BE(FRAME_MAGIC, 0);
  buf.writeUInt32BE(streamId >>> 0, 4);
  buf.writeUInt32BE(seq >>> 0, 8);
  buf.writeUInt32BE(payloadBytes, 12);
  fillPattern(buf.subarray(HEADER_BYTES), streamId, seq);
  buf.writeUInt32BE(frameCrc(buf, payloadBytes), 16);
  return buf;
}

function frameCrc(frame: Buffer, payloadBytes: number): number {
  const c = crc32(frame.subarray(4, 16));
  return crc32(frame.subarray(HEADER_BYTES, HEADER_BYTES + payloadBytes), c);
}

export interface VerifierCounts {
  framesVerified: number;
  bytesVerified: number;
  /** frames skipped over (a later seq arrived first) that have not arrived since */
  framesLost: number;
  /** frames that arrived again after they had been verified */
  framesDuplicated: number;
  /** frames that arrived after a later one (counted once they arrive) */
  framesReordered: number;
  /** bad magic or crc, or a frame of another stream: bytes that are not what was sent */
  corruptions: number;
  /** the next seq expected */
  nextSeq: number;
}

/** Parses frames out of a byte stream and checks each; never throws on bad input, it counts it. */
export class StreamVerifier {
  readonly counts: VerifierCounts = { framesVerified: 0, bytesVerified: 0, framesLost: 0, framesDuplicated: 0, framesReordered: 0, corruptions: 0, nextSeq: 0 };
  private pending: Buffer = Buffer.alloc(0);
  private readonly gaps = new Set<number>();
  private resyncing = false;

  constructor(readonly streamId: number) {}

  /** Feeds received bytes; returns the seqs verified in order (the caller's progress signal). */
  push(chunk: Buffer): number {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    let off = 0;
    let verified = 0;
    const p = this.pending;
    while (p.length - off >= HEADER_BYTES) {
      if (p.readUInt32BE(off) !== FRAME_MAGIC) {
        if (!this.resyncing) this.counts.corruptions++;
        this.resyncing = true;
        off++;
        continue;
      }
      const len = p.readUInt32BE(off + 12);
      if (len > MAX_PAYLOAD_BYTES) {
        if (!this.resyncing) this.counts.corruptions++;
        this.resyncing = true;
        off++;
        continue;
      }
      if (p.length - off < HEADER_BYTES + len) break;
      const frame = p.subarray(off, off + HEADER_BYTES + len);
      if (frame.readUInt32BE(16) !== frameCrc(frame, len) || frame.readUInt32BE(4) !== this.streamId) {
        if (!this.resyncing) this.counts.corruptions++;
        this.resyncing = true;
        off++;
        continue;
      }
      this.resyncing = false;
      off += HEADER_BYTES + len;
      const seq = frame.readUInt32BE(8);
      const c = this.counts;
      if (seq === c.nextSeq) {
        c.nextSeq++;
        c.framesVerified++;
        c.bytesVerified += HEADER_BYTES + len;
        verified++;
      } else if (seq > c.nextSeq) {
        for (let s = c.nextSeq; s < seq && this.gaps.size < MAX_TRACKED_GAPS; s++) this.gaps.add(s);
        c.framesLost += seq - c.nextSeq;
        c.nextSeq = seq + 1;
        c.framesVerified++;
        c.bytesVerified += HEADER_BYTES + len;
        verified++;
      } else if (this.gaps.delete(seq)) {
        c.framesLost--;
        c.framesReordered++;
      } else {
        c.framesDuplicated++;
      }
    }
    this.pending = off >= p.length ? Buffer.alloc(0) : p.subarray(off);
    return verified;
  }

  /** Bytes received that do not (yet) form a whole frame. */
  get partialBytes(): number {
    return this.pending.length;
  }

  /** Nothing lost, duplicated, reordered or corrupted so far. */
  get clean(): boolean {
    const c = this.counts;
    return c.framesLost === 0 && c.framesDuplicated === 0 && c.framesReordered === 0 && c.corruptions === 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Client

export interface StreamCheckOptions {
  host: string;
  port: number;
  /** how long to send; then the client half-closes and waits for the rest to come back */
  durationMs: number;
  /** payload bytes per frame (default 1000) */
  frameBytes?: number;
  /** a frame every intervalMs; 0 (default): as fast as the window allows */
  intervalMs?: number;
  /** most bytes sent but not yet verified (default 4 MiB) */
  windowBytes?: number;
  streamId?: number;
  /** end with 'timeout' when nothing is verified for this long while frames are outstanding (default 30 s) */
  stallTimeoutMs?: number;
  connectTimeoutMs?: number;
  /** stops sending early (then half-closes and waits for the rest, as at the end of durationMs) */
  stop?: AbortSignal;
  onConnect?: () => void;
  onProgress?: (p: StreamProgress) => void;
  progressMs?: number;
}

export interface StreamProgress {
  elapsedMs: number;
  framesSent: number;
  framesVerified: number;
  bytesVerified: number;
  longestStallMs: number;
  /** ms since the last verified frame */
  stalledMs: number;
}

/**
 * How the session ended: 'completed' (everything sent came back, then the server's FIN); 'closed' (FIN
 * before everything came back); 'reset' (ECONNRESET / EPIPE); 'timeout' (stall timeout); 'connect-failed';
 * 'error' (anything else).
 */
export type StreamEnd = 'completed' | 'closed' | 'reset' | 'timeout' | 'connect-failed' | 'error';

export interface StreamCheckResult extends VerifierCounts {
  end: StreamEnd;
  errorCode: string | null;
  framesSent: number;
  bytesSent: number;
  /** frames sent that never came back before the session ended (in flight at a close or reset) */
  framesUnreturned: number;
  durationMs: number;
  longestStallMs: number;
  /** when the longest stall ended, ms after connect */
  longestStallEndMs: number;
  /** round trip of the frames (send → verified), ms */
  rttMedianMs: number | null;
  rttP99Ms: number | null;
  /** no frame lost, duplicated, reordered or corrupted: what came back is exactly a prefix of what was sent */
  intact: boolean;
}

function percentile(sorted: readonly number[], q: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Runs one checked session; resolves with the result whatever happens (it never rejects). */
export function runStreamCheck(o: StreamCheckOptions): Promise<StreamCheckResult> {
  const frameBytes = o.frameBytes ?? 1000;
  const intervalMs = o.intervalMs ?? 0;
  const windowBytes = o.windowBytes ?? 4 * 1024 * 1024;
  const streamId = (o.streamId ?? Math.floor(Math.random() * 0xffffffff)) >>> 0;
  const stallTimeoutMs = o.stallTimeoutMs ?? 30_000;
  const verifier = new StreamVerifier(streamId);
  const frameTotal = HEADER_BYTES + frameBytes;
  const sentAt: number[] = [];
  const rtts: number[] = [];
  let framesSent = 0;
  let t0 = performance.now();
  let lastProgressAt = t0;
  let longestStallMs = 0;
  let longestStallEndMs = 0;
  let sendingDone = false;
  let finished = false;
  let gotFin = false;
  let connected = false;

  return new Promise((done) => {
    const sock: Socket = createConnection({ host: o.host, port: o.port, allowHalfOpen: true, noDelay: true });
    const timers: NodeJS.Timeout[] = [];
    const finish = (end: StreamEnd, errorCode: string | null): void => {
      if (finished) return;
      finished = true;
      for (const t of timers) clearInterval(t);
      sock.destroy();
      const now = performance.now();
      const c = verifier.counts;
      rtts.sort((a, b) => a - b);
      const unreturned = Math.max(0, framesSent - c.nextSeq);
      // A session that ends while waiting for a frame stalled until then.
      if (framesSent > c.framesVerified && end !== 'connect-failed') {
        const stall = now - lastProgressAt;
        if (stall > longestStallMs) {
          longestStallMs = stall;
          longestStallEndMs = now - t0;
        }
      }
      done({
        ...c,
        end, errorCode, framesSent, bytesSent: framesSent * frameTotal, framesUnreturned: unreturned,
        durationMs: now - t0,
        longestStallMs, longestStallEndMs,
        rttMedianMs: percentile(rtts, 0.5), rttP99Ms: percentile(rtts, 0.99),
        intact: verifier.clean,
      });
    };

    const connectTimer = setTimeout(() => finish('connect-failed', 'ETIMEDOUT'), o.connectTimeoutMs ?? 10_000);
    let writable = true;
    const inFlight = (): number => (framesSent - verifier.counts.nextSeq) * frameTotal;
    const sendOne = (): boolean => {
      sentAt[framesSent % 65536] = performance.now();
      writable = sock.write(encodeFrame(streamId, framesSent, frameBytes));
      framesSent++;
      return writable;
    };
    const pump = (): void => {
      if (finished || sendingDone || intervalMs > 0) return;
      // Bounded per turn so the event loop can read the echo.
      for (let k = 0; k < 256 && writable && inFlight() + frameTotal <= windowBytes; k++) sendOne();
      if (writable && inFlight() + frameTotal <= windowBytes) setImmediate(pump);
    };
    const stopSending = (): void => {
      if (sendingDone) return;
      sendingDone = true;
      sock.end();
      checkComplete();
    };
    const checkComplete = (): void => {
      if (sendingDone && gotFin) {
        finish(verifier.counts.nextSeq >= framesSent && verifier.partialBytes === 0 ? 'completed' : 'closed', null);
      }
    };

    sock.once('connect', () => {
      clearTimeout(connectTimer);
      connected = true;
      o.onConnect?.();
      t0 = performance.now();
      lastProgressAt = t0;
      timers.push(setTimeout(stopSending, o.durationMs));
      if (o.stop !== undefined) {
        if (o.stop.aborted) setImmediate(stopSending);
        else o.stop.addEventListener('abort', stopSending, { once: true });
      }
      if (intervalMs > 0) {
        sendOne();
        timers.push(setInterval(() => {
          if (!sendingDone && !finished) sendOne();
        }, intervalMs));
      } else {
        pump();
      }
      timers.push(setInterval(() => {
        const now = performance.now();
        if (framesSent > verifier.counts.framesVerified && now - lastProgressAt > stallTimeoutMs) finish('timeout', 'STALL');
      }, Math.min(1000, stallTimeoutMs / 4)));
      if (o.onProgress !== undefined) {
        const cb = o.onProgress;
        timers.push(setInterval(() => {
          const now = performance.now();
          const c = verifier.counts;
          cb({ elapsedMs: now - t0, framesSent, framesVerified: c.framesVerified, bytesVerified: c.bytesVerified, longestStallMs, stalledMs: framesSent > c.framesVerified ? now - lastProgressAt : 0 });
        }, o.progressMs ?? 500));
      }
    });
    sock.on('drain', () => {
      writable = true;
      pump();
    });
    sock.on('data', (chunk: Buffer) => {
      const before = verifier.counts.nextSeq;
      const n = verifier.push(chunk);
      if (n > 0) {
        const now = performance.now();
        const stall = now - lastProgressAt;
        if (stall > longestStallMs) {
          longestStallMs = stall;
          longestStallEndMs = now - t0;
        }
        lastProgressAt = now;
        const after = verifier.counts.nextSeq;
        // Sample RTTs (at most 64 per chunk) of the frames verified in this chunk.
        const step = Math.max(1, Math.floor((after - before) / 64));
        for (let s = before; s < after; s += step) {
          if (framesSent - s <= 65536) rtts.push(now - sentAt[s % 65536]!);
        }
        if (rtts.length > 200_000) rtts.splice(0, 100_000);
        pump();
      }
    });
    sock.on('end', () => {
      gotFin = true;
      if (!sendingDone) {
        // The server closed before we were done: a clean close, reported as such.
        finish('closed', null);
        return;
      }
      checkComplete();
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(connectTimer);
      const code = e.code ?? 'ERROR';
      if (!connected) finish('connect-failed', code);
      else if (code === 'ECONNRESET' || code === 'EPIPE') finish('reset', code);
      else finish('error', code);
    });
    sock.on('close', () => {
      if (!finished) finish(gotFin ? 'closed' : 'reset', null);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Echo server

export interface EchoServer {
  readonly host: string;
  readonly port: number;
  readonly server: Server;
  /** connections accepted so far */
  connections(): number;
  /** bytes echoed so far (closed and open connections) */
  bytes(): number;
  /** currently open connections */
  sockets(): ReadonlySet<Socket>;
  close(): Promise<void>;
}

/** An echo server: every byte back, FIN after the client's FIN (half-close), backpressure by pipe. */
export async function startEchoServer(o: { host?: string; port?: number } = {}): Promise<EchoServer> {
  const host = o.host ?? '127.0.0.1';
  const open = new Set<Socket>();
  let conns = 0;
  let closedBytes = 0;
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (s) => {
    conns++;
    open.add(s);
    s.on('error', () => undefined);
    s.once('close', () => {
      closedBytes += s.bytesWritten;
      open.delete(s);
    });
    s.pipe(s);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
  return {
    host, port, server,
    connections: () => conns,
    bytes: () => closedBytes + [...open].reduce((s, x) => s + x.bytesWritten, 0),
    sockets: () => open,
    close: () => new Promise<void>((resolve) => {
      for (const s of open) s.destroy();
      server.close(() => resolve());
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// A client started as a process (inside a namespace): its JSON lines as promises

/** The path of this module once built, for `node STREAM_CHECK client|echo …` in a namespace. */
export const STREAM_CHECK = fileURLToPath(import.meta.url);

export interface StreamClientWatch {
  /** resolves when the client is connected; rejects if it ends first */
  readonly connected: Promise<void>;
  /** the latest progress line, if any */
  progress(): StreamProgress | null;
  /** resolves with the result line; rejects if the process exits without one or after `timeoutMs` */
  readonly result: Promise<StreamCheckResult>;
}

export function watchStreamClient(child: ChildProcess, timeoutMs: number): StreamClientWatch {
  let latest: StreamProgress | null = null;
  let err = '';
  let onConnected: () => void = () => undefined;
  let failConnected: (e: Error) => void = () => undefined;
  const connected = new Promise<void>((res, rej) => {
    onConnected = res;
    failConnected = rej;
  });
  connected.catch(() => undefined);
  const result = new Promise<StreamCheckResult>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`stream client: no result within ${timeoutMs} ms; stderr: ${err.slice(-500) || '(none)'}`));
    }, timeoutMs);
    let buf = '';
    child.stderr?.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-4000);
    });
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let o: { event?: string } & Record<string, unknown>;
        try {
          o = JSON.parse(line) as typeof o;
        } catch {
          continue;
        }
        if (o.event === 'connected') onConnected();
        else if (o.event === 'progress') latest = o as unknown as StreamProgress;
        else if (o.event === 'result') {
          clearTimeout(timer);
          onConnected();
          resolve(o as unknown as StreamCheckResult);
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      const e = new Error(`stream client exited (${String(code)}) without a result; stderr: ${err.slice(-500) || '(none)'}`);
      failConnected(e);
      reject(e);
    });
  });
  return { connected, progress: () => latest, result };
}

// ---------------------------------------------------------------------------------------------
// CLI

async function main(argv: string[]): Promise<void> {
  const [cmd, ...rest] = argv;
  const { values: v } = parseArgs({
    args: rest,
    options: {
      host: { type: 'string', default: '127.0.0.1' },
      port: { type: 'string', default: '0' },
      seconds: { type: 'string', default: '5' },
      'interval-ms': { type: 'string', default: '0' },
      'frame-bytes': { type: 'string', default: '1000' },
      'window-bytes': { type: 'string', default: String(4 * 1024 * 1024) },
      'stream-id': { type: 'string' },
      'progress-ms': { type: 'string', default: '500' },
      'stall-timeout-ms': { type: 'string', default: '30000' },
    },
  });
  const out = (o: Record<string, unknown>): void => {
    process.stdout.write(JSON.stringify(o) + '\n');
  };
  if (cmd === 'echo') {
    const srv = await startEchoServer({ host: v.host, port: Number(v.port) });
    out({ event: 'listening', host: srv.host, port: srv.port });
    const stop = (): void => {
      void srv.close().then(() => process.exit(0));
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    return;
  }
  if (cmd === 'client') {
    // SIGTERM: stop sending, take back what is in flight, print the result.
    const stop = new AbortController();
    process.on('SIGTERM', () => stop.abort());
    const r = await runStreamCheck({
      stop: stop.signal,
      host: v.host, port: Number(v.port), durationMs: Number(v.seconds) * 1000,
      intervalMs: Number(v['interval-ms']), frameBytes: Number(v['frame-bytes']), windowBytes: Number(v['window-bytes']),
      ...(v['stream-id'] === undefined ? {} : { streamId: Number(v['stream-id']) }),
      stallTimeoutMs: Number(v['stall-timeout-ms']),
      onConnect: () => out({ event: 'connected' }),
      progressMs: Number(v['progress-ms']),
      onProgress: (p) => out({ event: 'progress', ...p }),
    });
    out({ event: 'result', ...r });
    process.exit(0);
  }
  process.stderr.write('usage: stream-check.js echo|client --host H --port P [options]\n');
  process.exit(2);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await main(process.argv.slice(2));
}
