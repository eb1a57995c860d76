// Typed views over a Store, written once for both backends: the records the manager keeps (records.ts), the
// group/status each collection is indexed by, settings with defaults, the audit trail, and the executor's
// JobStore on the 'jobs' collection.
import { createKeyedSerial } from '../core/serial.js';
import type { VmId } from '../core/ids.js';
import { isTerminal, type JobRecord } from '../migration/job.js';
import { checkJobId, type JobStore } from '../migration/store.js';
import { DEFAULT_PLAN_PARAMS } from '../placement/params.js';
import type {
  AuditEvent, FingerprintPoint, HostRecord, LinkRecord, PlanRecord, RoundRecord, RttPoint, Settings, SiteRecord,
  TokenRecord, UserRecord, VmRecord,
} from './records.js';
import { MAX_LIMIT } from './schema.js';
import type { Collection, Doc, ListQuery, LogEntry, LogName, LogQuery, Store } from './store.js';

/** The settings document's id in 'settings'. */
export const SETTINGS_ID = 'manager';

export const DEFAULT_SETTINGS: Settings = Object.freeze({
  mode: 'approve',
  roundIntervalS: 60,
  planner: 'greedy',
  params: DEFAULT_PLAN_PARAMS,
});

interface Index {
  readonly group: string | null;
  readonly status: string | null;
}

export interface DocRepo<T extends { readonly id: string }> {
  readonly collection: Collection;
  get(id: string): Promise<T | null>;
  getDoc(id: string): Promise<Doc<T> | null>;
  /** Stores `value` under `value.id`, with the collection's group and status. */
  put(value: T, opts?: { expectRev?: number | null }): Promise<Doc<T>>;
  /** One transaction, all or nothing. */
  putMany(values: readonly T[]): Promise<void>;
  /** One page (ListQuery: group, status, afterId, limit, order). */
  list(q?: ListQuery): Promise<T[]>;
  listDocs(q?: ListQuery): Promise<Doc<T>[]>;
  /** Every matching record, paged through `pageSize` at a time, in id order. */
  all(q?: Pick<ListQuery, 'group' | 'status'>, pageSize?: number): Promise<T[]>;
  count(q?: Pick<ListQuery, 'group' | 'status'>): Promise<number>;
  delete(id: string): Promise<boolean>;
}

/** Pages through every matching document (bounded: stops when a page comes back short). */
export async function listAll<T>(store: Store, col: Collection, q: Pick<ListQuery, 'group' | 'status' | 'order'> = {}, pageSize = 10_000): Promise<Doc<T>[]> {
  const limit = Math.max(1, Math.min(MAX_LIMIT, Math.floor(pageSize)));
  const out: Doc<T>[] = [];
  let afterId: string | undefined;
  for (;;) {
    const page = await store.list<T>(col, { ...q, limit, ...(afterId === undefined ? {} : { afterId }) });
    out.push(...page);
    const last = page[page.length - 1];
    if (page.length < limit || last === undefined) return out;
    afterId = last.id;
  }
}

export function docRepo<T extends { readonly id: string }>(store: Store, collection: Collection, index: (v: T) => Index = () => ({ group: null, status: null })): DocRepo<T> {
  return {
    collection,
    async get(id) {
      return (await store.get<T>(collection, id))?.value ?? null;
    },
    getDoc: (id) => store.get<T>(collection, id),
    put: (value, opts = {}) => store.put<T>(collection, value.id, value, { ...index(value), ...opts }),
    putMany: (values) => store.putMany<T>(collection, values.map((value) => ({ id: value.id, value, ...index(value) }))),
    async list(q) {
      return (await store.list<T>(collection, q)).map((d) => d.value);
    },
    listDocs: (q) => store.list<T>(collection, q),
    async all(q, pageSize) {
      return (await listAll<T>(store, collection, q, pageSize)).map((d) => d.value);
    },
    count: (q) => store.count(collection, q),
    delete: (id) => store.delete(collection, id),
  };
}

export interface LogRepo<T> {
  readonly log: LogName;
  append(entries: readonly { key: string; atMs: number; value: T }[]): Promise<number[]>;
  read(q: LogQuery): Promise<LogEntry<T>[]>;
  trim(beforeMs: number): Promise<number>;
}

export function logRepo<T>(store: Store, log: LogName): LogRepo<T> {
  return {
    log,
    append: (entries) => store.append<T>(log, entries),
    read: (q) => store.read<T>(log, q),
    trim: (beforeMs) => store.trim(log, beforeMs),
  };
}

