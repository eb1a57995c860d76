import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { AppError, InputError } from '../../core/errors.js';
import { silentLogger } from '../../core/logger.js';
import { ensureGuest, guestReadyRegex, parseMemtestLine, summarizeMemtest, type GuestImage } from '../../testing/guest.js';
import {
  findQemu, guestAppend, isAlive, killQemu, launchCommand, launchQemu, macForName, pidfileFor, qemuArgs, readConsole,
  waitForConsole, type QemuProcess, type QemuVmSpec,
} from './process.js';

const base: QemuVmSpec = {
  name: 'vm-1',
  memoryMiB: 128,
  vcpu: 1,
  kernel: '/g/vmlinuz',
  initrd: '/g/initrd.img',
  serialLogPath: '/run/vm-1/console.log',
  qmpPath: '/run/vm-1/qmp.sock',
};

/** The value following a flag, for each occurrence. */
function values(args: readonly string[], flag: string): string[] {
  return args.flatMap((a, i) => (a === flag ? [args[i + 1] ?? ''] : []));
}

function appendOf(args: readonly string[]): string {
  const v = values(args, '-append');
  assert.equal(v.length, 1);
  return v[0] ?? '';
}

describe('qemuArgs()', () => {
  it('runs a TCG pc machine with no defaults, no reboot, the kernel, the initrd and the given memory and vcpus', () => {
    const args = qemuArgs({ ...base, vcpu: 2 });
    assert.deepEqual(values(args, '-accel'), ['tcg']);
    assert.deepEqual(values(args, '-M'), ['pc']);
    assert.deepEqual(values(args, '-cpu'), ['qemu64']);
    assert.deepEqual(values(args, '-m'), ['128M']);
    assert.deepEqual(values(args, '-smp'), ['2']);
    assert.deepEqual(values(args, '-display'), ['none']);
    for (const flag of ['-nodefaults', '-no-user-config', '-no-reboot']) assert.ok(args.includes(flag), flag);
    assert.deepEqual(values(args, '-kernel'), ['/g/vmlinuz']);
    assert.deepEqual(values(args, '-initrd'), ['/g/initrd.img']);
    assert.ok(!args.includes('-daemonize'), 'daemonizing is launchCommand()\'s business');
  });

  it('always puts pti=on, console=ttyS0 and panic=-1 on the kernel command line, then the guest settings', () => {
    const args = qemuArgs({
      ...base,
      guest: { ipCidr: '10.1.2.3/24', gateway: '10.1.2.1', dirty: { workingSetMiB: 32, rateMiBps: 20 }, checkIntervalMs: 500, mkfs: true, diskWriteBlocksPerS: 4 },
      kernelArgs: ['quiet'],
    });
    assert.equal(appendOf(args),
      'console=ttyS0 panic=-1 pti=on vm.name=vm-1 vm.ip=10.1.2.3/24 vm.gw=10.1.2.1 vm.dirty=32:20 vm.check-ms=500 vm.mkfs=1 vm.diskwrite=4 quiet');
  });

  it('serves the console into a file and QMP on a unix socket, doubling commas in their paths', () => {
    const args = qemuArgs({ ...base, serialLogPath: '/tmp/a,b/console.log', qmpPath: '/tmp/a,b/qmp.sock' });
    assert.deepEqual(values(args, '-chardev'), [
      'file,id=serial0,path=/tmp/a,,b/console.log',
      'socket,id=qmp0,path=/tmp/a,,b/qmp.sock,server=on,wait=off',
    ]);
    assert.deepEqual(values(args, '-serial'), ['chardev:serial0']);
    assert.deepEqual(values(args, '-mon'), ['chardev=qmp0,mode=control']);
  });

  it('gives the disk a file node and a format node with explicit names, and a virtio-blk device on the format node', () => {
    const args = qemuArgs({ ...base, disk: { path: '/d/x,y.qcow2', format: 'qcow2', nodeName: 'disk0' } });
    const nodes = values(args, '-blockdev').map((j) => JSON.parse(j) as Record<string, unknown>);
    assert.deepEqual(nodes, [
      { driver: 'file', filename: '/d/x,y.qcow2', 'node-name': 'disk0-file', 'read-only': false },
      { driver: 'qcow2', file: 'disk0-file', 'node-name': 'disk0', 'read-only': false },
    ]);
    assert.deepEqual(values(args, '-device'), ['virtio-blk-pci,drive=disk0,id=disk0-dev']);
    const raw = qemuArgs({ ...base, disk: { path: '/d/r.img', format: 'raw', nodeName: 'd1', readOnly: true } });
    assert.equal((JSON.parse(values(raw, '-blockdev')[1] ?? '{}') as { driver: string; 'read-only': boolean }).driver, 'raw');
  });

  it('puts each NIC on virtio-net-pci with an empty romfile, on a tap or on a given -netdev backend', () => {
    const args = qemuArgs({
      ...base,
      nics: [{ mac: '52:54:00:AA:bb:01', tap: 'tap-vm1' }, { mac: '52:54:00:aa:bb:02', netdev: 'user,hostfwd=tcp:127.0.0.1:2222-:22' }],
    });
    assert.deepEqual(values(args, '-netdev'), [
      'tap,id=net0,ifname=tap-vm1,script=no,downscript=no',
      'user,id=net1,hostfwd=tcp:127.0.0.1:2222-:22',
    ]);
    assert.deepEqual(values(args, '-device'), [
      'virtio-net-pci,netdev=net0,mac=52:54:00:aa:bb:01,id=net0-dev,romfile=',
      'virtio-net-pci,netdev=net1,mac=52:54:00:aa:bb:02,id=net1-dev,romfile=',
    ]);
  });

  it('adds -incoming, -S and the extra arguments last', () => {
    const args = qemuArgs({ ...base, incoming: 'defer', startPaused: true, extraArgs: ['-rtc', 'base=utc'] });
    assert.deepEqual(args.slice(-5), ['-incoming', 'defer', '-S', '-rtc', 'base=utc']);
  });

  it('refuses bad input with an InputError naming the field', () => {
    const bad: [Partial<QemuVmSpec>, string][] = [
      [{ name: 'a b' }, 'name'],
      [{ memoryMiB: 127.5 }, 'memoryMiB'],
      [{ vcpu: 0 }, 'vcpu'],
      [{ qmpPath: `/tmp/${'q'.repeat(110)}.sock` }, 'qmpPath'],
      [{ nics: [{ mac: '53:54:00:00:00:01', tap: 't0' }] }, 'nics[0].mac'],
      [{ nics: [{ mac: '52:54:00:00:00:01', tap: 'a-name-that-is-too-long' }] }, 'nics[0].tap'],
      [{ nics: [{ mac: '52:54:00:00:00:01', netdev: 'user,id=x' }] }, 'nics[0].netdev'],
      [{ disk: { path: '/d', format: 'qcow2', nodeName: '0disk' } }, 'disk.nodeName'],
      [{ guest: { ipCidr: '10.0.0.300/24' } }, 'guest.ipCidr'],
      [{ guest: { ipCidr: '10.0.0.3' } }, 'guest.ipCidr'],
      [{ guest: { dirty: { workingSetMiB: 0, rateMiBps: 1 } } }, 'guest.dirty.workingSetMiB'],
      [{ kernelArgs: ['init=/bin/sh quiet'] }, 'kernelArgs[0]'],
    ];
    for (const [patch, field] of bad) {
      assert.throws(() => qemuArgs({ ...base, ...patch }), (e: unknown) => e instanceof InputError && e.field === field, field);
    }
  });

  it('keeps every guest setting as one kernel word that /init reads back unchanged (property)', () => {
    const octet = fc.integer({ min: 0, max: 255 });
    const ip = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));
    fc.assert(fc.property(
      fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,20}$/), ip, fc.integer({ min: 0, max: 32 }), ip,
      fc.integer({ min: 1, max: 4096 }), fc.integer({ min: 0, max: 1000 }),
      (name, addr, prefix, gw, setMiB, rate) => {
        const words = guestAppend({ name, guest: { ipCidr: `${addr}/${prefix}`, gateway: gw, dirty: { workingSetMiB: setMiB, rateMiBps: rate } } }).split(' ');
        assert.deepEqual(words.slice(0, 3), ['console=ttyS0', 'panic=-1', 'pti=on']);
        const kv = new Map(words.map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]));
        assert.equal(kv.get('vm.name'), name);
        assert.equal(kv.get('vm.ip'), `${addr}/${prefix}`);
        assert.equal(kv.get('vm.gw'), gw);
        assert.equal(kv.get('vm.dirty'), `${setMiB}:${rate}`);
      }));
  });
});

