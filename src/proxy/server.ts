// The TCP proxy: listens on each service's stable address and splices every user session to the VM's current
// backend. Route updates (routes.ts) are applied in memory at once: new sessions follow the new route, and
// established sessions keep their backend connection. Nothing on the data path waits on the manager or on a
// path re-point: listeners are reconciled and re-points (nat.ts) run in the background, and a session that
// arrives while the VM is mid switch-over is held (bounded) on its own timer.
//
// Per session: pipe() both ways (backpressure: a full socket pauses the other side's reads, so the proxy
// buffers at most a socket's high-water mark per direction), half-close passed through (FIN ↔ FIN), an error
// on one side passed on as a reset (RST ↔ RST) so that no side ever mistakes a broken session for a complete
// one, and an idle timeout that resets both sides.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { systemClock, type Clock } from '../core/clock.js';
import { AppError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import {
  applyUpdate, emptyTable, endpointKey, pathChanges, resolve, wantedListeners,
  type ApplyOutcome, type Backend, type Endpoint, type PathChange, type Route, type RouteTable, type RouteUpdate,
} from './routes.js';

/** Re-points the network path to a backend's stable address (nat.ts); the proxy never waits on it. */
export interface PathRewriter {
  repoint(change: PathChange): Promise<void>;
  close(): Promise<void>;
}

export type SessionErrorKind =
  | 'no-route' | 'draining' | 'no-backends' | 'held-overflow'
  | 'connect-refused' | 'connect-timeout' | 'connect-failed'
  | 'user-reset' | 'backend-reset' | 'idle-timeout' | 'proxy-closed';

const ERROR_KINDS: readonly SessionErrorKind[] = [
  'no-route', 'draining', 'no-backends', 'held-overflow', 'connect-refused', 'connect-timeout', 'connect-failed',
  'user-reset', 'backend-reset', 'idle-timeout', 'proxy-closed',
];

export interface ProxyServerOptions {
  log?: Logger;
  clock?: Clock;
  /** a session with no byte moving either way for this long is reset (default 1 h) */
  idleTimeoutMs?: number;
  /** per backend connect attempt (default 5 s) */
  connectTimeoutMs?: number;
  /** sessions held during switch-overs, over all services (default 10,000); more are refused */
  maxHeldSessions?: number;
  /** listen(2) backlog (default 1024) */
  backlog?: number;
  paths?: PathRewriter | null;
}

export interface ListenerStatus {
  service: string;
  listen: Endpoint;
  listening: boolean;
  error: string | null;
}

export interface ProxyStats {
  sessionsTotal: number;
  sessionsActive: number;
  sessionsHeld: number;
  /** bytes read from users (and passed toward backends), closed and open sessions */
  bytesUserToBackend: number;
  bytesBackendToUser: number;
  errors: Record<SessionErrorKind, number>;
  updates: Record<ApplyOutcome['status'], number>;
  repoints: { applied: number; failed: number; lastMs: number | null; lastError: string | null };
  listeners: ListenerStatus[];
}

export interface SessionInfo {
  id: number;
  service: string;
  state: 'held' | 'connecting' | 'open';
  user: string;
  backend: string | null;
  generation: number | null;
  startedMs: number;
  bytesUserToBackend: number;
  bytesBackendToUser: number;
}

export interface ProxyServer {
  /** Applies a route update in memory, now; listeners and path re-points follow in the background. */
  apply(u: RouteUpdate): ApplyOutcome;
  routes(): Route[];
  stats(): ProxyStats;
  sessions(): SessionInfo[];
  /** Resolves when the listeners and path re-points asked for so far are in place. */
  settled(): Promise<void>;
  /** The port a service listens on (useful with port 0 in tests), null while not listening. */
  boundPort(service: string): number | null;
  /**
   * Stops accepting, lets established sessions finish for up to drainMs (default 0), then resets the rest:
   * every user gets a clean close or a reset, never a half-delivered stream that looks complete.
   */
  close(opts?: { drainMs?: number }): Promise<void>;
}

interface Session {
  readonly id: number;
  readonly service: string;
  readonly client: Socket;
  readonly startedMs: number;
  backend: Socket | null;
  backendKey: string | null;
  generation: number | null;
  state: 'held' | 'connecting' | 'open';
  holdTimer: NodeJS.Timeout | null;
  done: boolean;
}

interface Listener {
  service: string;
  readonly listen: Endpoint;
  readonly server: Server;
  listening: boolean;
  error: string | null;
}

export function createProxyServer(opts: ProxyServerOptions = {}): ProxyServer {
  const log = opts.log ?? silentLogger;
  const clock = opts.clock ?? systemClock;
  const idleTimeoutMs = opts.idleTimeoutMs ?? 3_600_000;
  const connectTimeoutMs = opts.connectTimeoutMs ?? 5000;
  const maxHeld = opts.maxHeldSessions ?? 10_000;
  const backlog = opts.backlog ?? 1024;
  const paths = opts.paths ?? null;

  let table: RouteTable = emptyTable;
  let seq = 0;
  let nextId = 1;
  let closed = false;
  const sessions = new Set<Session>();
  const held = new Map<string, Set<Session>>();
  let heldCount = 0;
  const listeners = new Map<string, Listener>();
  const errors = Object.fromEntries(ERROR_KINDS.map((k) => [k, 0])) as Record<SessionErrorKind, number>;
  const updates: Record<ApplyOutcome['status'], number> = { applied: 0, stale: 0, duplicate: 0, rejected: 0 };
  const repoints = { applied: 0, failed: 0, lastMs: null as number | null, lastError: null as string | null };
  let sessionsTotal = 0;
  let closedUserToBackend = 0;
  let closedBackendToUser = 0;
  // Background work (listeners, re-points) is chained so settled() can wait for it; the data path never does.
  let background: Promise<void> = Promise.resolve();
  const later = (what: string, f: () => Promise<void>): void => {
    background = background.then(f).catch((e: unknown) => log.error(`proxy: ${what} failed`, { error: (e as Error).message }));
  };
  // Re-points per backend address: only the newest asked-for path matters, one queued re-point per address.
  const wantedPath = new Map<string, string>();
  const pendingRepoint = new Set<string>();

  // ---- sessions ------------------------------------------------------------------------------

  const count = (k: SessionErrorKind): void => {
    errors[k]++;
  };

  const unhold = (s: Session): void => {
    if (s.holdTimer !== null) clearTimeout(s.holdTimer);
    s.holdTimer = null;
    const set = held.get(s.service);
    if (set?.delete(s) === true) heldCount--;
  };

  const finish = (s: Session): void => {
    if (s.done) return;
    s.done = true;
    unhold(s);
    sessions.delete(s);
    closedUserToBackend += s.client.bytesRead;
    closedBackendToUser += s.backend?.bytesRead ?? 0;
  };

  /** Ends a session abnormally: both sides get a reset (RST), never a FIN that could pass for a complete stream. */
  const abort = (s: Session, kind: SessionErrorKind | null): void => {
    if (kind !== null && !s.done) count(kind);
    if (!s.client.destroyed) s.client.resetAndDestroy();
    if (s.backend !== null && !s.backend.destroyed) s.backend.resetAndDestroy();
    finish(s);
  };

  const route = (s: Session): void => {
    if (s.done) return;
    const r = resolve(table, s.service, clock.nowMs(), seq++);
    switch (r.kind) {
      case 'refuse':
        abort(s, r.reason === 'unknown-service' ? 'no-route' : r.reason);
        return;
      case 'hold': {
        if (s.state !== 'held') {
          if (heldCount >= maxHeld) {
            abort(s, 'held-overflow');
            return;
          }
          let set = held.get(s.service);
          if (set === undefined) held.set(s.service, (set = new Set()));
          set.add(s);
          heldCount++;
          s.state = 'held';
        }
        if (s.holdTimer !== null) clearTimeout(s.holdTimer);
        s.holdTimer = setTimeout(() => {
          s.holdTimer = null;
          route(s);
        }, Math.max(1, r.untilMs - clock.nowMs()));
        return;
      }
      case 'connect': {
        const backends = table.routes.get(s.service)?.backends ?? [r.backend];
        unhold(s);
        connect(s, r.backend, r.generation, backends.length);
      }
    }
  };

  const connect = (s: Session, b: Backend, generation: number, attemptsLeft: number): void => {
    s.state = 'connecting';
    s.generation = generation;
    s.backendKey = endpointKey(b);
    const up = createConnection({ host: b.host, port: b.port, allowHalfOpen: true, noDelay: true });
    s.backend = up;
    let connected = false;
    up.setTimeout(connectTimeoutMs, () => {
      if (connected) return;
      up.destroy();
      abort(s, 'connect-timeout');
    });
    up.once('connect', () => {
      connected = true;
      if (s.done) {
        up.resetAndDestroy();
        return;
      }
      up.setTimeout(idleTimeoutMs, () => abort(s, 'idle-timeout'));
      s.client.setTimeout(idleTimeoutMs, () => abort(s, 'idle-timeout'));
      s.state = 'open';
      s.client.pipe(up);
      up.pipe(s.client);
    });
    up.on('error', (e: NodeJS.ErrnoException) => {
      if (s.done) return;
      if (!connected) {
        if (e.code === 'ECONNREFUSED' && attemptsLeft > 1) {
          // Another backend of the route may take it.
          up.destroy();
          const r = resolve(table, s.service, clock.nowMs(), seq++);
          if (r.kind === 'connect') {
            connect(s, r.backend, r.generation, attemptsLeft - 1);
            return;
          }
        }
        abort(s, e.code === 'ECONNREFUSED' ? 'connect-refused' : 'connect-failed');
        return;
      }
      abort(s, 'backend-reset');
    });
    up.once('close', () => {
      // A backend that closed cleanly has sent its FIN (passed on by pipe); once both sides are closed the session is over.
      if (connected && s.client.destroyed) finish(s);
    });
  };

  const accept = (l: Listener, client: Socket): void => {
    if (closed) {
      client.resetAndDestroy();
      return;
    }
    sessionsTotal++;
    const s: Session = {
      id: nextId++, service: l.service, client, startedMs: clock.nowMs(),
      backend: null, backendKey: null, generation: null, state: 'connecting', holdTimer: null, done: false,
    };
    sessions.add(s);
    client.on('error', () => abort(s, 'user-reset'));
    client.once('close', () => {
      if (s.state !== 'open') {
        // The user left before the backend answered (or while held).
        abort(s, null);
        return;
      }
      if (s.backend === null || s.backend.destroyed) finish(s);
    });
    route(s);
  };

  // ---- listeners -----------------------------------------------------------------------------

  const reconcileListeners = async (): Promise<void> => {
    const want = wantedListeners(table);
    const work: Promise<void>[] = [];
    for (const [key, l] of listeners) {
      const w = want.get(key);
      if (w !== undefined) {
        l.service = w.service;
        continue;
      }
      listeners.delete(key);
      // Stops accepting at once; close()'s callback would wait for every session, which keep running on their own.
      l.server.close();
    }
    if (!closed) {
      for (const [key, w] of want) {
        if (listeners.has(key)) continue;
        const server = createServer({ allowHalfOpen: true, noDelay: true });
        const l: Listener = { service: w.service, listen: w.listen, server, listening: false, error: null };
        listeners.set(key, l);
        server.on('connection', (c: Socket) => accept(l, c));
        work.push(new Promise<void>((r) => {
          server.once('listening', () => {
            l.listening = true;
            log.info('proxy: listening', { service: w.service, listen: key });
            r();
          });
          server.on('error', (e: NodeJS.ErrnoException) => {
            l.error = `${e.code ?? 'ERROR'}: ${e.message}`;
            l.listening = false;
            log.error('proxy: listener failed', { service: w.service, listen: key, error: l.error });
            r();
          });
          server.listen({ host: w.listen.host, port: w.listen.port, backlog });
        }));
      }
    }
    await Promise.all(work);
  };

  const repoint = async (host: string): Promise<void> => {
    const via = wantedPath.get(host);
    if (via === undefined || paths === null) return;
    const t0 = performance.now();
    try {
      await paths.repoint({ host, via });
      repoints.applied++;
      repoints.lastMs = performance.now() - t0;
      log.info('proxy: path re-pointed', { host, via, ms: Math.round(repoints.lastMs) });
    } catch (e) {
      repoints.failed++;
      repoints.lastError = (e as Error).message;
      log.error('proxy: path re-point failed', { host, via, error: repoints.lastError });
    }
  };

  // ---- the handle ----------------------------------------------------------------------------

  const apply = (u: RouteUpdate): ApplyOutcome => {
    const r = applyUpdate(table, u, clock.nowMs());
    updates[r.outcome.status]++;
    if (r.outcome.status !== 'applied') {
      log.info('proxy: route update not applied', { service: u.service, generation: u.generation, status: r.outcome.status });
      return r.outcome;
    }
    table = r.table;
    const { previous, route: next } = r.outcome;
    log.info('proxy: route updated', { service: u.service, generation: u.generation, kind: u.kind });
    const listenChanged = previous === null || previous.state.kind !== next.state.kind || endpointKey(previous.listen) !== endpointKey(next.listen);
    if (listenChanged) later('listener reconcile', reconcileListeners);
    if (paths === null && next.backends.some((b) => b.via !== undefined) && pathChanges(previous, next).length > 0) {
      log.warn('proxy: route names a site address (via) but this proxy has no path rewriter', { service: u.service });
    }
    for (const c of pathChanges(previous, next)) {
      wantedPath.set(c.host, c.via);
      if (!pendingRepoint.has(c.host)) {
        pendingRepoint.add(c.host);
        later('path re-point', async () => {
          pendingRepoint.delete(c.host);
          await repoint(c.host);
        });
      }
    }
    // Held sessions of this service look again at once.
    const set = held.get(u.service);
    if (set !== undefined) for (const s of [...set]) route(s);
    return r.outcome;
  };

  const liveBytes = (): [number, number] => {
    let up = 0;
    let down = 0;
    for (const s of sessions) {
      up += s.client.bytesRead;
      down += s.backend?.bytesRead ?? 0;
    }
    return [up, down];
  };

  return {
    apply,
    routes: () => [...table.routes.values()],
    stats: () => {
      const [up, down] = liveBytes();
      return {
        sessionsTotal,
        sessionsActive: sessions.size,
        sessionsHeld: heldCount,
        bytesUserToBackend: closedUserToBackend + up,
        bytesBackendToUser: closedBackendToUser + down,
        errors: { ...errors },
        updates: { ...updates },
        repoints: { ...repoints },
        listeners: [...listeners.values()].map((l) => ({ service: l.service, listen: l.listen, listening: l.listening, error: l.error })),
      };
    },
    sessions: () => [...sessions].map((s) => ({
      id: s.id, service: s.service, state: s.state,
      user: `${s.client.remoteAddress ?? '?'}:${s.client.remotePort ?? '?'}`,
      backend: s.backendKey, generation: s.generation, startedMs: s.startedMs,
      bytesUserToBackend: s.client.bytesRead, bytesBackendToUser: s.backend?.bytesRead ?? 0,
    })),
    settled: async () => {
      // Work queued while waiting is waited for too.
      for (let i = 0; i < 100; i++) {
        const b = background;
        await b;
        if (b === background) return;
      }
    },
    boundPort: (service) => {
      for (const l of listeners.values()) {
        if (l.service !== service || !l.listening) continue;
        const a = l.server.address();
        if (typeof a === 'object' && a !== null) return a.port;
      }
      return null;
    },
    close: async (o = {}) => {
      if (closed) return;
      closed = true;
      const ls = [...listeners.values()];
      listeners.clear();
      for (const l of ls) if (l.listening) l.server.close();
      const deadline = Date.now() + (o.drainMs ?? 0);
      while (sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      for (const s of [...sessions]) abort(s, 'proxy-closed');
      await background;
      if (paths !== null) await paths.close().catch((e: unknown) => log.error('proxy: closing the path rewriter failed', { error: (e as Error).message }));
    },
  };
}

/** Applies a list of updates and waits for the listeners; throws if a listener could not open. */
export async function startProxy(updatesIn: readonly RouteUpdate[], opts: ProxyServerOptions = {}): Promise<ProxyServer> {
  const p = createProxyServer(opts);
  for (const u of updatesIn) {
    const o = p.apply(u);
    if (o.status === 'rejected') {
      await p.close();
      throw new AppError('PROXY_ROUTE_REJECTED', `Cannot start the proxy: the route update for ${u.service} (generation ${u.generation}) was rejected: ${o.reason}`);
    }
  }
  await p.settled();
  const failed = p.stats().listeners.filter((l) => !l.listening);
  if (failed.length > 0) {
    await p.close();
    throw new AppError('PROXY_LISTEN_FAILED', `Cannot start the proxy: ${failed.map((l) => `${l.service} on ${endpointKey(l.listen)} (${l.error ?? 'not listening'})`).join(', ')}`, { retryable: true });
  }
  return p;
}
