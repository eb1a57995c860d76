// End to end (issue 5, deliverable 4): a desktop follows its user, and the user feels it. A lab of three
// sites from the real RTTs — layla in Bahrain near me-south-1 (3 ms), her desktop VM (a real QEMU guest) at
// eu-west-1 (95.5 ms from me-south-1), us-east-1 beside them — with the connection proxy at me-south-1. Her
// viewer watches a video on the desktop through the proxy's stable address and a checksummed stream runs
// through the proxy to the guest's echo port; the VM is live-migrated to me-south-1 and the desktop follows
// it at switch-over (runFollowTheUser in scenario.ts).
import { after, before, describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadLatencyData } from '../sim/latency-data.js';
import { findLink, parseLabConfig, type LabConfig } from './config.js';
import { missingDesktopTools } from './desktop/tools.js';
import { formatSummary } from './desktop/update-stats.js';
import { ensureGuest } from './guest.js';
import { labUp, type Lab, type LabDownReport } from './lab.js';
import { isRoot, listNamespaces, nsPrefix } from './netns.js';
import { runFollowTheUser, scenarioStopped, summarizeFollowTheUser, type FollowEvent, type FollowTheUserReport } from './scenario.js';

const skip = !isRoot() ? 'needs root (network namespaces, QEMU)' : (missingDesktopTools() ?? false);
const data = loadLatencyData(fileURLToPath(new URL('../../../data/', import.meta.url)));

const FAR = 'eu-west-1';
const NEAR = 'me-south-1';
const USER = 'layla';
const VM = 'desk1';

