// Case (a) of docs/proxy.md end to end: sites joined by the lab's stretched L2 overlay (VXLAN through the
// user-space WAN relay). A real QEMU guest keeps its address and MAC when the QEMU driver live-migrates it;
// QEMU's self-announce re-teaches the bridges, and the proxy (at an edge site, between the user and the
// sites) only has to keep the session open through the pause. The checksummed stream checks every byte
// through: a user-side link cut of 5 s, a migration aborted half-way, and a completed live migration.
//
//   alice (user) ─10 ms─ edge (proxy) ─20 ms─ east (guest first)
//                                    └─20 ms─ west            east ─40 ms─ west (the migration's path)
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { systemClock } from '../core/clock.js';
import { hostId, siteId, vmId, type SiteId } from '../core/ids.js';
import { silentLogger } from '../core/logger.js';
import { createWanTestbed, type WanTestbed } from '../lab/wan/testbed.js';
import type { SpawnedProcess } from '../lab/netns.js';
import type { MigrationRequest, Placement } from '../migration/driver.js';
import { createQemuDriver, type QemuDriver, type QemuHost } from '../migration/qemu-driver.js';
import { macForName, waitForConsole } from '../migration/qemu/process.js';
import { ensureGuest, guestReadyRegex } from '../testing/guest.js';
import { STREAM_CHECK, watchStreamClient, type StreamCheckResult } from '../testing/stream-check.js';
import { untilOutput } from '../core/child-output.js';
import { controlClient, type ControlClient } from './control.js';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));
const EAST: Placement = { siteId: siteId('east'), hostId: hostId('east-1') };
const WEST: Placement = { siteId: siteId('west'), hostId: hostId('west-1') };
const GUEST_IP = '10.77.0.50';
const PORT = 7000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('proxy over a stretched L2 overlay (case a: the VM keeps its address; the proxy keeps the session open)', { timeout: 900_000 }, () => {
  const root = mkdtempSync('/tmp/vmsa-');
  let tb: WanTestbed;
  let driver: QemuDriver;
  let control: ControlClient;
  let edgeAddr = '';
  const hosts = new Map<SiteId, QemuHost>();

  const client = (seconds: number): { proc: SpawnedProcess; watch: ReturnType<typeof watchStreamClient> } => {
    const proc = tb.spawnIn('alice', [process.execPath, STREAM_CHECK, 'client', '--host', edgeAddr, '--port', String(PORT), '--seconds', String(seconds), '--interval-ms', '20', '--frame-bytes', '1000', '--stall-timeout-ms', '30000']);
    return { proc, watch: watchStreamClient(proc.child, (seconds + 60) * 1000) };
  };
  const migration = (jobId: string, from: Placement, to: Placement, capMbps?: number): MigrationRequest => ({
    jobId, vm: vmId('desk'), from, to,
    link: { rttMs: 40, bandwidthMbps: 200, foregroundShare: 0.2, lossPct: 0 },
    shape: { memoryMiB: 128, dirtyRateMiBps: 0, workingSetMiB: 1, diskGiB: 0 },
    storage: 'shared',
    policy: { maxDowntimeMs: 300, maxDowntimeCeilingMs: 2000, postCopyAllowed: false, stallTimeoutMs: 60_000, onStall: ['abort'], tls: false, deadlineMs: 300_000 },
    ...(capMbps === undefined ? {} : { bandwidthCapMbps: capMbps }),
  });
  const assertIntact = (r: StreamCheckResult, what: string): void => {
    assert.equal(r.end, 'completed', `${what}: ${JSON.stringify(r)}`);
    assert.ok(r.intact, `${what}: nothing lost, duplicated, reordered or corrupted: ${JSON.stringify(r)}`);
    assert.equal(r.framesVerified, r.framesSent, `${what}: every frame came back`);
  };

  before(async () => {
    const guest = await ensureGuest();
    tb = await createWanTestbed({
      sites: [{ name: 'east' }, { name: 'west' }, { name: 'edge' }],
      users: [{ name: 'alice' }],
      links: [
        { a: 'alice', b: 'edge', rttMs: 10 },
        { a: 'edge', b: 'east', rttMs: 20 },
        { a: 'edge', b: 'west', rttMs: 20 },
        { a: 'east', b: 'west', rttMs: 40, rateMbps: 200 },
      ],
      stateDir: join(root, 'state'),
    });
    edgeAddr = tb.siteAddress('edge');
    for (const p of [EAST, WEST]) {
      hosts.set(p.siteId, { placement: p, netns: tb.siteNs(p.siteId), migrationAddress: tb.siteAddress(p.siteId), workDir: join(root, p.siteId) });
    }
    driver = createQemuDriver({
      hostFor: (p) => hosts.get(p.siteId) ?? assert.fail(`no host for ${p.siteId}`),
      prepareHost: async (host) => tb.addTap(host.placement.siteId, 'tap-desk'),
      releaseHost: async (host) => {
        await tb.execIn(host.placement.siteId, ['ip', 'link', 'del', 'tap-desk']).catch(() => undefined);
      },
      // The migration crosses only this test's namespaces; TLS is the QEMU driver's own test's subject.
      tls: null,
      clock: systemClock,
      log: silentLogger,
      pollMs: 100,
      cpuFreeCores: () => 0,
    });
    const spec = await driver.launchVm({
      name: 'desk', memoryMiB: 128, vcpu: 1, kernel: guest.kernel, initrd: guest.initrd, tcgTbSizeMiB: 32,
      guest: { ipCidr: `${GUEST_IP}/24` },
      nics: [{ mac: macForName('desk'), tap: 'tap-desk' }],
    }, EAST);
    await waitForConsole(spec.serialLogPath, guestReadyRegex('desk'), 180_000);

    const routesFile = join(root, 'routes.json');
    writeFileSync(routesFile, JSON.stringify([{ kind: 'set', service: 'desk', generation: 1, listen: { host: edgeAddr, port: PORT }, backends: [{ host: GUEST_IP, port: 7 }] }]));
    const sock = join(root, 'proxy.sock');
    const proxy = tb.spawnIn('edge', [process.execPath, MAIN, '--routes', routesFile, '--control', sock]);
    await untilOutput(proxy.child, /"event":"ready"/, 30_000, 'the proxy');
    control = controlClient({ path: sock });
  });

  after(async () => {
    for (const p of [EAST, WEST]) await driver?.destroyVm(vmId('desk'), p).catch(() => undefined);
    await tb?.destroy();
    rmSync(root, { recursive: true, force: true });
  });

  it('a user-side link cut for 5 s: the session survives (or closes cleanly), never a corrupted byte', async (t) => {
    const c = client(14);
    await c.watch.connected;
    await sleep(1500);
    const before = c.watch.progress()?.framesVerified ?? 0;
    await tb.setLink('alice', 'edge', { lossPct: 100 });
    await sleep(5000);
    await tb.setLink('alice', 'edge', { lossPct: 0 });
    const r = await c.watch.result;
    t.diagnostic(`after the cut: ended ${r.end}, ${r.framesVerified}/${r.framesSent} frames verified, longest stall ${r.longestStallMs.toFixed(0)} ms`);
    assert.ok(r.intact, `nothing corrupted, lost or duplicated: ${JSON.stringify(r)}`);
    assert.ok(['completed', 'closed', 'reset'].includes(r.end), `survived or closed cleanly (${r.end})`);
    assert.ok(r.longestStallMs >= 4500, `the cut was felt (${r.longestStallMs.toFixed(0)} ms)`);
    // It did survive here: TCP retransmits through the cut, and the proxy's idle timeout (1 h) does not fire.
    assertIntact(r, 'session through the cut');
    assert.ok(r.framesVerified > before + 100, 'the session flowed on after the link came back');
  });

  it('a migration aborted half-way leaves the VM at the source and the session flowing', async (t) => {
    const c = client(120);
    await c.watch.connected;
    await sleep(1000);
    // Capped so that it is still copying memory when aborted.
    const h = await driver.start(migration('proxy-a-abort', EAST, WEST, 20));
    for await (const p of h.progress()) {
      if (p.phase === 'precopy' && p.transferredBytes > 4 * 2 ** 20) break;
    }
    await h.abort('test: abort half-way');
    const out = await h.done;
    assert.equal(out.status, 'aborted');
    assert.deepEqual(out.runningAt, EAST);
    const at = c.watch.progress()?.framesVerified ?? 0;
    await sleep(2000);
    c.proc.child.kill('SIGTERM');
    const r = await c.watch.result;
    t.diagnostic(`aborted after ${(out.durationMs / 1000).toFixed(1)} s; stream: ${r.framesVerified} frames, longest stall ${r.longestStallMs.toFixed(0)} ms`);
    assertIntact(r, 'session through an aborted migration');
    assert.ok(r.framesVerified > at + 50, 'still flowing after the abort');
  });

  it('a live migration to the far site: the session keeps flowing through the proxy with nothing lost', async (t) => {
    const c = client(300);
    await c.watch.connected;
    await sleep(1000);
    const h = await driver.start(migration('proxy-a-move', EAST, WEST));
    const out = await h.done;
    assert.equal(out.status, 'completed', out.reason ?? '');
    assert.deepEqual(out.runningAt, WEST);
    const at = c.watch.progress()?.framesVerified ?? 0;
    for (let i = 0; i < 100 && (c.watch.progress()?.framesVerified ?? 0) < at + 100; i++) await sleep(100);
    c.proc.child.kill('SIGTERM');
    const r = await c.watch.result;
    t.diagnostic(`migration ${(out.durationMs / 1000).toFixed(1)} s, downtime ${out.downtimeMs ?? '?'} ms; stream: ${r.framesVerified} frames, longest stall ${r.longestStallMs.toFixed(0)} ms, rtt median ${r.rttMedianMs?.toFixed(1)} ms`);
    assertIntact(r, 'session through the live migration');
    assert.ok(r.framesVerified > at + 90, 'flowing at the new site');
    const s = await control.stats();
    assert.equal(s.sessionsTotal, 3);
    assert.equal(s.errors['backend-reset'] + s.errors['user-reset'] + s.errors['idle-timeout'], 0, JSON.stringify(s.errors));
    // A new session reaches the guest at its new site.
    const fresh = client(0.5);
    assertIntact(await fresh.watch.result, 'a new session after the move');
  });
});
