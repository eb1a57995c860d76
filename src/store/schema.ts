// The store's tables, as an ordered list of versioned migrations (one per dialect), and the checks both
// backends apply to what they are given before it reaches SQL. PURE: no I/O; sqlite.ts and postgres.ts run
// the migrations (in one transaction, recorded in schema_migrations) and call the checks.
import { AppError, InputError, describeValue } from '../core/errors.js';
import type { Collection, ListQuery, LogName, LogQuery } from './store.js';

export interface Migration {
  /** 1, 2, 3, … with no gap: the schema version once this migration has run. */
  readonly version: number;
  readonly name: string;
  readonly sqlite: readonly string[];
  readonly postgres: readonly string[];
}

// Values are JSON text in both backends, not JSONB: they come back exactly as written (key order, big and
// small numbers, "\u0000" in strings, which JSONB refuses), and nothing is re-encoded on the way in.
// Ids, groups and statuses compare byte-wise (SQLite's BINARY, PostgreSQL's "C") so pages by afterId come
// in the same order from either backend.
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'documents, logs and leases',
    sqlite: [
      `CREATE TABLE docs (
        col TEXT NOT NULL,
        id TEXT NOT NULL,
        rev INTEGER NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        grp TEXT,
        status TEXT,
        value TEXT NOT NULL,
        PRIMARY KEY (col, id)
      )`,
      'CREATE INDEX docs_grp ON docs (col, grp, id)',
      'CREATE INDEX docs_status ON docs (col, status, id)',
      `CREATE TABLE logs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        log TEXT NOT NULL,
        key TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        value TEXT NOT NULL
      )`,
      'CREATE INDEX logs_log_seq ON logs (log, seq)',
      'CREATE INDEX logs_log_key_seq ON logs (log, key, seq)',
      'CREATE INDEX logs_log_at ON logs (log, at_ms)',
      `CREATE TABLE leases (
        name TEXT PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at_ms INTEGER NOT NULL
      )`,
    ],
    postgres: [
      `CREATE TABLE docs (
        col TEXT COLLATE "C" NOT NULL,
        id TEXT COLLATE "C" NOT NULL,
        rev BIGINT NOT NULL,
        updated_at_ms BIGINT NOT NULL,
        grp TEXT COLLATE "C",
        status TEXT COLLATE "C",
        value TEXT NOT NULL,
        PRIMARY KEY (col, id)
      )`,
      'CREATE INDEX docs_grp ON docs (col, grp, id)',
      'CREATE INDEX docs_status ON docs (col, status, id)',
      `CREATE TABLE logs (
        seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        log TEXT COLLATE "C" NOT NULL,
        key TEXT COLLATE "C" NOT NULL,
        at_ms BIGINT NOT NULL,
        value TEXT NOT NULL
      )`,
      'CREATE INDEX logs_log_seq ON logs (log, seq)',
      'CREATE INDEX logs_log_key_seq ON logs (log, key, seq)',
      'CREATE INDEX logs_log_at ON logs (log, at_ms)',
      `CREATE TABLE leases (
        name TEXT COLLATE "C" PRIMARY KEY,
        holder TEXT NOT NULL,
        expires_at_ms BIGINT NOT NULL
      )`,
    ],
  },
];

export const SCHEMA_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

/** The migrations a store at `current` still needs, in order; a store newer than the code is an error. */
export function pendingMigrations(current: number, location: string, migrations: readonly Migration[] = MIGRATIONS): Migration[] {
  checkMigrationList(migrations);
  const latest = migrations[migrations.length - 1]?.version ?? 0;
  if (current > latest) {
    throw new AppError('STORE_SCHEMA_NEWER',
      `Cannot open the store at ${location}: its schema is version ${current}, newer than version ${latest} this VMShadow knows; run a VMShadow at least as new as the one that wrote it`);
  }
  return migrations.filter((m) => m.version > current);
}

/** Versions must run 1, 2, 3, … : a gap or a repeat is a programming error caught at open. */
export function checkMigrationList(migrations: readonly Migration[]): void {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new AppError('STORE_SCHEMA_LIST', `Migration "${m.name}" has version ${m.version} at position ${i + 1}; versions must run 1, 2, 3, …`);
  });
}

