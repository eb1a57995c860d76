import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { conversation, flowsFor, loadLabels } from '../testing/fp-fixtures.js';
import { evaluate, formatEvaluation, portsOnly, scoresOf, type EvaluationRow } from './evaluate.js';
import { splitCaptures, fnv1a32 } from './split.js';

const labels = loadLabels();
const result = evaluate(labels, flowsFor);

// What the engine reached on the committed fixtures (see README.md); a regression of one capture fails.
// Lower than before the nDPI 4.2 round (0.821 / 0.522 held-out, 0.843 / 0.700 all): the changes made
// on that set's tune half cost zoom.pcap its sensitive verdict (score 0.50 → just under) and two
// downloads over web ports their bulk-transfer label; see README.md.
const MARGIN = 0.02;
const REACHED = {
  heldOut: { balanced: 0.786, activity: 0.522 },
  all: { balanced: 0.829, activity: 0.680 },
};

describe('evaluate() on the 50 labelled captures', () => {
  it('reaches its recorded held-out balanced accuracy (sensitive yes/no), less a small margin', () => {
    assert.ok(result.heldOut.engine.balancedAccuracy >= REACHED.heldOut.balanced - MARGIN,
      `held-out balanced ${result.heldOut.engine.balancedAccuracy.toFixed(3)}\n${formatEvaluation(result)}`);
  });

  it('reaches its recorded held-out activity accuracy, less a small margin', () => {
    assert.ok(result.heldOut.engine.activityAccuracy >= REACHED.heldOut.activity - MARGIN,
      `held-out activity ${result.heldOut.engine.activityAccuracy.toFixed(3)}\n${formatEvaluation(result)}`);
  });

  it('reaches its recorded accuracy on all 50 captures, less a small margin', () => {
    assert.ok(result.all.engine.balancedAccuracy >= REACHED.all.balanced - MARGIN);
    assert.ok(result.all.engine.activityAccuracy >= REACHED.all.activity - MARGIN);
  });

  it('beats the ports-only floor on sensitivity, held-out and overall', () => {
    assert.ok(result.heldOut.engine.balancedAccuracy > result.heldOut.portsOnly.balancedAccuracy);
    assert.ok(result.all.engine.balancedAccuracy > result.all.portsOnly.balancedAccuracy);
  });

  it('judges every capture, on the side of the split it was assigned', () => {
    assert.equal(result.rows.length, 50);
    assert.equal(result.heldOut.engine.captures, 23);
    assert.equal(result.tune.engine.captures, 27);
    for (const r of result.rows) assert.ok(r.records > 0, `${r.file}: no records for ${r.vmIp}`);
  });

  it('prints a headline per split and one row per capture', () => {
    const text = formatEvaluation(result);
    assert.match(text, /^held-out +n=23 +engine: balanced \d\.\d\d, activity \d\.\d\d +\| +ports-only: balanced \d\.\d\d/m);
    assert.equal(text.split('\n').filter((l) => / (tune|held-out) +[a-z-]+\*? /.test(l)).length, 50);
  });

  it('takes its flows from the function it is given, not from files', () => {
    const calls: string[] = [];
    const vm = '10.9.9.9';
    const e = evaluate([{ file: 'x', vmIp: vm, activity: 'remote-desktop', sensitive: true }], (file) => {
      calls.push(file);
      return conversation({ vm, remote: '198.51.100.1', vmPort: 3389, remotePort: 50000, seconds: 30, ppsOut: 60, ppsIn: 30, sizeOut: 300, sizeIn: 80 });
    }, { sideOf: () => 'held-out' });
    assert.deepEqual(calls, ['x']);
    assert.equal(e.heldOut.engine.balancedAccuracy, 1);
    assert.equal(e.rows[0]?.engine.activity, 'remote-desktop');
  });
});

describe('the tune / held-out split', () => {
  // Frozen here so that a change to the rule or the labels cannot silently move captures across.
  const HELD_OUT = [
    'rdp.pcap', 'rdp3.pcap', 'nomachine.pcapng',
    'zoom.pcap', 'wa_voice.pcap', 'wa_video.pcap', 'KakaoTalk_talk.pcap',
    'nintendo.pcap', 'starcraft_battle.pcap', 'roblox.pcapng', 'geforcenow.pcapng',
    'zattoo.pcap', 'mpeg-dash.pcap', 'dazn.pcapng',
    'ftp.pcap', 'bittorrent.pcap', 'bittorrent_utp.pcap', 'git.pcap', '443-git.pcap',
    'imap-starttls.pcap', 'imaps.pcap', 'smtp-starttls.pcap', 'munin.pcap',
  ];

  it('is the seeded rule written down before tuning, and puts these 23 captures on the held-out side', () => {
    const side = splitCaptures(labels);
    assert.deepEqual(labels.filter((c) => side.get(c.file) === 'held-out').map((c) => c.file), HELD_OUT);
  });

  it('splits every activity class as evenly as it can, the odd capture going to tune', () => {
    const side = splitCaptures(labels);
    const classes = new Set(labels.map((c) => c.activity));
    for (const k of classes) {
      const inClass = labels.filter((c) => c.activity === k);
      const tune = inClass.filter((c) => side.get(c.file) === 'tune').length;
      assert.equal(tune, Math.ceil(inClass.length / 2), k);
    }
  });

  it('hashes with FNV-1a-32', () => {
    assert.equal(fnv1a32(''), 0x811c9dc5);
    assert.equal(fnv1a32('a'), 0xe40c292c);
  });
});

describe('portsOnly()', () => {
  it('votes with bytes on well-known ports and falls back to background', () => {
    const vm = '10.0.0.5';
    const rdp = conversation({ vm, remote: '198.51.100.1', vmPort: 3389, remotePort: 50000, seconds: 10, ppsOut: 10, ppsIn: 10, sizeOut: 100, sizeIn: 100 });
    const web = conversation({ vm, remote: '198.51.100.2', vmPort: 50001, remotePort: 443, seconds: 10, ppsOut: 100, ppsIn: 100, sizeOut: 1000, sizeIn: 1000 });
    assert.equal(portsOnly([...rdp, ...web], vm).activity, 'remote-desktop');
    assert.equal(portsOnly(web, vm).activity, 'background');
  });
});

describe('scoresOf()', () => {
  it('averages the recall of both sides, so always answering "sensitive" scores 0.50', () => {
    const rows = labels.map((c): EvaluationRow => ({
      file: c.file, vmIp: c.vmIp, side: 'tune', records: 1, expected: { activity: c.activity, sensitive: c.sensitive },
      engine: { activity: 'remote-desktop', sensitive: true, score: 1, reasons: [] },
      portsOnly: { activity: 'background', sensitive: false, score: 0, reasons: [] },
    }));
    assert.equal(scoresOf(rows, (r) => r.engine).balancedAccuracy, 0.5);
    assert.equal(scoresOf(rows, (r) => r.portsOnly).balancedAccuracy, 0.5);
  });
});
