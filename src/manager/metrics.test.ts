import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { register as globalRegistry } from 'prom-client';
import { applyEvent } from '../migration/job.js';
import { job, round, T0, vmRecord } from '../testing/api-fixtures.js';
import type { UserRecord } from '../store/records.js';
import { userId, vmId } from '../core/ids.js';
import { createMetrics } from './metrics.js';

/** The value of one sample line of the exposition text, or null if absent. */
function sample(text: string, series: string): number | null {
  for (const line of text.split('\n')) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return null;
}

describe('createMetrics()', () => {
  it('keeps its own registry: two instances count apart and nothing lands in the global one', async () => {
    const a = createMetrics();
    const b = createMetrics();
    a.apiRequest('/v1/sites', 200);
    a.apiRequest('/v1/sites', 200);
    b.apiRequest('/v1/sites', 200);
    assert.equal(sample(await a.render(), 'vmshadow_api_requests_total{route="/v1/sites",status="200"}'), 2);
    assert.equal(sample(await b.render(), 'vmshadow_api_requests_total{route="/v1/sites",status="200"}'), 1);
    assert.ok(!(await globalRegistry.metrics()).includes('vmshadow_'));
    assert.match(a.contentType, /^text\/plain/);
  });

  it('shows each VM sensitivity and forgets a removed VM', async () => {
    const m = createMetrics();
    m.observeVm(vmRecord('vm-1', 'eu', { sensitivity: 0.83, sensitive: true }));
    m.observeVm(vmRecord('vm-2', 'eu', { sensitivity: 0.1 }));
    let text = await m.render();
    assert.equal(sample(text, 'vmshadow_vm_sensitivity{vm="vm-1"}'), 0.83);
    assert.equal(sample(text, 'vmshadow_vm_sensitive{vm="vm-1"}'), 1);
    assert.equal(sample(text, 'vmshadow_vm_sensitive{vm="vm-2"}'), 0);
    m.removeVm(vmId('vm-1'));
    text = await m.render();
    assert.equal(sample(text, 'vmshadow_vm_sensitivity{vm="vm-1"}'), null);
    assert.equal(sample(text, 'vmshadow_vm_sensitivity{vm="vm-2"}'), 0.1);
  });

  it('shows user RTT per site and drops a site the user no longer has an RTT to', async () => {
    const m = createMetrics();
    const u: UserRecord = {
      id: userId('u-1'), name: 'u', endpoint: '10.0.0.1', country: null, lat: null, lon: null, network: 'n', vms: [], lastSeenAtMs: T0,
      rtt: { eu: { rttMs: 12.5, source: 'probe', atMs: T0, stale: false }, us: { rttMs: 95, source: 'geoip', atMs: T0, stale: true } },
    };
    m.observeUser(u);
    assert.equal(sample(await m.render(), 'vmshadow_user_rtt_ms{user="u-1",site="eu"}'), 12.5);
    m.observeUser({ ...u, rtt: { eu: { rttMs: 14, source: 'probe', atMs: T0, stale: false } } });
    const text = await m.render();
    assert.equal(sample(text, 'vmshadow_user_rtt_ms{user="u-1",site="eu"}'), 14);
    assert.equal(sample(text, 'vmshadow_user_rtt_ms{user="u-1",site="us"}'), null);
  });

  it('counts an ended migration once by outcome with its bytes, and ignores running ones', async () => {
    const m = createMetrics();
    const done = job('job-1', 'vm-1', 'us', 'eu', 'completed', T0);
    m.migrationEnded(job('job-0', 'vm-1', 'us', 'eu', 'running', T0));
    m.migrationEnded(done);
    m.migrationEnded(done);
    const q = job('job-2', 'vm-2', 'us', 'eu', 'queued', T0);
    const cancelled = applyEvent(q, { type: 'superseded', byPlan: 'plan-9' }, T0 + 1);
    assert.ok(cancelled.ok);
    m.migrationEnded(cancelled.record);
    const text = await m.render();
    assert.equal(sample(text, 'vmshadow_migrations_total{outcome="completed"}'), 1);
    assert.equal(sample(text, 'vmshadow_migrations_total{outcome="cancelled"}'), 1);
    assert.equal(sample(text, 'vmshadow_migration_bytes_total'), 4 * 1024 ** 3 * 1.1);
    assert.equal(sample(text, 'vmshadow_migration_duration_seconds_count'), 1);
  });

  it('observes round durations by result, and planning time once per plan', async () => {
    const m = createMetrics();
    m.roundFinished(round('r-1', 1, T0));
    m.roundFinished({ ...round('r-2', 2, T0), error: 'telemetry failed' });
    m.planComputed(0.4);
    m.planComputed(0.4);
    m.planComputed(Number.NaN);
    const text = await m.render();
    assert.equal(sample(text, 'vmshadow_round_duration_seconds_count'), 2);
    assert.equal(sample(text, 'vmshadow_round_duration_seconds_sum'), 3);
    assert.equal(sample(text, 'vmshadow_plan_duration_seconds_count'), 2, 'a round does not count its planning a second time');
    assert.equal(sample(text, 'vmshadow_plan_duration_seconds_sum'), 0.8);
    assert.equal(sample(text, 'vmshadow_plan_duration_seconds_bucket{le="0.5"}'), 2);
    assert.equal(sample(text, 'vmshadow_rounds_total{result="error"}'), 1);
  });

  it('advances collector counters by the difference between cumulative stats, and restarts from a reset', async () => {
    const m = createMetrics();
    m.setCollector({ datagrams: 100, records: 1000, lostRecords: 5, lostDatagrams: 0, decodeErrors: { truncated: 2 } });
    m.setCollector({ datagrams: 150, records: 1500, lostRecords: 7, lostDatagrams: 1, decodeErrors: { truncated: 2, 'bad-version': 1 } });
    let text = await m.render();
    assert.equal(sample(text, 'vmshadow_collector_datagrams_total'), 150);
    assert.equal(sample(text, 'vmshadow_collector_lost_total{unit="record"}'), 7);
    assert.equal(sample(text, 'vmshadow_collector_lost_total{unit="datagram"}'), 1);
    assert.equal(sample(text, 'vmshadow_collector_decode_errors_total{kind="truncated"}'), 2);
    assert.equal(sample(text, 'vmshadow_collector_decode_errors_total{kind="bad-version"}'), 1);
    m.setCollector({ datagrams: 10, records: 90, lostRecords: 0, lostDatagrams: 0, decodeErrors: {} });
    text = await m.render();
    assert.equal(sample(text, 'vmshadow_collector_datagrams_total'), 160, 'a collector restarted counts from zero again');
  });

  it('reports leadership as 0 or 1', async () => {
    const m = createMetrics();
    m.setLeader(true);
    assert.equal(sample(await m.render(), 'vmshadow_leader'), 1);
    m.setLeader(false);
    assert.equal(sample(await m.render(), 'vmshadow_leader'), 0);
  });
});
