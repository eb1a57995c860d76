import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AppError } from '../../core/errors.js';
import type { JobRecord } from '../../migration/job.js';
import type { PlanRecord, Settings, VmRecord } from '../../store/records.js';
import { startTestApi, type TestApi } from '../../testing/api-harness.js';
import type { MigrationView } from '../views.js';

type Json = Record<string, unknown>;
const json = (body: string): Json => JSON.parse(body) as Json;
const items = (body: string): Json[] => json(body).items as Json[];

describe('manager API routes', () => {
  let t: TestApi;
  before(async () => {
    t = await startTestApi();
  });
  after(async () => {
    await t.close();
  });
  const get = (url: string, headers: Record<string, string> = t.reader) => t.app.inject({ method: 'GET', url, headers });
  const send = (method: 'POST' | 'PATCH', url: string, payload?: unknown, headers: Record<string, string> = t.admin) =>
    t.app.inject({ method, url, headers, ...(payload === undefined ? {} : { payload: payload as Json }) });

  describe('GET /healthz', () => {
    it('answers 200 without a token, naming the replica, its leadership, the store and its schema version', async () => {
      const r = await t.app.inject({ method: 'GET', url: '/healthz' });
      assert.equal(r.statusCode, 200);
      assert.deepEqual(json(r.body), { ok: true, replica: 'replica-a', leader: true, store: 'sqlite', schemaVersion: t.store.schemaVersion });
    });
  });

  describe('inventory', () => {
    it('GET /v1/sites lists the sites in id order and pages with limit, after and next', async () => {
      const all = await get('/v1/sites');
      assert.equal(all.statusCode, 200);
      assert.deepEqual(items(all.body).map((s) => s.id), ['ap-south', 'eu-central', 'us-east']);
      assert.equal(json(all.body).next, null);
      const p1 = json((await get('/v1/sites?limit=2')).body);
      assert.deepEqual((p1.items as Json[]).map((s) => s.id), ['ap-south', 'eu-central']);
      assert.equal(p1.next, 'eu-central');
      const p2 = json((await get(`/v1/sites?limit=2&after=${String(p1.next)}`)).body);
      assert.deepEqual((p2.items as Json[]).map((s) => s.id), ['us-east']);
      assert.equal(p2.next, null);
    });

    it('GET /v1/sites/:id answers one site, and 404 naming an unknown id', async () => {
      const r = await get('/v1/sites/eu-central');
      assert.equal(r.statusCode, 200);
      assert.equal(json(r.body).lat, 50.1);
      const missing = await get('/v1/sites/mars-1');
      assert.equal(missing.statusCode, 404);
      assert.deepEqual(json(missing.body), { error: { code: 'NOT_FOUND', message: 'site "mars-1" does not exist' } });
    });

    it('GET /v1/hosts and /v1/links list hosts and WAN links', async () => {
      assert.equal(items((await get('/v1/hosts')).body).length, 3);
      const links = items((await get('/v1/links')).body);
      assert.deepEqual(links.map((l) => l.id), ['ap-south~eu-central', 'ap-south~us-east', 'eu-central~us-east']);
      assert.equal(links[2]?.rttMs, 90);
    });
  });

  describe('VMs', () => {
    it('GET /v1/vms filters by site and by sensitivity', async () => {
      assert.deepEqual(items((await get('/v1/vms')).body).map((v) => v.id), ['vm-batch-1', 'vm-desk-1', 'vm-desk-2']);
      assert.deepEqual(items((await get('/v1/vms?site=us-east')).body).map((v) => v.id), ['vm-batch-1', 'vm-desk-1']);
      assert.deepEqual(items((await get('/v1/vms?sensitive=true')).body).map((v) => v.id), ['vm-desk-1', 'vm-desk-2']);
      assert.deepEqual(items((await get('/v1/vms?sensitive=false&site=us-east')).body).map((v) => v.id), ['vm-batch-1']);
      const p = json((await get('/v1/vms?sensitive=true&limit=1')).body);
      assert.deepEqual([(p.items as Json[])[0]?.id, p.next], ['vm-desk-1', 'vm-desk-1']);
      const p2 = json((await get('/v1/vms?sensitive=true&limit=1&after=vm-desk-1')).body);
      assert.deepEqual([(p2.items as Json[])[0]?.id, p2.next], ['vm-desk-2', null]);
    });

    it('GET /v1/vms/:id answers the VM with its fingerprints newest first, as many as ?history asks', async () => {
      const r = json((await get('/v1/vms/vm-desk-1')).body);
      assert.equal((r.vm as Json).id, 'vm-desk-1');
      const fps = r.fingerprints as { atMs: number; value: { score: number } }[];
      assert.deepEqual(fps.map((f) => f.value.score), [0.9, 0.6, 0.2]);
      assert.equal((json((await get('/v1/vms/vm-desk-1?history=1')).body).fingerprints as unknown[]).length, 1);
      assert.deepEqual(json((await get('/v1/vms/vm-desk-1?history=0')).body).fingerprints, []);
    });

    it('PATCH /v1/vms/:id pins a VM through the control, recorded under the admin token\'s actor', async () => {
      const before = t.control.calls.length;
      const r = await send('PATCH', '/v1/vms/vm-batch-1', { pinned: true });
      assert.equal(r.statusCode, 200);
      assert.equal(json(r.body).pinned, true);
      assert.deepEqual(t.control.calls.slice(before), [{ method: 'setVmFlags', args: ['vm-batch-1', { pinned: true }, 'api:admin'] }]);
      assert.equal((await t.store.get<VmRecord>('vms', 'vm-batch-1'))?.value.pinned, true);
    });
  });

  describe('users', () => {
    it('GET /v1/users lists users and GET /v1/users/:id adds its RTT observations newest first', async () => {
      assert.deepEqual(items((await get('/v1/users')).body).map((u) => u.id), ['u-10.77.0.21', 'u-10.77.0.22']);
      const r = json((await get('/v1/users/u-10.77.0.21')).body);
      assert.equal((r.user as Json).endpoint, '10.77.0.21');
      assert.deepEqual((r.rtts as { value: { rttMs: number } }[]).map((e) => e.value.rttMs), [14, 16, 15]);
      assert.equal((await get('/v1/users/u-nobody')).statusCode, 404);
    });
  });

  describe('plans', () => {
    it('GET /v1/plans lists newest first and filters by status', async () => {
      const { recommended, rejected, older } = t.seeded.plans;
      assert.deepEqual(items((await get('/v1/plans')).body).map((p) => p.id), [recommended, rejected, older]);
      assert.deepEqual(items((await get('/v1/plans?status=rejected')).body).map((p) => p.id), [rejected]);
      assert.deepEqual(items((await get('/v1/plans?limit=1')).body).map((p) => p.id), [recommended]);
      assert.equal(json((await get(`/v1/plans/${older}`)).body).status, 'done');
    });

    it('POST /v1/plans/:id/approve refuses a plan that is not recommended with 409, saying its state, without calling the control', async () => {
      const before = t.control.calls.length;
      const r = await send('POST', `/v1/plans/${t.seeded.plans.rejected}/approve`, {});
      assert.equal(r.statusCode, 409);
      const e = json(r.body).error as Json;
      assert.equal(e.code, 'PLAN_NOT_PENDING');
      assert.match(String(e.message), /^plan plan-0002-b is rejected by api:admin, only a recommended plan can be approved$/);
      assert.equal(t.control.calls.length, before);
    });

    it('POST /v1/plans/:id/reject passes the reason on; the body may be left out of approve', async () => {
      const s = await startTestApi();
      try {
        const id = s.seeded.plans.recommended;
        const r = await s.app.inject({ method: 'POST', url: `/v1/plans/${id}/reject`, headers: s.admin, payload: { reason: ' too costly ' } });
        assert.equal(r.statusCode, 200);
        assert.equal(json(r.body).status, 'rejected');
        assert.deepEqual(s.control.calls, [{ method: 'rejectPlan', args: [id, 'api:admin', 'too costly'] }]);
        await s.store.put<PlanRecord>('plans', id, { ...(await s.store.get<PlanRecord>('plans', id))!.value, status: 'recommended' });
        const a = await s.app.inject({ method: 'POST', url: `/v1/plans/${id}/approve`, headers: s.admin });
        assert.equal(a.statusCode, 200, a.body);
        assert.equal((json(a.body)).status, 'approved');
        assert.deepEqual(s.control.calls[1], { method: 'approvePlan', args: [id, 'api:admin'] });
      } finally {
        await s.close();
      }
    });

    it('an empty body sent as JSON counts as no body', async () => {
      const s = await startTestApi();
      try {
        const r = await s.app.inject({
          method: 'POST', url: `/v1/plans/${s.seeded.plans.recommended}/approve`,
          headers: { ...s.admin, 'content-type': 'application/json' }, payload: '',
        });
        assert.equal(r.statusCode, 200, r.body);
      } finally {
        await s.close();
      }
    });
  });

  describe('migrations', () => {
    it('GET /v1/migrations lists MigrationViews newest first, all, active or ended', async () => {
      const { queued, running, completed } = t.seeded.jobs;
      assert.deepEqual(items((await get('/v1/migrations')).body).map((m) => m.id), [queued, running, completed]);
      assert.deepEqual(items((await get('/v1/migrations?active=true')).body).map((m) => m.id), [queued, running]);
      const ended = items((await get('/v1/migrations?active=false')).body);
      assert.deepEqual(ended.map((m) => [m.id, m.ended, m.percent]), [[completed, true, 100]]);
    });

    it('GET /v1/migrations/:id shows progress of a running one', async () => {
      const v = json((await get(`/v1/migrations/${t.seeded.jobs.running}`)).body) as unknown as MigrationView;
      assert.equal(v.state, 'running:precopy');
      assert.equal(v.percent, 50);
      assert.equal(v.etaS, 12);
      assert.ok(Array.isArray(v.history) && v.history.length >= 3);
    });

    it('POST /v1/migrations/:id/cancel aborts a running migration and refuses an ended one with 409', async () => {
      const s = await startTestApi();
      try {
        const r = await s.app.inject({ method: 'POST', url: `/v1/migrations/${s.seeded.jobs.running}/cancel`, headers: s.admin });
        assert.equal(r.statusCode, 200, r.body);
        assert.equal(json(r.body).state, 'aborting');
        assert.deepEqual(s.control.calls, [{ method: 'cancelMigration', args: [s.seeded.jobs.running, 'api:admin'] }]);
        const done = await s.app.inject({ method: 'POST', url: `/v1/migrations/${s.seeded.jobs.completed}/cancel`, headers: s.admin, payload: {} });
        assert.equal(done.statusCode, 409);
        assert.equal((json(done.body).error as Json).code, 'JOB_ENDED');
        assert.match(String((json(done.body).error as Json).message), /already ended \(completed\); only a queued or running migration can be cancelled/);
        assert.equal(s.control.calls.length, 1);
        assert.equal((await s.store.get<JobRecord>('jobs', s.seeded.jobs.completed))?.value.state.kind, 'completed');
      } finally {
        await s.close();
      }
    });
  });

  describe('rounds', () => {
    it('GET /v1/rounds lists newest first; POST /v1/rounds runs one now', async () => {
      assert.deepEqual(items((await get('/v1/rounds')).body).map((r) => r.seq), [3, 2, 1]);
      const r = await send('POST', '/v1/rounds');
      assert.equal(r.statusCode, 200);
      assert.equal(json(r.body).leader, 'replica-a');
      assert.equal(items((await get('/v1/rounds?limit=1')).body)[0]?.id, json(r.body).id);
    });
  });

  describe('audit', () => {
    it('GET /v1/audit answers newest first, oldest first after a seq, and one subject by key', async () => {
      assert.deepEqual(items((await get('/v1/audit')).body).map((e) => e.seq), [3, 2, 1]);
      assert.deepEqual(items((await get('/v1/audit?after=1')).body).map((e) => e.seq), [2, 3]);
      assert.deepEqual(items((await get('/v1/audit?key=manager')).body).map((e) => e.seq), [1]);
      assert.deepEqual(items((await get('/v1/audit?limit=1&order=asc')).body).map((e) => e.seq), [1]);
    });
  });

  describe('settings', () => {
    it('GET /v1/settings answers the stored settings; PATCH changes them through the control', async () => {
      const s = await startTestApi();
      try {
        const g = await s.app.inject({ method: 'GET', url: '/v1/settings', headers: s.reader });
        assert.equal(g.statusCode, 200);
        assert.equal(json(g.body).mode, 'approve');
        const p = await s.app.inject({ method: 'PATCH', url: '/v1/settings', headers: s.admin, payload: { mode: 'auto', params: { minSavingMs: 25 } } });
        assert.equal(p.statusCode, 200, p.body);
        const after = json(p.body) as unknown as Settings;
        assert.equal(after.mode, 'auto');
        assert.equal(after.params.minSavingMs, 25);
        assert.deepEqual(s.control.calls, [{ method: 'updateSettings', args: [{ mode: 'auto', params: { minSavingMs: 25 } }, 'api:admin'] }]);
      } finally {
        await s.close();
      }
    });

    it('PATCH /v1/settings checks params together with the current ones: 400 naming the field and the current value', async () => {
      const before = t.control.calls.length;
      const r = await send('PATCH', '/v1/settings', { params: { evictableMaxSensitivity: 0.7 } });
      assert.equal(r.statusCode, 400);
      const e = json(r.body).error as Json;
      assert.equal(e.field, 'body.params.evictableMaxSensitivity');
      assert.match(String(e.message), /must be below minSensitivity \(0\.5\).*the current value is 0\.2/);
      assert.equal(t.control.calls.length, before);
    });
  });

  describe('leadership and control failures', () => {
    it('a replica that does not lead refuses changes with 503 naming the leader, and still answers reads', async () => {
      const s = await startTestApi();
      try {
        s.control.leading = false;
        s.control.leaderName = 'replica-b';
        const r = await s.app.inject({ method: 'PATCH', url: '/v1/vms/vm-desk-1', headers: s.admin, payload: { pinned: true } });
        assert.equal(r.statusCode, 503);
        const e = json(r.body).error as Json;
        assert.equal(e.code, 'NOT_LEADER');
        assert.equal(e.leader, 'replica-b');
        assert.match(String(e.message), /replica replica-a does not lead.*the leader, replica-b/);
        assert.equal(s.control.calls.length, 0);
        assert.equal((await s.app.inject({ method: 'GET', url: '/v1/vms/vm-desk-1', headers: s.reader })).statusCode, 200);
        assert.equal(json((await s.app.inject({ method: 'GET', url: '/healthz' })).body).leader, false);
      } finally {
        await s.close();
      }
    });

    it('maps the control\'s AppErrors to their status, and a surprise to 500 without its details', async () => {
      const s = await startTestApi();
      try {
        s.control.failNext = new AppError('STORE_CONFLICT', 'plans/x: expected revision 3, the store has 4');
        const c = await s.app.inject({ method: 'POST', url: `/v1/plans/${s.seeded.plans.recommended}/approve`, headers: s.admin });
        assert.equal(c.statusCode, 409);
        assert.deepEqual(json(c.body), { error: { code: 'STORE_CONFLICT', message: 'plans/x: expected revision 3, the store has 4' } });
        s.control.failNext = new Error('db password is hunter2');
        const x = await s.app.inject({ method: 'POST', url: '/v1/rounds', headers: s.admin });
        assert.equal(x.statusCode, 500);
        assert.equal((json(x.body).error as Json).code, 'INTERNAL');
        assert.ok(!x.body.includes('hunter2'));
      } finally {
        await s.close();
      }
    });
  });

  describe('open reads', () => {
    it('with openReads, GETs need no token but changes still need the admin token, and a wrong token is still refused', async () => {
      const s = await startTestApi({ openReads: true });
      try {
        assert.equal((await s.app.inject({ method: 'GET', url: '/v1/vms' })).statusCode, 200);
        assert.equal((await s.app.inject({ method: 'GET', url: '/v1/events?types=nope' })).statusCode, 400);
        const w = await s.app.inject({ method: 'GET', url: '/v1/vms', headers: { authorization: 'Bearer wrong-token-123' } });
        assert.equal(w.statusCode, 401);
        const m = await s.app.inject({ method: 'PATCH', url: '/v1/vms/vm-desk-1', payload: { pinned: true } });
        assert.equal(m.statusCode, 401);
        assert.equal(s.control.calls.length, 0);
      } finally {
        await s.close();
      }
    });
  });
});