// ---- What both backends accept ----

export const COLLECTIONS: readonly Collection[] = ['sites', 'hosts', 'links', 'vms', 'users', 'plans', 'rounds', 'jobs', 'settings', 'tokens'];
export const LOG_NAMES: readonly LogName[] = ['audit', 'fingerprints', 'rtts'];

export const DEFAULT_LIST_LIMIT = 1000;
export const MAX_LIMIT = 100_000;
/** Ids, keys, groups and statuses: at most this many UTF-16 code units. */
export const MAX_ID_LENGTH = 256;
/** One document's or log entry's JSON: a bound so a runaway value cannot fill the database in one call. */
export const MAX_VALUE_BYTES = 64 * 1024 * 1024;
/** A lease lasts at least 1 ms and at most a day. */
export const MAX_TTL_MS = 86_400_000;

// Letters, marks, numbers, punctuation and symbols: no spaces, no control or format characters, no lone
// surrogates (PostgreSQL refuses them, and they could not be typed into a CLI anyway).
const ID_RE = /^[\p{L}\p{M}\p{N}\p{P}\p{S}]+$/u;

export function checkCollection(col: string): Collection {
  if (!(COLLECTIONS as readonly string[]).includes(col)) throw new InputError('collection', col, `must be one of ${COLLECTIONS.join(', ')}`);
  return col as Collection;
}

export function checkLogName(log: string): LogName {
  if (!(LOG_NAMES as readonly string[]).includes(log)) throw new InputError('log', log, `must be one of ${LOG_NAMES.join(', ')}`);
  return log as LogName;
}

/** An id, a log key, a group or status, a lease name or holder. */
export function checkId(field: string, id: unknown): string {
  if (typeof id !== 'string') throw new InputError(field, id, 'must be a string');
  if (id.length === 0 || id.length > MAX_ID_LENGTH) throw new InputError(field, id, `must be 1-${MAX_ID_LENGTH} characters long (is ${id.length})`);
  if (!ID_RE.test(id)) throw new InputError(field, id, 'must hold only letters, digits, punctuation and symbols (no spaces or control characters)');
  return id;
}

export function checkOptionalId(field: string, id: unknown): string | null {
  return id === undefined || id === null ? null : checkId(field, id);
}

/** The JSON text of a value; undefined, functions, symbols and bigints cannot be stored. */
export function encodeValue(field: string, value: unknown): string {
  let text: string | undefined;
  try {
    // JSON.stringify's type says string, but it returns undefined for undefined, functions and symbols.
    text = (JSON.stringify as (v: unknown) => string | undefined)(value);
  } catch (e) {
    throw new InputError(field, value, `must be JSON-serializable (${(e as Error).message})`, { cause: e });
  }
  if (text === undefined) throw new InputError(field, value, 'must be a JSON value (got nothing storable)');
  if (text.length > MAX_VALUE_BYTES) throw new InputError(field, `${describeValue(value)} of ${text.length} characters`, `must be at most ${MAX_VALUE_BYTES} characters as JSON`);
  return text;
}

export function decodeValue<T>(text: string): T {
  return JSON.parse(text) as T;
}

export function checkLimit(field: string, limit: unknown, dflt: number | null): number {
  if (limit === undefined && dflt !== null) return dflt;
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    throw new InputError(field, limit, `must be a whole number from 1 to ${MAX_LIMIT}`);
  }
  return limit;
}

function checkWhole(field: string, v: unknown, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new InputError(field, v, `must be a whole number from ${min} to ${max}`);
  }
  return v;
}

