import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AppError } from '../core/errors.js';
import { aptInstall, missingPackages, type Runner } from './apt.js';

/** A fake dpkg/apt: `installed` grows when an install succeeds; `failInstalls` installs fail first. */
function fakeApt(opts: { installed: string[]; failInstalls?: number; noDpkg?: boolean }): { run: Runner; calls: string[][] } {
  const calls: string[][] = [];
  const installed = new Set(opts.installed);
  let fails = opts.failInstalls ?? 0;
  const run: Runner = (argv) => {
    calls.push([...argv]);
    if (argv[0] === 'dpkg-query') {
      if (opts.noDpkg === true) return Promise.reject(Object.assign(new Error('spawn dpkg-query ENOENT'), { code: 'ENOENT' }));
      const p = argv[argv.length - 1]!;
      return Promise.resolve(installed.has(p) ? { code: 0, stdout: 'install ok installed', stderr: '' } : { code: 1, stdout: '', stderr: `dpkg-query: no packages found matching ${p}` });
    }
    if (argv[0] === 'apt-get' && argv[1] === 'update') return Promise.resolve({ code: 0, stdout: '', stderr: '' });
    if (argv[0] === 'apt-get' && argv[1] === 'install') {
      if (fails > 0) {
        fails--;
        return Promise.resolve({ code: 100, stdout: '', stderr: 'E: Could not get lock /var/lib/dpkg/lock-frontend' });
      }
      for (const p of argv.slice(5)) installed.add(p);
      return Promise.resolve({ code: 0, stdout: '', stderr: '' });
    }
    return Promise.resolve({ code: 127, stdout: '', stderr: 'unexpected' });
  };
  return { run, calls };
}

describe('aptInstall()', () => {
  it('does not call apt-get when every package is installed', async () => {
    const f = fakeApt({ installed: ['iproute2', 'ethtool'] });
    assert.deepEqual(await aptInstall(['iproute2', 'ethtool'], { run: f.run }), []);
    assert.ok(f.calls.every((c) => c[0] === 'dpkg-query'));
  });

  it('installs only the missing packages without recommends, retrying while apt is locked', async () => {
    const f = fakeApt({ installed: ['iproute2'], failInstalls: 2 });
    const slept: number[] = [];
    const lines: string[] = [];
    const got = await aptInstall(['iproute2', 'softflowd', 'ethtool'], { run: f.run, delayMs: 7, sleep: (ms) => { slept.push(ms); return Promise.resolve(); }, log: (l) => lines.push(l) });
    assert.deepEqual(got, ['softflowd', 'ethtool']);
    const installs = f.calls.filter((c) => c[1] === 'install');
    assert.equal(installs.length, 3);
    assert.deepEqual(installs[0], ['apt-get', 'install', '-y', '-q', '--no-install-recommends', 'softflowd', 'ethtool']);
    assert.deepEqual(slept, [7, 7]);
    assert.ok(lines.some((l) => l.includes('Could not get lock')), lines.join('\n'));
  });

  it('gives up after the last attempt, naming the packages and the last error', async () => {
    const f = fakeApt({ installed: [], failInstalls: 99 });
    await assert.rejects(aptInstall(['softflowd'], { run: f.run, attempts: 3, sleep: () => Promise.resolve() }), (e: unknown) => {
      assert.ok(e instanceof AppError);
      assert.equal(e.code, 'APT_FAILED');
      assert.match(e.message, /softflowd: apt-get failed 3 times; last: exit code 100: E: Could not get lock/);
      return true;
    });
    assert.equal(f.calls.filter((c) => c[1] === 'install').length, 3);
  });

  it('says clearly when the machine has no dpkg', async () => {
    const f = fakeApt({ installed: [], noDpkg: true });
    await assert.rejects(missingPackages(['qemu-utils'], { run: f.run }), /dpkg-query is missing .* install qemu-utils by hand/);
  });
});
