import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { AppError } from '../core/errors.js';
import { vmId } from '../core/ids.js';
import { runJobStoreContract, sampleJob } from '../migration/store.contract.js';
import { openStore, parseStoreUrl } from './open.js';
import { createRepos, getSettings, jobStoreOf, putSettings, DEFAULT_SETTINGS } from './repos.js';
import { SCHEMA_VERSION, type Migration } from './schema.js';
import { openSqliteStore } from './sqlite.js';
import { runStoreContract, sampleVm, timePutMany } from './store.contract.js';

const dir = mkdtempSync(join(tmpdir(), 'vmshadow-sqlite-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const freshFile = (): string => join(dir, `s${++n}`, 'vmshadow.db');

runStoreContract('SQLite (file)', () => openSqliteStore(freshFile()));
runStoreContract('SQLite (:memory:)', () => openStore(':memory:'));

runJobStoreContract('SQLite jobStoreOf', async () => {
  const file = freshFile();
  const stores = [await openSqliteStore(file)];
  return {
    store: jobStoreOf(stores[0]!),
    reopen: async () => {
      const s = await openSqliteStore(file);
      stores.push(s);
      return jobStoreOf(s);
    },
    cleanup: async () => {
      for (const s of stores) await s.close();
    },
  };
});

const migrationsV2: Migration[] = [
  { version: 1, name: 'one', sqlite: ['CREATE TABLE t1 (x INTEGER)'], postgres: [] },
  { version: 2, name: 'two', sqlite: ['CREATE TABLE t2 (x INTEGER)', 'INSERT INTO t2 VALUES (2)'], postgres: [] },
];

describe('SQLite store', () => {
  it('keeps its data and schema version when the file is reopened', async () => {
    const file = freshFile();
    const a = await openStore(`sqlite:${file}`);
    assert.equal(a.kind, 'sqlite');
    assert.equal(a.location, `sqlite:${file}`);
    await a.put('vms', 'vm-1', { name: 'kept' }, { group: 'eu' });
    await a.append('audit', [{ key: 'vm-1', atMs: 5, value: 'x' }]);
    await a.close();
    const b = await openStore(file);
    try {
      assert.equal(b.schemaVersion, SCHEMA_VERSION);
      const d = await b.get('vms', 'vm-1');
      assert.deepEqual([d?.value, d?.rev, d?.group], [{ name: 'kept' }, 1, 'eu']);
      assert.equal((await b.read('audit', { limit: 5 })).length, 1);
      const [seq] = await b.append('audit', [{ key: 'vm-1', atMs: 6, value: 'y' }]);
      assert.ok((seq ?? 0) > 1);
    } finally {
      await b.close();
    }
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const db = new Database(file, { readonly: true });
    try {
      assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
      assert.deepEqual(db.prepare('SELECT version FROM schema_migrations ORDER BY version').all().map((r) => (r as { version: number }).version),
        Array.from({ length: SCHEMA_VERSION }, (_, i) => i + 1));
    } finally {
      db.close();
    }
  });

  it('applies only the migrations a file is missing, in order, each recorded in schema_migrations', async () => {
    const file = freshFile();
    const v1 = await openSqliteStore(file, { migrations: migrationsV2.slice(0, 1) });
    assert.equal(v1.schemaVersion, 1);
    await v1.close();
    const v2 = await openSqliteStore(file, { migrations: migrationsV2 });
    assert.equal(v2.schemaVersion, 2);
    await v2.close();
    const db = new Database(file, { readonly: true });
    try {
      assert.deepEqual(db.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all(), [{ version: 1, name: 'one' }, { version: 2, name: 'two' }]);
      assert.deepEqual(db.prepare('SELECT x FROM t2').all(), [{ x: 2 }]);
    } finally {
      db.close();
    }
  });

  it('rolls a failing migration back whole: the file stays at the version before, and the error says so', async () => {
    const file = freshFile();
    await (await openSqliteStore(file, { migrations: migrationsV2.slice(0, 1) })).close();
    const broken: Migration[] = [migrationsV2[0]!, { version: 2, name: 'broken', sqlite: ['CREATE TABLE t2 (x INTEGER)', 'INSERT INTO nowhere VALUES (1)'], postgres: [] }];
    await assert.rejects(openSqliteStore(file, { migrations: broken }), (e: unknown) => {
      assert.ok(e instanceof AppError);
      assert.equal(e.code, 'STORE_MIGRATION');
      assert.match(e.message, /to version 2 \(broken\).*stays at version 1/);
      return true;
    });
    const again = await openSqliteStore(file, { migrations: migrationsV2 });
    assert.equal(again.schemaVersion, 2);
    await again.close();
  });

  it('refuses to open a file whose schema is newer than the code, naming both versions', async () => {
    const file = freshFile();
    await (await openSqliteStore(file)).close();
    const db = new Database(file);
    db.prepare('INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES (?, ?, 0)').run(SCHEMA_VERSION + 41, 'from the future');
    db.close();
    await assert.rejects(openStore(file), (e: unknown) => {
      assert.ok(e instanceof AppError);
      assert.equal(e.code, 'STORE_SCHEMA_NEWER');
      assert.ok(e.message.includes(`version ${SCHEMA_VERSION + 41}`) && e.message.includes(`version ${SCHEMA_VERSION} `), e.message);
      assert.ok(e.message.includes(file), e.message);
      return true;
    });
  });

  it('two stores on one file see each other\'s writes, and a conflict between them is STORE_CONFLICT', async () => {
    const file = freshFile();
    const a = await openStore(file);
    const b = await openStore(file);
    try {
      const d = await a.put('plans', 'p1', { by: 'a' });
      assert.deepEqual((await b.get('plans', 'p1'))?.value, { by: 'a' });
      await b.put('plans', 'p1', { by: 'b' }, { expectRev: d.rev });
      await assert.rejects(a.put('plans', 'p1', { by: 'a again' }, { expectRev: d.rev }), (e: unknown) => e instanceof AppError && e.code === 'STORE_CONFLICT');
      assert.equal((await a.acquireLease('leader', 'a', 60_000)).holder, 'a');
      assert.equal((await b.acquireLease('leader', 'b', 60_000)).holder, 'a');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('putMany writes 10,000 VM records in well under a second or two', async () => {
    const s = await openStore(freshFile());
    try {
      const { insertMs, replaceMs } = await timePutMany(s, 10_000);
      console.log(`# SQLite putMany of 10,000 VMs: ${insertMs.toFixed(0)} ms new, ${replaceMs.toFixed(0)} ms replacing`);
      const ms = Math.max(insertMs, replaceMs);
      assert.equal(await s.count('vms'), 10_000);
      assert.ok(ms < 5000, `${ms} ms`);
      const vms = await createRepos(s).vms.all();
      assert.equal(vms.length, 10_000);
      assert.deepEqual(vms.find((v) => v.id === 'vm-00042'), { ...sampleVm(42), recentMoves: sampleVm(42).recentMoves + 1 });
    } finally {
      await s.close();
    }
  });

  it('keeps settings with defaults, and finds a token by its hash', async () => {
    const s = await openStore(':memory:');
    try {
      assert.deepEqual(await getSettings(s), DEFAULT_SETTINGS);
      await s.put('settings', 'manager', { mode: 'auto', params: { maxMovesPerRound: 3 } });
      const got = await getSettings(s);
      assert.equal(got.mode, 'auto');
      assert.equal(got.roundIntervalS, DEFAULT_SETTINGS.roundIntervalS);
      assert.equal(got.params.maxMovesPerRound, 3);
      assert.equal(got.params.minSavingMs, DEFAULT_SETTINGS.params.minSavingMs);
      assert.deepEqual(await putSettings(s, { ...DEFAULT_SETTINGS, mode: 'dry-run' }), { ...DEFAULT_SETTINGS, mode: 'dry-run' });
      const repos = createRepos(s);
      await repos.tokens.put({ id: 't1', role: 'admin', sha256: 'ab'.repeat(32), label: 'ops', createdAtMs: 1 });
      await repos.tokens.put({ id: 't2', role: 'read', sha256: 'cd'.repeat(32), label: 'ro', createdAtMs: 2 });
      const { findTokenBySha256 } = await import('./repos.js');
      assert.equal((await findTokenBySha256(s, 'cd'.repeat(32)))?.id, 't2');
      assert.equal(await findTokenBySha256(s, 'ef'.repeat(32)), null);
    } finally {
      await s.close();
    }
  });

  it('jobStoreOf indexes jobs by VM and by active/ended, so a restart reads only what it must reconcile', async () => {
    const s = await openStore(':memory:');
    try {
      const jobs = jobStoreOf(s);
      await jobs.save(sampleJob('j1', { vm: 'vm-1', atMs: 1, state: { kind: 'running', phase: 'precopy' } }));
      await jobs.save(sampleJob('j2', { vm: 'vm-2', atMs: 2, state: { kind: 'completed' } }));
      assert.equal(await s.count('jobs', { status: 'active' }), 1);
      assert.equal(await s.count('jobs', { group: 'vm-2', status: 'ended' }), 1);
      await jobs.save(sampleJob('j1', { vm: 'vm-1', atMs: 1, state: { kind: 'completed' } }));
      assert.deepEqual(await jobs.loadActive(), []);
      assert.deepEqual((await jobs.listByVm(vmId('vm-1'))).map((j) => j.state.kind), ['completed']);
    } finally {
      await s.close();
    }
  });
});

describe('parseStoreUrl()', () => {
  it('reads sqlite:PATH, a plain path and :memory: as SQLite, postgres:// as PostgreSQL, and refuses other schemes without echoing a password', () => {
    assert.deepEqual(parseStoreUrl('sqlite:/var/lib/vmshadow/v.db'), { kind: 'sqlite', path: '/var/lib/vmshadow/v.db' });
    assert.deepEqual(parseStoreUrl('sqlite:///var/v.db'), { kind: 'sqlite', path: '/var/v.db' });
    assert.deepEqual(parseStoreUrl('sqlite::memory:'), { kind: 'sqlite', path: ':memory:' });
    assert.deepEqual(parseStoreUrl('data/v.db'), { kind: 'sqlite', path: 'data/v.db' });
    assert.deepEqual(parseStoreUrl(':memory:'), { kind: 'sqlite', path: ':memory:' });
    const pg = parseStoreUrl('postgres://vm:s3cret@db1:5432/vmshadow?sslmode=require');
    assert.equal(pg.kind, 'postgres');
    assert.equal(pg.kind === 'postgres' ? pg.location : '', 'postgres://db1:5432/vmshadow');
    assert.throws(() => parseStoreUrl('mysql://root:s3cret@db/x'), (e: unknown) => e instanceof AppError && /mysql:\/\/root:\*\*\*@db\/x/.test(e.message) && !e.message.includes('s3cret'));
    assert.throws(() => parseStoreUrl(''), /store: must be/);
    assert.throws(() => parseStoreUrl('sqlite:'), /names no file/);
  });

  it('names the file when it cannot be opened', async () => {
    const notADir = join(dir, 'plain-file');
    writeFileSync(notADir, '');
    const file = join(notADir, 'sub', 'v.db');
    await assert.rejects(openStore(`sqlite:${file}`), (e: unknown) => e instanceof AppError && e.code === 'STORE_UNAVAILABLE' && e.message.includes(`sqlite:${file}`));
  });
});