describe('launchCommand() and macForName()', () => {
  it('daemonizes QEMU with a pid file, inside ip netns exec when the spec names a namespace', () => {
    const plain = launchCommand(base, '/w/vm-1.pid');
    assert.equal(plain.file, 'qemu-system-x86_64');
    assert.deepEqual(plain.args.slice(-3), ['-daemonize', '-pidfile', '/w/vm-1.pid']);
    const inNs = launchCommand({ ...base, netns: 'site-a' }, '/w/vm-1.pid');
    assert.equal(inNs.file, 'ip');
    assert.deepEqual(inNs.args.slice(0, 4), ['netns', 'exec', 'site-a', 'qemu-system-x86_64']);
    assert.throws(() => launchCommand({ ...base, netns: 'bad ns' }, '/w/p'), InputError);
  });

  it('derives a stable unicast MAC that qemuArgs accepts from any name (property)', () => {
    fc.assert(fc.property(fc.string(), (name) => {
      const mac = macForName(name);
      assert.equal(mac, macForName(name));
      assert.match(mac, /^52:54:00(:[0-9a-f]{2}){3}$/);
      qemuArgs({ ...base, nics: [{ mac, tap: 't0' }] });
    }));
  });
});

describe('waitForConsole()', () => {
  let dir = '';
  before(() => { dir = mkdtempSync(join(tmpdir(), 'vmshadow-console-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('waits for a file that does not exist yet and a line written later, without CR or NUL', async () => {
    const path = join(dir, 'late.log');
    const waiting = waitForConsole(path, /READY name=(\S+)/, 5_000, { pollMs: 20 });
    await sleep(100);
    writeFileSync(path, 'boot\r\n\0\0partial ');
    await sleep(100);
    appendFileSync(path, 'line\r\nVMSHADOW-GUEST READY name=a ip=none\r\nmore\r\n');
    const m = await waiting;
    assert.equal(m.line, 'VMSHADOW-GUEST READY name=a ip=none');
    assert.equal(m.match[1], 'a');
    assert.equal(readFileSync(path, 'latin1').slice(0, m.offset).endsWith('ip=none\r\n'), true);
  });

  it('from an offset, finds only lines after it', async () => {
    const path = join(dir, 'offset.log');
    writeFileSync(path, 'MEMTEST ok check=1\nMEMTEST ok check=2\n');
    const first = await waitForConsole(path, /MEMTEST ok check=(\d+)/, 1_000);
    assert.equal(first.match[1], '1');
    const second = await waitForConsole(path, /MEMTEST ok check=(\d+)/, 1_000, { fromOffset: first.offset });
    assert.equal(second.match[1], '2');
    await assert.rejects(waitForConsole(path, /MEMTEST ok/, 200, { fromOffset: second.offset, pollMs: 20 }), AppError);
  });

  it('times out with an error naming the file and the last lines seen', async () => {
    const path = join(dir, 'quiet.log');
    writeFileSync(path, 'Run /init as init process\ninsmod virtio_net failed\n');
    await assert.rejects(waitForConsole(path, /READY/, 300, { pollMs: 50 }), (e: unknown) => {
      assert.ok(e instanceof AppError);
      assert.equal(e.code, 'QEMU_CONSOLE_TIMEOUT');
      assert.ok(e.message.includes(path), e.message);
      assert.ok(e.message.includes('insmod virtio_net failed'), e.message);
      return true;
    });
  });

  it('fails early when the watched process is gone', async () => {
    const path = join(dir, 'dead.log');
    writeFileSync(path, '');
    const t0 = Date.now();
    await assert.rejects(waitForConsole(path, /READY/, 10_000, { pid: 2 ** 22 + 1, pollMs: 20 }), (e: unknown) => e instanceof AppError && e.code === 'QEMU_EXITED');
    assert.ok(Date.now() - t0 < 2_000);
  });
});

describe('pids', () => {
  it('isAlive() is true for this process and false for a pid that cannot exist', () => {
    assert.equal(isAlive(process.pid), true);
    assert.equal(isAlive(2 ** 22 + 1), false);
    assert.equal(isAlive(0), false);
  });

  it('findQemu() ignores a pid file whose process is not that QEMU (a reused pid)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmshadow-pid-'));
    try {
      const pidfile = join(dir, 'x.pid');
      writeFileSync(pidfile, `${process.pid}\n`);
      assert.equal(await findQemu(pidfile), undefined);
      assert.equal(await findQemu(join(dir, 'missing.pid')), undefined);
      assert.equal(await killQemu(2 ** 22 + 1), 'not-running');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function run(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 30_000 });
}

describe('the test guest under QEMU (TCG)', { timeout: 240_000 }, () => {
  let guest: GuestImage;
  let dir = '';
  const netns = `vmsg-${randomBytes(3).toString('hex')}`;
  let netnsMade = false;
  const started: QemuProcess[] = [];

  before(async () => {
    guest = await ensureGuest();
    dir = mkdtempSync(join(tmpdir(), 'vmshadow-qemu-'));
  });

  after(async () => {
    for (const q of started) await killQemu(q.pid, { graceMs: 2_000 }).catch(() => undefined);
    if (netnsMade) {
      try { run('ip', ['netns', 'del', netns]); } catch { /* already gone */ }
    }
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  const spec = (name: string, patch: Partial<QemuVmSpec>): QemuVmSpec => ({
    name,
    memoryMiB: 160,
    vcpu: 1,
    kernel: guest.kernel,
    initrd: guest.initrd,
    serialLogPath: join(dir, `${name}.console.log`),
    qmpPath: join(dir, `${name}.qmp`),
    tcgTbSizeMiB: 64,
    ...patch,
  });

  it('memtest on the host catches a page that holds an older generation, and keeps running', async () => {
    const child = spawn(guest.memtest, ['4', '8', '150'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    try {
      const until = async (re: RegExp): Promise<void> => {
        for (let i = 0; i < 100 && !re.test(out); i++) await sleep(50);
        assert.match(out, re);
      };
      await until(/MEMTEST ok check=2 /);
      assert.equal(summarizeMemtest(out.split('\n')).verified, true);
      child.kill('SIGUSR1');
      await until(/MEMTEST FAIL check=\d+ gen=\d+ stale=1 stale-total=1/);
      await until(/MEMTEST ok check=\d+ gen=\d+ pages=1024 rate=[\d.]+ stale-total=1/);
    } finally {
      child.kill('SIGKILL');
    }
    const lines = out.split('\n');
    const stale = lines.map(parseMemtestLine).find((m) => m?.kind === 'stale');
    assert.ok(stale?.kind === 'stale' && /^gen:\d+$/.test(stale.found), `stale line: ${JSON.stringify(stale)}`);
    const s = summarizeMemtest(lines);
    assert.equal(s.verified, false);
    assert.equal(s.stalePages, 1);
  });

  it('launchQemu() reports QEMU\'s own words when it cannot start, and a missing binary by name', async () => {
    const s = spec('nokernel', { kernel: join(dir, 'no-such-vmlinuz') });
    await assert.rejects(launchQemu(s, { workDir: dir, log: silentLogger }), (e: unknown) => {
      assert.ok(e instanceof AppError && e.code === 'QEMU_START_FAILED', String(e));
      assert.ok(e.message.includes('no-such-vmlinuz'), e.message);
      return true;
    });
    assert.equal(await findQemu(pidfileFor(dir, 'nokernel')), undefined);
    await assert.rejects(launchQemu(s, { workDir: dir, log: silentLogger, qemuBinary: join(dir, 'no-qemu') }),
      (e: unknown) => e instanceof AppError && e.code === 'QEMU_MISSING' && e.message.includes('no-qemu'));
  });

  it('boots to the ready line, runs memtest with clean checks, formats and writes its disk, and survives its launcher', async () => {
    const disk = join(dir, 'boot.qcow2');
    run('qemu-img', ['create', '-q', '-f', 'qcow2', disk, '32M']);
    const s = spec('boot', {
      guest: { dirty: { workingSetMiB: 16, rateMiBps: 8 }, checkIntervalMs: 1000, mkfs: true, diskWriteBlocksPerS: 2 },
      disk: { path: disk, format: 'qcow2', nodeName: 'disk0' },
    });
    const t0 = Date.now();
    const q = await launchQemu(s, { workDir: dir, log: silentLogger });
    started.push(q);
    assert.equal(q.pidfile, pidfileFor(dir, 'boot'));
    assert.equal(await findQemu(q.pidfile), q.pid);
    // Daemonized: not a child of this process, so a manager killed -9 leaves it running.
    const ppid = Number(readFileSync(`/proc/${q.pid}/stat`, 'latin1').split(') ')[1]?.split(' ')[1]);
    assert.notEqual(ppid, process.pid);
    await assert.rejects(launchQemu(s, { workDir: dir, log: silentLogger }), (e: unknown) => e instanceof AppError && e.code === 'QEMU_ALREADY_RUNNING');

    const ready = await waitForConsole(q.consolePath, guestReadyRegex('boot'), 60_000, { pid: q.pid });
    const bootMs = Date.now() - t0;
    assert.equal(ready.match[1], 'none');
    const ok = await waitForConsole(q.consolePath, /MEMTEST ok check=3 /, 30_000, { pid: q.pid, fromOffset: ready.offset });
    const lines = await readConsole(q.consolePath);
    assert.ok(lines.includes('VMSHADOW-GUEST disk /dev/vda -> /mnt/diskwrite.dat'), lines.filter((l) => l.includes('VMSHADOW')).join(' | '));
    const summary = summarizeMemtest(lines);
    assert.equal(summary.verified, true, lines.filter((l) => l.includes('MEMTEST')).join(' | '));
    assert.ok(summary.okChecks >= 3);
    assert.equal(summary.lastOk?.pages, 16 * 256);
    assert.ok((summary.lastOk?.rateMiBps ?? 0) > 4, ok.line);
    process.stdout.write(`# guest ready after ${bootMs} ms (kernel ${guest.manifest.kernelVersion})\n`);

    assert.equal(await killQemu(q.pid), 'terminated');
    assert.equal(isAlive(q.pid), false);
    assert.equal(await findQemu(q.pidfile), undefined);
    // The qcow2 is consistent and holds the guest's writes (an ext2 file system and the written blocks).
    run('qemu-img', ['check', '-q', disk]);
    const map = JSON.parse(run('qemu-img', ['map', '--output=json', disk])) as { data: boolean; length: number }[];
    assert.ok(map.filter((e) => e.data).reduce((n, e) => n + e.length, 0) > 0, 'no data written to the disk');
  });

  it('answers TCP echo on port 7 and HTTP on port 80 from a namespace on its tap', async () => {
    run('ip', ['netns', 'add', netns]);
    netnsMade = true;
    const ns = (...args: string[]): string => run('ip', ['netns', 'exec', netns, ...args]);
    ns('ip', 'link', 'set', 'lo', 'up');
    ns('ip', 'tuntap', 'add', 'dev', 'tap0', 'mode', 'tap');
    ns('ip', 'addr', 'add', '10.231.0.1/24', 'dev', 'tap0');
    ns('ip', 'link', 'set', 'tap0', 'up');

    const q = await launchQemu(spec('net', {
      netns, nics: [{ mac: macForName('net'), tap: 'tap0' }], guest: { ipCidr: '10.231.0.2/24', gateway: '10.231.0.1' },
    }), { workDir: dir, log: silentLogger });
    started.push(q);
    const ready = await waitForConsole(q.consolePath, guestReadyRegex('net'), 60_000, { pid: q.pid });
    assert.equal(ready.match[1], '10.231.0.2');

    const token = `hello-${randomBytes(4).toString('hex')}`;
    const client = `
      const net = require('node:net');
      const s = net.connect({ host: '10.231.0.2', port: 7 }, () => s.write(${JSON.stringify(token)} + '\\n'));
      let got = '';
      s.setTimeout(3000, () => { console.log('TIMEOUT ' + got); process.exit(1); });
      s.on('data', (d) => { got += d; if (got.includes('\\n')) { console.log('ECHO ' + got.trim()); s.destroy(); } });
      s.on('error', (e) => { console.log('ERROR ' + e.message); process.exit(1); });`;
    let echo = '';
    // ARP and the echo server's start may take a moment under TCG: a few bounded tries.
    for (let i = 0; i < 10 && !echo.startsWith('ECHO'); i++) {
      try { echo = ns(process.execPath, '-e', client).trim(); } catch (e) { echo = String(e); await sleep(500); }
    }
    assert.equal(echo, `ECHO ${token}`);
    const page = ns(process.execPath, '-e', `fetch('http://10.231.0.2/').then(async (r) => console.log(r.status, await r.text()))`);
    assert.match(page, /^200 .*VMShadow test guest net/);

    assert.equal(await killQemu(q.pid), 'terminated');
    assert.equal(isAlive(q.pid), false);
  });
});
