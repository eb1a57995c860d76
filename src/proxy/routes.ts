// PURE: the proxy's route table. A service is a stable listen address:port that users connect to; its route
// names the VM's current backend endpoint(s) and a generation number. The manager sends versioned updates:
// a newer generation wins, an older one is ignored, the same one twice changes nothing. While a VM is mid
// switch-over (paused at the source, not yet running at the destination) the route is 'switching': new
// sessions are held for a bounded time instead of being sent into the pause. A 'draining' route accepts no
// new sessions; established ones run to their end. Nothing here does I/O: the server (server.ts) applies
// the result.
import { InputError } from '../core/errors.js';

export interface Endpoint {
  readonly host: string;
  readonly port: number;
}

/**
 * Where sessions of a service go. `host` is the address the proxy's socket connects to. In a stretched L2
 * overlay it is simply the VM's address (it never changes). Across sites in different subnets it is the VM's
 * stable private address and `via` is the site address that private address is reached through right now:
 * the proxy re-points the packets' path (see nat.ts), so established connections keep their 4-tuple.
 */
export interface Backend extends Endpoint {
  readonly via?: string;
}

export type RouteState =
  | { readonly kind: 'active' }
  /** new sessions wait until a newer generation arrives or until `holdUntilMs`, then use the current backends */
  | { readonly kind: 'switching'; readonly sinceMs: number; readonly holdUntilMs: number }
  /** no new sessions; established ones continue; a tombstone that keeps the generation */
  | { readonly kind: 'draining'; readonly sinceMs: number };

export interface Route {
  readonly service: string;
  readonly listen: Endpoint;
  readonly backends: readonly Backend[];
  readonly generation: number;
  readonly state: RouteState;
}

export type RouteUpdate =
  | { readonly kind: 'set'; readonly service: string; readonly generation: number; readonly listen: Endpoint; readonly backends: readonly Backend[] }
  | { readonly kind: 'switching'; readonly service: string; readonly generation: number; readonly holdMs: number }
  | { readonly kind: 'drain'; readonly service: string; readonly generation: number };

export interface RouteTable {
  /** by service name */
  readonly routes: ReadonlyMap<string, Route>;
}

export type ApplyOutcome =
  | { readonly status: 'applied'; readonly previous: Route | null; readonly route: Route }
  /** the update's generation is older than the route's: ignored */
  | { readonly status: 'stale'; readonly current: Route }
  /** the same generation with the same content again: nothing to do */
  | { readonly status: 'duplicate'; readonly current: Route }
  /** not applicable: same generation with other content, unknown service, listen address taken */
  | { readonly status: 'rejected'; readonly reason: string };

export type Resolution =
  | { readonly kind: 'connect'; readonly backend: Backend; readonly generation: number }
  | { readonly kind: 'hold'; readonly untilMs: number; readonly generation: number }
  | { readonly kind: 'refuse'; readonly reason: 'unknown-service' | 'draining' | 'no-backends' };

/** Longest hold a 'switching' update may ask for: a held user waits at most this long. */
export const MAX_HOLD_MS = 60_000;
export const MAX_BACKENDS = 64;

export const emptyTable: RouteTable = { routes: new Map() };

export function endpointKey(e: Endpoint): string {
  return e.host.includes(':') ? `[${e.host}]:${e.port}` : `${e.host}:${e.port}`;
}

function sameBackends(a: readonly Backend[], b: readonly Backend[]): boolean {
  return a.length === b.length && a.every((x, i) => x.host === b[i]!.host && x.port === b[i]!.port && x.via === b[i]!.via);
}

function sameEndpoint(a: Endpoint, b: Endpoint): boolean {
  return a.host === b.host && a.port === b.port;
}

