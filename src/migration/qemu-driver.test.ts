// The QEMU driver with real QEMU (TCG) guests on this machine: memory verified by the guest itself after
// the move, disks compared at switch-over, abort and failure leaving the VM at the source.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { systemClock } from '../core/clock.js';
import { hostId, siteId, vmId, type SiteId } from '../core/ids.js';
import { silentLogger } from '../core/logger.js';
import type { MigrationPolicy, MigrationProgress, MigrationRequest, Placement } from './driver.js';
import { createQemuDriver, type QemuDriver, type QemuHost } from './qemu-driver.js';
import { isAlive, readConsole, waitForConsole, type QemuVmSpec } from './qemu/process.js';
import { ensureSiteCredentials, type SiteCredentials } from './tls.js';
import { ensureGuest, guestReadyRegex, summarizeMemtest, type GuestImage } from '../testing/guest.js';

const run = promisify(execFile);

const A: Placement = { siteId: siteId('site-a'), hostId: hostId('a1') };
const B: Placement = { siteId: siteId('site-b'), hostId: hostId('b1') };

const policy = (o: Partial<MigrationPolicy> = {}): MigrationPolicy => ({
  maxDowntimeMs: 300, maxDowntimeCeilingMs: 2000, postCopyAllowed: false, stallTimeoutMs: 20_000,
  onStall: ['raise-downtime', 'abort'], tls: true, deadlineMs: 240_000, ...o,
});

