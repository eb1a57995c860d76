// A fake QMP server for unit tests of code that talks QMP: a unix socket (or loopback TCP) that
// greets like QEMU 7.2, answers commands from a script, and can misbehave on demand — delays,
// events at chosen moments, garbage, a call it never answers, an abrupt close.
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { QmpTarget } from '../migration/qmp/client.js';
import { LineFramer } from '../migration/qmp/framer.js';

export interface FakeQmpEvent {
  readonly event: string;
  readonly data?: Record<string, unknown>;
}

/** How the fake answers one command. */
export type FakeReply =
  | { readonly return: unknown; readonly delayMs?: number; readonly eventsBefore?: readonly FakeQmpEvent[] }
  | { readonly error: { readonly class: string; readonly desc: string }; readonly delayMs?: number }
  /** Never answer. */
  | { readonly hang: true }
  /** Destroy the connection instead of answering (QEMU killed mid-call). */
  | { readonly close: true; readonly delayMs?: number }
  /** Write these bytes instead of a reply (partial lines, garbage, a reply with a chosen id). */
  | { readonly raw: string | Uint8Array; readonly delayMs?: number };

export interface FakeCall {
  readonly command: string;
  readonly args: Record<string, unknown>;
  /** The id the client sent, echoed in the reply. */
  readonly id: unknown;
  readonly oob: boolean;
}

export type FakeHandler = FakeReply | ((call: FakeCall, server: FakeQmpServer) => FakeReply | Promise<FakeReply>);

export interface FakeQmpOptions {
  /** Listen on 127.0.0.1 (an ephemeral port) instead of a unix socket in a temporary directory. */
  readonly tcp?: boolean;
  /** Listen on this unix socket path (default: qmp.sock in a fresh temporary directory, removed by stop()). */
  readonly path?: string;
  readonly version?: { major: number; minor: number; micro: number; package?: string };
  readonly capabilities?: readonly string[];
  /** false: accept connections but never greet (a monitor held by another client). A string: sent raw instead. */
  readonly greeting?: false | string;
  readonly handlers?: Readonly<Record<string, FakeHandler>>;
  /** Like QEMU: commands before qmp_capabilities fail with CommandNotFound (default true). */
  readonly requireNegotiation?: boolean;
}

const MAX_REQUEST_LINE = 1024 * 1024;

export class FakeQmpServer {
  readonly target: QmpTarget;
  /** Every command received, in order of arrival. */
  readonly received: FakeCall[] = [];
  status = 'running';

  private readonly handlers = new Map<string, FakeHandler>();
  private readonly sockets = new Set<net.Socket>();
  private readonly commandWaiters: Array<{ name: string; resolve: (c: FakeCall) => void }> = [];
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly negotiated = new WeakSet<net.Socket>();
  private connectionsTotal = 0;

  private constructor(
    private readonly server: net.Server,
    target: QmpTarget,
    private readonly dir: string | null,
    private readonly opts: FakeQmpOptions,
  ) {
    this.target = target;
    this.installDefaults();
    for (const [name, h] of Object.entries(opts.handlers ?? {})) this.handlers.set(name, h);
  }

