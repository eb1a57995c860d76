// The default store: one SQLite file (better-sqlite3), embedded, nothing to set up. better-sqlite3 is
// synchronous, so each call runs to completion before the next starts: every put is atomic without locks,
// and the Promise wrappers only keep the interface the same as PostgreSQL's.
import Database from 'better-sqlite3';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { systemClock, type Clock } from '../core/clock.js';
import { AppError, isAppError } from '../core/errors.js';
import {
  MIGRATIONS, checkCollection, checkExpectRev, checkId, checkListQuery, checkLogName, checkLogQuery, checkMs,
  checkOptionalId, checkTtlMs, conflict, decodeValue, encodeEntries, encodeLogEntries, encodeValue, pendingMigrations,
  type CheckedListQuery, type Migration,
} from './schema.js';
import type { Collection, Doc, Lease, LogEntry, LogName, PutOptions, Store } from './store.js';

export interface SqliteStoreOptions {
  /** Waits this long for another process's write lock before failing (default 5000 ms). */
  readonly busyTimeoutMs?: number;
  /** updatedAtMs and lease times (default the system clock). */
  readonly clock?: Clock;
  /** Tests only: another migration list. */
  readonly migrations?: readonly Migration[];
}

interface DocRow {
  id: string;
  rev: number;
  updated_at_ms: number;
  grp: string | null;
  status: string | null;
  value: string;
}

interface LogRow {
  seq: number;
  key: string;
  at_ms: number;
  value: string;
}

interface LeaseRow {
  name: string;
  holder: string;
  expires_at_ms: number;
}

const toDoc = <T>(r: DocRow): Doc<T> => ({
  id: r.id, rev: r.rev, updatedAtMs: r.updated_at_ms, group: r.grp, status: r.status, value: decodeValue<T>(r.value),
});

/** Opens (creating if needed) the SQLite store at `path` (a file, or ':memory:') and brings its schema up to date. */
export function openSqliteStore(path: string, opts: SqliteStoreOptions = {}): Promise<Store> {
  try {
    return Promise.resolve(openSync_(path, opts));
  } catch (e) {
    return Promise.reject(e instanceof Error ? e : new Error(String(e)));
  }
}

