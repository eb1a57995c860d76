// What every resource module of the API is given, and the few read helpers they share. Handlers stay thin:
// reads go to the store, changes to ManagerControl.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyBaseLogger, FastifyInstance, FastifyRequest, RawServerDefault } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Settings } from '../../store/records.js';
import type { Collection, Doc, Store } from '../../store/store.js';
import type { ManagerControl } from '../control.js';
import type { EventBus } from '../events.js';
import type { Metrics } from '../metrics.js';
import type { TokenIdentity } from '../auth.js';
import { ApiError } from './errors.js';

export type Api = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>;

export interface ApiDeps {
  readonly store: Store;
  readonly control: ManagerControl;
  readonly events: EventBus;
  readonly metrics: Metrics;
  readonly log: FastifyBaseLogger;
  readonly sseHeartbeatMs: number;
  /** The most documents a list request may scan to find its page (a filter that matches little). */
  readonly maxScan: number;
  /** What GET /v1/settings shows for settings never stored (the manager's configured ones); null: 404. */
  readonly settingsDefaults: Settings | null;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Who sent it (null: no token, allowed only on open routes and reads with openReads). */
    identity: TokenIdentity | null;
  }
}

/** The actor a change is recorded under in the audit trail. */
export function actorOf(req: FastifyRequest): string {
  return req.identity?.actor ?? 'api:anonymous';
}

const SCAN_CHUNK = 500;

/**
 * One page of a collection in id order, keeping the documents `keep` accepts: scans on until the page is
 * full (plus one, to know whether a next page exists) or `maxScan` documents were read, in which case `next`
 * lets the client continue the scan where it stopped.
 */
export async function pageOf<T>(
  deps: ApiDeps, col: Collection, opts: { after?: string; limit: number; keep?: (v: T) => boolean },
): Promise<{ items: T[]; next: string | null }> {
  const items: Doc<T>[] = [];
  let after = opts.after;
  let scanned = 0;
  for (;;) {
    const chunk = await deps.store.list<T>(col, {
      ...(after !== undefined ? { afterId: after } : {}),
      limit: opts.keep === undefined ? opts.limit + 1 : SCAN_CHUNK,
    });
    for (const d of chunk) {
      if (opts.keep === undefined || opts.keep(d.value)) items.push(d);
      if (items.length > opts.limit) break;
    }
    scanned += chunk.length;
    const last = chunk[chunk.length - 1];
    if (items.length > opts.limit) {
      return { items: items.slice(0, opts.limit).map((d) => d.value), next: items[opts.limit - 1]?.id ?? null };
    }
    if (last === undefined || chunk.length < (opts.keep === undefined ? opts.limit + 1 : SCAN_CHUNK)) {
      return { items: items.map((d) => d.value), next: null };
    }
    after = last.id;
    if (scanned >= deps.maxScan) return { items: items.map((d) => d.value), next: last.id };
  }
}

/**
 * The newest `limit` documents of a collection by `atMs(value)`, among those `keep` accepts. Collections whose
 * ids sort in time order (the loop's `plan-<time>-…`, `round-<time>-…`) are read newest first and only as far
 * as needed; others (random job ids) are scanned, at most `maxScan` documents.
 */
export async function newestOf<T>(
  deps: ApiDeps, col: Collection,
  opts: { limit: number; atMs: (v: T) => number; keep?: (v: T) => boolean; status?: string; idsInTimeOrder?: boolean },
): Promise<T[]> {
  const all: T[] = [];
  let after: string | undefined;
  let scanned = 0;
  const desc = opts.idsInTimeOrder === true;
  while (scanned < deps.maxScan) {
    const chunk = await deps.store.list<T>(col, {
      ...(after !== undefined ? { afterId: after } : {}),
      ...(opts.status !== undefined ? { status: opts.status } : {}),
      ...(desc ? { order: 'desc' as const } : {}),
      limit: SCAN_CHUNK,
    });
    for (const d of chunk) if (opts.keep === undefined || opts.keep(d.value)) all.push(d.value);
    scanned += chunk.length;
    const last = chunk[chunk.length - 1];
    if (last === undefined || chunk.length < SCAN_CHUNK) break;
    // One page past the limit: ids made in the same millisecond may sort apart from their times.
    if (desc && all.length > opts.limit + SCAN_CHUNK) break;
    after = last.id;
  }
  return all.sort((a, b) => opts.atMs(b) - opts.atMs(a)).slice(0, opts.limit);
}

export async function getOr404<T>(deps: ApiDeps, col: Collection, what: string, id: string): Promise<Doc<T>> {
  const d = await deps.store.get<T>(col, id);
  if (d === null) throw new ApiError('NOT_FOUND', `${what} ${JSON.stringify(id)} does not exist`);
  return d;
}

export const DEFAULT_LIMIT = 100;
