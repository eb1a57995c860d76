// The store for several manager replicas sharing one state: PostgreSQL through a pg Pool. Conditional puts
// are single statements (the row lock decides which of two concurrent writers wins), leases use the
// database's clock so replicas with skewed clocks agree, and appends to a log are serialized by an advisory
// lock so that seqs become visible in order (a reader paging by afterSeq never skips an entry that commits
// late).
import pg from 'pg';
import { systemClock, type Clock } from '../core/clock.js';
import { AppError, isAppError } from '../core/errors.js';
import { silentLogger, type Logger } from '../core/logger.js';
import { postgresLocation } from './open.js';
import {
  LOG_NAMES, MIGRATIONS, checkCollection, checkExpectRev, checkId, checkListQuery, checkLogName, checkLogQuery,
  checkMs, checkOptionalId, checkTtlMs, conflict, decodeValue, encodeEntries, encodeLogEntries, encodeValue, pendingMigrations,
  type CheckedListQuery, type EncodedEntry, type Migration,
} from './schema.js';
import type { Collection, Doc, Lease, LogEntry, LogName, PutOptions, Store } from './store.js';

export interface PostgresStoreOptions {
  readonly clock?: Clock;
  readonly log?: Logger;
  /** Connections in the pool (default 10). */
  readonly poolSize?: number;
  /** A query taking longer than this fails (default 30 000 ms). */
  readonly queryTimeoutMs?: number;
  /** Tests only: another migration list. */
  readonly migrations?: readonly Migration[];
}

/** pg_advisory locks of this store: (LOCK_SPACE, 0) for migrations, (LOCK_SPACE, 1 + i) for appends to log i. */
const LOCK_SPACE = 0x766d73; // 'vms'
/** putMany sends its rows as JSON documents of at most this many rows and (about) characters each. */
const BATCH_ROWS = 5000;
const BATCH_CHARS = 32 * 1024 * 1024;
const NOW_MS = '(extract(epoch FROM clock_timestamp()) * 1000)::bigint';

interface DocRow {
  id: string;
  rev: string | number;
  updated_at_ms: string | number;
  grp: string | null;
  status: string | null;
  value: string;
}

const toDoc = <T>(r: DocRow): Doc<T> => ({
  id: r.id, rev: Number(r.rev), updatedAtMs: Number(r.updated_at_ms), group: r.grp, status: r.status, value: decodeValue<T>(r.value),
});

const DOC_COLUMNS = 'id, rev, updated_at_ms, grp, status, value';

/** A pg error class where retrying may succeed: connection trouble, timeouts, serialization, lock waits. */
function isRetryable(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  if (typeof code !== 'string') return true;
  return !/^(22|23|42|2B|XX)/.test(code);
}

const jsonOrNull = (s: string | null): string => (s === null ? 'null' : JSON.stringify(s));

/**
 * The rows of a putMany as JSON arrays of {id, grp, status, value}, one parameter per batch. Each value goes
 * as a JSON string holding its JSON text (spliced in as JSON, PostgreSQL would refuse a "\u0000" in it);
 * JSON.stringify escapes 10,000 values far faster than pg builds the same as an array literal.
 */
function* jsonBatches(rows: readonly EncodedEntry[]): Generator<string> {
  let parts: string[] = [];
  let chars = 0;
  for (const r of rows) {
    const part = `{"id":${JSON.stringify(r.id)},"grp":${jsonOrNull(r.group)},"status":${jsonOrNull(r.status)},"value":${JSON.stringify(r.text)}}`;
    if (parts.length > 0 && (parts.length >= BATCH_ROWS || chars + part.length > BATCH_CHARS)) {
      yield `[${parts.join(',')}]`;
      parts = [];
      chars = 0;
    }
    parts.push(part);
    chars += part.length + 1;
  }
  if (parts.length > 0) yield `[${parts.join(',')}]`;
}

