// The proxy's control endpoint: a small HTTP/1.1 JSON API on a unix socket (or TCP) through which the manager
// sends route updates and reads counters. It is off the data path: an update is applied in memory by the
// handler (ProxyServer.apply) and answered at once; path re-points run in the background.
//
//   POST /routes     body: one RouteUpdate or an array → {"outcomes": [{status, reason?}]}
//   GET  /routes     → {"routes": [...]}
//   GET  /stats      → ProxyStats
//   GET  /sessions   → {"sessions": [...]}
//   GET  /healthz    → {"ok": true}
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { rmSync } from 'node:fs';
import { AppError, InputError } from '../core/errors.js';
import type { ProxyServer, ProxyStats, SessionInfo } from './server.js';
import { parseRouteUpdate, type ApplyOutcome, type Route, type RouteUpdate } from './routes.js';

export type ControlAddress = { readonly path: string } | { readonly host: string; readonly port: number };

const MAX_BODY_BYTES = 1 << 20;

function summarize(o: ApplyOutcome): { status: ApplyOutcome['status']; reason?: string; generation?: number } {
  switch (o.status) {
    case 'applied': return { status: o.status, generation: o.route.generation };
    case 'rejected': return { status: o.status, reason: o.reason };
    default: return { status: o.status, generation: o.current.generation };
  }
}

function send(res: ServerResponse, code: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(code, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > MAX_BODY_BYTES) {
        reject(new InputError('body', `${n} bytes`, `must be at most ${MAX_BODY_BYTES} bytes`));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

export interface ControlServer {
  readonly address: ControlAddress;
  close(): Promise<void>;
}

export async function startControlServer(proxy: ProxyServer, at: ControlAddress): Promise<ControlServer> {
  const server: Server = createServer((req, res) => {
    void (async () => {
      try {
        const url = req.url ?? '/';
        if (req.method === 'GET' && url === '/healthz') return send(res, 200, { ok: true });
        if (req.method === 'GET' && url === '/stats') return send(res, 200, proxy.stats());
        if (req.method === 'GET' && url === '/sessions') return send(res, 200, { sessions: proxy.sessions() });
        if (req.method === 'GET' && url === '/routes') return send(res, 200, { routes: proxy.routes() });
        if (req.method === 'POST' && url === '/routes') {
          const text = await readBody(req);
          let body: unknown;
          try {
            body = JSON.parse(text);
          } catch (e) {
            throw new InputError('body', text, `must be JSON (${(e as Error).message})`);
          }
          const list = Array.isArray(body) ? body : [body];
          const us = list.map((u, i) => parseRouteUpdate(u, Array.isArray(body) ? `body[${i}]` : 'body'));
          return send(res, 200, { outcomes: us.map((u) => summarize(proxy.apply(u))) });
        }
        send(res, 404, { error: `no ${req.method ?? '?'} ${url}: try GET /routes, POST /routes, GET /stats, GET /sessions` });
      } catch (e) {
        if (e instanceof InputError) send(res, 400, { error: e.message, field: e.field });
        else send(res, 500, { error: (e as Error).message });
      }
    })();
  });
  if ('path' in at) rmSync(at.path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    const done = (): void => {
      server.off('error', reject);
      resolve();
    };
    if ('path' in at) server.listen(at.path, done);
    else server.listen(at.port, at.host, done);
  });
  const a = server.address();
  const address: ControlAddress = 'path' in at ? at : { host: at.host, port: typeof a === 'object' && a !== null ? a.port : at.port };
  return {
    address,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => {
        if ('path' in at) rmSync(at.path, { force: true });
        resolve();
      });
    }),
  };
}

/** A client for the control endpoint (the manager's side, and tests). */
export interface ControlClient {
  apply(u: RouteUpdate | readonly RouteUpdate[]): Promise<ReturnType<typeof summarize>[]>;
  routes(): Promise<Route[]>;
  stats(): Promise<ProxyStats>;
  sessions(): Promise<SessionInfo[]>;
  healthy(): Promise<boolean>;
}

export function controlClient(at: ControlAddress, opts: { timeoutMs?: number } = {}): ControlClient {
  const timeoutMs = opts.timeoutMs ?? 5000;
  const call = (method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const text = body === undefined ? undefined : JSON.stringify(body);
      const where = 'path' in at ? { socketPath: at.path } : { host: at.host, port: at.port };
      const req = request({ ...where, method, path, timeout: timeoutMs, headers: text === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const raw = Buffer.concat(chunks).toString('utf8');
          let parsed: unknown;
          try {
            parsed = JSON.parse(raw);
          } catch {
            parsed = { error: raw };
          }
          if (res.statusCode === 200) resolve(parsed);
          else reject(new AppError('PROXY_CONTROL', `Proxy control ${method} ${path} answered ${res.statusCode ?? '?'}: ${(parsed as { error?: string }).error ?? raw}`));
        });
      });
      const label = 'path' in at ? at.path : `${at.host}:${at.port}`;
      req.on('timeout', () => req.destroy(new AppError('PROXY_CONTROL_TIMEOUT', `Proxy control ${method} ${path} at ${label}: no answer within ${timeoutMs} ms`, { retryable: true })));
      req.on('error', (e) => reject(e instanceof AppError ? e : new AppError('PROXY_CONTROL', `Cannot reach the proxy's control endpoint at ${label}: ${e.message}`, { retryable: true, cause: e })));
      req.end(text);
    });
  return {
    apply: async (u) => ((await call('POST', '/routes', u)) as { outcomes: ReturnType<typeof summarize>[] }).outcomes,
    routes: async () => ((await call('GET', '/routes')) as { routes: Route[] }).routes,
    stats: async () => (await call('GET', '/stats')) as ProxyStats,
    sessions: async () => ((await call('GET', '/sessions')) as { sessions: SessionInfo[] }).sessions,
    healthy: async () => {
      try {
        await call('GET', '/healthz');
        return true;
      } catch {
        return false;
      }
    },
  };
}