/** Whether `u` says the same as the route it produced (for duplicate detection at equal generation). */
function matches(route: Route, u: RouteUpdate): boolean {
  switch (u.kind) {
    case 'set':
      return route.state.kind === 'active' && sameEndpoint(route.listen, u.listen) && sameBackends(route.backends, u.backends);
    case 'switching':
      return route.state.kind === 'switching';
    case 'drain':
      return route.state.kind === 'draining';
  }
}

function withRoute(t: RouteTable, r: Route): RouteTable {
  const routes = new Map(t.routes);
  routes.set(r.service, r);
  return { routes };
}

/** Applies one update; the table is never mutated (a stale, duplicate or rejected update returns `t` itself). */
export function applyUpdate(t: RouteTable, u: RouteUpdate, nowMs: number): { table: RouteTable; outcome: ApplyOutcome } {
  const cur = t.routes.get(u.service) ?? null;
  if (cur !== null) {
    if (u.generation < cur.generation) return { table: t, outcome: { status: 'stale', current: cur } };
    if (u.generation === cur.generation) {
      if (matches(cur, u)) return { table: t, outcome: { status: 'duplicate', current: cur } };
      return { table: t, outcome: { status: 'rejected', reason: `generation ${u.generation} of ${u.service} was already applied with other content` } };
    }
  }
  let next: Route;
  switch (u.kind) {
    case 'set': {
      for (const r of t.routes.values()) {
        if (r.service !== u.service && r.state.kind !== 'draining' && sameEndpoint(r.listen, u.listen)) {
          return { table: t, outcome: { status: 'rejected', reason: `listen address ${endpointKey(u.listen)} is used by service ${r.service}` } };
        }
      }
      next = { service: u.service, listen: u.listen, backends: u.backends, generation: u.generation, state: { kind: 'active' } };
      break;
    }
    case 'switching':
      if (cur === null) return { table: t, outcome: { status: 'rejected', reason: `service ${u.service} has no route to switch` } };
      if (cur.state.kind === 'draining') return { table: t, outcome: { status: 'rejected', reason: `service ${u.service} is draining` } };
      next = { ...cur, generation: u.generation, state: { kind: 'switching', sinceMs: nowMs, holdUntilMs: nowMs + u.holdMs } };
      break;
    case 'drain':
      if (cur === null) return { table: t, outcome: { status: 'rejected', reason: `service ${u.service} has no route to drain` } };
      next = { ...cur, generation: u.generation, state: { kind: 'draining', sinceMs: nowMs } };
      break;
  }
  return { table: withRoute(t, next), outcome: { status: 'applied', previous: cur, route: next } };
}

export function applyAll(t: RouteTable, us: readonly RouteUpdate[], nowMs: number): { table: RouteTable; outcomes: ApplyOutcome[] } {
  const outcomes: ApplyOutcome[] = [];
  let table = t;
  for (const u of us) {
    const r = applyUpdate(table, u, nowMs);
    table = r.table;
    outcomes.push(r.outcome);
  }
  return { table, outcomes };
}

/**
 * Where a new session of `service` goes at `nowMs`. `seq` is the server's session counter: backends are
 * taken in turn (round robin), so a route with one backend always gives that one.
 */
export function resolve(t: RouteTable, service: string, nowMs: number, seq: number): Resolution {
  const r = t.routes.get(service);
  if (r === undefined) return { kind: 'refuse', reason: 'unknown-service' };
  if (r.state.kind === 'draining') return { kind: 'refuse', reason: 'draining' };
  if (r.state.kind === 'switching' && nowMs < r.state.holdUntilMs) return { kind: 'hold', untilMs: r.state.holdUntilMs, generation: r.generation };
  if (r.backends.length === 0) return { kind: 'refuse', reason: 'no-backends' };
  const i = ((seq % r.backends.length) + r.backends.length) % r.backends.length;
  return { kind: 'connect', backend: r.backends[i]!, generation: r.generation };
}

