// One way in: a store URL picks the backend. 'sqlite:PATH', a plain path or ':memory:' → SQLite (one file,
// nothing to set up); 'postgres://…' (or 'postgresql://…') → PostgreSQL (several replicas share it).
// Errors name the URL without its password.
import type { Clock } from '../core/clock.js';
import { InputError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { Store } from './store.js';

export interface OpenStoreOptions {
  /** updatedAtMs stamps (and SQLite's lease times; PostgreSQL's leases use the database's clock). */
  readonly clock?: Clock;
  readonly log?: Logger;
  /** SQLite: wait this long for another process's write lock (default 5000 ms). */
  readonly busyTimeoutMs?: number;
  /** PostgreSQL: connections in the pool (default 10). */
  readonly poolSize?: number;
  /** PostgreSQL: a query taking longer fails (default 30 000 ms). */
  readonly queryTimeoutMs?: number;
}

export type StoreUrl =
  | { readonly kind: 'sqlite'; readonly path: string }
  | { readonly kind: 'postgres'; readonly url: string; readonly location: string };

/** The URL with any password replaced by '***', for messages and logs. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/]*):[^@/]*@/i, '$1:***@');
}

/** Where a PostgreSQL URL points, without user or password: postgres://host:port/database. */
export function postgresLocation(url: string): string {
  let u: URL;
  try {
    u = new URL(url);
  } catch (e) {
    throw new InputError('store', redactUrl(url), 'is not a valid postgres:// URL', { cause: e });
  }
  const host = u.hostname === '' ? (u.searchParams.get('host') ?? 'localhost') : u.hostname;
  return `postgres://${host}${u.port === '' ? '' : `:${u.port}`}${u.pathname === '' ? '/' : u.pathname}`;
}

export function parseStoreUrl(url: string): StoreUrl {
  if (typeof url !== 'string' || url.trim() === '') throw new InputError('store', url, 'must be sqlite:PATH, a file path, :memory: or postgres://USER@HOST:PORT/DATABASE');
  if (/^postgres(ql)?:\/\//i.test(url)) return { kind: 'postgres', url, location: postgresLocation(url) };
  if (url.startsWith('sqlite:')) {
    const rest = url.slice('sqlite:'.length);
    const path = rest.startsWith('//') ? rest.slice(2) : rest;
    if (path === '') throw new InputError('store', url, 'names no file: use sqlite:/path/to/vmshadow.db or sqlite::memory:');
    return { kind: 'sqlite', path };
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(url)) throw new InputError('store', redactUrl(url), 'must be sqlite:PATH, a file path, :memory: or postgres://USER@HOST:PORT/DATABASE');
  return { kind: 'sqlite', path: url };
}

/** Opens the store `url` names and brings its schema up to date (see schema.ts). */
export async function openStore(url: string, opts: OpenStoreOptions = {}): Promise<Store> {
  const p = parseStoreUrl(url);
  if (p.kind === 'sqlite') {
    const { openSqliteStore } = await import('./sqlite.js');
    return openSqliteStore(p.path, {
      ...(opts.clock === undefined ? {} : { clock: opts.clock }),
      ...(opts.busyTimeoutMs === undefined ? {} : { busyTimeoutMs: opts.busyTimeoutMs }),
    });
  }
  const { openPostgresStore } = await import('./postgres.js');
  return openPostgresStore(p.url, opts);
}
