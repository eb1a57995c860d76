// bench/manager at a very small scale: the same three processes (exporter → UDP → collector → loop on
// SQLite → simulated moves), 200 VMs at 5 sites for 3 measured intervals of 2 s, so that the benchmark's
// plumbing and figures are checked on every test run; the budget itself is measured at full scale.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { profileCheck, runManagerBench } from '../../bench/manager.js';

/** The repository's data/ folder, from dist/src/manager/. */
const DATA_DIR = fileURLToPath(new URL('../../../data/', import.meta.url));

describe('bench/manager', () => {
  it('sends traffic the classifier judges as meant: desktops, video and calls sensitive, bulk and background not', () => {
    for (const windowS of [2, 10]) {
      for (const p of profileCheck(windowS)) {
        assert.equal(p.sensitive, p.expectedSensitive, `${p.cls} at ${windowS} s windows was judged ${p.activity}, sensitive ${p.sensitive}`);
      }
    }
  });

  it('runs 200 VMs at 5 sites for 3 intervals: rounds ran, every VM observed once per interval, nothing lost or failed, and it prints the comparison line', async () => {
    let text = '';
    const f = await runManagerBench({
      quick: true, json: false, out: (s) => {
        text += s;
      },
      dataDir: DATA_DIR, vms: 200, sites: 5, intervals: 3, windowS: 2, roundS: 2, warmupIntervals: 1, seed: 3,
    });
    assert.equal(f.setup.vms, 200);
    // A round slower than 2 s on a busy machine is missed, not queued: at least two of three must run.
    assert.ok(f.rounds.count >= 2, `rounds ran: ${f.rounds.count}, missed ${f.rounds.missed}`);
    assert.equal(f.rounds.count + f.rounds.missed, 3);
    assert.equal(f.rounds.failed, 0);
    assert.ok(f.rounds.vmsObserved.some((n) => n > 0), `VMs fingerprinted per round: ${f.rounds.vmsObserved.join(', ')}`);
    // One window per VM per interval; a window close a little late or early moves one interval's worth.
    assert.ok(Math.abs(f.windows.observed - f.windows.expected) <= 200, `windows observed ${f.windows.observed}, expected ${f.windows.expected}`);
    assert.equal(f.windows.expected, 600);
    assert.equal(f.windows.dropped, 0);
    assert.equal(f.windows.failed, 0);
    assert.equal(f.windows.unattributable, 0);
    assert.ok((f.windows.byActivity['remote-desktop'] ?? 0) > 0 && (f.windows.byActivity.background ?? 0) > 0, JSON.stringify(f.windows.byActivity));
    assert.equal(f.collector.datagramsReceived, f.collector.datagramsSent);
    assert.equal(f.collector.recordsReceived, f.collector.recordsSent);
    assert.ok(f.collector.recordsSent > 200 * 4, `records sent ${f.collector.recordsSent}`);
    assert.equal(f.collector.lostRecords, 0);
    assert.equal(f.collector.decodeErrors, 0);
    assert.equal(f.log.error, 0, f.log.first.join('\n'));
    assert.ok(f.cpu.pctOfOneCore > 0 && f.cpu.pctOfOneCore < 200, `CPU ${f.cpu.pctOfOneCore} %`);
    assert.ok(f.cpu.roundsPct > 0 && f.cpu.roundsPct <= f.cpu.pctOfOneCore + 1e-9);
    assert.ok(Math.abs(f.cpu.wallSeconds - 6) < 1, `measured wall ${f.cpu.wallSeconds} s`);
    assert.equal(f.memory.heapAfterGcMiB.length, f.rounds.count);
    assert.ok(f.memory.heapAfterGcMiB.every((h) => h > 1 && h < 512), f.memory.heapAfterGcMiB.join(', '));
    assert.ok(f.memory.heapGrowthMiB < f.memory.boundMiB);
    assert.equal(f.perInterval.length, 3);
    assert.match(text, /^manager: CPU \d+\.\d % of one core \(budget 50 %\) — \d+\.\d\d× budget; heap growth -?\d+\.\d MiB over 3 intervals \(bound 64 MiB\); rounds \d+\.\d\d s p95 of a 2 s interval$/m);
  });
});
