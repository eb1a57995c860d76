// A measuring RFB 3.8 viewer over node:net. It behaves like a real VNC viewer — one outstanding
// incremental FramebufferUpdateRequest at a time, the next one sent as soon as an update has been
// fully received — and times each update from request sent to last byte received. That update time,
// and the updates per second it allows, are what the user of a remote desktop feels.
//
//   const c = await RfbClient.connect({ host, port, probe: { x, y } });
//   const s = await c.measure(3000);   // UpdateSummary: updates/s, bytes/s, update time p50/p95
//   await c.close();
//
// Security type None only (the lab runs Xvnc with -SecurityTypes None). Encodings: Raw and CopyRect,
// plus the DesktopSize and LastRect pseudo-encodings.
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { AppError, InputError } from '../../core/errors.js';
import {
  ByteQueue,
  chooseVersion,
  decodeMarker,
  encodeSetEncodings,
  encodeSetPixelFormat,
  encodeUpdateRequest,
  encodeVersion,
  ENCODING,
  MARKER_PIXELS,
  parseServerInitHead,
  parseVersion,
  PF_RGB888,
  RfbProtocolError,
  SECURITY_NONE,
  SERVER_INIT_HEAD_BYTES,
  ServerMessageParser,
  text,
  type PixelFormat,
  type RfbVersion,
  type ServerEvent,
} from './rfb-proto.js';
import { summarize, type UpdateSample, type UpdateSummary } from './update-stats.js';

export interface RfbClientOptions {
  host: string;
  port: number;
  /** TCP connect plus handshake (default 10 s) */
  connectTimeoutMs?: number;
  /** an update's first byte to its last (default 10 s); a stalled update fails the client */
  updateTimeoutMs?: number;
  /** default ['copyRect', 'raw'] (in order of preference) */
  encodings?: readonly ('raw' | 'copyRect')[];
  /** default 32-bit RGB888 */
  pixelFormat?: PixelFormat;
  /** where the video's frame marker sits (its window's top-left pixel): enables frame age */
  probe?: { x: number; y: number };
  /** samples kept for summaries (default 20 000; the oldest go first) */
  maxSamples?: number;
  /** monotonic clock in ms (default performance.now) */
  now?: () => number;
  /** wall clock in ms, to compare with the draw time in the video's marker (default Date.now) */
  wallNow?: () => number;
  /** called after every update that answered a request */
  onUpdate?: (s: UpdateSample) => void;
}

export interface RfbLiveStats {
  state: 'running' | 'closed' | 'failed';
  serverVersion: string;
  desktopName: string;
  width: number;
  height: number;
  updates: number;
  bytes: number;
  /** how long the outstanding request has waited (an idle desktop sends nothing) */
  waitingMs: number | null;
  lastUpdate: UpdateSample | null;
  /** the updates of the last two seconds */
  recent: UpdateSummary;
  error: string | null;
}

/** Big-endian u32 (Buffer#slice shares memory, so no DataView over .buffer here). */
const readU32 = (b: Uint8Array): number => ((b[0]! << 24) >>> 0) + ((b[1]! << 16) | (b[2]! << 8) | b[3]!);

const HANDSHAKE_BUFFER_BYTES = 2 * 1024 * 1024;
const RECENT_MS = 2000;
const MAX_MEASURE_MS = 600_000;

export class RfbClient {
  private readonly samples: UpdateSample[] = [];
  private readonly measures = new Set<{ reject: (e: Error) => void }>();
  private parser!: ServerMessageParser;
  private requestAt: number | null = null;
  private updateTimer: NodeJS.Timeout | null = null;
  private updateStartedAt: number | null = null;
  private pendingProbe: number[] | null = null;
  private totalBytes = 0;
  private totalUpdates = 0;
  private state: 'running' | 'closed' | 'failed' = 'running';
  private error: Error | null = null;
  private closing = false;
  private initialDone = false;
  /** bytes up to the end of the first, full-screen update (not counted in `bytes`) */
  initialBytes = 0;
  private resolveInitial!: () => void;
  private readonly initialFrame: Promise<void>;
  private resolveClosed!: (e: Error | null) => void;
  /** Resolves when the connection ends: null after close(), the error otherwise. */
  readonly closed: Promise<Error | null>;
  private readonly now: () => number;
  private readonly wallNow: () => number;

