// Issue 7's check: `vmshadow demo --json --duration-s N` runs the research system's scenario unattended on a
// real lab (QEMU desktops, Xvnc, the proxy, the manager) and prints one summary object.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { missingDesktopTools } from '../lab/desktop/tools.js';
import { isRoot } from '../lab/netns.js';

const CLI = fileURLToPath(new URL('./main.js', import.meta.url));
const skip = !isRoot() ? 'needs root (network namespaces, QEMU)' : (missingDesktopTools() ?? false);

describe('vmshadow demo --json', { skip, timeout: 600_000 }, () => {
  it('moves the video desktop to its user\'s site, leaves the bulk download alone, and the frame update time drops', async (t) => {
    const stateDir = mkdtempSync(join(tmpdir(), 'vms-demo-'));
    try {
      const child = spawn(process.execPath, [CLI, 'demo', '--json', '--duration-s', '110', '--text-s', '25', '--listen', '127.0.0.1:0', '--state-dir', stateDir], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-20_000)));
      const code = await new Promise<number | null>((r) => child.on('exit', r));
      t.diagnostic(err.split('\n').filter((l) => /decision|frame update|followed|fingerprint: desk1 is location/.test(l)).slice(0, 12).join('\n'));
      assert.equal(code, 0, `exit ${code}; stderr tail:\n${err.slice(-3000)}`);
      const lines = out.trim().split('\n');
      assert.equal(lines.length, 1, `stdout holds exactly one JSON object: ${out}`);
      const s = JSON.parse(lines[0]!) as Record<string, unknown>;
      t.diagnostic(JSON.stringify(s));
      assert.deepEqual(s.moved, ['desk1']);
      assert.deepEqual(s.leftAlone, ['desk2']);
      for (const k of ['frameTimeBeforeMs', 'frameTimeAfterMs', 'refreshRateGainPct', 'migrationS']) assert.equal(typeof s[k], 'number', `${k} is a number`);
      assert.ok((s.frameTimeAfterMs as number) < (s.frameTimeBeforeMs as number) - 20, `frame update time ${String(s.frameTimeBeforeMs)} → ${String(s.frameTimeAfterMs)} ms`);
      assert.ok((s.refreshRateGainPct as number) > 10, `refresh rate +${String(s.refreshRateGainPct)} %`);
      assert.ok((s.migrationS as number) > 1 && (s.migrationS as number) < 120);
      assert.equal(s.sessionDropped, false);
      assert.match(err, /alice starts a video/);
      assert.match(err, /plan .* will move desk1 us-east-1 → us-west-2/);
      assert.equal(existsSync(join(stateDir, 'lab.json')), false, 'the lab is down');
      const qemus = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
        try {
          return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(stateDir);
        } catch {
          return false;
        }
      });
      assert.deepEqual(qemus, [], 'no process of the demo is left');
    } finally {
      rmSync(stateDir, { recursive: true, force: true });
    }
  });
});
