// A QMP client: newline-delimited JSON over a unix socket or TCP.
//
// Greeting -> qmp_capabilities -> commands, each with a unique id; replies are routed by id, events
// are kept apart (listeners, an async iterator, and a buffer so a wait never misses an event that
// arrived before it started). Every call has a deadline: a wedged monitor must not hang the caller.
import net from 'node:net';
import { AppError } from '../../core/errors.js';
import { silentLogger, type Logger } from '../../core/logger.js';
import {
  QmpClosedError,
  QmpError,
  QmpProtocolError,
  QmpTimeoutError,
  describeCloseReason,
  type QmpCloseReason,
} from './errors.js';
import { LineFramer } from './framer.js';

/** Where the monitor listens: a unix socket path, or a TCP host and port. */
export type QmpTarget = { readonly path: string } | { readonly host: string; readonly port: number };

export interface QmpVersion {
  readonly major: number;
  readonly minor: number;
  readonly micro: number;
  /** Distribution's package string, e.g. "Debian 1:7.2+dfsg-7+deb12u18". */
  readonly package: string;
}

export interface QmpGreeting {
  readonly version: QmpVersion;
  /** Capabilities the server offers (e.g. ["oob"]). */
  readonly capabilities: readonly string[];
}

export interface QmpEvent {
  /** Position in this client's event stream, from 1; compare with eventCursor(). */
  readonly seq: number;
  readonly event: string;
  readonly data: Readonly<Record<string, unknown>>;
  /** QEMU's own time stamp of the event. */
  readonly timestamp: { readonly seconds: number; readonly microseconds: number };
  readonly timestampMs: number;
}

export interface QmpClientOptions {
  /** Connecting, reading the greeting and negotiating capabilities together (default 5000). */
  readonly connectTimeoutMs?: number;
  /** Deadline of a call without its own (default 10000). */
  readonly defaultTimeoutMs?: number;
  /** A line longer than this breaks the connection (default 8 MiB; query-qmp-schema is ~200 KiB). */
  readonly maxLineBytes?: number;
  /** Enable out-of-band execution when the server offers it (default false). */
  readonly oob?: boolean;
  /** Recent events kept for waitForEvent() look-back (default 256). */
  readonly eventBufferSize?: number;
  /**
   * Retry a refused or missing socket until the connect deadline, every 25 ms: for a QEMU just
   * started, which creates its socket file a moment before it listens (default false).
   */
  readonly retryRefused?: boolean;
  /** After this many calls in a row time out, the client closes itself with reason 'timeouts' (default 3). */
  readonly breakAfterTimeouts?: number;
  readonly log?: Logger;
}

export interface CallOptions {
  readonly timeoutMs?: number;
  /** Send as exec-oob (only for commands QEMU allows out of band, and only when oob was negotiated). */
  readonly oob?: boolean;
  readonly signal?: AbortSignal;
}

/**
 * Which events a wait considers:
 * - a cursor (from eventCursor()) taken before the action that causes the event: events after it;
 * - 'last-command' (default): events since this client last sent a command — QEMU emits an event
 *   such as STOP *before* the reply of the command that caused it, so `await execute('stop')` then
 *   `await waitForEvent('STOP')` works. Take a cursor when other commands run concurrently.
 * - 'now': only events that arrive after the call.
 */
export type EventSince = number | 'last-command' | 'now';

export interface WaitOptions {
  readonly since?: EventSince;
  readonly signal?: AbortSignal;
}

/** The part of the client that command helpers and drivers need; fakes implement it too. */
export interface QmpExecutor {
  execute<T = unknown>(command: string, args?: Readonly<Record<string, unknown>>, opts?: CallOptions): Promise<T>;
}

type ClientState = 'connected' | 'closed';

interface PendingCall {
  readonly id: number;
  readonly command: string;
  readonly timeoutMs: number;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
  readonly cleanup: () => void;
}