  private constructor(
    private readonly socket: net.Socket,
    private readonly o: RfbClientOptions,
    readonly serverVersion: RfbVersion,
    private fb: { width: number; height: number },
    readonly desktopName: string,
    private readonly encodings: readonly number[],
    private readonly pf: PixelFormat,
  ) {
    this.now = o.now ?? (() => performance.now());
    this.wallNow = o.wallNow ?? Date.now;
    this.closed = new Promise((r) => (this.resolveClosed = r));
    this.initialFrame = new Promise((r) => (this.resolveInitial = r));
  }

  get width(): number {
    return this.fb.width;
  }

  get height(): number {
    return this.fb.height;
  }

  /**
   * Connects, completes the handshake, sets the pixel format and encodings, and resolves once the
   * first full-screen update has arrived; from then on it keeps one incremental request outstanding.
   */
  static async connect(o: RfbClientOptions): Promise<RfbClient> {
    if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535) throw new InputError('port', o.port, 'must be a TCP port 1–65535');
    const connectTimeoutMs = o.connectTimeoutMs ?? 10_000;
    const names = o.encodings ?? ['copyRect', 'raw'];
    if (names.length === 0 || names.some((n) => n !== 'raw' && n !== 'copyRect')) throw new InputError('encodings', names, "must list 'raw' and/or 'copyRect'");
    const encodings: number[] = [...new Set(names)].map((n) => ENCODING[n]);
    if (!encodings.includes(ENCODING.raw)) encodings.push(ENCODING.raw);
    encodings.push(ENCODING.desktopSize, ENCODING.lastRect);
    const pf = o.pixelFormat ?? PF_RGB888;
    if (!pf.trueColour) throw new InputError('pixelFormat.trueColour', pf.trueColour, 'must be true (this viewer keeps no colour map)');
    const where = `${o.host}:${o.port}`;