describe('a desktop follows its user: migrated to her site, her frame update time falls by the RTT saved and nothing drops', { skip, timeout: 300_000 }, () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'vms-e2e-'));
  const events: { atMs: number; e: FollowEvent }[] = [];
  const t0 = Date.now();
  let config: LabConfig;
  let lab: Lab | undefined;
  let r: FollowTheUserReport;
  let down: LabDownReport | undefined;

  before(async () => {
    config = parseLabConfig({
      sites: [FAR, NEAR, 'us-east-1'],
      users: [{ name: USER, near: NEAR }],
      // The lab's default guest size (a 64 MiB one exited while booting), a small working set rewritten as it runs.
      vms: [{ name: VM, site: FAR, user: USER, memoryMiB: 128, diskMiB: 0, dirty: { workingSetMiB: 4, rateMiBps: 1 } }],
      // A 25 Mbit/s access link: each 307 KB video frame takes ~100 ms to arrive, far and near alike, so the
      // update time is the RTT plus that (bandwidth-bound both sides), and the viewer's pipeline needs about
      // half the CPU a 50 Mbit/s link asks for, which a busy machine has.
      links: { userRateMbps: 25 },
    }, data);
    lab = await labUp(config, { stateDir, guest: await ensureGuest(), bootTimeoutMs: 120_000 });
    r = await runFollowTheUser(lab, {
      desktopVm: VM, user: USER, farSite: FAR, nearSite: NEAR,
      migrationTimeoutMs: 120_000,
      onEvent: (e) => events.push({ atMs: Date.now() - t0, e }),
    });
  }, { timeout: 240_000 });

  after(async () => {
    down = await lab?.down();
    rmSync(stateDir, { recursive: true, force: true });
  });

  it(`the lab's links come from the data: ${FAR} ≥ 60 ms from the user, ${NEAR} a few ms; pings agree`, (t: TestContext) => {
    const far = findLink(config, USER, FAR)!.rttMs;
    const near = findLink(config, USER, NEAR)!.rttMs;
    const site = findLink(config, FAR, NEAR)!.rttMs;
    t.diagnostic(`configured: ${USER}↔${FAR} ${far} ms, ${USER}↔${NEAR} ${near} ms, ${NEAR}↔${FAR} ${site} ms`);
    t.diagnostic(`display path RTT (user → proxy at ${r.proxySite} → desktop): configured far ${r.rttMs.configured.far} ms, near ${r.rttMs.configured.near} ms; ` +
      `pinged far ${r.rttMs.measured.far.accessMs.toFixed(1)} + ${r.rttMs.measured.far.backendMs.toFixed(1)} ms, near ${r.rttMs.measured.near.accessMs.toFixed(1)} + ${r.rttMs.measured.near.backendMs.toFixed(2)} ms`);
    assert.ok(far >= 60 && r.rttMs.configured.far >= 60, `far ${far} ms`);
    assert.ok(near <= 10 && r.rttMs.configured.near <= 10, `near ${near} ms`);
    assert.equal(r.rttMs.configured.saved, site);
    // The emulator delays whole packets: a ping sees the configured RTT, plus a little on a busy machine.
    for (const [what, got, want] of [['far', r.rttMs.measured.far.totalMs, r.rttMs.configured.far], ['near', r.rttMs.measured.near.totalMs, r.rttMs.configured.near]] as const) {
      assert.ok(got >= want - 2.5 && got <= want + 8, `${what}: pinged ${got.toFixed(1)} ms, configured ${want} ms`);
    }
  });

  it(`the VM is live-migrated to ${NEAR} through lab.driver and the desktop re-attached there at switch-over`, (t: TestContext) => {
    const m = r.migration;
    t.diagnostic(`migration: ${m.outcome.status} in ${(m.outcome.durationMs / 1000).toFixed(1)} s, ${(m.outcome.transferredBytes / 2 ** 20).toFixed(1)} MiB, downtime ${String(m.outcome.downtimeMs)} ms; ` +
      `desktop moved on ${String(m.movedOn)} at ${m.movedAtMs?.toFixed(0)} ms (${m.move?.reattachMs.toFixed(0)} ms of ip commands, reachable after ${m.move?.reachableMs?.toFixed(0)} ms)`);
    for (const { atMs, e } of events) {
      if (e.kind === 'viewer-sample') t.diagnostic(`  ${(e.elapsedMs / 1000).toFixed(1)} s into the migration, the last 2 s: ${formatSummary(e.recent)}`);
      else if (e.kind === 'desktop-moved') t.diagnostic(`  desktop re-attached at ${e.toSite} on ${e.on} (${e.reattachMs.toFixed(0)} ms)`);
      else if (e.kind === 'migration-started' || e.kind === 'migration-done') t.diagnostic(`  ${e.kind} (${(atMs / 1000).toFixed(1)} s into the test)`);
    }
    assert.equal(m.outcome.status, 'completed', m.outcome.reason ?? '');
    assert.equal(r.migrated, true);
    assert.equal(lab!.vmPlacement(VM).siteId, NEAR);
    assert.equal(m.movedOn, 'switching-over', 'the driver announced the switch-over before its outcome');
    assert.ok(m.movedAtMs !== null && m.movedAtMs <= m.outcome.durationMs + 2000, `moved at ${m.movedAtMs} ms, migration ${m.outcome.durationMs} ms`);
    assert.ok(events.some(({ e }) => e.kind === 'migration-progress' && e.progress.phase === 'precopy'), 'progress was reported');
  });

  it('the user\'s frame update time falls by at least the RTT saved (0.9 × it: noise) and updates/s rise', (t: TestContext) => {
    t.diagnostic(`before (desktop at ${FAR}): ${formatSummary(r.before)}`);
    t.diagnostic(`after  (desktop at ${NEAR}): ${formatSummary(r.after)}`);
    const saved = r.rttMs.configured.saved;
    t.diagnostic(`update time p50 ${r.frameTimeBeforeMs?.toFixed(1)} → ${r.frameTimeAfterMs?.toFixed(1)} ms: −${r.frameTimeSavedMs?.toFixed(1)} ms for ${saved} ms of RTT saved; ` +
      `updates/s ${r.updatesPerSBefore.toFixed(1)} → ${r.updatesPerSAfter.toFixed(1)}, refresh rate ${r.refreshRateGainPct !== null && r.refreshRateGainPct >= 0 ? '+' : ''}${r.refreshRateGainPct?.toFixed(0)} %`);
    const sum = summarizeFollowTheUser(r);
    t.diagnostic(`numbers: RTT far ${r.rttMs.configured.far} / near ${r.rttMs.configured.near} ms (pinged ${r.rttMs.measured.far.totalMs.toFixed(1)} / ${r.rttMs.measured.near.totalMs.toFixed(1)}); ` +
      `update time p50 ${sum.frameTimeBeforeMs?.toFixed(1)} → ${sum.frameTimeAfterMs?.toFixed(1)} ms; updates/s ${sum.updatesPerSBefore.toFixed(1)} → ${sum.updatesPerSAfter.toFixed(1)} (${sum.refreshRateGainPct?.toFixed(0)} %); ` +
      `migration ${sum.migrationS.toFixed(1)} s, downtime ${String(sum.downtimeMs)} ms; stream's longest stall ${sum.longestStreamStallMs.toFixed(0)} ms; ` +
      `video drew ${r.videoFps.before?.toFixed(1)} / ${r.videoFps.after?.toFixed(1)} frames/s`);
    assert.deepEqual([sum.migrated, sum.sessionDropped, sum.bytesLost, sum.rttSavedMs], [true, false, 0, r.rttMs.configured.saved]);
    assert.ok(r.frameTimeSavedMs !== null, 'updates were measured before and after');
    // The access link (25 Mbit/s) is the bottleneck before and after, so each update is RTT + the same
    // transfer time and the drop is the RTT saved. The desktop helper found the saving equal to the RTT
    // saved within ~2 ms of noise over a rate-limited link (73–75 ms of 75): 0.9 × leaves room for a busy machine.
    assert.ok(r.frameTimeSavedMs >= 0.9 * saved, `update time fell by ${r.frameTimeSavedMs.toFixed(1)} ms, the RTT saved is ${saved} ms`);
    assert.ok(r.frameTimeBeforeMs! >= r.rttMs.configured.far, `far, each update takes at least the RTT (${r.frameTimeBeforeMs} ms)`);
    assert.ok(r.updatesPerSAfter > 1.3 * r.updatesPerSBefore, `updates/s ${r.updatesPerSBefore} → ${r.updatesPerSAfter}`);
  });

  it('the RFB session never drops: one TCP connection through the proxy before, across and after the move', () => {
    assert.equal(r.rfb.viewerClosedReason, null);
    assert.equal(r.rfb.before.length, 1, JSON.stringify(r.rfb.before));
    assert.equal(r.rfb.after.length, 1, JSON.stringify(r.rfb.after));
    assert.equal(r.rfb.after[0]!.id, r.rfb.before[0]!.id, 'the same proxy session');
    assert.equal(r.rfb.after[0]!.user, r.rfb.before[0]!.user, 'from the same user address and port');
    assert.equal(r.rfb.after[0]!.state, 'open');
    assert.equal(r.rfb.sameConnection, true);
    assert.ok(r.rfb.updatesAcross > 10, `updates kept coming over it (${r.rfb.updatesAcross})`);
    assert.equal(r.sessionDropped, false);
  });

  it('the checksummed stream through the proxy to the guest loses, duplicates and corrupts nothing', (t: TestContext) => {
    const s = r.stream;
    t.diagnostic(`stream: ${s.end}, ${s.framesVerified}/${s.framesSent} frames verified, longest stall ${s.longestStallMs.toFixed(0)} ms, rtt median ${s.rttMedianMs?.toFixed(1)} ms`);
    assert.equal(s.end, 'completed', JSON.stringify(s));
    assert.equal(s.intact, true);
    assert.deepEqual([s.framesLost, s.framesDuplicated, s.framesReordered, s.corruptions], [0, 0, 0, 0]);
    assert.equal(s.framesVerified, s.framesSent);
    assert.equal(r.streamBytesLost, 0);
    assert.ok(s.framesSent > 200, `the stream ran through the whole scenario (${s.framesSent} frames)`);
  });

  it('what the scenario started is stopped when it returns, and lab.down() leaves nothing of the run', async (t: TestContext) => {
    assert.deepEqual(r.cleanupErrors, []);
    assert.ok(scenarioStopped(r), `pids ${r.started.pids.join(', ')}`);
    assert.ok(!(await listNamespaces()).includes(r.started.desktopNs), `${r.started.desktopNs} is gone`);
    down = await lab!.down();
    t.diagnostic(`whole run: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    assert.deepEqual(down.errors, []);
    assert.deepEqual((await listNamespaces()).filter((n) => n.startsWith(nsPrefix(lab!.runId))), []);
    assert.ok(!existsSync(join(stateDir, 'lab.json')));
  });
});
