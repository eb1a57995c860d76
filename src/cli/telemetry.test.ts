import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { runSoftflowd } from '../testing/flow-reference.js';

const bin = fileURLToPath(new URL('./main.js', import.meta.url));
const pcaps = fileURLToPath(new URL('../../../../shared/data/traffic/pcap/', import.meta.url));
const run = (...args: string[]): { code: number | null; out: string; err: string } => {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
};

describe('vmshadow fingerprint', () => {
  it('prints exactly one JSON object with the verdict for a VNC desktop, from flow records', () => {
    const r = run('fingerprint', '--pcap', join(pcaps, 'vnc.pcap'), '--vm', '192.168.2.110', '--json');
    assert.equal(r.code, 0, r.err);
    const lines = r.out.trim().split('\n');
    assert.equal(lines.length, 1);
    const v = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.deepEqual(Object.keys(v).sort(), ['activity', 'reasons', 'score', 'sensitive', 'vm']);
    assert.equal(v.vm, '192.168.2.110');
    assert.equal(v.sensitive, true);
    assert.equal(v.activity, 'remote-desktop');
    assert.ok(typeof v.score === 'number' && v.score >= 0.5 && v.score <= 1);
    assert.ok((v.reasons as string[]).some((x) => /tcp\/6900/.test(x) && /packets\/s/.test(x)));
  });

  it('says a bulk FTP download is not location-sensitive', () => {
    const r = run('fingerprint', '--pcap', join(pcaps, 'ftp.pcap'), '--vm', '192.168.1.212', '--json');
    assert.equal(r.code, 0, r.err);
    const v = JSON.parse(r.out) as { sensitive: boolean; activity: string };
    assert.equal(v.sensitive, false);
    assert.equal(v.activity, 'bulk-transfer');
  });

  it('--evaluate --fixtures prints both labelled sets, each with held-out, tune and all for the engine and ports-only', () => {
    const r = run('fingerprint', '--evaluate', '--fixtures');
    assert.equal(r.code, 0, r.err);
    const heads = r.out.split('\n').filter((l) => l.startsWith('== '));
    assert.equal(heads.length, 2);
    assert.match(heads[0]!, /shared 50/);
    assert.match(heads[1]!, /nDPI 4\.2/);
    assert.equal(r.out.split('\n').filter((l) => /^held-out +n=(23|73) +engine: balanced \d\.\d\d, activity \d\.\d\d +\| +ports-only/.test(l)).length, 2);
    const j = JSON.parse(run('fingerprint', '--evaluate', '--fixtures', '--json').out) as { sets: { heldOut: { engine: { captures: number } } }[] };
    assert.deepEqual(j.sets.map((x) => x.heldOut.engine.captures), [23, 73]);
  });

  it('exits 2 naming the flag for a file that is not a capture, a missing file and a bad address', () => {
    for (const [args, flag] of [
      [['--pcap', '/etc/hostname', '--vm', '10.0.0.1'], '--pcap'],
      [['--pcap', '/nonexistent.pcap', '--vm', '10.0.0.1'], '--pcap'],
      [['--pcap', join(pcaps, 'vnc.pcap'), '--vm', '300.1.1.1'], '--vm'],
      [['--vm', '10.0.0.1'], '--pcap'],
    ] as const) {
      const r = run('fingerprint', ...args, '--json');
      assert.equal(r.code, 2, r.err);
      assert.ok(r.err.startsWith(`vmshadow: ${flag}:`), r.err);
    }
  });
});

describe('vmshadow collect', () => {
  it('shows a live verdict per VM from a real exporter, and counts what it could not attribute', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmshadow-collect-'));
    const inv = join(dir, 'inventory.json');
    writeFileSync(inv, JSON.stringify({ vms: [{ id: 'desk-1', ips: ['192.168.2.110'] }] }));
    const port = 30000 + Math.floor(Math.random() * 20000);
    const child = spawn(process.execPath, [bin, 'collect', '--listen', `127.0.0.1:${port}`, '--inventory', inv, '--window-s', '1', '--duration-s', '8', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    await new Promise((r) => setTimeout(r, 1500));
    await runSoftflowd(join(pcaps, 'vnc.pcap'), port, 10);
    await runSoftflowd(join(pcaps, 'ftp.pcap'), port, 9);
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    assert.equal(code, 0, err);
    const rows = out.trim().split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { vm: string; window: { activity: string }; users: { addr: string }[] });
    assert.ok(rows.length > 0, `no verdicts; stderr: ${err}`);
    assert.ok(rows.every((r) => r.vm === 'desk-1'));
    assert.ok(rows.some((r) => r.window.activity === 'remote-desktop' && r.users.some((u) => u.addr === '95.237.48.208')));
    assert.match(err, /records \(\d+ attributed, [1-9]\d* to no known VM\)/);
  });

  it('exits 2 for a malformed inventory and a bad listen address', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vmshadow-collect-'));
    const inv = join(dir, 'inventory.json');
    writeFileSync(inv, JSON.stringify({ vms: [{ id: 'x', ips: ['not-an-ip'] }] }));
    const a = run('collect', '--listen', '127.0.0.1:0', '--inventory', inv);
    assert.equal(a.code, 2);
    assert.match(a.err, /inventory\.vms\[0\]\.ips\[0\]/);
    const b = run('collect', '--listen', 'nowhere');
    assert.equal(b.code, 2);
    assert.match(b.err, /--listen/);
    // An address this machine does not have: bind fails, named, exit 2.
    const c = run('collect', '--listen', '192.0.2.1:4739', '--duration-s', '1');
    assert.equal(c.code, 2, c.err);
    assert.match(c.err, /--listen: cannot be bound/);
  });
});