  static async start(opts: FakeQmpOptions = {}): Promise<FakeQmpServer> {
    const server = net.createServer();
    let target: QmpTarget;
    let dir: string | null = null;
    if (opts.tcp === true) {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: '127.0.0.1', port: 0 }, resolve);
      });
      const addr = server.address();
      if (addr === null || typeof addr === 'string') throw new Error('fake QMP: no TCP address after listen');
      target = { host: '127.0.0.1', port: addr.port };
    } else {
      let path = opts.path;
      if (path === undefined) {
        dir = mkdtempSync(join(tmpdir(), 'fake-qmp-'));
        path = join(dir, 'qmp.sock');
      }
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ path }, resolve);
      });
      target = { path };
    }
    const fake = new FakeQmpServer(server, target, dir, opts);
    server.on('connection', (s) => fake.onConnection(s));
    return fake;
  }

  /** Connections accepted so far. */
  get connections(): number {
    return this.connectionsTotal;
  }

  get openConnections(): number {
    return this.sockets.size;
  }

  /** Replaces how `command` is answered. */
  handle(command: string, handler: FakeHandler): void {
    this.handlers.set(command, handler);
  }

  /** Sends an event to every connected client now. */
  emitEvent(event: string, data?: Record<string, unknown>): void {
    const line = this.eventLine({ event, ...(data === undefined ? {} : { data }) });
    for (const s of this.sockets) s.write(line);
  }

  /** Writes raw bytes to every connected client. */
  sendRaw(bytes: string | Uint8Array): void {
    for (const s of this.sockets) s.write(bytes);
  }

  /** Destroys every client connection at once (QEMU killed). */
  dropConnections(): void {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  /** Resolves with the next received call to `command` (or one already received and not yet claimed). */
  waitForCommand(command: string, timeoutMs = 2000): Promise<FakeCall> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        const i = this.commandWaiters.indexOf(waiter);
        if (i >= 0) this.commandWaiters.splice(i, 1);
        reject(new Error(`fake QMP: no ${command} within ${timeoutMs} ms (received: ${this.received.map((c) => c.command).join(', ')})`));
      }, timeoutMs);
      this.timers.add(timer);
      const waiter = {
        name: command,
        resolve: (c: FakeCall) => {
          clearTimeout(timer);
          this.timers.delete(timer);
          resolve(c);
        },
      };
      this.commandWaiters.push(waiter);
    });
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.dropConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.dir !== null) rmSync(this.dir, { recursive: true, force: true });
  }

  // ---- internals ----

  private installDefaults(): void {
    this.handlers.set('qmp_capabilities', { return: {} });
    this.handlers.set('query-status', () => ({ return: { status: this.status, running: this.status === 'running', singlestep: false } }));
    this.handlers.set('stop', () => {
      const was = this.status;
      this.status = 'paused';
      return { return: {}, eventsBefore: was === 'running' ? [{ event: 'STOP' }] : [] };
    });
    this.handlers.set('cont', () => {
      const was = this.status;
      this.status = 'running';
      return { return: {}, eventsBefore: was === 'running' ? [] : [{ event: 'RESUME' }] };
    });
    this.handlers.set('quit', { return: {}, eventsBefore: [{ event: 'SHUTDOWN', data: { guest: false, reason: 'host-qmp-quit' } }] });
    const v = this.opts.version;
    this.handlers.set('query-version', {
      return: { qemu: { major: v?.major ?? 7, minor: v?.minor ?? 2, micro: v?.micro ?? 0 }, package: v?.package ?? 'fake' },
    });
  }

  private onConnection(s: net.Socket): void {
    this.connectionsTotal += 1;
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
    s.on('error', () => undefined);
    const framer = new LineFramer(MAX_REQUEST_LINE);
    s.on('data', (chunk: Buffer) => {
      const r = framer.push(chunk);
      for (const line of r.lines) this.onLine(s, line);
      if (!r.ok) s.destroy();
    });
    if (this.opts.greeting === false) return;
    if (typeof this.opts.greeting === 'string') {
      s.write(this.opts.greeting);
      return;
    }
    const v = this.opts.version ?? { major: 7, minor: 2, micro: 0, package: 'fake' };
    const greeting = {
      QMP: {
        version: { qemu: { micro: v.micro, minor: v.minor, major: v.major }, package: v.package ?? 'fake' },
        capabilities: this.opts.capabilities ?? ['oob'],
      },
    };
    s.write(JSON.stringify(greeting) + '\r\n');
  }

  private onLine(s: net.Socket, line: string): void {
    if (line.trim() === '') return;
    let msg: unknown;
    try {
      msg = JSON.parse(line);
    } catch {
      s.write(JSON.stringify({ error: { class: 'GenericError', desc: 'JSON parse error' } }) + '\r\n');
      return;
    }
    if (typeof msg !== 'object' || msg === null) return;
    const m = msg as Record<string, unknown>;
    const oob = typeof m['exec-oob'] === 'string';
    const command = oob ? m['exec-oob'] : m['execute'];
    if (typeof command !== 'string') return;
    const args = typeof m['arguments'] === 'object' && m['arguments'] !== null ? (m['arguments'] as Record<string, unknown>) : {};
    const call: FakeCall = { command, args, id: m['id'], oob };
    this.received.push(call);
    const wi = this.commandWaiters.findIndex((w) => w.name === command);
    if (wi >= 0) this.commandWaiters.splice(wi, 1)[0]?.resolve(call);

    const negotiating = command === 'qmp_capabilities';
    if (!negotiating && this.opts.requireNegotiation !== false && !this.negotiated.has(s)) {
      this.reply(s, call, { error: { class: 'CommandNotFound', desc: 'Expecting capabilities negotiation with \'qmp_capabilities\'' } });
      return;
    }
    const handler = this.handlers.get(command);
    if (handler === undefined) {
      this.reply(s, call, { error: { class: 'CommandNotFound', desc: `The command ${command} has not been found` } });
      return;
    }
    void Promise.resolve(typeof handler === 'function' ? handler(call, this) : handler).then(
      (r) => {
        if (negotiating && 'return' in r) this.negotiated.add(s);
        this.reply(s, call, r);
      },
      (err: unknown) => this.reply(s, call, { error: { class: 'GenericError', desc: `fake handler threw: ${String(err)}` } }),
    );
  }

  private reply(s: net.Socket, call: FakeCall, r: FakeReply): void {
    if ('hang' in r) return;
    const delayMs = r.delayMs ?? 0;
    const send = (): void => {
      if (s.destroyed) return;
      if ('close' in r) {
        s.destroy();
        return;
      }
      if ('raw' in r) {
        s.write(r.raw);
        return;
      }
      const idPart = call.id === undefined ? {} : { id: call.id };
      if ('error' in r) {
        s.write(JSON.stringify({ ...idPart, error: r.error }) + '\r\n');
        return;
      }
      let out = '';
      for (const e of r.eventsBefore ?? []) out += this.eventLine(e);
      out += JSON.stringify({ return: r.return, ...idPart }) + '\r\n';
      s.write(out);
      if (call.command === 'quit') s.end();
    };
    if (delayMs <= 0) {
      send();
      return;
    }
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      send();
    }, delayMs);
    this.timers.add(timer);
  }

  private eventLine(e: FakeQmpEvent): string {
    const nowMs = Date.now();
    const timestamp = { seconds: Math.floor(nowMs / 1000), microseconds: (nowMs % 1000) * 1000 };
    return JSON.stringify({ timestamp, event: e.event, ...(e.data === undefined ? {} : { data: e.data }) }) + '\r\n';
  }
}