function openSync_(path: string, opts: SqliteStoreOptions): Store {
  const memory = path === ':memory:';
  const file = memory ? path : resolve(path);
  const location = `sqlite:${file}`;
  const clock = opts.clock ?? systemClock;
  let db: Database.Database;
  try {
    if (!memory) {
      mkdirSync(dirname(file), { recursive: true });
      // Token hashes and the audit trail live here: readable by the manager's user only.
      closeSync(openSync(file, 'a', 0o600));
    }
    db = new Database(file);
  } catch (e) {
    throw new AppError('STORE_UNAVAILABLE', `Cannot open the store at ${location}: ${(e as Error).message}`, { cause: e });
  }
  let schemaVersion: number;
  try {
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(opts.busyTimeoutMs ?? 5000))}`);
    if (!memory) db.pragma('journal_mode = WAL');
    // A put is durable once its promise resolves: the executor acts on a phase only after that.
    db.pragma('synchronous = FULL');
    schemaVersion = migrate(db, location, opts.migrations ?? MIGRATIONS, clock);
  } catch (e) {
    db.close();
    if (isAppError(e)) throw e;
    throw new AppError('STORE_UNAVAILABLE', `Cannot open the store at ${location}: ${(e as Error).message}`, { cause: e });
  }
  return createSqliteStore(db, location, schemaVersion, clock);
}

function migrate(db: Database.Database, location: string, migrations: readonly Migration[], clock: Clock): number {
  const run = db.transaction(() => {
    db.exec('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)');
    const row = db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number | null };
    let version = row.v ?? 0;
    const record = db.prepare('INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, ?)');
    for (const m of pendingMigrations(version, location, migrations)) {
      try {
        for (const sql of m.sqlite) db.exec(sql);
      } catch (e) {
        throw new AppError('STORE_MIGRATION', `Cannot migrate the store at ${location} to version ${m.version} (${m.name}): ${(e as Error).message}; it stays at version ${version}`, { cause: e });
      }
      record.run(m.version, m.name, clock.nowMs());
      version = m.version;
    }
    return version;
  });
  // IMMEDIATE: two processes opening the same new file do not both try to create the tables.
  return run.immediate();
}

function createSqliteStore(db: Database.Database, location: string, schemaVersion: number, clock: Clock): Store {
  let closed = false;
  const cache = new Map<string, Database.Statement>();
  const stmt = (sql: string): Database.Statement => {
    let s = cache.get(sql);
    if (s === undefined) {
      s = db.prepare(sql);
      cache.set(sql, s);
    }
    return s;
  };

  /** Runs `fn` as one call: validation errors pass through, SQLite's become AppErrors naming the store. */
  const call = <R>(what: string, fn: () => R): Promise<R> => {
    try {
      if (closed) throw new AppError('STORE_CLOSED', `Cannot ${what}: the store at ${location} is closed`);
      return Promise.resolve(fn());
    } catch (e) {
      if (isAppError(e)) return Promise.reject(e);
      const code = (e as { code?: unknown }).code;
      const busy = code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED';
      return Promise.reject(new AppError(busy ? 'STORE_BUSY' : 'STORE_ERROR',
        `Cannot ${what} in the store at ${location}: ${(e as Error).message}`, { retryable: busy, cause: e }));
    }
  };

  const getRow = (col: Collection, id: string): DocRow | undefined =>
    stmt('SELECT id, rev, updated_at_ms, grp, status, value FROM docs WHERE col = ? AND id = ?').get(col, id) as DocRow | undefined;

  const UPSERT = `INSERT INTO docs (col, id, rev, updated_at_ms, grp, status, value) VALUES (?, ?, 1, ?, ?, ?, ?)
    ON CONFLICT (col, id) DO UPDATE SET rev = docs.rev + 1, updated_at_ms = excluded.updated_at_ms,
      grp = excluded.grp, status = excluded.status, value = excluded.value
    RETURNING rev`;

  const where = (q: Pick<CheckedListQuery, 'group' | 'status'>, args: unknown[]): string => {
    let sql = 'col = ?';
    if (q.group !== null) {
      sql += ' AND grp = ?';
      args.push(q.group);
    }
    if (q.status !== null) {
      sql += ' AND status = ?';
      args.push(q.status);
    }
    return sql;
  };

  const putMany = db.transaction((col: Collection, rows: ReturnType<typeof encodeEntries>, atMs: number) => {
    const up = stmt(UPSERT);
    for (const r of rows) up.get(col, r.id, atMs, r.group, r.status, r.text);
  });

  const appendMany = db.transaction((log: LogName, rows: { key: string; atMs: number; text: string }[]) => {
    const ins = stmt('INSERT INTO logs (log, key, at_ms, value) VALUES (?, ?, ?, ?)');
    return rows.map((r) => Number(ins.run(log, r.key, r.atMs, r.text).lastInsertRowid));
  });

  const acquire = db.transaction((name: string, holder: string, ttlMs: number): Lease => {
    const now = clock.nowMs();
    const row = stmt('SELECT name, holder, expires_at_ms FROM leases WHERE name = ?').get(name) as LeaseRow | undefined;
    if (row !== undefined && row.holder !== holder && row.expires_at_ms > now) {
      return { name, holder: row.holder, expiresAtMs: row.expires_at_ms };
    }
    const expiresAtMs = now + ttlMs;
    stmt(`INSERT INTO leases (name, holder, expires_at_ms) VALUES (?, ?, ?)
      ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at_ms = excluded.expires_at_ms`).run(name, holder, expiresAtMs);
    return { name, holder, expiresAtMs };
  });

  return {
    kind: 'sqlite',
    location,
    schemaVersion,

    get<T>(col: Collection, id: string) {
      return call(`get ${col}/${String(id)}`, () => {
        checkCollection(col);
        const row = getRow(col, checkId('id', id));
        return row === undefined ? null : toDoc<T>(row);
      });
    },

    list<T>(col: Collection, query?: Parameters<Store['list']>[1]) {
      return call(`list ${col}`, () => {
        checkCollection(col);
        const q = checkListQuery(query);
        const args: unknown[] = [col];
        let sql = `SELECT id, rev, updated_at_ms, grp, status, value FROM docs WHERE ${where(q, args)}`;
        if (q.afterId !== null) {
          sql += q.order === 'asc' ? ' AND id > ?' : ' AND id < ?';
          args.push(q.afterId);
        }
        sql += ` ORDER BY id ${q.order === 'asc' ? 'ASC' : 'DESC'} LIMIT ?`;
        args.push(q.limit);
        return (stmt(sql).all(...args) as DocRow[]).map((r) => toDoc<T>(r));
      });
    },

    count(col, query) {
      return call(`count ${col}`, () => {
        checkCollection(col);
        const q = { group: checkOptionalId('group', query?.group), status: checkOptionalId('status', query?.status) };
        const args: unknown[] = [col];
        const sql = `SELECT COUNT(*) AS n FROM docs WHERE ${where(q, args)}`;
        return (stmt(sql).get(...args) as { n: number }).n;
      });
    },

    put<T>(col: Collection, id: string, value: T, opts: PutOptions = {}) {
      return call(`put ${col}/${String(id)}`, () => {
        checkCollection(col);
        checkId('id', id);
        const expectRev = checkExpectRev(opts.expectRev);
        const grp = checkOptionalId('group', opts.group);
        const status = checkOptionalId('status', opts.status);
        const text = encodeValue('value', value);
        const atMs = clock.nowMs();
        let rev: number;
        if (expectRev === undefined) {
          rev = (stmt(UPSERT).get(col, id, atMs, grp, status, text) as { rev: number }).rev;
        } else if (expectRev === null) {
          const r = stmt(`INSERT INTO docs (col, id, rev, updated_at_ms, grp, status, value) VALUES (?, ?, 1, ?, ?, ?, ?)
            ON CONFLICT (col, id) DO NOTHING RETURNING rev`).get(col, id, atMs, grp, status, text) as { rev: number } | undefined;
          if (r === undefined) throw conflict(col, id, null, getRow(col, id)?.rev ?? null);
          rev = r.rev;
        } else {
          const r = stmt(`UPDATE docs SET rev = rev + 1, updated_at_ms = ?, grp = ?, status = ?, value = ?
            WHERE col = ? AND id = ? AND rev = ? RETURNING rev`).get(atMs, grp, status, text, col, id, expectRev) as { rev: number } | undefined;
          if (r === undefined) throw conflict(col, id, expectRev, getRow(col, id)?.rev ?? null);
          rev = r.rev;
        }
        return { id, rev, updatedAtMs: atMs, group: grp, status, value: decodeValue<T>(text) };
      });
    },

    putMany(col, entries) {
      return call(`put ${Array.isArray(entries) ? entries.length : '?'} documents into ${col}`, () => {
        checkCollection(col);
        const rows = encodeEntries(entries);
        if (rows.length > 0) putMany(col, rows, clock.nowMs());
      });
    },

    delete(col, id) {
      return call(`delete ${col}/${String(id)}`, () => {
        checkCollection(col);
        return stmt('DELETE FROM docs WHERE col = ? AND id = ?').run(col, checkId('id', id)).changes > 0;
      });
    },

    append(log, entries) {
      return call(`append to log ${log}`, () => {
        checkLogName(log);
        const rows = encodeLogEntries(entries);
        return rows.length === 0 ? [] : appendMany(log, rows);
      });
    },

    read<T>(log: LogName, query: Parameters<Store['read']>[1]) {
      return call(`read log ${log}`, () => {
        checkLogName(log);
        const q = checkLogQuery(query);
        const args: unknown[] = [log];
        let sql = 'SELECT seq, key, at_ms, value FROM logs WHERE log = ?';
        if (q.key !== null) {
          sql += ' AND key = ?';
          args.push(q.key);
        }
        if (q.afterSeq !== null) {
          sql += ' AND seq > ?';
          args.push(q.afterSeq);
        }
        if (q.sinceMs !== null) {
          sql += ' AND at_ms >= ?';
          args.push(q.sinceMs);
        }
        sql += ` ORDER BY seq ${q.order === 'asc' ? 'ASC' : 'DESC'} LIMIT ?`;
        args.push(q.limit);
        return (stmt(sql).all(...args) as LogRow[]).map((r): LogEntry<T> => ({ seq: r.seq, key: r.key, atMs: r.at_ms, value: decodeValue<T>(r.value) }));
      });
    },

    trim(log, beforeMs) {
      return call(`trim log ${log}`, () => {
        checkLogName(log);
        return stmt('DELETE FROM logs WHERE log = ? AND at_ms < ?').run(log, checkMs('beforeMs', beforeMs)).changes;
      });
    },

    acquireLease(name, holder, ttlMs) {
      return call(`acquire lease ${String(name)}`, () => acquire(checkId('name', name), checkId('holder', holder), checkTtlMs(ttlMs)));
    },

    releaseLease(name, holder) {
      return call(`release lease ${String(name)}`, () => {
        stmt('DELETE FROM leases WHERE name = ? AND holder = ?').run(checkId('name', name), checkId('holder', holder));
      });
    },

    getLease(name) {
      return call(`read lease ${String(name)}`, () => {
        const row = stmt('SELECT name, holder, expires_at_ms FROM leases WHERE name = ?').get(checkId('name', name)) as LeaseRow | undefined;
        if (row === undefined || row.expires_at_ms <= clock.nowMs()) return null;
        return { name: row.name, holder: row.holder, expiresAtMs: row.expires_at_ms };
      });
    },

    close() {
      if (!closed) {
        closed = true;
        cache.clear();
        db.close();
      }
      return Promise.resolve();
    },
  };
}
