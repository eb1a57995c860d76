// Regenerates the decoder fixtures in src/telemetry/decoders/fixtures/ from real exporters:
//
//   npx tsc -p . && node dist/src/testing/flow-fixture-capture.js
//
// softflowd and pmacctd read a capture from ../shared/data/traffic/pcap and export to a listener on
// loopback; the datagrams are saved as a pcap; then they are replayed to nfcapd (NetFlow/IPFIX) and
// `nfdump -o json` prints the reference, or tshark dissects the pcap (sFlow: this nfdump has no sfcapd).
// Needs softflowd, pmacct, nfdump and tshark. Nothing here runs in the tests: they read the saved files.

import { spawn, spawnSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FIXTURE_DIR, type ReferenceFile, type ReferenceRecord } from './flow-fixtures.js';

const PCAPS = fileURLToPath(new URL('../../../../shared/data/traffic/pcap/', import.meta.url));
const PORT_OF = { ipfix: 4739, netflow9: 2055, netflow5: 2055, sflow5: 6343 } as const;

interface Spec {
  readonly name: string;
  readonly format: ReferenceFile['format'];
  readonly pcap: string;
  readonly samplingRate: number;
  /** The exporter command line (or config) as recorded, and how to run it to a port. */
  describe(): string;
  run(port: number): Promise<void>;
}

function softflowd(name: string, format: ReferenceFile['format'], pcap: string, extra: string[], samplingRate = 1): Spec {
  const version = format === 'ipfix' ? '10' : format === 'netflow9' ? '9' : '5';
  // Never -c with -r: softflowd then waits forever on its control socket.
  const args = (port: number): string[] => ['-r', `${PCAPS}${pcap}`, '-n', `127.0.0.1:${port}`, '-v', version, '-a', '-d', ...extra];
  return {
    name, format, pcap, samplingRate,
    describe: () => `softflowd ${args(0).join(' ').replace(PCAPS, '').replace('127.0.0.1:0', '127.0.0.1:PORT')}`,
    run: (port) => exec('softflowd', [...args(port), '-p', join(tmpdir(), `softflowd-${process.pid}.pid`)]),
  };
}