/** Milliseconds since the epoch (negative allowed: tests and simulations start at 0). */
export function checkMs(field: string, v: unknown): number {
  return checkWhole(field, v, -Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
}

export function checkTtlMs(v: unknown): number {
  return checkWhole('ttlMs', v, 1, MAX_TTL_MS);
}

export function checkExpectRev(v: unknown): number | null | undefined {
  if (v === undefined || v === null) return v;
  return checkWhole('expectRev', v, 1, Number.MAX_SAFE_INTEGER);
}

export interface CheckedListQuery {
  readonly group: string | null;
  readonly status: string | null;
  readonly afterId: string | null;
  readonly limit: number;
  readonly order: 'asc' | 'desc';
}

export function checkListQuery(q: ListQuery | undefined): CheckedListQuery {
  const o = q ?? {};
  return {
    group: checkOptionalId('group', o.group),
    status: checkOptionalId('status', o.status),
    afterId: checkOptionalId('afterId', o.afterId),
    limit: checkLimit('limit', o.limit, DEFAULT_LIST_LIMIT),
    order: checkOrder(o.order),
  };
}

export interface CheckedLogQuery {
  readonly key: string | null;
  readonly afterSeq: number | null;
  readonly sinceMs: number | null;
  readonly limit: number;
  readonly order: 'asc' | 'desc';
}

export function checkLogQuery(q: LogQuery | undefined): CheckedLogQuery {
  if (q === undefined || q === null || typeof q !== 'object') throw new InputError('query', q, 'must be an object with a limit');
  return {
    key: checkOptionalId('key', q.key),
    afterSeq: q.afterSeq === undefined ? null : checkWhole('afterSeq', q.afterSeq, 0, Number.MAX_SAFE_INTEGER),
    sinceMs: q.sinceMs === undefined ? null : checkMs('sinceMs', q.sinceMs),
    limit: checkLimit('limit', q.limit, null),
    order: checkOrder(q.order),
  };
}

function checkOrder(v: unknown): 'asc' | 'desc' {
  if (v === undefined || v === 'asc') return 'asc';
  if (v === 'desc') return 'desc';
  throw new InputError('order', v, 'must be "asc" or "desc"');
}

/** The STORE_CONFLICT a put with a stale expectRev gets. */
export function conflict(col: string, id: string, expected: number | null, current: number | null): AppError {
  const want = expected === null ? 'not to exist' : `to be at revision ${expected}`;
  const have = current === null ? 'it does not exist' : `it is at revision ${current}`;
  return new AppError('STORE_CONFLICT', `Cannot put ${col}/${id}: expected it ${want}, but ${have}; read it again and retry`, { retryable: true });
}

export interface EncodedEntry {
  readonly id: string;
  readonly group: string | null;
  readonly status: string | null;
  readonly text: string;
}

/** Checks every entry of a putMany before anything is written: one bad entry and nothing is. */
export function encodeEntries(entries: readonly { id: string; value: unknown; group?: string | null; status?: string | null }[]): EncodedEntry[] {
  const given: unknown = entries;
  if (!Array.isArray(given)) throw new InputError('entries', given, 'must be an array');
  const seen = new Map<string, number>();
  return entries.map((e, i) => {
    if (e === null || typeof e !== 'object') throw new InputError(`entries[${i}]`, e, 'must be an object with id and value');
    const id = checkId(`entries[${i}].id`, e.id);
    const first = seen.get(id);
    if (first !== undefined) throw new InputError(`entries[${i}].id`, id, `appears twice (also at entries[${first}])`);
    seen.set(id, i);
    return {
      id,
      group: checkOptionalId(`entries[${i}].group`, e.group),
      status: checkOptionalId(`entries[${i}].status`, e.status),
      text: encodeValue(`entries[${i}].value`, e.value),
    };
  });
}

export interface EncodedLogEntry {
  readonly key: string;
  readonly atMs: number;
  readonly text: string;
}

/** Checks every entry of an append before anything is written. */
export function encodeLogEntries(entries: readonly { key: string; atMs: number; value: unknown }[]): EncodedLogEntry[] {
  const given: unknown = entries;
  if (!Array.isArray(given)) throw new InputError('entries', given, 'must be an array');
  return entries.map((e, i) => {
    if (e === null || typeof e !== 'object') throw new InputError(`entries[${i}]`, e, 'must be an object with key, atMs and value');
    return {
      key: checkId(`entries[${i}].key`, e.key),
      atMs: checkMs(`entries[${i}].atMs`, e.atMs),
      text: encodeValue(`entries[${i}].value`, e.value),
    };
  });
}
