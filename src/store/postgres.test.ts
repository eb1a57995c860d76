// Runs against a private throwaway PostgreSQL server (src/testing/postgres.ts), or the one VMSHADOW_TEST_PG_URL
// names. Every server, store and child process started here is stopped in after hooks.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { untilOutput } from '../core/child-output.js';
import { AppError } from '../core/errors.js';
import { silentLogger } from '../core/logger.js';
import { runJobStoreContract } from '../migration/store.contract.js';
import { startTestPostgres, type TestPostgres } from '../testing/postgres.js';
import { createLeaderElector, type LeaderElector } from './leader.js';
import { openStore } from './open.js';
import { openPostgresStore } from './postgres.js';
import { createRepos, jobStoreOf } from './repos.js';
import { SCHEMA_VERSION, type Migration } from './schema.js';
import type { Store } from './store.js';
import { runStoreContract, timePutMany } from './store.contract.js';

let server: TestPostgres | null = null;
const opened: Store[] = [];
const children: ChildProcess[] = [];

before(async () => {
  server = await startTestPostgres();
}, { timeout: 90_000 });

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const s of opened.splice(0)) await s.close().catch(() => undefined);
  await server?.stop();
});

/** A fresh schema (cheap); freshDatabase() where a test wants a database of its own. */
const freshUrl = (): Promise<string> => {
  if (server === null) throw new Error('the test PostgreSQL server did not start');
  return server.createSchema();
};
const freshDatabase = (): Promise<string> => {
  if (server === null) throw new Error('the test PostgreSQL server did not start');
  return server.createDatabase();
};

/** A store on `url` (a fresh database if omitted), closed by the after hook if the test does not. */
async function openPg(url?: string): Promise<Store> {
  const s = await openStore(url ?? (await freshUrl()), { poolSize: 5 });
  opened.push(s);
  return s;
}

runStoreContract('PostgreSQL', async () => openStore(await freshUrl(), { poolSize: 5 }));

runJobStoreContract('PostgreSQL jobStoreOf', async () => {
  const url = await freshUrl();
  const stores = [await openStore(url, { poolSize: 3 })];
  return {
    store: jobStoreOf(stores[0]!),
    reopen: async () => {
      const s = await openStore(url, { poolSize: 3 });
      stores.push(s);
      return jobStoreOf(s);
    },
    cleanup: async () => {
      for (const s of stores) await s.close();
    },
  };
});

async function sql<R extends pg.QueryResultRow>(url: string, text: string, args: unknown[] = []): Promise<R[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<R>(text, args)).rows;
  } finally {
    await c.end();
  }
}