interface EventWaiter {
  readonly what: string;
  readonly matches: (e: QmpEvent) => boolean;
  readonly resolve: (e: QmpEvent) => void;
  readonly reject: (err: Error) => void;
}

const DEFAULTS = {
  connectTimeoutMs: 5000,
  defaultTimeoutMs: 10_000,
  maxLineBytes: 8 * 1024 * 1024,
  eventBufferSize: 256,
  breakAfterTimeouts: 3,
  iteratorMaxQueued: 10_000,
} as const;

/** Ids of timed-out calls whose late replies are dropped quietly; older ones are forgotten. */
const LATE_IDS_KEPT = 1024;

export function describeTarget(target: QmpTarget): string {
  return 'path' in target ? target.path : `${target.host}:${target.port}`;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseGreeting(msg: Record<string, unknown>): QmpGreeting | null {
  const qmp = msg['QMP'];
  if (!isRecord(qmp)) return null;
  const version = qmp['version'];
  const caps = qmp['capabilities'];
  if (!isRecord(version) || !Array.isArray(caps)) return null;
  const q = version['qemu'];
  if (!isRecord(q)) return null;
  const num = (v: unknown): number | null => (typeof v === 'number' && Number.isInteger(v) ? v : null);
  const major = num(q['major']);
  const minor = num(q['minor']);
  const micro = num(q['micro']);
  if (major === null || minor === null || micro === null) return null;
  const pkg = version['package'];
  return {
    version: { major, minor, micro, package: typeof pkg === 'string' ? pkg : '' },
    capabilities: caps.filter((c): c is string => typeof c === 'string'),
  };
}

export class QmpClient implements QmpExecutor {
  readonly socketName: string;
  /** Resolves (never rejects) once the connection is gone, with the error pending calls got. */
  readonly closed: Promise<QmpClosedError>;

  private state: ClientState = 'connected';
  private closeError: QmpClosedError | null = null;
  private resolveClosed!: (e: QmpClosedError) => void;
  private greetingValue: QmpGreeting | null = null;
  private greetingWaiter: { resolve: (g: QmpGreeting) => void; reject: (e: Error) => void } | null = null;
  private oobEnabledValue = false;

  private readonly framer: LineFramer;
  private readonly pending = new Map<number, PendingCall>();
  private readonly lateIds = new Set<number>();
  private nextId = 1;
  private timeoutsInARow = 0;

  private eventSeq = 0;
  private lastCommandCursor = 0;
  private readonly recent: QmpEvent[] = [];
  private readonly waiters = new Set<EventWaiter>();
  private readonly listeners = new Set<(e: QmpEvent) => void>();
  private readonly closeListeners = new Set<(e: QmpClosedError) => void>();

  private readonly defaultTimeoutMs: number;
  private readonly eventBufferSize: number;
  private readonly breakAfterTimeouts: number;
  private readonly log: Logger;

  private constructor(
    private readonly socket: net.Socket,
    target: QmpTarget,
    opts: QmpClientOptions,
  ) {
    this.socketName = describeTarget(target);
    this.framer = new LineFramer(opts.maxLineBytes ?? DEFAULTS.maxLineBytes);
    this.defaultTimeoutMs = opts.defaultTimeoutMs ?? DEFAULTS.defaultTimeoutMs;
    this.eventBufferSize = Math.max(1, opts.eventBufferSize ?? DEFAULTS.eventBufferSize);
    this.breakAfterTimeouts = Math.max(1, opts.breakAfterTimeouts ?? DEFAULTS.breakAfterTimeouts);
    this.log = (opts.log ?? silentLogger).child({ qmp: this.socketName });
    this.closed = new Promise((resolve) => {
      this.resolveClosed = resolve;
    });
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    // A reset or broken pipe is the peer going away (QEMU killed with our request unread), like EOF.
    socket.on('error', (err: NodeJS.ErrnoException) =>
      this.shutdown(err.code === 'ECONNRESET' || err.code === 'EPIPE' ? 'eof' : 'socket-error', err),
    );
    socket.on('close', () => this.shutdown('eof', null));
  }

  /** Connects, reads the greeting and negotiates capabilities, all within connectTimeoutMs. */
  static async connect(target: QmpTarget, opts: QmpClientOptions = {}): Promise<QmpClient> {
    const name = describeTarget(target);
    const timeoutMs = opts.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    let stage = 'connecting';
    const made: { client: QmpClient | null } = { client: null };
    const open = (): net.Socket => {
      const s = 'path' in target ? net.connect({ path: target.path }) : net.connect({ host: target.host, port: target.port, noDelay: true });
      // Until the client owns the socket, a failure must not surface as an unhandled 'error'.
      s.on('error', () => undefined);
      return s;
    };
    let socket = open();
    let timer: NodeJS.Timeout | undefined;
    let gaveUp = false;
    const overall = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        gaveUp = true;
        const hint = stage === 'waiting for the greeting' ? '; another client may hold the monitor (QEMU serves one at a time)' : '';
        reject(
          new QmpTimeoutError('connect', name, timeoutMs, `QMP connect to ${name} timed out after ${timeoutMs} ms while ${stage}${hint}`),
        );
      }, timeoutMs);
    });
    const steps = async (): Promise<QmpClient> => {
      for (let attempt = 1; ; attempt++) {
        try {
          await new Promise<void>((resolve, reject) => {
            socket.once('connect', resolve);
            socket.once('error', reject);
          });
          break;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          // Retries end when the deadline fires: the caller then gets the QmpTimeoutError.
          const retry = opts.retryRefused === true && (code === 'ECONNREFUSED' || code === 'ENOENT');
          if (!retry || gaveUp) throw err;
          stage = `connecting (attempt ${attempt + 1}, the socket refused: ${code})`;
          await new Promise((r) => setTimeout(r, 25));
          if (gaveUp) throw err;
          socket = open();
        }
      }
      stage = 'waiting for the greeting';
      const c = new QmpClient(socket, target, opts);
      made.client = c;
      const greeting = await c.waitGreeting();
      stage = 'negotiating capabilities';
      const useOob = opts.oob === true && greeting.capabilities.includes('oob');
      await c.execute('qmp_capabilities', useOob ? { enable: ['oob'] } : {}, {
        timeoutMs: Math.max(1, deadline - Date.now()),
      });
      c.oobEnabledValue = useOob;
      return c;
    };
    const work = steps();
    // The race may be lost to the deadline; the losing steps then fail quietly.
    work.catch(() => undefined);
    try {
      return await Promise.race([work, overall]);
    } catch (err) {
      made.client?.shutdown('connect-failed', err);
      socket.destroy();
      if (err instanceof QmpTimeoutError || err instanceof QmpClosedError || err instanceof QmpError) throw err;
      throw new QmpClosedError(
        'connect',
        name,
        'connect-failed',
        `QMP connect to ${name} failed while ${stage}: ${err instanceof Error ? err.message : String(err)}`,
        err,
      );
    } finally {
      clearTimeout(timer);
    }
  }

  /** QEMU's greeting (available once connect() resolved). */
  get greeting(): QmpGreeting {
    if (this.greetingValue === null) throw new AppError('QMP_NO_GREETING', `QMP on ${this.socketName} has not greeted yet`);
    return this.greetingValue;
  }

  get version(): QmpVersion {
    return this.greeting.version;
  }

  get oobEnabled(): boolean {
    return this.oobEnabledValue;
  }

  get isConnected(): boolean {
    return this.state === 'connected';
  }

  get pendingCalls(): number {
    return this.pending.size;
  }

  /** Why the client closed, or null while connected. */
  get closeReason(): QmpCloseReason | null {
    return this.closeError?.reason ?? null;
  }

  /** The seq of the latest event received: pass to waitForEvent({ since }) to see only later events. */
  eventCursor(): number {
    return this.eventSeq;
  }

  /** Events still in the look-back buffer, oldest first. */
  recentEvents(): readonly QmpEvent[] {
    return [...this.recent];
  }

  /**
   * Runs a command and resolves with its `return` value; rejects with QmpError (QEMU's error class
   * and description), QmpTimeoutError (no reply within the deadline; a late reply is dropped) or
   * QmpClosedError (the connection is gone).
   */
  execute<T = unknown>(command: string, args?: Readonly<Record<string, unknown>>, opts: CallOptions = {}): Promise<T> {
    if (this.state !== 'connected') return Promise.reject(this.closedErrorFor(command));
    if (opts.oob === true && !this.oobEnabledValue) {
      return Promise.reject(
        new AppError('QMP_OOB_UNAVAILABLE', `QMP ${command} on ${this.socketName} cannot run out of band: oob was not negotiated (${this.stateText()})`),
      );
    }
    if (opts.signal?.aborted === true) return Promise.reject(this.abortedError(command, opts.signal));
    const timeoutMs = opts.timeoutMs ?? this.defaultTimeoutMs;
    const id = this.nextId++;
    const message: Record<string, unknown> = { [opts.oob === true ? 'exec-oob' : 'execute']: command };
    if (args !== undefined) message['arguments'] = args;
    message['id'] = id;
    let line: string;
    try {
      line = JSON.stringify(message) + '\n';
    } catch (err) {
      return Promise.reject(
        new AppError('QMP_BAD_ARGUMENTS', `QMP ${command} on ${this.socketName} not sent: arguments are not JSON (${this.stateText()})`, { cause: err }),
      );
    }
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => this.onCallTimeout(id), timeoutMs);
      const onAbort = (): void => {
        if (!this.pending.delete(id)) return;
        this.rememberLate(id);
        call.cleanup();
        reject(this.abortedError(command, opts.signal));
      };
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      const call: PendingCall = {
        id,
        command,
        timeoutMs,
        resolve: (v) => resolve(v as T),
        reject,
        cleanup: () => {
          clearTimeout(timer);
          opts.signal?.removeEventListener('abort', onAbort);
        },
      };
      this.pending.set(id, call);
      this.lastCommandCursor = this.eventSeq;
      this.socket.write(line);
    });
  }

  /** Calls `listener` for every event from now on; returns the unsubscribe function. */
  onEvent(listener: (e: QmpEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Calls `listener` once when the connection goes away (at once if it already has). */
  onClose(listener: (e: QmpClosedError) => void): () => void {
    if (this.closeError !== null) {
      listener(this.closeError);
      return () => undefined;
    }
    this.closeListeners.add(listener);
    return () => this.closeListeners.delete(listener);
  }

  /**
   * The first event named `name` (matching `predicate`) after `opts.since` (default: since the
   * last command sent), from the look-back buffer or as it arrives.
   */
  waitForEvent(
    name: string,
    predicate: ((e: QmpEvent) => boolean) | null = null,
    timeoutMs: number = this.defaultTimeoutMs,
    opts: WaitOptions = {},
  ): Promise<QmpEvent> {
    const since = opts.since ?? 'last-command';
    const after = since === 'now' ? this.eventSeq : since === 'last-command' ? this.lastCommandCursor : since;
    const what = `wait for event ${name}`;
    const matches = (e: QmpEvent): boolean => e.event === name && (predicate === null || predicate(e));
    try {
      for (const e of this.recent) if (e.seq > after && matches(e)) return Promise.resolve(e);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    const oldest = this.recent[0];
    if (oldest !== undefined && oldest.seq > after + 1) {
      return Promise.reject(
        new AppError(
          'QMP_EVENTS_EVICTED',
          `QMP ${what} on ${this.socketName} cannot look back to event ${after}: the buffer keeps events ${oldest.seq}..${this.eventSeq} (raise eventBufferSize) (${this.stateText()})`,
        ),
      );
    }
    if (this.state !== 'connected') return Promise.reject(this.closedErrorFor(what));
    if (opts.signal?.aborted === true) return Promise.reject(this.abortedError(what, opts.signal));
    return new Promise<QmpEvent>((resolve, reject) => {
      const finish = (): void => {
        clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        this.waiters.delete(waiter);
      };
      const waiter: EventWaiter = {
        what,
        matches,
        resolve: (e) => {
          finish();
          resolve(e);
        },
        reject: (err) => {
          finish();
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        waiter.reject(
          new QmpTimeoutError(what, this.socketName, timeoutMs, `QMP ${what} on ${this.socketName}: none within ${timeoutMs} ms (${this.stateText()})`),
        );
      }, timeoutMs);
      const onAbort = (): void => waiter.reject(this.abortedError(what, opts.signal));
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.add(waiter);
    });
  }

  /**
   * Every event from now on, in order. Ends when the connection closes; throws if the consumer
   * falls more than `maxQueued` events behind (memory stays bounded).
   */
  events(opts: { signal?: AbortSignal; maxQueued?: number } = {}): AsyncIterableIterator<QmpEvent> {
    const maxQueued = opts.maxQueued ?? DEFAULTS.iteratorMaxQueued;
    const queue: QmpEvent[] = [];
    let failure: Error | null = null;
    let done = false;
    const wakers: Array<() => void> = [];
    const poke = (): void => {
      for (const w of wakers.splice(0)) w();
    };
    const stop = (): void => {
      done = true;
      unsubscribe();
      unsubscribeClose();
      opts.signal?.removeEventListener('abort', stop);
      poke();
    };
    const unsubscribe = this.onEvent((e) => {
      if (done) return;
      if (queue.length >= maxQueued) {
        failure = new AppError(
          'QMP_EVENTS_OVERFLOW',
          `QMP event stream on ${this.socketName} overflowed: the consumer fell ${maxQueued} events behind (${this.stateText()})`,
        );
        stop();
        return;
      }
      queue.push(e);
      poke();
    });
    const unsubscribeClose = this.onClose(() => stop());
    opts.signal?.addEventListener('abort', stop, { once: true });
    if (opts.signal?.aborted === true) stop();
    const iterator: AsyncIterableIterator<QmpEvent> = {
      next: async (): Promise<IteratorResult<QmpEvent>> => {
        for (;;) {
          const e = queue.shift();
          if (e !== undefined) return { value: e, done: false };
          if (failure !== null) throw failure;
          if (done) return { value: undefined, done: true };
          await new Promise<void>((resolve) => wakers.push(resolve));
        }
      },
      return: (): Promise<IteratorResult<QmpEvent>> => {
        stop();
        queue.length = 0;
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  /** Closes the connection (QEMU keeps running); pending calls and waits reject with QmpClosedError. */
  async close(): Promise<void> {
    this.shutdown('closed', null);
    if (!this.socket.destroyed) this.socket.destroy();
    await this.closed;
  }

  // ---- internals ----

  private waitGreeting(): Promise<QmpGreeting> {
    if (this.greetingValue !== null) return Promise.resolve(this.greetingValue);
    if (this.closeError !== null) return Promise.reject(this.closeError);
    return new Promise((resolve, reject) => {
      this.greetingWaiter = { resolve, reject };
    });
  }

  private onData(chunk: Buffer): void {
    if (this.state !== 'connected') return;
    const r = this.framer.push(chunk);
    for (const line of r.lines) {
      this.onLine(line);
      if (this.state !== 'connected') return;
    }
    if (!r.ok) {
      this.protocolError(`sent a line over ${this.framer.maxLineBytes} bytes (${r.overLimitBytes} bytes without a newline)`);
    }
  }

  private onLine(line: string): void {
    if (line.trim() === '') return;
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      this.protocolError(`sent a line that is not JSON: ${JSON.stringify(line.length > 80 ? `${line.slice(0, 77)}...` : line)}`);
      return;
    }
    if (!isRecord(msg)) {
      this.protocolError(`sent a JSON ${Array.isArray(msg) ? 'array' : typeof msg} where an object belongs`);
      return;
    }
    // Seen with QEMU 7.2 under load: a connection accepted very early (the monitor runs in its own
    // I/O thread) can get an event such as RESUME before the greeting. Keep it; it is still an event.
    if (this.greetingValue === null && typeof msg['event'] !== 'string') {
      const g = parseGreeting(msg);
      if (g === null) {
        this.protocolError(`did not start with a QMP greeting (first message: ${line.slice(0, 80)})`);
        return;
      }
      this.greetingValue = g;
      this.log.debug('qmp greeting', { version: g.version, capabilities: g.capabilities });
      const w = this.greetingWaiter;
      this.greetingWaiter = null;
      w?.resolve(g);
      return;
    }
    if (typeof msg['event'] === 'string') {
      this.onEventMessage(msg['event'], msg);
      return;
    }
    if ('return' in msg || 'error' in msg) {
      this.onReply(msg);
      return;
    }
    this.log.warn('qmp message of unknown kind ignored', { keys: Object.keys(msg) });
  }

  private onReply(msg: Record<string, unknown>): void {
    this.timeoutsInARow = 0;
    const id = msg['id'];
    if (typeof id !== 'number') {
      // We always send an id: a reply without one is QEMU failing to parse what it received.
      this.log.warn('qmp reply without an id ignored', { reply: msg });
      return;
    }
    const call = this.pending.get(id);
    if (call === undefined) {
      if (this.lateIds.delete(id)) this.log.info('qmp late reply dropped', { id });
      else this.log.warn('qmp reply for an unknown id ignored', { id });
      return;
    }
    this.pending.delete(id);
    call.cleanup();
    if ('error' in msg) {
      const e = msg['error'];
      const cls = isRecord(e) && typeof e['class'] === 'string' ? e['class'] : 'UnknownError';
      const desc = isRecord(e) && typeof e['desc'] === 'string' ? e['desc'] : JSON.stringify(e);
      call.reject(new QmpError(call.command, this.socketName, cls, desc, this.stateText()));
    } else {
      call.resolve(msg['return']);
    }
  }

  private onEventMessage(name: string, msg: Record<string, unknown>): void {
    const ts = msg['timestamp'];
    const seconds = isRecord(ts) && typeof ts['seconds'] === 'number' ? ts['seconds'] : NaN;
    const microseconds = isRecord(ts) && typeof ts['microseconds'] === 'number' ? ts['microseconds'] : NaN;
    const known = Number.isFinite(seconds) && Number.isFinite(microseconds) && seconds >= 0;
    const nowMs = Date.now();
    const data = msg['data'];
    const event: QmpEvent = {
      seq: ++this.eventSeq,
      event: name,
      data: isRecord(data) ? data : {},
      timestamp: known ? { seconds, microseconds } : { seconds: Math.floor(nowMs / 1000), microseconds: (nowMs % 1000) * 1000 },
      timestampMs: known ? seconds * 1000 + microseconds / 1000 : nowMs,
    };
    this.recent.push(event);
    if (this.recent.length > this.eventBufferSize) this.recent.shift();
    this.log.debug('qmp event', { event: name, data: event.data });
    for (const w of [...this.waiters]) {
      let hit: boolean;
      try {
        hit = w.matches(event);
      } catch (err) {
        w.reject(err instanceof Error ? err : new Error(String(err)));
        continue;
      }
      if (hit) w.resolve(event);
    }
    for (const l of [...this.listeners]) {
      try {
        l(event);
      } catch (err) {
        this.log.error('qmp event listener threw', { event: name, error: String(err) });
      }
    }
  }

  private onCallTimeout(id: number): void {
    const call = this.pending.get(id);
    if (call === undefined) return;
    this.pending.delete(id);
    call.cleanup();
    this.rememberLate(id);
    this.timeoutsInARow += 1;
    const giveUp = this.timeoutsInARow >= this.breakAfterTimeouts;
    const state = giveUp
      ? `client closing: ${plural(this.timeoutsInARow, 'call')} in a row unanswered, ${plural(this.pending.size, 'other call')} pending`
      : `${this.stateText()}, ${plural(this.timeoutsInARow, 'timeout')} in a row`;
    call.reject(
      new QmpTimeoutError(call.command, this.socketName, call.timeoutMs, `QMP ${call.command} on ${this.socketName} got no reply within ${call.timeoutMs} ms (${state})`),
    );
    if (giveUp) this.shutdown('timeouts', null);
  }

  private rememberLate(id: number): void {
    this.lateIds.add(id);
    if (this.lateIds.size > LATE_IDS_KEPT) {
      const oldest = this.lateIds.values().next();
      if (oldest.done !== true) this.lateIds.delete(oldest.value);
    }
  }

  private protocolError(what: string): void {
    const err = new QmpProtocolError(this.socketName, `QMP peer on ${this.socketName} ${what}`);
    this.log.error('qmp protocol error', { error: err.message });
    this.shutdown('protocol-error', err);
  }

  private stateText(): string {
    const others = plural(this.pending.size, 'other call');
    if (this.closeError === null) return `client connected, ${others} pending`;
    return `client closed: ${describeCloseReason(this.closeError.reason)}, ${others} pending`;
  }

  private closedErrorFor(operation: string): QmpClosedError {
    const base = this.closeError;
    const reason = base?.reason ?? 'closed';
    return new QmpClosedError(
      operation,
      this.socketName,
      reason,
      `QMP ${operation} on ${this.socketName} failed: ${describeCloseReason(reason)} (client closed)`,
      base?.cause,
    );
  }

  private abortedError(operation: string, signal: AbortSignal | undefined): AppError {
    return new AppError('QMP_ABORTED', `QMP ${operation} on ${this.socketName} abandoned: the caller aborted (${this.stateText()})`, {
      cause: signal?.reason,
    });
  }

  /** The single way out: rejects everything pending with one QmpClosedError per call. Idempotent. */
  private shutdown(reason: QmpCloseReason, cause: unknown): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    const pendingAtClose = this.pending.size;
    const causeText = cause instanceof Error ? `: ${cause.message}` : '';
    const summary = `${describeCloseReason(reason)}${causeText}`;
    this.closeError = new QmpClosedError('connection', this.socketName, reason, `QMP connection to ${this.socketName} ended: ${summary}`, cause ?? undefined);
    const level = reason === 'closed' ? 'debug' : 'warn';
    this.log[level]('qmp connection ended', { reason, pendingCalls: pendingAtClose, cause: cause instanceof Error ? cause.message : undefined });

    const calls = [...this.pending.values()];
    this.pending.clear();
    for (const call of calls) {
      call.cleanup();
      call.reject(
        new QmpClosedError(
          call.command,
          this.socketName,
          reason,
          `QMP ${call.command} on ${this.socketName} failed: ${summary} (client closed with ${plural(pendingAtClose, 'call')} pending)`,
          cause ?? undefined,
        ),
      );
    }
    for (const w of [...this.waiters]) w.reject(this.closedErrorFor(w.what));
    const gw = this.greetingWaiter;
    this.greetingWaiter = null;
    gw?.reject(this.closeError);
    if (reason !== 'eof' && !this.socket.destroyed) this.socket.destroy();
    this.resolveClosed(this.closeError);
    for (const l of [...this.closeListeners]) {
      try {
        l(this.closeError);
      } catch (err) {
        this.log.error('qmp close listener threw', { error: String(err) });
      }
    }
    this.closeListeners.clear();
  }
}
