import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';

const bin = fileURLToPath(new URL('./main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'vmshadow-cli-'));

function run(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [bin, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

const scenario = join(dir, 'scenario.json');

describe('vmshadow CLI', () => {
  before(() => {
    const r = run('scenario', 'generate', '--sites', '5', '--vms', '60', '--seed', '4', '--duration-s', '7200', '--out', scenario);
    assert.equal(r.code, 0, r.err);
  });

  it('generates the same scenario for the same seed', () => {
    const again = join(dir, 'again.json');
    assert.equal(run('scenario', 'generate', '--sites', '5', '--vms', '60', '--seed', '4', '--duration-s', '7200', '--out', again).code, 0);
    assert.equal(readFileSync(again, 'utf8'), readFileSync(scenario, 'utf8'));
  });

  it('plan --json prints one object with totalBenefit, moves and rejected covering every VM', () => {
    const r = run('plan', '--scenario', scenario, '--json');
    assert.equal(r.code, 0, r.err);
    const plan = JSON.parse(r.out) as { totalBenefit: number; moves: { vm: string; from: string; to: string; benefit: number; costS: number }[]; rejected: { vm: string; reason: string }[] };
    assert.equal(typeof plan.totalBenefit, 'number');
    for (const m of plan.moves) {
      assert.equal(typeof m.vm, 'string');
      assert.notEqual(m.from, m.to);
      assert.ok(m.costS > 0);
    }
    assert.equal(plan.moves.length + plan.rejected.length, 60);
    assert.ok(Math.abs(plan.totalBenefit - plan.moves.reduce((t, m) => t + m.benefit, 0)) < 1e-6);
  });

  it('plan --planner ilp finds at least the greedy total benefit', () => {
    const g = JSON.parse(run('plan', '--scenario', scenario, '--json').out) as { totalBenefit: number };
    const r = run('plan', '--scenario', scenario, '--planner', 'ilp', '--json');
    assert.equal(r.code, 0, r.err);
    const ilp = JSON.parse(r.out) as { totalBenefit: number; optimal: boolean };
    assert.equal(ilp.optimal, true);
    assert.ok(ilp.totalBenefit >= g.totalBenefit - 1e-6);
  });

  it('simulate --json compares the three policies', () => {
    const r = run('simulate', '--scenario', scenario, '--json');
    assert.equal(r.code, 0, r.err);
    const out = JSON.parse(r.out) as { policies: { policy: string; sensitiveUserRttMs: number; migrations: { completed: number } }[] };
    assert.deepEqual(out.policies.map((p) => p.policy), ['never', 'nearest', 'greedy']);
    assert.equal(out.policies[0]!.migrations.completed, 0);
  });

  it('exits 2 naming the field when a scenario has an unknown site', () => {
    const bad = JSON.parse(readFileSync(scenario, 'utf8')) as { cloud: { vms: { siteId: string }[] } };
    bad.cloud.vms[3]!.siteId = 'atlantis-1';
    const f = join(dir, 'bad-site.json');
    writeFileSync(f, JSON.stringify(bad));
    const r = run('plan', '--scenario', f);
    assert.equal(r.code, 2);
    assert.match(r.err, /cloud\.vms\[3\]\.siteId/);
    assert.match(r.err, /atlantis-1/);
    assert.doesNotMatch(r.err, /\n\s+at /, 'no stack trace');
  });

  it('exits 2 for a schema version it does not know', () => {
    const bad = { ...(JSON.parse(readFileSync(scenario, 'utf8')) as object), schema: 'vmshadow.scenario/v2' };
    const f = join(dir, 'bad-schema.json');
    writeFileSync(f, JSON.stringify(bad));
    const r = run('simulate', '--scenario', f);
    assert.equal(r.code, 2);
    assert.match(r.err, /schema/);
    assert.match(r.err, /vmshadow\.scenario\/v2/);
  });

  it('exits 2 for a file that is not JSON, a missing file, a bad flag and a bad number', () => {
    const f = join(dir, 'not.json');
    writeFileSync(f, '{"schema": ');
    for (const args of [
      ['plan', '--scenario', f],
      ['plan', '--scenario', join(dir, 'missing.json')],
      ['plan', '--scenario', scenario, '--planner', 'magic'],
      ['plan', '--scenario', scenario, '--bogus'],
      ['scenario', 'generate', '--sites', 'three', '--vms', '5', '--seed', '1'],
      ['scenario', 'generate', '--sites', '3', '--vms', '-5', '--seed', '1'],
      ['frobnicate'],
    ]) {
      const r = run(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
      assert.match(r.err, /^vmshadow: /);
      assert.doesNotMatch(r.err, /\n\s+at /);
    }
  });
});
