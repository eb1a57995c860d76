// Two `vmshadow manager` processes on one PostgreSQL database: exactly one leads and acts; the other serves
// reads and refuses changes naming the leader; when the leader is killed -9 the other takes over within the
// lease's ttl (well within the 30 s) and accepts changes.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { freePort } from '../testing/ports.js';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTestPostgres, testPostgresAvailable, type TestPostgres } from '../testing/postgres.js';
import { TWO_SITE_INVENTORY } from '../testing/manager-fixtures.js';

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const TOKEN = 'replica-admin-token-0123456789';
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const skip = (await testPostgresAvailable()) ? false : 'PostgreSQL is not installed';

interface Health { leader: boolean; replica: string; store: string }

describe('manager replicas on PostgreSQL', { skip, timeout: 180_000 }, () => {
  let pg: TestPostgres;
  const dir = mkdtempSync('/tmp/vmsp-');
  const children: ChildProcess[] = [];
  before(async () => {
    pg = await startTestPostgres();
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await pg?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('one leads, the other reads and refuses changes; kill -9 the leader and the other takes over', async () => {
    const inv = join(dir, 'inventory.json');
    writeFileSync(inv, JSON.stringify(TWO_SITE_INVENTORY));
    const start = async (name: string): Promise<{ url: string; child: ChildProcess }> => {
      const port = await freePort();
      const child = spawn(process.execPath, [CLI, 'manager', '--data-dir', join(dir, name), '--listen', `127.0.0.1:${port}`, '--store', pg.url,
        '--inventory', inv, '--driver', 'sim', '--probe', 'off', '--mode', 'approve', '--round-interval-s', '2', '--replica', name,
        '--lease-ttl-s', '4', '--log-level', 'warn'], { env: { ...process.env, VMSHADOW_ADMIN_TOKEN: TOKEN }, stdio: ['ignore', 'ignore', 'pipe'] });
      children.push(child);
      const url = `http://127.0.0.1:${port}`;
      for (let i = 0; i < 150; i++) {
        if ((await fetch(`${url}/healthz`).then((r) => r.status, () => 0)) === 200) return { url, child };
        await sleep(200);
      }
      throw new Error(`replica ${name} did not answer /healthz`);
    };
    const health = async (url: string): Promise<Health> => (await (await fetch(`${url}/healthz`)).json()) as Health;
    const runRound = (url: string): Promise<Response> => fetch(`${url}/v1/rounds`, { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } });

    const a = await start('replica-a');
    for (let i = 0; i < 50 && !(await health(a.url)).leader; i++) await sleep(200);
    assert.equal((await health(a.url)).leader, true, 'the first replica leads');
    const b = await start('replica-b');
    await sleep(3000);
    const [ha, hb] = [await health(a.url), await health(b.url)];
    assert.equal(ha.store, 'postgres');
    assert.deepEqual([ha.leader, hb.leader], [true, false], 'exactly one leads');

    const reads = await fetch(`${b.url}/v1/vms`, { headers: { authorization: `Bearer ${TOKEN}` } });
    assert.equal(reads.status, 200, 'the follower serves reads');
    assert.equal(((await reads.json()) as { items: unknown[] }).items.length, 2);
    const refused = await runRound(b.url);
    assert.equal(refused.status, 503);
    assert.match(await refused.text(), /NOT_LEADER.*replica-b does not lead.*the leader, replica-a/);
    assert.equal((await runRound(a.url)).status, 200, 'the leader acts');

    a.child.kill('SIGKILL');
    await once(a.child, 'exit');
    const t0 = Date.now();
    while (!(await health(b.url)).leader && Date.now() - t0 < 30_000) await sleep(200);
    const tookMs = Date.now() - t0;
    assert.ok((await health(b.url)).leader, 'the follower took over');
    assert.ok(tookMs < 10_000, `took over ${tookMs} ms after the kill (lease ttl 4 s)`);
    assert.equal((await runRound(b.url)).status, 200, 'the new leader acts');

    b.child.kill('SIGTERM');
    await once(b.child, 'exit');
    assert.equal(b.child.exitCode, 0);
  });
});
