// The label maker's file side (not pure: reads and writes files), run by fixtures/make-ndpi42.sh.
// The rule itself is in ndpi-labels.ts (pure, tested); this only feeds it files and writes the results.
//
//   node dist/src/fingerprint/ndpi42-tool.js label RESULT_DIR PCAP_DIR OLD_PCAP_DIR OUT_DIR
//     → OUT_DIR/candidates.json (every capture, kept or excluded with the reason); prints the kept files
//   node dist/src/fingerprint/ndpi42-tool.js finalize OUT_DIR
//     → keeps, in OUT_DIR/flows/<file>.json, only the VM's records; excludes captures whose records carry
//       < 3 packets for the VM; writes OUT_DIR/labels.json (with the split side) and OUT_DIR/excluded.json
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { FlowRecord } from '../telemetry/flow.js';
import { normaliseIp } from '../telemetry/inventory.js';
import { labelCapture, type NdpiLabel } from './ndpi-labels.js';
import { NDPI42_SPLIT_SEED, splitCaptures } from './split.js';

const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');
const jsonLines = (rows: readonly unknown[]): string => `[\n${rows.map((r) => JSON.stringify(r)).join(',\n')}\n]\n`;

function label(resultDir: string, pcapDir: string, oldDir: string, outDir: string): void {
  const old = new Set(readdirSync(oldDir));
  const seen = new Map<string, string>();
  for (const f of old) seen.set(sha256(join(oldDir, f)), `shared/${f}`);
  const files = readdirSync(pcapDir).filter((f) => /\.(pcap|pcapng|cap)$/.test(f) && !old.has(f)).sort();
  const out: NdpiLabel[] = [];
  for (const file of files) {
    const h = sha256(join(pcapDir, file));
    const dup = seen.get(h);
    if (dup !== undefined) { out.push({ kept: false, file, why: `same content as ${dup}` }); continue; }
    seen.set(h, file);
    const result = join(resultDir, `${file}.out`);
    if (!existsSync(result)) { out.push({ kept: false, file, why: 'nDPI has no result file for it' }); continue; }
    out.push(labelCapture(file, readFileSync(result, 'latin1')));
  }
  writeFileSync(join(outDir, 'candidates.json'), jsonLines(out));
  for (const l of out) if (l.kept) console.log(l.file);
}

function finalize(outDir: string): void {
  const candidates = JSON.parse(readFileSync(join(outDir, 'candidates.json'), 'utf8')) as NdpiLabel[];
  const kept: { file: string; vmIp: string; activity: string; sensitive: boolean; why: string }[] = [];
  const excluded: { file: string; why: string }[] = [];
  for (const c of candidates) {
    const path = join(outDir, 'flows', `${c.file}.json`);
    if (!c.kept) { excluded.push({ file: c.file, why: c.why }); rmSync(path, { force: true }); continue; }
    const records = existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) as FlowRecord[] : [];
    const vm = normaliseIp(c.vmIp) ?? c.vmIp;
    const isVm = (a: string): boolean => (normaliseIp(a) ?? a) === vm;
    const mine = records.filter((r) => isVm(r.srcAddr) || isVm(r.dstAddr));
    const packets = mine.reduce((a, r) => a + r.packets, 0);
    if (packets < 3) {
      excluded.push({ file: c.file, why: `softflowd's records carry ${packets} packets for ${c.vmIp} (${records.length} records in all)` });
      rmSync(path, { force: true });
      continue;
    }
    const spelled = mine.map((r) => (isVm(r.srcAddr) ? r.srcAddr : r.dstAddr))[0] ?? c.vmIp;
    writeFileSync(path, jsonLines(mine));
    kept.push({ file: c.file, vmIp: spelled, activity: c.activity, sensitive: c.sensitive, why: c.why });
  }
  const side = splitCaptures(kept, NDPI42_SPLIT_SEED);
  writeFileSync(join(outDir, 'labels.json'), jsonLines(kept.map((k) => ({ ...k, side: side.get(k.file) }))));
  writeFileSync(join(outDir, 'excluded.json'), jsonLines(excluded));
  const by = (s: string): number => kept.filter((k) => side.get(k.file) === s).length;
  console.log(`ndpi42: ${kept.length} kept (${by('tune')} tune, ${by('held-out')} held-out), ${excluded.length} excluded`);
}

const [cmd, ...rest] = process.argv.slice(2);
if (cmd === 'label' && rest.length === 4) label(rest[0] ?? '', rest[1] ?? '', rest[2] ?? '', rest[3] ?? '');
else if (cmd === 'finalize' && rest.length === 1) finalize(rest[0] ?? '');
else {
  console.error('usage: ndpi42-tool.js label RESULT_DIR PCAP_DIR OLD_PCAP_DIR OUT_DIR | finalize OUT_DIR');
  process.exit(2);
}
