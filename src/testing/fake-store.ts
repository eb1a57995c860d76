// An in-memory Store for tests that need no database: the same calls and the same conflict rules as the
// real stores (documents by id with revisions, logs with growing seqs, leases), kept in Maps.
import { AppError } from '../core/errors.js';
import type {
  Collection, Doc, Lease, ListQuery, LogEntry, LogName, LogQuery, PutOptions, Store,
} from '../store/store.js';

export interface FakeStore extends Store {
  /** Every document and log entry, for before/after comparisons. */
  dump(): { docs: Record<string, Doc<unknown>[]>; logs: Record<string, LogEntry<unknown>[]> };
}

export function createFakeStore(opts: { nowMs?: () => number } = {}): FakeStore {
  const now = opts.nowMs ?? (() => Date.now());
  const docs = new Map<Collection, Map<string, Doc<unknown>>>();
  const logs = new Map<LogName, LogEntry<unknown>[]>();
  const leases = new Map<string, Lease>();
  let seq = 0;
  let closed = false;
  const col = (c: Collection): Map<string, Doc<unknown>> => {
    if (closed) throw new AppError('STORE_CLOSED', 'the fake store is closed');
    let m = docs.get(c);
    if (m === undefined) docs.set(c, (m = new Map<string, Doc<unknown>>()));
    return m;
  };
  const log = (l: LogName): LogEntry<unknown>[] => {
    let a = logs.get(l);
    if (a === undefined) logs.set(l, (a = []));
    return a;
  };
  const matches = (d: Doc<unknown>, q: Pick<ListQuery, 'group' | 'status'>): boolean =>
    (q.group === undefined || d.group === q.group) && (q.status === undefined || d.status === q.status);
  const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

  return {
    kind: 'sqlite',
    location: 'memory:fake',
    schemaVersion: 1,
    get<T>(c: Collection, id: string) {
      const d = col(c).get(id);
      return Promise.resolve(d === undefined ? null : (clone(d) as Doc<T>));
    },
    list<T>(c: Collection, q: ListQuery = {}) {
      const limit = Math.min(q.limit ?? 1000, 100_000);
      const out = [...col(c).values()]
        .filter((d) => matches(d, q) && (q.afterId === undefined || d.id > q.afterId))
        .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
        .slice(0, limit);
      return Promise.resolve(clone(out) as Doc<T>[]);
    },
    count(c: Collection, q: Pick<ListQuery, 'group' | 'status'> = {}) {
      return Promise.resolve([...col(c).values()].filter((d) => matches(d, q)).length);
    },
    put<T>(c: Collection, id: string, value: T, o: PutOptions = {}) {
      const m = col(c);
      const old = m.get(id);
      if (o.expectRev !== undefined) {
        const have = old?.rev ?? null;
        if (have !== o.expectRev) {
          return Promise.reject(new AppError('STORE_CONFLICT',
            `${c}/${id}: expected revision ${String(o.expectRev)}, the store has ${String(have)}`));
        }
      }
      const d: Doc<unknown> = {
        id, rev: (old?.rev ?? 0) + 1, updatedAtMs: now(),
        group: o.group ?? null, status: o.status ?? null, value: clone(value),
      };
      m.set(id, d);
      return Promise.resolve(clone(d) as Doc<T>);
    },
    putMany<T>(c: Collection, entries: readonly { id: string; value: T; group?: string | null; status?: string | null }[]) {
      const m = col(c);
      for (const e of entries) {
        const old = m.get(e.id);
        m.set(e.id, {
          id: e.id, rev: (old?.rev ?? 0) + 1, updatedAtMs: now(),
          group: e.group ?? null, status: e.status ?? null, value: clone(e.value),
        });
      }
      return Promise.resolve();
    },
    delete(c: Collection, id: string) {
      return Promise.resolve(col(c).delete(id));
    },
    append<T>(l: LogName, entries: readonly { key: string; atMs: number; value: T }[]) {
      const a = log(l);
      const seqs: number[] = [];
      for (const e of entries) {
        seq += 1;
        a.push({ seq, key: e.key, atMs: e.atMs, value: clone(e.value) });
        seqs.push(seq);
      }
      return Promise.resolve(seqs);
    },
    read<T>(l: LogName, q: LogQuery) {
      let a = log(l).filter((e) =>
        (q.key === undefined || e.key === q.key) &&
        (q.afterSeq === undefined || e.seq > q.afterSeq) &&
        (q.sinceMs === undefined || e.atMs >= q.sinceMs));
      if (q.order === 'desc') a = [...a].reverse();
      return Promise.resolve(clone(a.slice(0, Math.min(q.limit, 100_000))) as LogEntry<T>[]);
    },
    trim(l: LogName, beforeMs: number) {
      const a = log(l);
      const keep = a.filter((e) => e.atMs >= beforeMs);
      logs.set(l, keep);
      return Promise.resolve(a.length - keep.length);
    },
    acquireLease(name: string, holder: string, ttlMs: number) {
      const cur = leases.get(name);
      const t = now();
      if (cur === undefined || cur.expiresAtMs <= t || cur.holder === holder) {
        const l = { name, holder, expiresAtMs: t + ttlMs };
        leases.set(name, l);
        return Promise.resolve(l);
      }
      return Promise.resolve(cur);
    },
    releaseLease(name: string, holder: string) {
      if (leases.get(name)?.holder === holder) leases.delete(name);
      return Promise.resolve();
    },
    getLease(name: string) {
      return Promise.resolve(leases.get(name) ?? null);
    },
    close() {
      closed = true;
      return Promise.resolve();
    },
    dump() {
      const d: Record<string, Doc<unknown>[]> = {};
      for (const [c, m] of docs) d[c] = clone([...m.values()].sort((a, b) => (a.id < b.id ? -1 : 1)));
      const lg: Record<string, LogEntry<unknown>[]> = {};
      for (const [l, a] of logs) lg[l] = clone(a);
      return { docs: d, logs: lg };
    },
  };
}