export interface Repos {
  readonly store: Store;
  readonly sites: DocRepo<SiteRecord>;
  /** group = site id. */
  readonly hosts: DocRepo<HostRecord>;
  readonly links: DocRepo<LinkRecord>;
  readonly vms: DocRepo<VmRecord>;
  readonly users: DocRepo<UserRecord>;
  /** group = round id, status = plan status ('recommended' lists the plans waiting for an operator). */
  readonly plans: DocRepo<PlanRecord>;
  /** status = 'ok' | 'failed'. Round ids sort by time, so `list({ order: 'desc' })` gives the newest. */
  readonly rounds: DocRepo<RoundRecord>;
  /** group = the token's SHA-256, status = role: a token is found by its hash with one indexed read. */
  readonly tokens: DocRepo<TokenRecord>;
  readonly audit: LogRepo<AuditEvent>;
  readonly fingerprints: LogRepo<FingerprintPoint>;
  readonly rtts: LogRepo<RttPoint>;
  readonly jobs: JobStore;
}

export function createRepos(store: Store): Repos {
  return {
    store,
    sites: docRepo<SiteRecord>(store, 'sites'),
    hosts: docRepo<HostRecord>(store, 'hosts', (h) => ({ group: h.siteId, status: null })),
    links: docRepo<LinkRecord>(store, 'links'),
    vms: docRepo<VmRecord>(store, 'vms'),
    users: docRepo<UserRecord>(store, 'users'),
    plans: docRepo<PlanRecord>(store, 'plans', (p) => ({ group: p.roundId, status: p.status })),
    rounds: docRepo<RoundRecord>(store, 'rounds', (r) => ({ group: null, status: r.error === null ? 'ok' : 'failed' })),
    tokens: docRepo<TokenRecord>(store, 'tokens', (t) => ({ group: t.sha256, status: t.role })),
    audit: logRepo<AuditEvent>(store, 'audit'),
    fingerprints: logRepo<FingerprintPoint>(store, 'fingerprints'),
    rtts: logRepo<RttPoint>(store, 'rtts'),
    jobs: jobStoreOf(store),
  };
}

// ---- The calls the API, the CLI and the dashboard use most, as plain functions ----

export const getVm = (store: Store, id: string): Promise<VmRecord | null> => docRepo<VmRecord>(store, 'vms').get(id);
export const putVm = (store: Store, vm: VmRecord, opts?: { expectRev?: number | null }): Promise<Doc<VmRecord>> => docRepo<VmRecord>(store, 'vms').put(vm, opts);
export const listVms = (store: Store, q?: ListQuery): Promise<VmRecord[]> => docRepo<VmRecord>(store, 'vms').list(q);
export const getPlan = (store: Store, id: string): Promise<PlanRecord | null> => createRepos(store).plans.get(id);
export const getRound = (store: Store, id: string): Promise<RoundRecord | null> => createRepos(store).rounds.get(id);

/** The stored settings over `defaults` (params key by key): a setting never stored reads as its default. */
export async function getSettings(store: Store, defaults: Settings = DEFAULT_SETTINGS): Promise<Settings> {
  const d = await store.get<Partial<Settings>>('settings', SETTINGS_ID);
  if (d === null) return defaults;
  return { ...defaults, ...d.value, params: { ...defaults.params, ...(d.value.params ?? {}) } };
}

export async function putSettings(store: Store, settings: Settings, opts: { expectRev?: number | null } = {}): Promise<Settings> {
  return (await store.put<Settings>('settings', SETTINGS_ID, settings, opts)).value;
}

/** One audit entry under `subject` (a VM, plan or job id, or 'manager'); returns it with its seq. */
export async function appendAudit(store: Store, subject: string, event: AuditEvent, atMs: number): Promise<LogEntry<AuditEvent>> {
  const [seq] = await store.append<AuditEvent>('audit', [{ key: subject, atMs, value: event }]);
  return { seq: seq ?? 0, key: subject, atMs, value: event };
}

export async function findTokenBySha256(store: Store, sha256: string): Promise<TokenRecord | null> {
  const [d] = await store.list<TokenRecord>('tokens', { group: sha256, limit: 1 });
  return d?.value ?? null;
}

// ---- The executor's JobStore ----

const byAge = (a: JobRecord, b: JobRecord): number => a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);

/**
 * JobStore on the 'jobs' collection: group = VM id and status = 'active' | 'ended', so loadActive and
 * listByVm are indexed reads. Saves of one job are chained so they land in call order even on a backend
 * with a pool of connections.
 */
export function jobStoreOf(store: Store): JobStore {
  const serial = createKeyedSerial();
  const write = async (record: JobRecord): Promise<void> => {
    await store.put<JobRecord>('jobs', record.id, record, { group: record.vm, status: isTerminal(record.state) ? 'ended' : 'active' });
  };
  const values = (docs: Doc<JobRecord>[]): JobRecord[] => docs.map((d) => d.value).sort(byAge);
  return {
    async save(record) {
      checkJobId(record.id);
      // Copied now: the caller may change its object before the chained write runs.
      const data = structuredClone(record);
      await serial(record.id, () => write(data));
    },
    async get(id) {
      checkJobId(id);
      return (await store.get<JobRecord>('jobs', id))?.value ?? null;
    },
    async loadActive() {
      return values(await listAll<JobRecord>(store, 'jobs', { status: 'active' }));
    },
    async listByVm(vm: VmId) {
      return values(await listAll<JobRecord>(store, 'jobs', { group: vm }));
    },
  };
}