export async function openPostgresStore(url: string, opts: PostgresStoreOptions = {}): Promise<Store> {
  const location = postgresLocation(url);
  const log = opts.log ?? silentLogger;
  const pool = new pg.Pool({
    connectionString: url,
    max: Math.max(1, Math.floor(opts.poolSize ?? 10)),
    connectionTimeoutMillis: 10_000,
    query_timeout: opts.queryTimeoutMs ?? 30_000,
    idle_in_transaction_session_timeout: 60_000,
    application_name: 'vmshadow',
  });
  // An idle connection the server drops must not take the process down; the next query reconnects.
  pool.on('error', (e) => log.warn('an idle PostgreSQL connection failed', { location, error: e.message }));
  let schemaVersion: number;
  try {
    schemaVersion = await migrate(pool, location, opts.migrations ?? MIGRATIONS, opts.clock ?? systemClock);
  } catch (e) {
    await pool.end().catch(() => undefined);
    if (isAppError(e)) throw e;
    throw new AppError('STORE_UNAVAILABLE', `Cannot open the store at ${location}: ${(e as Error).message}`, { retryable: true, cause: e });
  }
  return createPostgresStore(pool, location, schemaVersion, opts.clock ?? systemClock);
}

async function withTransaction<R>(pool: pg.Pool, fn: (c: pg.PoolClient) => Promise<R>): Promise<R> {
  const c = await pool.connect();
  let broken: Error | undefined;
  try {
    await c.query('BEGIN');
    const r = await fn(c);
    await c.query('COMMIT');
    return r;
  } catch (e) {
    await c.query('ROLLBACK').catch((re: unknown) => {
      broken = re as Error;
    });
    throw e;
  } finally {
    // A connection that could not roll back is not handed to anyone else.
    c.release(broken);
  }
}

async function migrate(pool: pg.Pool, location: string, migrations: readonly Migration[], clock: Clock): Promise<number> {
  return withTransaction(pool, async (c) => {
    // Replicas starting together: one migrates, the others wait here and then find nothing to do.
    await c.query('SELECT pg_advisory_xact_lock($1, 0)', [LOCK_SPACE]);
    await c.query('CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)');
    const r = await c.query<{ v: number | null }>('SELECT MAX(version) AS v FROM schema_migrations');
    let version = r.rows[0]?.v ?? 0;
    for (const m of pendingMigrations(version, location, migrations)) {
      try {
        for (const sql of m.postgres) await c.query(sql);
      } catch (e) {
        throw new AppError('STORE_MIGRATION', `Cannot migrate the store at ${location} to version ${m.version} (${m.name}): ${(e as Error).message}; it stays at version ${version}`, { cause: e });
      }
      await c.query('INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)', [m.version, m.name, clock.nowMs()]);
      version = m.version;
    }
    return version;
  });
}

