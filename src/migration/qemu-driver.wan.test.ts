// A real QEMU guest migrated between two site namespaces joined by the emulated WAN link (user-space relay:
// delay and rate), with its disk mirrored over NBD and every stream under TLS. The guest keeps its address on
// the stretched L2 segment, verifies its own memory after the move, and answers from its new site.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { systemClock } from '../core/clock.js';
import { hostId, siteId, vmId, type SiteId } from '../core/ids.js';
import { silentLogger } from '../core/logger.js';
import type { MigrationProgress, Placement } from './driver.js';
import { createQemuDriver, type QemuDriver, type QemuHost } from './qemu-driver.js';
import { macForName, readConsole, waitForConsole } from './qemu/process.js';
import { ensureSiteCredentials } from './tls.js';
import { ensureGuest, guestReadyRegex, summarizeMemtest } from '../testing/guest.js';
import { createWanTestbed, type WanTestbed } from '../lab/wan/testbed.js';

const run = promisify(execFile);
const EAST: Placement = { siteId: siteId('east'), hostId: hostId('east-1') };
const WEST: Placement = { siteId: siteId('west'), hostId: hostId('west-1') };
const RTT_MS = 80;
const RATE_MBPS = 100;

/** Median TCP connect time from a namespace to the guest's echo port, in ms (connect = one round trip). */
async function connectRttMs(tb: WanTestbed, from: string, ip: string): Promise<number> {
  const script = `const net=require('net');const t=[];let n=0;const go=()=>{const s=process.hrtime.bigint();const c=net.connect(7,'${ip}',()=>{t.push(Number(process.hrtime.bigint()-s)/1e6);c.destroy();if(++n<5)go();else{t.sort((a,b)=>a-b);console.log(t[2]);}});c.on('error',e=>{console.error(e.message);process.exit(1);});c.setTimeout(5000,()=>{console.error('timeout');process.exit(1);});};go();`;
  const r = await tb.execIn(from, [process.execPath, '-e', script], { timeoutMs: 30_000 });
  return Number(r.stdout.trim());
}