/** The listen addresses that should be open: one per route that is not draining. */
export function wantedListeners(t: RouteTable): Map<string, { service: string; listen: Endpoint }> {
  const out = new Map<string, { service: string; listen: Endpoint }>();
  for (const r of t.routes.values()) {
    if (r.state.kind !== 'draining') out.set(endpointKey(r.listen), { service: r.service, listen: r.listen });
  }
  return out;
}

export interface PathChange {
  /** the backend address the proxy's sockets connect to (the VM's stable private address) */
  readonly host: string;
  /** the site address it is reached through from now on */
  readonly via: string;
}

/** The path re-points an applied update asks for: backends whose `via` is new or changed. */
export function pathChanges(previous: Route | null, next: Route): PathChange[] {
  const before = new Map<string, string | undefined>();
  for (const b of previous?.backends ?? []) before.set(b.host, b.via);
  const out = new Map<string, string>();
  for (const b of next.backends) {
    if (b.via !== undefined && before.get(b.host) !== b.via) out.set(b.host, b.via);
  }
  return [...out].map(([host, via]) => ({ host, via }));
}

// ---------------------------------------------------------------------------------------------
// Validation of updates that arrive as JSON (control endpoint, config file)

const IPV4_RE = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const IPV6_RE = /^[0-9a-fA-F:.]{2,45}$/;
const SERVICE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function isIpLiteral(s: string): boolean {
  return IPV4_RE.test(s) || (s.includes(':') && IPV6_RE.test(s));
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function parseEndpoint(v: unknown, field: string): Endpoint {
  if (!isObject(v)) throw new InputError(field, v, 'must be an object {host, port}');
  const { host, port } = v;
  // IP literals only: the data path never waits on a name lookup.
  if (typeof host !== 'string' || !isIpLiteral(host)) throw new InputError(`${field}.host`, host, 'must be an IP address literal');
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) throw new InputError(`${field}.port`, port, 'must be a port number 1–65535');
  return { host, port };
}

function parseBackend(v: unknown, field: string): Backend {
  const e = parseEndpoint(v, field);
  const via = (v as Record<string, unknown>).via;
  if (via === undefined) return e;
  if (typeof via !== 'string' || !IPV4_RE.test(via)) throw new InputError(`${field}.via`, via, 'must be an IPv4 address (the site address of the backend)');
  return { ...e, via };
}

/** Checks an update from JSON; throws InputError naming the bad field. */
export function parseRouteUpdate(v: unknown, field = 'update'): RouteUpdate {
  if (!isObject(v)) throw new InputError(field, v, 'must be an object');
  const { kind, service, generation } = v;
  if (typeof service !== 'string' || !SERVICE_RE.test(service)) throw new InputError(`${field}.service`, service, 'must be 1–64 letters, digits, "_", "." or "-"');
  if (typeof generation !== 'number' || !Number.isSafeInteger(generation) || generation < 0) throw new InputError(`${field}.generation`, generation, 'must be a whole number ≥ 0');
  switch (kind) {
    case 'set': {
      const listen = parseEndpoint(v.listen, `${field}.listen`);
      if (!Array.isArray(v.backends) || v.backends.length > MAX_BACKENDS) throw new InputError(`${field}.backends`, v.backends, `must be an array of at most ${MAX_BACKENDS} backends`);
      const backends = v.backends.map((b, i) => parseBackend(b, `${field}.backends[${i}]`));
      return { kind, service, generation, listen, backends };
    }
    case 'switching': {
      const { holdMs } = v;
      if (typeof holdMs !== 'number' || !Number.isFinite(holdMs) || holdMs < 0 || holdMs > MAX_HOLD_MS) throw new InputError(`${field}.holdMs`, holdMs, `must be a number of ms from 0 to ${MAX_HOLD_MS}`);
      return { kind, service, generation, holdMs };
    }
    case 'drain':
      return { kind, service, generation };
    default:
      throw new InputError(`${field}.kind`, kind, "must be 'set', 'switching' or 'drain'");
  }
}
