// The QEMU driver runs the same contract as the simulated one, with real TCG guests in two site namespaces
// joined by the emulated WAN link (20 ms, 40 Mbit/s). Cutting the link is real (100 % loss at the relay), and a
// "crash" is the driver letting go of QEMU (detach) before a fresh driver takes over.
import { after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { systemClock } from '../core/clock.js';
import { hostId, siteId, vmId, type SiteId, type VmId } from '../core/ids.js';
import { silentLogger } from '../core/logger.js';
import { createWanTestbed, type WanTestbed } from '../lab/wan/testbed.js';
import { ensureGuest, guestReadyRegex, type GuestImage } from '../testing/guest.js';
import { runDriverContract, type DriverHarness } from './driver.contract.js';
import type { MigrationPolicy, MigrationRequest, Placement } from './driver.js';
import { createQemuDriver, type QemuDriver, type QemuHost } from './qemu-driver.js';
import { waitForConsole } from './qemu/process.js';
import { ensureSiteCredentials, type SiteCredentials } from './tls.js';

const EAST: Placement = { siteId: siteId('east'), hostId: hostId('east-1') };
const WEST: Placement = { siteId: siteId('west'), hostId: hostId('west-1') };
const LINK = { rttMs: 20, rateMbps: 40 };

interface World {
  root: string;
  tb: WanTestbed;
  guest: GuestImage;
  creds: Map<string, SiteCredentials>;
  hosts: Map<SiteId, QemuHost>;
}

let worldP: Promise<World> | null = null;
function world(): Promise<World> {
  worldP ??= (async () => {
    const root = mkdtempSync('/tmp/vmsc-');
    const guest = await ensureGuest();
    const tb = await createWanTestbed({
      sites: [{ name: 'east' }, { name: 'west' }],
      links: [{ a: 'east', b: 'west', ...LINK }],
      stateDir: join(root, 'state'),
    });
    const creds = await ensureSiteCredentials(join(root, 'tls'), ['east', 'west']);
    const hosts = new Map<SiteId, QemuHost>();
    for (const p of [EAST, WEST]) {
      hosts.set(p.siteId, { placement: p, netns: tb.siteNs(p.siteId), migrationAddress: tb.siteAddress(p.siteId), workDir: join(root, p.siteId) });
    }
    return { root, tb, guest, creds, hosts };
  })();
  return worldP;
}

after(async () => {
  if (worldP === null) return;
  const w = await worldP;
  await w.tb.destroy();
  rmSync(w.root, { recursive: true, force: true });
});

function newDriver(w: World): QemuDriver {
  return createQemuDriver({
    hostFor: (p) => w.hosts.get(p.siteId) ?? assert.fail(`no host for ${p.siteId}`),
    tls: (s) => w.creds.get(s) ?? assert.fail(`no credentials for ${s}`),
    clock: systemClock,
    log: silentLogger,
    cpuFreeCores: () => 0,
    noTrafficTimeoutMs: 5000,
  });
}

async function harness(): Promise<DriverHarness> {
  const w = await world();
  let driver = newDriver(w);
  const requests = new Map<VmId, MigrationRequest>();
  let cut = false;
  const h: DriverHarness = {
    get driver() {
      return driver;
    },
    async request(o = {}) {
      const name = `c${randomBytes(3).toString('hex')}`;
      const stalling = o.workload === 'stalling';
      const dirty = stalling ? { workingSetMiB: 32, rateMiBps: 16 } : { workingSetMiB: 4, rateMiBps: 1 };
      const spec = await driver.launchVm({
        name, memoryMiB: 128, vcpu: 1, kernel: w.guest.kernel, initrd: w.guest.initrd, tcgTbSizeMiB: 32,
        guest: { dirty, checkIntervalMs: 1000 },
      }, EAST);
      await waitForConsole(spec.serialLogPath, guestReadyRegex(name), 90_000);
      const policy: MigrationPolicy = {
        maxDowntimeMs: 300, maxDowntimeCeilingMs: 2000, postCopyAllowed: false, stallTimeoutMs: 60_000,
        onStall: ['raise-downtime', 'abort'], tls: true, deadlineMs: 300_000, ...o.policy,
      };
      const req: MigrationRequest = {
        jobId: `job-${name}`, vm: vmId(name), from: EAST, to: WEST,
        link: { rttMs: LINK.rttMs, bandwidthMbps: LINK.rateMbps, foregroundShare: 0.2, lossPct: 0 },
        shape: { memoryMiB: 128, dirtyRateMiBps: dirty.rateMiBps, workingSetMiB: dirty.workingSetMiB, diskGiB: 0 },
        storage: 'shared', policy,
      };
      requests.set(req.vm, req);
      return req;
    },
    async where(vm) {
      const req = requests.get(vm) ?? assert.fail(`no request for ${vm}`);
      const p = await driver.inspect(req);
      const out: Placement[] = [];
      if (p.source === 'running') out.push(req.from);
      if (p.destination === 'running') out.push(req.to);
      return out;
    },
    async cutLink() {
      cut = true;
      await w.tb.setLink('east', 'west', { lossPct: 100 });
    },
    async reopen() {
      await driver.detach();
      driver = newDriver(w);
      return driver;
    },
    async cleanup() {
      await driver.detach();
      if (cut) await w.tb.setLink('east', 'west', { lossPct: 0 });
      for (const vm of requests.keys()) {
        for (const at of [EAST, WEST]) await driver.destroyVm(vm, at, { removeDisk: true }).catch(() => undefined);
      }
    },
  };
  return h;
}

runDriverContract('QEMU driver (real guests, emulated WAN)', harness, { timeoutMs: 180_000, stallTimeoutMs: 4000, deadlineMs: 6000 });
