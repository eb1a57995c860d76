// Case (b) of docs/proxy.md for real, in network namespaces: two sites in different subnets (10.1.0.0/16 and
// 10.2.0.0/16), a routed proxy namespace between them and the user, and a VM with a stable private address
// (172.30.0.x) that each site maps 1:1 to a site address by a stateless nftables rewrite. The proxy's backend
// connection targets the private address; when the VM moves, the proxy re-points the path (one nft map
// element) and the established session keeps flowing, checked by the checksummed stream.
//
//   user ns ── 192.168.100.0/24 ── proxy ns ── 10.1.0.0/24 ── site-a ns [br0 172.30.0.1, VM here first]
//                                           └─ 10.2.0.0/24 ── site-b ns [br0 172.30.0.1, same gateway MAC]
//
// Two VMs: a namespace whose link is moved from site A's bridge to site B's (its kernel keeps the TCP state,
// as a migrated guest does), and a real QEMU guest live-migrated from site A to site B by the QEMU driver.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { systemClock } from '../core/clock.js';
import { hostId, siteId, vmId, type SiteId } from '../core/ids.js';
import { silentLogger } from '../core/logger.js';
import { NetnsRun, runIp, type SpawnedProcess } from '../lab/netns.js';
import type { MigrationOutcome, Placement } from '../migration/driver.js';
import { createQemuDriver, type QemuDriver, type QemuHost } from '../migration/qemu-driver.js';
import { macForName, waitForConsole } from '../migration/qemu/process.js';
import { ensureGuest, guestReadyRegex } from '../testing/guest.js';
import { STREAM_CHECK, watchStreamClient, type StreamCheckResult } from '../testing/stream-check.js';
import { untilOutput } from '../core/child-output.js';
import { controlClient, type ControlClient } from './control.js';
import { runNft, siteFloatingIpScript } from './nat.js';
import type { RouteUpdate } from './routes.js';

const MAIN = fileURLToPath(new URL('./main.js', import.meta.url));
const PROXY_ADDR = '192.168.100.1';
const GATEWAY_MAC = '02:00:5e:00:01:01';
const SITE_A: Placement = { siteId: siteId('site-a'), hostId: hostId('a-1') };
const SITE_B: Placement = { siteId: siteId('site-b'), hostId: hostId('b-1') };
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** VM → its private address and its address at each site. */
const VMS = {
  ns: { vip: '172.30.0.60', a: '10.1.1.60', b: '10.2.1.60', port: 7000 },
  qemu: { vip: '172.30.0.50', a: '10.1.1.50', b: '10.2.1.50', port: 7001 },
} as const;

const route = (service: keyof typeof VMS, generation: number, via: string): RouteUpdate => ({
  kind: 'set', service, generation, listen: { host: PROXY_ADDR, port: VMS[service].port }, backends: [{ host: VMS[service].vip, port: 7, via }],
});