    const socket = net.connect({ host: o.host, port: o.port });
    socket.setNoDelay(true);
    const q = new ByteQueue(HANDSHAKE_BUFFER_BYTES);
    let waiter: { n: number; resolve: () => void } | null = null;
    let failure: Error | null = null;
    let failWaiter: ((e: Error) => void) | null = null;
    const fail = (e: Error): void => {
      failure ??= e;
      failWaiter?.(failure);
    };
    const onData = (d: Buffer): void => {
      try {
        q.push(d);
      } catch (e) {
        fail(e as Error);
        return;
      }
      if (waiter !== null && q.length >= waiter.n) {
        const w = waiter;
        waiter = null;
        w.resolve();
      }
    };
    const onError = (e: Error): void => fail(new AppError('RFB_CONNECT', `Cannot connect to the VNC server at ${where}: ${e.message}`, { cause: e, retryable: true }));
    const onClose = (): void => fail(new AppError('RFB_CLOSED', `The VNC server at ${where} closed the connection during the handshake`, { retryable: true }));
    socket.on('data', onData);
    socket.on('error', onError);
    socket.on('close', onClose);
    const timer = setTimeout(() => fail(new AppError('RFB_TIMEOUT', `Cannot connect to the VNC server at ${where}: no complete handshake within ${connectTimeoutMs} ms`, { retryable: true })), connectTimeoutMs);
    const need = (n: number): Promise<Uint8Array> =>
      new Promise<Uint8Array>((resolve, reject) => {
        if (failure !== null) {
          reject(failure);
          return;
        }
        failWaiter = reject;
        if (q.length >= n) {
          resolve(q.take(n));
          return;
        }
        waiter = { n, resolve: () => resolve(q.take(n)) };
      });
    const reason = async (): Promise<string> => {
      const len = readU32(await need(4));
      if (len > 65536) return `(a ${len}-byte reason)`;
      return text(await need(len));
    };
    try {
      const server = parseVersion(await need(12));
      const version = chooseVersion(server);
      socket.write(encodeVersion(version));
      if (version.minor === 3) {
        const type = readU32(await need(4));
        if (type === 0) throw new AppError('RFB_REFUSED', `The VNC server at ${where} refused the connection: ${await reason()}`);
        if (type !== SECURITY_NONE) throw new AppError('RFB_SECURITY', `The VNC server at ${where} requires security type ${type}; this viewer supports only None (1): start Xvnc with -SecurityTypes None`);
      } else {
        const n = (await need(1))[0]!;
        if (n === 0) throw new AppError('RFB_REFUSED', `The VNC server at ${where} refused the connection: ${await reason()}`);
        const types = [...(await need(n))];
        if (!types.includes(SECURITY_NONE)) {
          throw new AppError('RFB_SECURITY', `The VNC server at ${where} offers security types ${types.join(', ')}; this viewer supports only None (1): start Xvnc with -SecurityTypes None`);
        }
        socket.write(Uint8Array.of(SECURITY_NONE));
        if (version.minor >= 8) {
          const result = readU32(await need(4));
          if (result !== 0) throw new AppError('RFB_REFUSED', `The VNC server at ${where} failed security type None: ${await reason()}`);
        }
      }
      socket.write(Uint8Array.of(1)); // ClientInit: shared, so a second viewer does not disconnect the first
      const head = parseServerInitHead(await need(SERVER_INIT_HEAD_BYTES));
      const name = text(await need(head.nameLength));
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('error', onError);
      socket.off('close', onClose);
      const failed = failure as Error | null; // set from the socket's callbacks
      if (failed !== null) throw failed;
      const client = new RfbClient(socket, o, server, { width: head.width, height: head.height }, name, encodings, pf);
      client.start(q.length > 0 ? q.take(q.length) : null);
      await client.firstFrame(connectTimeoutMs, where);
      return client;
    } catch (e) {
      clearTimeout(timer);
      socket.destroy();
      throw e;
    }
  }

  private start(leftover: Uint8Array | null): void {
    const probe = this.o.probe;
    this.parser = new ServerMessageParser({
      width: this.fb.width,
      height: this.fb.height,
      pixelFormat: this.pf,
      encodings: this.encodings,
      ...(probe === undefined ? {} : { probe: { x: probe.x, y: probe.y, count: MARKER_PIXELS } }),
    });
    this.socket.on('data', (d: Buffer) => this.onData(d));
    this.socket.on('error', (e: Error) => this.fail(new AppError('RFB_SOCKET', `The connection to the VNC server broke after ${this.totalUpdates} updates: ${e.message}`, { cause: e, retryable: true })));
    this.socket.on('close', () => {
      if (this.closing || this.state !== 'running') {
        this.finish(null);
        return;
      }
      this.fail(new AppError('RFB_CLOSED', `The VNC server closed the connection after ${this.totalUpdates} updates`, { retryable: true }));
    });
    this.socket.write(encodeSetPixelFormat(this.pf));
    this.socket.write(encodeSetEncodings(this.encodings));
    // The first request is not incremental: the whole screen, as a viewer does when it opens.
    this.request(false);
    if (leftover !== null) this.onData(Buffer.from(leftover));
  }

  /** Waits for the answer to the first, full-screen request; counting starts after it. */
  private async firstFrame(timeoutMs: number, where: string): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new AppError('RFB_TIMEOUT', `The VNC server at ${where} sent no first frame within ${timeoutMs} ms of the handshake`, { retryable: true })), timeoutMs);
    });
    const failed = this.closed.then((e) => Promise.reject(e ?? new AppError('RFB_CLOSED', `The VNC server at ${where} closed the connection before the first frame`)));
    try {
      await Promise.race([this.initialFrame, timeout, failed]);
    } finally {
      clearTimeout(timer);
    }
  }

  private request(incremental: boolean): void {
    if (this.state !== 'running' || this.closing) return;
    this.requestAt = this.now();
    this.socket.write(encodeUpdateRequest(incremental, { x: 0, y: 0, w: this.fb.width, h: this.fb.height }));
  }

  private onData(d: Buffer): void {
    if (this.state !== 'running') return;
    this.totalBytes += d.length;
    let events: ServerEvent[];
    try {
      events = this.parser.push(d);
    } catch (e) {
      this.fail(e instanceof RfbProtocolError ? e : new AppError('RFB_PROTOCOL', `Cannot parse the VNC server's message: ${(e as Error).message}`, { cause: e }));
      return;
    }
    for (const ev of events) this.onEvent(ev);
    // Bytes of an update that has not ended yet arrived with this chunk.
    if (this.parser.inUpdate && this.updateStartedAt === null) this.beginUpdate();
  }

  private beginUpdate(): void {
    this.updateStartedAt = this.now();
    const ms = this.o.updateTimeoutMs ?? 10_000;
    this.updateTimer = setTimeout(() => {
      this.fail(new AppError('RFB_TIMEOUT', `An update from the VNC server stalled: it began ${ms} ms ago and has not ended (${this.totalUpdates} updates so far)`, { retryable: true }));
    }, ms);
  }

  private onEvent(ev: ServerEvent): void {
    switch (ev.kind) {
      case 'updateStart':
        if (this.updateStartedAt === null) this.beginUpdate();
        return;
      case 'probe':
        this.pendingProbe = ev.pixels;
        return;
      case 'desktopSize':
        this.fb = { width: ev.width, height: ev.height };
        return;
      case 'updateEnd': {
        const t = this.now();
        if (this.updateTimer !== null) clearTimeout(this.updateTimer);
        this.updateTimer = null;
        this.updateStartedAt = null;
        const marker = this.pendingProbe === null ? null : decodeMarker(this.pendingProbe);
        this.pendingProbe = null;
        if (this.requestAt === null) return; // unsolicited (no request outstanding): not a measurement
        const sample: UpdateSample = {
          doneAtMs: t,
          updateMs: t - this.requestAt,
          bytes: ev.bytes,
          rects: ev.rects,
          frameAgeMs: marker === null ? null : this.wallNow() - marker.drawnAtMs,
        };
        this.requestAt = null;
        if (!this.initialDone) {
          // The answer to the first, full-screen request: the desktop as it opens, not a measurement.
          this.initialDone = true;
          this.initialBytes = this.totalBytes;
          this.totalBytes = 0;
          this.resolveInitial();
        } else {
          this.totalUpdates++;
          this.samples.push(sample);
          if (this.samples.length > (this.o.maxSamples ?? 20_000)) this.samples.splice(0, this.samples.length - (this.o.maxSamples ?? 20_000));
          this.o.onUpdate?.(sample);
        }
        this.request(true);
        return;
      }
      default:
        return;
    }
  }

  /** Measures for `durationMs`: the updates that complete in that window, and the bytes received. */
  measure(durationMs: number): Promise<UpdateSummary> {
    if (!(durationMs > 0 && durationMs <= MAX_MEASURE_MS)) throw new InputError('durationMs', durationMs, `must be > 0 and ≤ ${MAX_MEASURE_MS}`);
    if (this.state !== 'running') return Promise.reject(this.error ?? new AppError('RFB_CLOSED', 'Cannot measure: the viewer is closed'));
    const t0 = this.now();
    const b0 = this.totalBytes;
    return new Promise((resolve, reject) => {
      const entry = { reject: (e: Error): void => {
        clearTimeout(timer);
        reject(e);
      } };
      const timer = setTimeout(() => {
        this.measures.delete(entry);
        const t1 = this.now();
        resolve(summarize(this.samples.filter((s) => s.doneAtMs >= t0 && s.doneAtMs <= t1), t1 - t0, this.totalBytes - b0));
      }, durationMs);
      this.measures.add(entry);
    });
  }

  /** The updates that completed in the last `windowMs` (bytes: theirs only). */
  summary(windowMs = RECENT_MS): UpdateSummary {
    const t1 = this.now();
    const inWindow = this.samples.filter((s) => s.doneAtMs >= t1 - windowMs);
    return summarize(inWindow, windowMs, inWindow.reduce((a, s) => a + s.bytes, 0));
  }

  stats(): RfbLiveStats {
    return {
      state: this.state,
      serverVersion: `${this.serverVersion.major}.${this.serverVersion.minor}`,
      desktopName: this.desktopName,
      width: this.fb.width,
      height: this.fb.height,
      updates: this.totalUpdates,
      bytes: this.totalBytes,
      waitingMs: this.requestAt === null ? null : this.now() - this.requestAt,
      lastUpdate: this.samples.at(-1) ?? null,
      recent: this.summary(),
      error: this.error?.message ?? null,
    };
  }

  /** Ends the connection (FIN, then destroy after 1 s); idempotent. */
  async close(): Promise<void> {
    if (this.state === 'running' && !this.closing) {
      this.closing = true;
      if (this.updateTimer !== null) clearTimeout(this.updateTimer);
      for (const m of this.measures) m.reject(new AppError('RFB_CLOSED', 'The viewer was closed during a measurement'));
      this.measures.clear();
      this.socket.end();
      const t = setTimeout(() => this.socket.destroy(), 1000);
      await this.closed;
      clearTimeout(t);
    }
    await this.closed;
  }

  private fail(e: Error): void {
    if (this.state !== 'running') return;
    this.error = e;
    this.state = 'failed';
    if (this.updateTimer !== null) clearTimeout(this.updateTimer);
    for (const m of this.measures) m.reject(e);
    this.measures.clear();
    this.socket.destroy();
    this.resolveClosed(e);
  }

  private finish(e: Error | null): void {
    if (this.state === 'running') this.state = 'closed';
    if (this.updateTimer !== null) clearTimeout(this.updateTimer);
    this.resolveClosed(e ?? this.error);
  }
}