function pmacctd(name: string, format: ReferenceFile['format'], pcap: string, plugin: string, samplingRate = 1): Spec {
  const config = (port: number): string => [
    'daemonize: false',
    `pcap_savefile: ${PCAPS}${pcap}`,
    'pcap_savefile_wait: false',
    ...(plugin === 'sfprobe'
      ? ['plugins: sfprobe', `sfprobe_receiver: 127.0.0.1:${port}`, 'sfprobe_agentip: 192.0.2.7', 'sfprobe_agentsubid: 3', `sampling_rate: ${samplingRate}`]
      : [
        'plugins: nfprobe', `nfprobe_receiver: 127.0.0.1:${port}`, `nfprobe_version: ${format === 'ipfix' ? 10 : 9}`,
        'nfprobe_timeouts: tcp=1:udp=1:maxlife=1:general=1:expint=1',
        'aggregate: src_host, dst_host, src_port, dst_port, proto, tos',
      ]),
    '',
  ].join('\n');
  return {
    name, format, pcap, samplingRate,
    describe: () => `pmacctd 1.7.7 with: ${config(0).replaceAll(PCAPS, '').replace('127.0.0.1:0', '127.0.0.1:PORT').trim().split('\n').join('; ')}`,
    run: async (port) => {
      const dir = mkdtempSync(join(tmpdir(), 'pmacctd-'));
      writeFileSync(join(dir, 'pmacctd.conf'), config(port));
      try {
        await exec('pmacctd', ['-f', join(dir, 'pmacctd.conf')]);
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}

const SPECS: Spec[] = [
  softflowd('softflowd-ipfix-wa_voice', 'ipfix', 'wa_voice.pcap', ['-A', 'milli']),
  softflowd('softflowd-ipfix-smtp-starttls', 'ipfix', 'smtp-starttls.pcap', ['-A', 'milli']),
  softflowd('softflowd-ipfix-sampled-wa_voice', 'ipfix', 'wa_voice.pcap', ['-A', 'milli', '-s', '10'], 10),
  softflowd('softflowd-netflow9-wa_voice', 'netflow9', 'wa_voice.pcap', []),
  softflowd('softflowd-netflow9-smtp-starttls', 'netflow9', 'smtp-starttls.pcap', []),
  softflowd('softflowd-netflow5-wa_voice', 'netflow5', 'wa_voice.pcap', []),
  pmacctd('pmacctd-ipfix-wa_voice', 'ipfix', 'wa_voice.pcap', 'nfprobe'),
  pmacctd('pmacctd-netflow9-rdp2', 'netflow9', 'rdp2.pcap', 'nfprobe'),
  pmacctd('pmacctd-sflow-wa_voice', 'sflow5', 'wa_voice.pcap', 'sfprobe', 20),
];

function exec(cmd: string, args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.once('error', reject);
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new Error(`${cmd} exited with ${code}`));
    });
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Got {
  atMs: number;
  payload: Uint8Array;
}

/** Runs the exporter against a loopback listener and returns what arrived (waiting for quiet). */
async function record(spec: Spec): Promise<Got[]> {
  const got: Got[] = [];
  const s = createSocket('udp4');
  s.on('message', (m) => got.push({ atMs: Date.now(), payload: new Uint8Array(m) }));
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  await spec.run(s.address().port);
  let n = -1;
  while (n !== got.length) {
    n = got.length;
    await sleep(1500);
  }
  s.close();
  return got;
}

/** A pcap of raw IPv4 packets (link type 101) carrying the datagrams to 127.0.0.1:port. */
function toPcap(datagrams: Got[], port: number): Uint8Array {
  const parts: Uint8Array[] = [];
  const head = new DataView(new ArrayBuffer(24));
  head.setUint32(0, 0xa1b2c3d4, true);
  head.setUint16(4, 2, true);
  head.setUint16(6, 4, true);
  head.setUint32(16, 65535, true);
  head.setUint32(20, 101, true);
  parts.push(new Uint8Array(head.buffer));
  for (const d of datagrams) {
    const n = d.payload.length;
    const rec = new DataView(new ArrayBuffer(16 + 28));
    rec.setUint32(0, Math.floor(d.atMs / 1000), true);
    rec.setUint32(4, (d.atMs % 1000) * 1000, true);
    rec.setUint32(8, 28 + n, true);
    rec.setUint32(12, 28 + n, true);
    rec.setUint8(16, 0x45);
    rec.setUint16(18, 28 + n);
    rec.setUint8(24, 64);
    rec.setUint8(25, 17);
    rec.setUint32(28, 0x7f000001);
    rec.setUint32(32, 0x7f000001);
    rec.setUint16(36, 40000);
    rec.setUint16(38, port);
    rec.setUint16(40, 8 + n);
    parts.push(new Uint8Array(rec.buffer), d.payload);
  }
  const out = new Uint8Array(parts.reduce((t, p) => t + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

interface NfdumpJson {
  src4_addr?: string; dst4_addr?: string; src6_addr?: string; dst6_addr?: string;
  src_port?: number; dst_port?: number; icmp_type?: number; icmp_code?: number; proto: number; in_bytes: number; in_packets: number; first: string; last: string;
}

/** Replays the datagrams to nfcapd and returns what `nfdump -o json` prints. */
async function nfdumpReference(datagrams: Got[]): Promise<ReferenceRecord[]> {
  const dir = mkdtempSync(join(tmpdir(), 'nfcapd-'));
  const probe = createSocket('udp4');
  await new Promise<void>((r) => probe.bind(0, '127.0.0.1', () => r()));
  const port = probe.address().port;
  probe.close();
  const child = spawn('nfcapd', ['-w', dir, '-p', String(port), '-b', '127.0.0.1', '-t', '3600'], { stdio: 'ignore' });
  await sleep(1000);
  const s = createSocket('udp4');
  for (const d of datagrams) {
    await new Promise<void>((r) => s.send(d.payload, port, '127.0.0.1', () => r()));
    await sleep(5);
  }
  s.close();
  await sleep(500);
  await new Promise<void>((r) => {
    child.once('exit', () => r());
    child.kill('SIGTERM');
  });
  const out = spawnSync('nfdump', ['-R', dir, '-o', 'json'], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' } });
  rmSync(dir, { recursive: true, force: true });
  if (out.status !== 0) throw new Error(`nfdump failed: ${out.stderr}`);
  const rows = JSON.parse(out.stdout.trim() === '' ? '[]' : out.stdout) as NfdumpJson[];
  return rows.map((r) => ({
    src: r.src4_addr ?? r.src6_addr ?? '',
    dst: r.dst4_addr ?? r.dst6_addr ?? '',
    // nfdump prints ICMP type and code instead of ports; NetFlow carries them as the destination port.
    srcPort: r.src_port ?? 0,
    dstPort: r.dst_port ?? ((r.icmp_type ?? 0) << 8) + (r.icmp_code ?? 0),
    proto: r.proto,
    bytes: r.in_bytes,
    packets: r.in_packets,
    // nfdump prints local time; run with TZ=UTC, so these are UTC.
    firstMs: Date.parse(`${r.first}Z`),
    lastMs: Date.parse(`${r.last}Z`),
  }));
}

type Json = { [k: string]: Json } | Json[] | string | number | null;

function find(o: Json, pred: (k: string) => boolean): Json[] {
  const out: Json[] = [];
  const walk = (x: Json): void => {
    if (x === null || typeof x !== 'object') return;
    if (Array.isArray(x)) {
      x.forEach(walk);
      return;
    }
    for (const [k, v] of Object.entries(x)) {
      if (pred(k)) out.push(v);
      else walk(v);
    }
  };
  walk(o);
  return out;
}

function field(o: Json, key: string): string | undefined {
  const hit = find(o, (k) => k === key)[0];
  return typeof hit === 'string' ? hit : undefined;
}

/** tshark's sFlow dissection: one record per flow sample whose sampled header is IP. */
function tsharkReference(pcapPath: string): ReferenceRecord[] {
  const out = spawnSync('tshark', ['-r', pcapPath, '-T', 'json', '--no-duplicate-keys', '-d', 'udp.port==6343,sflow'], { encoding: 'utf8', maxBuffer: 1 << 28 });
  if (out.status !== 0) throw new Error(`tshark failed: ${out.stderr}`);
  const frames = JSON.parse(out.stdout) as Json;
  const records: ReferenceRecord[] = [];
  for (const sample of find(frames, (k) => /^(Expanded )?[Ff]low sample/.test(k))) {
    const rate = Number(field(sample, 'sflow.flow_sample.sampling_rate'));
    const raw = find(sample, (k) => k === 'Raw packet header')[0];
    if (raw === undefined) continue;
    const inner = find(raw, (k) => k === 'sflow_245.header_tree')[0];
    if (inner === undefined) continue;
    const src = field(inner, 'ip.src') ?? field(inner, 'ipv6.src');
    const dst = field(inner, 'ip.dst') ?? field(inner, 'ipv6.dst');
    if (src === undefined || dst === undefined) continue;
    const proto = Number(field(inner, 'ip.proto') ?? field(inner, 'ipv6.nxt'));
    const port = (k: string): number => Number(field(inner, `tcp.${k}`) ?? field(inner, `udp.${k}`) ?? 0);
    const frameLength = Number(field(raw, 'sflow_245.header.frame_length'));
    records.push({ src, dst, srcPort: port('srcport'), dstPort: port('dstport'), proto, bytes: frameLength * rate, packets: rate });
  }
  return records;
}

async function main(): Promise<void> {
  const only = process.argv.slice(2);
  for (const spec of SPECS) {
    if (only.length > 0 && !only.includes(spec.name)) continue;
    const datagrams = await record(spec);
    if (datagrams.length === 0) throw new Error(`${spec.name}: the exporter sent nothing`);
    const pcapPath = `${FIXTURE_DIR}${spec.name}.pcap`;
    writeFileSync(pcapPath, toPcap(datagrams, PORT_OF[spec.format]));
    const sflow = spec.format === 'sflow5';
    const records = sflow ? tsharkReference(pcapPath) : await nfdumpReference(datagrams);
    const ref: ReferenceFile = {
      format: spec.format,
      exporter: spec.describe(),
      reference: sflow
        ? 'tshark -r FIXTURE.pcap -T json (sFlow dissector; bytes = frame_length x sampling_rate, packets = sampling_rate)'
        : 'datagrams replayed to nfcapd 1.7.1; TZ=UTC nfdump -R DIR -o json',
      samplingRate: spec.samplingRate,
      records,
    };
    // One record a line, so a diff of a regenerated fixture reads record by record.
    const { records: _r, ...meta } = ref;
    const head = JSON.stringify(meta, null, 1).slice(0, -2);
    const body = records.map((r) => `  ${JSON.stringify(r)}`).join(',\n');
    writeFileSync(`${FIXTURE_DIR}${spec.name}.expected.json`, `${head},\n "records": [\n${body}\n ]\n}\n`);
    console.log(`${spec.name}: ${datagrams.length} datagrams, ${records.length} reference records`);
  }
}

await main();