describe('proxy across sites in different subnets (case b: stateless address rewrite, re-pointed at switch-over)', { timeout: 600_000 }, () => {
  const root = mkdtempSync('/tmp/vmsp-');
  let run: NetnsRun;
  const ns = { user: '', proxy: '', a: '', b: '', vm: '' };
  let control: ControlClient;
  let proxy: SpawnedProcess;

  const sh = async (n: string, ...cmds: string[][]): Promise<void> => {
    for (const c of cmds) await run.execIn(n, c);
  };

  /** Starts a stream client in the user namespace against a service of the proxy. */
  const client = (port: number, seconds: number, intervalMs = 20): { proc: SpawnedProcess; watch: ReturnType<typeof watchStreamClient> } => {
    const proc = run.spawnIn(ns.user, [process.execPath, STREAM_CHECK, 'client', '--host', PROXY_ADDR, '--port', String(port), '--seconds', String(seconds), '--interval-ms', String(intervalMs), '--frame-bytes', '1000', '--stall-timeout-ms', '20000']);
    return { proc, watch: watchStreamClient(proc.child, (seconds + 40) * 1000) };
  };

  /** Sends a route update and waits until the proxy reports the re-point applied; returns ms from `since`. */
  const repoint = async (u: RouteUpdate, since: number): Promise<number> => {
    const before = (await control.stats()).repoints.applied;
    assert.deepEqual((await control.apply(u)).map((o) => o.status), ['applied']);
    for (let i = 0; i < 500; i++) {
      const s = await control.stats();
      if (s.repoints.applied > before) return performance.now() - since;
      assert.equal(s.repoints.failed, 0, s.repoints.lastError ?? '');
      await sleep(5);
    }
    return assert.fail('the re-point was not applied within 2.5 s');
  };

  const assertIntact = (r: StreamCheckResult, what: string): void => {
    assert.equal(r.end, 'completed', `${what}: ${JSON.stringify(r)}`);
    assert.ok(r.intact, `${what}: nothing lost, duplicated, reordered or corrupted: ${JSON.stringify(r)}`);
    assert.equal(r.framesVerified, r.framesSent, `${what}: every frame came back`);
  };

  before(async () => {
    run = NetnsRun.create({ stateDir: join(root, 'state') });
    // Short roles: QEMU's launcher takes namespace names of at most 15 characters (vms-<run>-<role>).
    ns.user = await run.addNamespace('u');
    ns.proxy = await run.addNamespace('px');
    ns.a = await run.addNamespace('sa');
    ns.b = await run.addNamespace('sb');
    ns.vm = await run.addNamespace('vm');
    for (const n of Object.values(ns)) {
      // Rewritten sources arrive on interfaces their reverse route does not point at: no reverse-path filter.
      for (const k of ['all', 'default']) {
        await run.sysctl(n, `net.ipv4.conf.${k}.rp_filter`, '0');
        await run.sysctl(n, `net.ipv6.conf.${k}.disable_ipv6`, '1');
      }
    }
    for (const n of [ns.proxy, ns.a, ns.b]) await run.sysctl(n, 'net.ipv4.ip_forward', '1');

    await run.addVeth({ ns: ns.user, name: 'eth0' }, { ns: ns.proxy, name: 'pu' });
    await run.addAddress(ns.user, 'eth0', '192.168.100.2/24');
    await run.addAddress(ns.proxy, 'pu', `${PROXY_ADDR}/24`);
    await run.linkUp(ns.user, 'eth0');
    await run.linkUp(ns.proxy, 'pu');
    for (const [i, site, dev] of [[1, ns.a, 'pa'], [2, ns.b, 'pb']] as const) {
      await run.addVeth({ ns: ns.proxy, name: dev }, { ns: site, name: 'wan' });
      await run.addAddress(ns.proxy, dev, `10.${i}.0.1/24`);
      await run.addAddress(site, 'wan', `10.${i}.0.2/24`);
      await run.linkUp(ns.proxy, dev);
      await run.linkUp(site, 'wan');
      // The site's subnet of VM addresses is routed to the site.
      await run.addRoute(ns.proxy, `10.${i}.1.0/24`, { gateway: `10.${i}.0.2` });
      await run.addRoute(site, 'default', { gateway: `10.${i}.0.1` });
      await run.addBridge(site, 'br0');
      // The VMs' gateway: the same address and MAC at every site (an anycast gateway), so a moved guest's ARP cache stays right.
      await runIp(['link', 'set', 'br0', 'address', GATEWAY_MAC], site);
      await run.addAddress(site, 'br0', '172.30.0.1/24');
      await run.linkUp(site, 'br0');
      await runNft(siteFloatingIpScript({
        lanIf: 'br0',
        mappings: Object.values(VMS).map((v) => ({ vip: v.vip, siteAddress: i === 1 ? v.a : v.b })),
      }), site);
    }
    // The private range needs a route for connect() to pick a source; the rewrite re-routes every packet anyway.
    await sh(ns.proxy, ['ip', 'route', 'add', '172.30.0.0/24', 'via', '10.1.0.2', 'src', PROXY_ADDR]);

    // The namespace VM: its link on site A's bridge, an echo server inside.
    await run.addVeth({ ns: ns.vm, name: 'eth0' }, { ns: ns.a, name: 'vm-desk' });
    await run.addAddress(ns.vm, 'eth0', `${VMS.ns.vip}/24`);
    await run.linkUp(ns.vm, 'eth0');
    await run.addRoute(ns.vm, 'default', { gateway: '172.30.0.1' });
    await run.setMaster(ns.a, 'vm-desk', 'br0');
    await run.linkUp(ns.a, 'vm-desk');
    const echo = run.spawnIn(ns.vm, [process.execPath, STREAM_CHECK, 'echo', '--host', '0.0.0.0', '--port', '7']);
    await new Promise<void>((resolve, reject) => {
      echo.child.stdout?.once('data', () => resolve());
      echo.child.once('exit', (c) => reject(new Error(`echo server exited with ${String(c)}`)));
    });

    const routesFile = join(root, 'routes.json');
    writeFileSync(routesFile, JSON.stringify([route('ns', 1, VMS.ns.a), route('qemu', 1, VMS.qemu.a)]));
    const sock = join(root, 'proxy.sock');
    proxy = run.spawnIn(ns.proxy, [process.execPath, MAIN, '--routes', routesFile, '--control', sock, '--nft-table', 'vmshadow_proxy']);
    await untilOutput(proxy.child, /"event":"ready"/, 30_000, 'the proxy');
    control = controlClient({ path: sock });
    // The initial re-points (one per VM) run in the background of the proxy's start.
    for (let i = 0; i < 200 && (await control.stats()).repoints.applied < 2; i++) await sleep(10);
  });

  after(async () => {
    await run?.destroy();
    rmSync(root, { recursive: true, force: true });
  });

  it('keeps a session flowing when its VM moves to the other subnet: re-pointed within 1 s, not a byte lost or repeated', async (t) => {
    const c = client(VMS.ns.port, 6);
    await c.watch.connected;
    await sleep(1500);
    // The move: the VM's link leaves site A's bridge for site B's. Its TCP state stays in its kernel.
    const t0 = performance.now();
    await runIp(['link', 'set', 'vm-desk', 'netns', ns.b], ns.a);
    await run.setMaster(ns.b, 'vm-desk', 'br0');
    await run.linkUp(ns.b, 'vm-desk');
    const movedMs = performance.now() - t0;
    const repointMs = await repoint(route('ns', 2, VMS.ns.b), performance.now());
    t.diagnostic(`VM link moved in ${movedMs.toFixed(0)} ms; path re-pointed ${repointMs.toFixed(0)} ms after the move`);
    assert.ok(repointMs < 1000, `re-pointed ${repointMs.toFixed(0)} ms after switch-over`);
    const r = await c.watch.result;
    t.diagnostic(`stream: ${r.framesVerified} frames verified, longest stall ${r.longestStallMs.toFixed(0)} ms, rtt median ${r.rttMedianMs?.toFixed(2)} ms`);
    assertIntact(r, 'session across the move');
    assert.ok(r.longestStallMs < 5000, `longest stall ${r.longestStallMs.toFixed(0)} ms`);

    const fresh = client(VMS.ns.port, 0.5);
    assertIntact(await fresh.watch.result, 'a new session after the move');
    const s = await control.stats();
    assert.equal(s.errors['backend-reset'] + s.errors['connect-failed'] + s.errors['connect-timeout'], 0, JSON.stringify(s.errors));
  });

  describe('with a real QEMU guest live-migrated by the QEMU driver', () => {
    let driver: QemuDriver;
    let activatedAt = 0;
    let repointP: Promise<number> | null = null;
    const hosts = new Map<SiteId, QemuHost>();

    before(async () => {
      const guest = await ensureGuest();
      for (const [p, n, addr] of [[SITE_A, ns.a, '10.1.0.2'], [SITE_B, ns.b, '10.2.0.2']] as const) {
        const workDir = join(root, p.siteId);
        mkdirSync(workDir, { recursive: true });
        hosts.set(p.siteId, { placement: p, netns: n, migrationAddress: addr, workDir });
      }
      driver = createQemuDriver({
        hostFor: (p) => hosts.get(p.siteId) ?? assert.fail(`no host for ${p.siteId}`),
        prepareHost: async (host) => run.addTap(host.netns ?? '', 'tap-qdesk', { bridge: 'br0' }),
        releaseHost: async (host) => {
          await runIp(['link', 'del', 'tap-qdesk'], host.netns).catch(() => undefined);
        },
        // The migration stream crosses only this test's own namespaces.
        tls: null,
        clock: systemClock,
        log: silentLogger,
        pollMs: 100,
        cpuFreeCores: () => 0,
        // Re-point the moment the guest runs at B: its first packets from there must find the new path, or the
        // proxy's kernel (which knows no connection from B's address) answers them with a reset.
        onActivated: () => {
          activatedAt = performance.now();
          repointP = repoint(route('qemu', 2, VMS.qemu.b), activatedAt);
        },
      });
      const spec = await driver.launchVm({
        name: 'qdesk', memoryMiB: 128, vcpu: 1, kernel: guest.kernel, initrd: guest.initrd, tcgTbSizeMiB: 32,
        guest: { ipCidr: `${VMS.qemu.vip}/24`, gateway: '172.30.0.1' },
        nics: [{ mac: macForName('qdesk'), tap: 'tap-qdesk' }],
      }, SITE_A);
      await waitForConsole(spec.serialLogPath, guestReadyRegex('qdesk'), 180_000);
    });

    after(async () => {
      for (const p of [SITE_A, SITE_B]) await driver?.destroyVm(vmId('qdesk'), p).catch(() => undefined);
    });

    it('keeps a session flowing through the live migration to the other subnet; re-pointed within 1 s of switch-over', async (t) => {
      const c = client(VMS.qemu.port, 300);
      await c.watch.connected;
      await sleep(1000);
      assert.ok((c.watch.progress()?.framesVerified ?? 0) > 10, 'the guest echoes through site A');
      const h = await driver.start({
        jobId: 'proxy-b-1', vm: vmId('qdesk'), from: SITE_A, to: SITE_B,
        link: { rttMs: 1, bandwidthMbps: 1000, foregroundShare: 0.2, lossPct: 0 },
        shape: { memoryMiB: 128, dirtyRateMiBps: 0, workingSetMiB: 1, diskGiB: 0 },
        storage: 'shared',
        policy: { maxDowntimeMs: 300, maxDowntimeCeilingMs: 2000, postCopyAllowed: false, stallTimeoutMs: 60_000, onStall: ['abort'], tls: false, deadlineMs: 240_000 },
      });
      const out: MigrationOutcome = await h.done;
      assert.equal(out.status, 'completed', out.reason ?? '');
      assert.ok(repointP !== null && activatedAt > 0, 'the driver reported the switch-over');
      const repointMs = await repointP;
      t.diagnostic(`migration ${(out.durationMs / 1000).toFixed(1)} s, downtime ${out.downtimeMs ?? '?'} ms; path re-pointed ${repointMs.toFixed(0)} ms after the guest ran at B`);
      assert.ok(repointMs < 1000, `re-pointed ${repointMs.toFixed(0)} ms after switch-over`);
      // Let the session run on at the new site, then end it.
      const verifiedAtSwitch = c.watch.progress()?.framesVerified ?? 0;
      for (let i = 0; i < 100 && (c.watch.progress()?.framesVerified ?? 0) < verifiedAtSwitch + 50; i++) await sleep(100);
      c.proc.child.kill('SIGTERM');
      const r = await c.watch.result;
      t.diagnostic(`stream: ${r.framesVerified} frames verified, longest stall ${r.longestStallMs.toFixed(0)} ms`);
      assertIntact(r, 'session across the live migration');
      assert.ok(r.framesVerified > verifiedAtSwitch + 40, 'the session flowed on after the move');

      const fresh = client(VMS.qemu.port, 0.5);
      assertIntact(await fresh.watch.result, 'a new session to the migrated guest');
    });
  });
});