describe('PostgreSQL store', () => {
  it('two Store instances on one database see each other\'s writes, conflicts and leases', async () => {
    const url = await freshUrl();
    const a = await openPg(url);
    const b = await openPg(url);
    const d = await a.put('vms', 'vm-1', { by: 'a' }, { group: 'eu' });
    assert.deepEqual(await b.get('vms', 'vm-1'), d);
    await b.putMany('vms', [{ id: 'vm-2', value: { by: 'b' } }]);
    assert.equal(await a.count('vms'), 2);
    await b.put('vms', 'vm-1', { by: 'b' }, { expectRev: d.rev });
    await assert.rejects(a.put('vms', 'vm-1', { by: 'a again' }, { expectRev: d.rev }), (e: unknown) => e instanceof AppError && e.code === 'STORE_CONFLICT');
    const [s1] = await a.append('audit', [{ key: 'k', atMs: 1, value: 'a' }]);
    const [s2] = await b.append('audit', [{ key: 'k', atMs: 2, value: 'b' }]);
    assert.ok((s2 ?? 0) > (s1 ?? 0));
    assert.deepEqual((await a.read<string>('audit', { limit: 5 })).map((e) => e.value), ['a', 'b']);
    assert.equal((await a.acquireLease('manager', 'a', 60_000)).holder, 'a');
    assert.equal((await b.acquireLease('manager', 'b', 60_000)).holder, 'a');
    assert.equal((await b.getLease('manager'))?.holder, 'a');
  });

  it('a reader paging a log by afterSeq while two replicas append sees every entry once, in seq order', async () => {
    const url = await freshUrl();
    const [a, b, reader] = [await openPg(url), await openPg(url), await openPg(url)];
    const seen: number[] = [];
    let done = false;
    const read = (async () => {
      let afterSeq = 0;
      for (let i = 0; i < 10_000; i++) {
        const finished = done;
        const page = await reader.read<number>('rtts', { afterSeq, limit: 50 });
        for (const e of page) seen.push(e.value);
        afterSeq = page[page.length - 1]?.seq ?? afterSeq;
        if (finished && page.length === 0) return;
      }
    })();
    const write = (s: Store, base: number) => (async () => {
      for (let i = 0; i < 40; i++) await s.append('rtts', [{ key: `u${base}`, atMs: i, value: base + 2 * i }, { key: `u${base}`, atMs: i, value: base + 2 * i + 1 }]);
    })();
    await Promise.all([write(a, 0), write(b, 1000)]);
    done = true;
    await read;
    assert.equal(seen.length, 160);
    assert.equal(new Set(seen).size, 160);
  });

  it('several replicas opening a new database at once migrate it exactly once', async () => {
    const url = await freshDatabase();
    const stores = await Promise.all([openPg(url), openPg(url), openPg(url)]);
    for (const s of stores) assert.equal(s.schemaVersion, SCHEMA_VERSION);
    const rows = await sql<{ version: number }>(url, 'SELECT version FROM schema_migrations ORDER BY version');
    assert.deepEqual(rows.map((r) => r.version), Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
  });

  it('applies only the missing migrations, and rolls a failing one back whole', async () => {
    const url = await freshUrl();
    const m: Migration[] = [
      { version: 1, name: 'one', sqlite: [], postgres: ['CREATE TABLE t1 (x INTEGER)'] },
      { version: 2, name: 'two', sqlite: [], postgres: ['CREATE TABLE t2 (x INTEGER)', 'INSERT INTO t2 VALUES (2)'] },
    ];
    const broken: Migration[] = [m[0]!, { version: 2, name: 'broken', sqlite: [], postgres: ['CREATE TABLE t2 (x INTEGER)', 'INSERT INTO nowhere VALUES (1)'] }];
    await (await openPostgresStore(url, { migrations: m.slice(0, 1) })).close();
    await assert.rejects(openPostgresStore(url, { migrations: broken }), (e: unknown) =>
      e instanceof AppError && e.code === 'STORE_MIGRATION' && /version 2 \(broken\).*stays at version 1/.test(e.message));
    assert.deepEqual(await sql(url, "SELECT to_regclass('t2') AS t"), [{ t: null }]);
    const s = await openPostgresStore(url, { migrations: m });
    assert.equal(s.schemaVersion, 2);
    await s.close();
    assert.deepEqual(await sql(url, 'SELECT version, name FROM schema_migrations ORDER BY version'), [{ version: 1, name: 'one' }, { version: 2, name: 'two' }]);
  });

  it('refuses a database whose schema is newer than the code, naming both versions and not the password', async () => {
    const url = await freshUrl();
    await (await openStore(url)).close();
    await sql(url, 'INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, 0)', [SCHEMA_VERSION + 7, 'future']);
    const withPassword = url.replace('postgres@', 'postgres:s3cret@');
    await assert.rejects(openStore(withPassword), (e: unknown) => {
      assert.ok(e instanceof AppError);
      assert.equal(e.code, 'STORE_SCHEMA_NEWER');
      assert.ok(e.message.includes(`version ${SCHEMA_VERSION + 7}`) && e.message.includes(`version ${SCHEMA_VERSION} `), e.message);
      assert.ok(!e.message.includes('s3cret'), e.message);
      return true;
    });
  });

  it('names the server without the password when it cannot be reached', async () => {
    await assert.rejects(openStore('postgres://vm:s3cret@127.0.0.1:1/vmshadow'), (e: unknown) => {
      assert.ok(e instanceof AppError);
      assert.equal(e.code, 'STORE_UNAVAILABLE');
      assert.equal(e.retryable, true);
      assert.ok(e.message.includes('postgres://127.0.0.1:1/vmshadow'), e.message);
      assert.ok(!e.message.includes('s3cret'), e.message);
      return true;
    });
  });

  it('takes lease times from the database clock', async () => {
    const url = await freshUrl();
    const s = await openPg(url);
    const [row] = await sql<{ ms: string }>(url, 'SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms');
    const l = await s.acquireLease('manager', 'a', 10_000);
    const dbNow = Number(row?.ms);
    assert.ok(l.expiresAtMs >= dbNow + 10_000 && l.expiresAtMs < dbNow + 12_000, `${l.expiresAtMs} vs ${dbNow}`);
  });

  it('putMany writes 10,000 VM records in a few seconds at most', async () => {
    const s = await openPg();
    const { insertMs, replaceMs } = await timePutMany(s, 10_000);
    console.log(`# PostgreSQL putMany of 10,000 VMs: ${insertMs.toFixed(0)} ms new, ${replaceMs.toFixed(0)} ms replacing`);
    assert.equal(await s.count('vms'), 10_000);
    assert.ok(Math.max(insertMs, replaceMs) < 10_000, `${insertMs} / ${replaceMs} ms`);
    const vms = await createRepos(s).vms.all({}, 3000);
    assert.equal(vms.length, 10_000);
    assert.ok(vms.every((v) => v.recentMoves >= 1));
  });
});

describe('leader election on PostgreSQL', () => {
  const TTL_MS = 2000;
  const RENEW_MS = 400;

  interface Replica {
    readonly name: string;
    readonly elector: LeaderElector;
    /** When it last became leader (performance.now()). */
    leadSinceMs: number | null;
  }

  async function replicas(url: string, names: string[], o: { ttlMs?: number; renewEveryMs?: number } = {}): Promise<Replica[]> {
    const out: Replica[] = [];
    for (const name of names) {
      const store = await openPg(url);
      const r: Replica = {
        name, leadSinceMs: null,
        elector: createLeaderElector({
          store, name: 'manager', holder: name, ttlMs: o.ttlMs ?? TTL_MS, renewEveryMs: o.renewEveryMs ?? RENEW_MS, log: silentLogger,
          onChange: (leading) => {
            r.leadSinceMs = leading ? performance.now() : null;
          },
        }),
      };
      out.push(r);
    }
    return out;
  }

  /** Samples every 20 ms for `ms`: fails if two lead at once; returns the leaders seen at each sample. */
  async function watch(rs: readonly Replica[], ms: number, until?: () => boolean): Promise<string[][]> {
    const samples: string[][] = [];
    const end = performance.now() + ms;
    while (performance.now() < end) {
      const leaders = rs.filter((r) => r.elector.isLeader()).map((r) => r.name);
      assert.ok(leaders.length <= 1, `two leaders at once: ${leaders.join(', ')}`);
      samples.push(leaders);
      if (until?.() === true) break;
      await sleep(20);
    }
    return samples;
  }

  const stopAll = async (rs: readonly Replica[]): Promise<void> => {
    for (const r of rs) await r.elector.stop();
  };

  it('three replicas: exactly one leads at any time, and it keeps leading while it renews', async () => {
    const rs = await replicas(await freshUrl(), ['r1', 'r2', 'r3']);
    try {
      for (const r of rs) r.elector.start();
      await watch(rs, 500, () => rs.some((r) => r.elector.isLeader()));
      const first = rs.find((r) => r.elector.isLeader())?.name;
      assert.ok(first !== undefined, 'nobody leads after 500 ms');
      const samples = await watch(rs, 2500);
      assert.ok(samples.every((s) => s.length === 1 && s[0] === first), `leadership moved or lapsed: ${JSON.stringify(samples.filter((s) => s[0] !== first).slice(0, 3))}`);
      for (const r of rs) assert.equal(r.elector.leader(), first);
    } finally {
      await stopAll(rs);
    }
  });

  it('when the leader halts without releasing, another takes over within ttl + renew interval, never two at once', async () => {
    const rs = await replicas(await freshUrl(), ['r1', 'r2', 'r3']);
    try {
      for (const r of rs) r.elector.start();
      await watch(rs, 3000, () => rs.some((r) => r.elector.isLeader()));
      const old = rs.find((r) => r.elector.isLeader());
      assert.ok(old !== undefined);
      const rest = rs.filter((r) => r !== old);
      const t0 = performance.now();
      await old.elector.stop({ release: false });
      await watch(rs, TTL_MS + RENEW_MS + 3000, () => rest.some((r) => r.elector.isLeader()));
      const next = rest.find((r) => r.elector.isLeader());
      assert.ok(next?.leadSinceMs != null, 'nobody took over');
      const tookMs = next.leadSinceMs - t0;
      console.log(`# PostgreSQL: leader halted, ${next.name} took over after ${tookMs.toFixed(0)} ms (ttl ${TTL_MS}, renew ${RENEW_MS})`);
      assert.ok(tookMs <= TTL_MS + RENEW_MS + 1000, `${tookMs} ms`);
      assert.ok(tookMs >= TTL_MS - RENEW_MS - 300, `took over after ${tookMs} ms although the lease was not released`);
      await watch(rest, 500);
    } finally {
      await stopAll(rs);
    }
  });

  it('a clean stop hands over at once, long before the ttl', async () => {
    const rs = await replicas(await freshUrl(), ['r1', 'r2'], { ttlMs: 10_000, renewEveryMs: 300 });
    try {
      for (const r of rs) r.elector.start();
      await watch(rs, 3000, () => rs.some((r) => r.elector.isLeader()));
      const old = rs.find((r) => r.elector.isLeader());
      const other = rs.find((r) => r !== old);
      assert.ok(old !== undefined && other !== undefined);
      const t0 = performance.now();
      await old.elector.stop();
      await watch(rs, 5000, () => other.elector.isLeader());
      assert.ok(other.leadSinceMs !== null, 'the other replica did not take over');
      const tookMs = other.leadSinceMs - t0;
      assert.ok(tookMs <= 300 + 1000, `${tookMs} ms with ttl 10 s`);
    } finally {
      await stopAll(rs);
    }
  });

  it('a leader process killed with SIGKILL is replaced within ttl + renew interval (well within 30 s)', async () => {
    const url = await freshUrl();
    const code = `
      const { openStore } = await import(${JSON.stringify(new URL('./open.js', import.meta.url).href)});
      const { createLeaderElector } = await import(${JSON.stringify(new URL('./leader.js', import.meta.url).href)});
      const { silentLogger } = await import(${JSON.stringify(new URL('../core/logger.js', import.meta.url).href)});
      const store = await openStore(process.env.PG_URL, { poolSize: 2 });
      const e = createLeaderElector({ store, name: 'manager', holder: 'child', ttlMs: ${TTL_MS}, renewEveryMs: ${RENEW_MS},
        log: silentLogger, onChange: (l) => process.stdout.write(l ? 'LEADER\\n' : 'FOLLOWER\\n') });
      e.start();
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', code], { env: { ...process.env, PG_URL: url }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(child);
    await untilOutput(child, /LEADER/, 15_000, 'the leader child');
    const [me] = await replicas(url, ['parent']);
    assert.ok(me !== undefined);
    try {
      me.elector.start();
      await sleep(RENEW_MS * 2);
      assert.equal(me.elector.isLeader(), false);
      assert.equal(me.elector.leader(), 'child');
      const t0 = performance.now();
      child.kill('SIGKILL');
      await watch([me], TTL_MS + RENEW_MS + 3000, () => me.elector.isLeader());
      assert.ok(me.leadSinceMs !== null, 'the parent did not take over');
      const tookMs = me.leadSinceMs - t0;
      console.log(`# PostgreSQL: leader process SIGKILLed, the other replica took over after ${tookMs.toFixed(0)} ms (ttl ${TTL_MS}, renew ${RENEW_MS})`);
      assert.ok(tookMs <= TTL_MS + RENEW_MS + 1000, `${tookMs} ms`);
      assert.equal(child.signalCode, 'SIGKILL');
    } finally {
      await me.elector.stop();
    }
  });
});