describe('QEMU driver (real guests under TCG, loopback)', { timeout: 600_000 }, () => {
  const root = mkdtempSync('/tmp/vmsq-');
  const hosts = new Map<SiteId, QemuHost>([
    [A.siteId, { placement: A, netns: null, migrationAddress: '127.0.0.1', workDir: join(root, 'a') }],
    [B.siteId, { placement: B, netns: null, migrationAddress: '127.0.0.1', workDir: join(root, 'b') }],
  ]);
  let guest: GuestImage;
  let creds: Map<string, SiteCredentials>;
  let driver: QemuDriver;
  const compared: { same: boolean | null } = { same: null };
  const launched: { vm: string; at: Placement }[] = [];

  before(async () => {
    guest = await ensureGuest();
    creds = await ensureSiteCredentials(join(root, 'tls'), ['site-a', 'site-b']);
    driver = createQemuDriver({
      hostFor: (p) => {
        const h = hosts.get(p.siteId);
        if (h === undefined) throw new Error(`no host for ${p.siteId}`);
        return h;
      },
      tls: (s) => {
        const c = creds.get(s);
        if (c === undefined) throw new Error(`no credentials for ${s}`);
        return c;
      },
      clock: systemClock,
      log: silentLogger,
      basePort: 20000 + (randomBytes(2).readUInt16BE(0) % 20000),
      async verifySwitchOver({ source, destination }) {
        if (source.disk === undefined || destination.disk === undefined) return;
        try {
          await run('qemu-img', ['compare', '-U', source.disk.path, destination.disk.path]);
          compared.same = true;
        } catch (e) {
          compared.same = false;
          throw new Error(`qemu-img compare: ${(e as { stdout?: string }).stdout ?? String(e)}`);
        }
      },
    });
  });

  after(async () => {
    for (const { vm, at } of launched) await driver.destroyVm(vmId(vm), at, { removeDisk: true }).catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
  });

  async function boot(name: string, o: { disk?: boolean; dirty?: { workingSetMiB: number; rateMiBps: number } } = {}): Promise<QemuVmSpec> {
    let disk: QemuVmSpec['disk'];
    if (o.disk === true) {
      const path = join(hosts.get(A.siteId)?.workDir ?? '', `${name}.qcow2`);
      await run('mkdir', ['-p', hosts.get(A.siteId)?.workDir ?? '']);
      await run('qemu-img', ['create', '-q', '-f', 'qcow2', path, '64M']);
      disk = { path, format: 'qcow2', nodeName: 'disk0' };
    }
    const spec = await driver.launchVm({
      name, memoryMiB: 128, vcpu: 1, kernel: guest.kernel, initrd: guest.initrd, tcgTbSizeMiB: 32,
      guest: { dirty: o.dirty ?? { workingSetMiB: 16, rateMiBps: 4 }, checkIntervalMs: 500, ...(o.disk === true ? { diskWriteBlocksPerS: 50 } : {}) },
      ...(disk === undefined ? {} : { disk }),
    }, A);
    launched.push({ vm: name, at: A }, { vm: name, at: B });
    await waitForConsole(spec.serialLogPath, guestReadyRegex(name), 60_000);
    await waitForConsole(spec.serialLogPath, /MEMTEST ok/, 30_000);
    return spec;
  }

  const request = (vm: string, o: Partial<MigrationRequest> = {}): MigrationRequest => ({
    jobId: `job-${vm}-${randomBytes(3).toString('hex')}`, vm: vmId(vm), from: A, to: B,
    link: { rttMs: 1, bandwidthMbps: 2000, foregroundShare: 0.2, lossPct: 0 },
    shape: { memoryMiB: 128, dirtyRateMiBps: 4, workingSetMiB: 16, diskGiB: 0 },
    storage: 'shared', policy: policy(), ...o,
  });

  async function memoryVerifiedAt(at: Placement, vm: string): Promise<void> {
    const spec = driver.instanceAt(vmId(vm), at);
    assert.ok(spec !== null, `${vm} runs at ${at.siteId}`);
    // Two fresh clean checks after the move prove every page arrived as last written.
    const before = summarizeMemtest(await readConsole(spec.serialLogPath)).okChecks;
    const deadline = Date.now() + 30_000;
    for (;;) {
      const s = summarizeMemtest(await readConsole(spec.serialLogPath));
      assert.equal(s.stalePages, 0, `no stale page at ${at.siteId}`);
      assert.equal(s.failedChecks, 0);
      if (s.okChecks >= before + 2) return;
      assert.ok(Date.now() < deadline, `memtest at ${at.siteId} made no new checks`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  it('moves a guest that rewrites its memory, over TLS; the guest verifies its memory at the destination and the source is released', async () => {
    const src = await boot('vm-mem');
    const srcPid = Number((await run('cat', [join(hosts.get(A.siteId)?.workDir ?? '', 'vm-mem.pid')])).stdout.trim());
    const h = await driver.start(request('vm-mem'));
    const seen: MigrationProgress[] = [];
    for await (const p of h.progress()) seen.push(p);
    const out = await h.done;
    assert.equal(out.status, 'completed', out.reason ?? '');
    assert.deepEqual(out.runningAt, B);
    assert.ok(out.transferredBytes > 10 * 1024 * 1024, `moved ${out.transferredBytes} bytes`);
    assert.ok(out.downtimeMs !== null && out.downtimeMs >= 0);
    assert.ok(out.settings.some((c) => c.name === 'tls' && c.value === true), 'TLS was used');
    assert.equal(seen.at(-1)?.phase, 'completed');
    assert.ok(seen.some((p) => p.phase === 'precopy'));
    for (let i = 1; i < seen.length; i++) assert.ok((seen[i]?.transferredBytes ?? 0) >= (seen[i - 1]?.transferredBytes ?? 0), 'transferred never falls');
    assert.equal(isAlive(srcPid), false, 'source QEMU released');
    assert.equal(driver.instanceAt(vmId('vm-mem'), A), null);
    assert.ok(src.serialLogPath.length > 0);
    await memoryVerifiedAt(B, 'vm-mem');
  });

  it('mirrors the disk over NBD (with TLS) while the guest writes to it; the disks are identical at switch-over', async () => {
    await boot('vm-disk', { disk: true });
    compared.same = null;
    const h = await driver.start(request('vm-disk', { storage: 'mirror', shape: { memoryMiB: 128, dirtyRateMiBps: 4, workingSetMiB: 16, diskGiB: 64 / 1024 } }));
    const phases = new Set<string>();
    for await (const p of h.progress()) phases.add(p.phase);
    const out = await h.done;
    assert.equal(out.status, 'completed', out.reason ?? '');
    assert.ok(phases.has('mirroring-disk'), `phases: ${[...phases].join(', ')}`);
    assert.equal(compared.same, true, 'qemu-img compare found the disks identical');
    await memoryVerifiedAt(B, 'vm-disk');
    const spec = driver.instanceAt(vmId('vm-disk'), B);
    assert.ok(spec?.disk !== undefined && spec.disk.path.startsWith(hosts.get(B.siteId)?.workDir ?? '?'), 'the destination runs on its own copy of the disk');
  });

  it('abort() mid-way leaves the guest running at the source only, and a second abort is harmless', async () => {
    await boot('vm-abort');
    // 8 Mbit/s: 128 MiB takes over two minutes, so the abort lands mid-way.
    const h = await driver.start(request('vm-abort', { link: { rttMs: 1, bandwidthMbps: 10, foregroundShare: 0.2, lossPct: 0 }, bandwidthCapMbps: 6 }));
    for await (const p of h.progress()) if (p.phase === 'precopy' && p.transferredBytes > 1024 * 1024) break;
    await h.setBandwidthCap?.(4);
    await Promise.all([h.abort('operator cancelled'), h.abort('twice')]);
    const out = await h.done;
    assert.equal(out.status, 'aborted');
    assert.deepEqual(out.settings.filter((c) => c.name === 'max-bandwidth').map((c) => c.value), [1_000_000, 750_000, 500_000],
      'link spare, then admission cap at start, then the live re-split');
    assert.equal(out.reason, 'operator cancelled');
    assert.deepEqual(out.runningAt, A);
    assert.equal(driver.instanceAt(vmId('vm-abort'), B), null, 'no copy at the destination');
    const p = await driver.inspect(request('vm-abort'));
    assert.equal(p.source, 'running');
    assert.equal(p.destination, 'absent');
    await memoryVerifiedAt(A, 'vm-abort');
  });

  it('a destination that dies mid-migration fails the job and the guest keeps running at the source', async () => {
    await boot('vm-dies');
    const h = await driver.start(request('vm-dies', { link: { rttMs: 1, bandwidthMbps: 10, foregroundShare: 0.2, lossPct: 0 } }));
    for await (const p of h.progress()) if (p.phase === 'precopy' && p.transferredBytes > 1024 * 1024) break;
    const pid = Number((await run('cat', [join(hosts.get(B.siteId)?.workDir ?? '', 'vm-dies.pid')])).stdout.trim());
    process.kill(pid, 'SIGKILL');
    const out = await h.done;
    assert.equal(out.status, 'failed');
    assert.match(out.reason ?? '', /migration|failed/);
    assert.deepEqual(out.runningAt, A);
    await memoryVerifiedAt(A, 'vm-dies');
  });

  it('switches to post-copy when pre-copy stalls and the policy allows it; memory still verifies', async () => {
    // 40 Mbit/s spare against a 32 MiB set rewritten at 16 MiB/s (134 Mbit/s): pre-copy cannot converge.
    await boot('vm-post', { dirty: { workingSetMiB: 32, rateMiBps: 16 } });
    const h = await driver.start(request('vm-post', {
      link: { rttMs: 1, bandwidthMbps: 50, foregroundShare: 0.2, lossPct: 0 },
      shape: { memoryMiB: 128, dirtyRateMiBps: 16, workingSetMiB: 32, diskGiB: 0 },
      policy: policy({ postCopyAllowed: true, onStall: ['post-copy', 'abort'], stallTimeoutMs: 5000 }),
    }));
    const phases = new Set<string>();
    for await (const p of h.progress()) phases.add(p.phase);
    const out = await h.done;
    assert.equal(out.status, 'completed', out.reason ?? '');
    assert.ok(phases.has('postcopy'), `phases: ${[...phases].join(', ')}`);
    await memoryVerifiedAt(B, 'vm-post');
  });
});