describe('QEMU driver across an emulated WAN link (80 ms, 100 Mbit/s)', { timeout: 600_000 }, () => {
  const root = mkdtempSync('/tmp/vmsw-');
  let tb: WanTestbed;
  let driver: QemuDriver;
  const hosts = new Map<SiteId, QemuHost>();
  const GUEST_IP = '10.77.0.50';

  before(async () => {
    const guest = await ensureGuest();
    tb = await createWanTestbed({
      sites: [{ name: 'east' }, { name: 'west' }],
      links: [{ a: 'east', b: 'west', rttMs: RTT_MS, rateMbps: RATE_MBPS }],
      stateDir: join(root, 'state'),
    });
    const creds = await ensureSiteCredentials(join(root, 'tls'), ['east', 'west']);
    for (const p of [EAST, WEST]) {
      hosts.set(p.siteId, { placement: p, netns: tb.siteNs(p.siteId), migrationAddress: tb.siteAddress(p.siteId), workDir: join(root, p.siteId) });
    }
    driver = createQemuDriver({
      hostFor: (p) => hosts.get(p.siteId) ?? assert.fail(`no host for ${p.siteId}`),
      async prepareHost(host) {
        await tb.addTap(host.placement.siteId, 'tap-desk');
      },
      async releaseHost(host) {
        await tb.execIn(host.placement.siteId, ['ip', 'link', 'del', 'tap-desk']).catch(() => undefined);
      },
      tls: (s) => creds.get(s) ?? assert.fail(`no credentials for ${s}`),
      clock: systemClock,
      log: silentLogger,
      cpuFreeCores: () => 0,
    });
    await run('mkdir', ['-p', join(root, 'east')]);
    await run('qemu-img', ['create', '-q', '-f', 'qcow2', join(root, 'east', 'desk.qcow2'), '32M']);
    const spec = await driver.launchVm({
      name: 'desk', memoryMiB: 128, vcpu: 1, kernel: guest.kernel, initrd: guest.initrd, tcgTbSizeMiB: 32,
      guest: { ipCidr: `${GUEST_IP}/24`, dirty: { workingSetMiB: 8, rateMiBps: 2 }, checkIntervalMs: 500, diskWriteBlocksPerS: 20 },
      disk: { path: join(root, 'east', 'desk.qcow2'), format: 'qcow2', nodeName: 'disk0' },
      nics: [{ mac: macForName('desk'), tap: 'tap-desk' }],
    }, EAST);
    await waitForConsole(spec.serialLogPath, guestReadyRegex('desk'), 90_000);
  });

  after(async () => {
    for (const p of [EAST, WEST]) await driver.destroyVm(vmId('desk'), p, { removeDisk: true }).catch(() => undefined);
    await tb.destroy();
    rmSync(root, { recursive: true, force: true });
  });

  it('moves the desktop with its disk to the far site; the link paces it, memory verifies, and the guest answers locally there', async (t) => {
    const farBefore = await connectRttMs(tb, 'west', GUEST_IP);
    assert.ok(farBefore >= RTT_MS - 2, `from west the guest is a WAN round trip away before the move (${farBefore} ms)`);

    const h = await driver.start({
      jobId: 'wan-job-1', vm: vmId('desk'), from: EAST, to: WEST,
      link: { rttMs: RTT_MS, bandwidthMbps: RATE_MBPS, foregroundShare: 0.2, lossPct: 0 },
      shape: { memoryMiB: 128, dirtyRateMiBps: 2, workingSetMiB: 8, diskGiB: 32 / 1024 },
      storage: 'mirror',
      policy: { maxDowntimeMs: 300, maxDowntimeCeilingMs: 2000, postCopyAllowed: false, stallTimeoutMs: 30_000, onStall: ['raise-downtime', 'abort'], tls: true, deadlineMs: 300_000 },
    });
    const seen: MigrationProgress[] = [];
    for await (const p of h.progress()) seen.push(p);
    const out = await h.done;
    assert.equal(out.status, 'completed', out.reason ?? '');
    assert.deepEqual(out.runningAt, WEST);
    t.diagnostic(`migration over ${RTT_MS} ms / ${RATE_MBPS} Mbit/s: ${(out.durationMs / 1000).toFixed(1)} s, ${(out.transferredBytes / 2 ** 20).toFixed(1)} MiB, downtime ${out.downtimeMs ?? '?'} ms`);
    // The stream was capped at 80 % of the link: it cannot have moved its bytes faster than that.
    const floorMs = (out.transferredBytes * 8) / (RATE_MBPS * 1e6) * 1000;
    assert.ok(out.durationMs >= floorMs * 0.9, `took ${out.durationMs} ms for ${out.transferredBytes} bytes (link floor ${Math.round(floorMs)} ms)`);
    assert.ok(seen.some((p) => p.phase === 'mirroring-disk') && seen.some((p) => p.phase === 'precopy'));
    assert.ok(seen.some((p) => p.etaS !== null && p.etaS > 0), 'an ETA was reported');

    const spec = driver.instanceAt(vmId('desk'), WEST);
    assert.ok(spec !== null);
    const deadline = Date.now() + 30_000;
    for (;;) {
      const s = summarizeMemtest(await readConsole(spec.serialLogPath));
      assert.equal(s.stalePages, 0);
      if (s.okChecks >= 2) break;
      assert.ok(Date.now() < deadline, 'memtest checked at the destination');
      await new Promise((r) => setTimeout(r, 250));
    }
    const nearAfter = await connectRttMs(tb, 'west', GUEST_IP);
    // Local means no WAN round trip; a TCG guest on a busy machine still takes a few ms to accept.
    assert.ok(nearAfter < RTT_MS / 2, `from west the guest answers locally after the move (${nearAfter} ms, ${farBefore} ms before)`);
  });
});