function createPostgresStore(pool: pg.Pool, location: string, schemaVersion: number, clock: Clock): Store {
  let closed = false;

  const call = async <R>(what: string, fn: () => Promise<R>): Promise<R> => {
    if (closed) throw new AppError('STORE_CLOSED', `Cannot ${what}: the store at ${location} is closed`);
    try {
      return await fn();
    } catch (e) {
      if (isAppError(e)) throw e;
      throw new AppError(isRetryable(e) ? 'STORE_UNAVAILABLE' : 'STORE_ERROR', `Cannot ${what} in the store at ${location}: ${(e as Error).message}`, { retryable: isRetryable(e), cause: e });
    }
  };

  const currentRev = async (col: string, id: string): Promise<number | null> => {
    const r = await pool.query<{ rev: string }>('SELECT rev FROM docs WHERE col = $1 AND id = $2', [col, id]);
    const row = r.rows[0];
    return row === undefined ? null : Number(row.rev);
  };

  const where = (q: Pick<CheckedListQuery, 'group' | 'status'>, args: unknown[]): string => {
    let sql = 'col = $1';
    if (q.group !== null) {
      args.push(q.group);
      sql += ` AND grp = $${args.length}`;
    }
    if (q.status !== null) {
      args.push(q.status);
      sql += ` AND status = $${args.length}`;
    }
    return sql;
  };

  const UPSERT_SET = `rev = docs.rev + 1, updated_at_ms = EXCLUDED.updated_at_ms, grp = EXCLUDED.grp,
    status = EXCLUDED.status, value = EXCLUDED.value`;

  const leaseRow = (r: { name: string; holder: string; expires_at_ms: string }): Lease =>
    ({ name: r.name, holder: r.holder, expiresAtMs: Number(r.expires_at_ms) });

  return {
    kind: 'postgres',
    location,
    schemaVersion,

    get<T>(col: Collection, id: string) {
      return call(`get ${col}/${String(id)}`, async () => {
        checkCollection(col);
        const r = await pool.query<DocRow>(`SELECT ${DOC_COLUMNS} FROM docs WHERE col = $1 AND id = $2`, [col, checkId('id', id)]);
        const row = r.rows[0];
        return row === undefined ? null : toDoc<T>(row);
      });
    },

    list<T>(col: Collection, query?: Parameters<Store['list']>[1]) {
      return call(`list ${col}`, async () => {
        checkCollection(col);
        const q = checkListQuery(query);
        const args: unknown[] = [col];
        let sql = `SELECT ${DOC_COLUMNS} FROM docs WHERE ${where(q, args)}`;
        if (q.afterId !== null) {
          args.push(q.afterId);
          sql += ` AND id ${q.order === 'asc' ? '>' : '<'} $${args.length}`;
        }
        args.push(q.limit);
        sql += ` ORDER BY id ${q.order === 'asc' ? 'ASC' : 'DESC'} LIMIT $${args.length}`;
        return (await pool.query<DocRow>(sql, args)).rows.map((r) => toDoc<T>(r));
      });
    },

    count(col, query) {
      return call(`count ${col}`, async () => {
        checkCollection(col);
        const q = { group: checkOptionalId('group', query?.group), status: checkOptionalId('status', query?.status) };
        const args: unknown[] = [col];
        const r = await pool.query<{ n: string }>(`SELECT COUNT(*) AS n FROM docs WHERE ${where(q, args)}`, args);
        return Number(r.rows[0]?.n ?? 0);
      });
    },

    put<T>(col: Collection, id: string, value: T, opts: PutOptions = {}) {
      return call(`put ${col}/${String(id)}`, async () => {
        checkCollection(col);
        checkId('id', id);
        const expectRev = checkExpectRev(opts.expectRev);
        const grp = checkOptionalId('group', opts.group);
        const status = checkOptionalId('status', opts.status);
        const text = encodeValue('value', value);
        const atMs = clock.nowMs();
        const insert = 'INSERT INTO docs (col, id, rev, updated_at_ms, grp, status, value) VALUES ($1, $2, 1, $3, $4, $5, $6)';
        let r: pg.QueryResult<{ rev: string }>;
        if (expectRev === undefined) {
          r = await pool.query(`${insert} ON CONFLICT (col, id) DO UPDATE SET ${UPSERT_SET} RETURNING rev`, [col, id, atMs, grp, status, text]);
        } else if (expectRev === null) {
          r = await pool.query(`${insert} ON CONFLICT (col, id) DO NOTHING RETURNING rev`, [col, id, atMs, grp, status, text]);
        } else {
          // READ COMMITTED: a concurrent writer's UPDATE waits for the row, then re-checks rev and finds it moved on.
          r = await pool.query(`UPDATE docs SET rev = rev + 1, updated_at_ms = $3, grp = $4, status = $5, value = $6
            WHERE col = $1 AND id = $2 AND rev = $7 RETURNING rev`, [col, id, atMs, grp, status, text, expectRev]);
        }
        const row = r.rows[0];
        if (row === undefined) throw conflict(col, id, expectRev ?? null, await currentRev(col, id));
        return { id, rev: Number(row.rev), updatedAtMs: atMs, group: grp, status, value: decodeValue<T>(text) };
      });
    },

    putMany(col, entries) {
      return call(`put ${Array.isArray(entries) ? entries.length : '?'} documents into ${col}`, async () => {
        checkCollection(col);
        const rows = encodeEntries(entries);
        if (rows.length === 0) return;
        const atMs = clock.nowMs();
        await withTransaction(pool, async (c) => {
          for (const doc of jsonBatches(rows)) {
            await c.query(`INSERT INTO docs (col, id, rev, updated_at_ms, grp, status, value)
              SELECT $1, u.id, 1, $2, u.grp, u.status, u.value
              FROM json_to_recordset($3::json) AS u(id text, grp text, status text, value text)
              ON CONFLICT (col, id) DO UPDATE SET ${UPSERT_SET}`, [col, atMs, doc]);
          }
        });
      });
    },

    delete(col, id) {
      return call(`delete ${col}/${String(id)}`, async () => {
        checkCollection(col);
        const r = await pool.query('DELETE FROM docs WHERE col = $1 AND id = $2', [col, checkId('id', id)]);
        return (r.rowCount ?? 0) > 0;
      });
    },

    append(log, entries) {
      return call(`append to log ${log}`, async () => {
        checkLogName(log);
        const rows = encodeLogEntries(entries);
        if (rows.length === 0) return [];
        return withTransaction(pool, async (c) => {
          // Held until commit: the next append of this log takes its seqs after these are visible.
          await c.query('SELECT pg_advisory_xact_lock($1, $2)', [LOCK_SPACE, 1 + LOG_NAMES.indexOf(log)]);
          const r = await c.query<{ seq: string }>(`INSERT INTO logs (log, key, at_ms, value)
            SELECT $1, u.key, u.at_ms, u.value FROM unnest($2::text[], $3::bigint[], $4::text[]) WITH ORDINALITY AS u(key, at_ms, value, n)
            ORDER BY u.n RETURNING seq`, [log, rows.map((x) => x.key), rows.map((x) => x.atMs), rows.map((x) => x.text)]);
          // Identity values are drawn in the ORDER BY order; RETURNING's order is not promised, the set is.
          return r.rows.map((x) => Number(x.seq)).sort((a, b) => a - b);
        });
      });
    },

    read<T>(log: LogName, query: Parameters<Store['read']>[1]) {
      return call(`read log ${log}`, async () => {
        checkLogName(log);
        const q = checkLogQuery(query);
        const args: unknown[] = [log];
        let sql = 'SELECT seq, key, at_ms, value FROM logs WHERE log = $1';
        if (q.key !== null) {
          args.push(q.key);
          sql += ` AND key = $${args.length}`;
        }
        if (q.afterSeq !== null) {
          args.push(q.afterSeq);
          sql += ` AND seq > $${args.length}`;
        }
        if (q.sinceMs !== null) {
          args.push(q.sinceMs);
          sql += ` AND at_ms >= $${args.length}`;
        }
        args.push(q.limit);
        sql += ` ORDER BY seq ${q.order === 'asc' ? 'ASC' : 'DESC'} LIMIT $${args.length}`;
        const r = await pool.query<{ seq: string; key: string; at_ms: string; value: string }>(sql, args);
        return r.rows.map((x): LogEntry<T> => ({ seq: Number(x.seq), key: x.key, atMs: Number(x.at_ms), value: decodeValue<T>(x.value) }));
      });
    },

    trim(log, beforeMs) {
      return call(`trim log ${log}`, async () => {
        checkLogName(log);
        const r = await pool.query('DELETE FROM logs WHERE log = $1 AND at_ms < $2', [log, checkMs('beforeMs', beforeMs)]);
        return r.rowCount ?? 0;
      });
    },

    acquireLease(name, holder, ttlMs) {
      return call(`acquire lease ${String(name)}`, async () => {
        checkId('name', name);
        checkId('holder', holder);
        checkTtlMs(ttlMs);
        // Bounded: between a refused take-over and the read of who holds it, the holder may release it.
        for (let attempt = 0; attempt < 5; attempt++) {
          const r = await pool.query<{ name: string; holder: string; expires_at_ms: string }>(`INSERT INTO leases (name, holder, expires_at_ms)
            VALUES ($1, $2, ${NOW_MS} + $3)
            ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at_ms = EXCLUDED.expires_at_ms
            WHERE leases.holder = EXCLUDED.holder OR leases.expires_at_ms <= ${NOW_MS}
            RETURNING name, holder, expires_at_ms`, [name, holder, ttlMs]);
          const won = r.rows[0];
          if (won !== undefined) return leaseRow(won);
          const cur = await pool.query<{ name: string; holder: string; expires_at_ms: string }>('SELECT name, holder, expires_at_ms FROM leases WHERE name = $1', [name]);
          const held = cur.rows[0];
          if (held !== undefined) return leaseRow(held);
        }
        throw new AppError('STORE_LEASE_CONTENDED', `Cannot acquire lease ${name} for ${holder}: it changed hands 5 times while asking`, { retryable: true });
      });
    },

    releaseLease(name, holder) {
      return call(`release lease ${String(name)}`, async () => {
        await pool.query('DELETE FROM leases WHERE name = $1 AND holder = $2', [checkId('name', name), checkId('holder', holder)]);
      });
    },

    getLease(name) {
      return call(`read lease ${String(name)}`, async () => {
        const r = await pool.query<{ name: string; holder: string; expires_at_ms: string }>(
          `SELECT name, holder, expires_at_ms FROM leases WHERE name = $1 AND expires_at_ms > ${NOW_MS}`, [checkId('name', name)]);
        const row = r.rows[0];
        return row === undefined ? null : leaseRow(row);
      });
    },

    async close() {
      if (closed) return;
      closed = true;
      await pool.end();
    },
  };
}
