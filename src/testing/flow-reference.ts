// Real exporters and the reference decoder, for tests and benchmarks: nfcapd collecting, nfdump printing.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { softflowdArgs } from '../telemetry/capture.js';
import type { FlowRecord } from '../telemetry/flow.js';
import { untilQuiet } from '../telemetry/udp.js';

/** The fields both decoders must agree on, as one comparable string. */
export function flowKey(r: Pick<FlowRecord, 'srcAddr' | 'dstAddr' | 'srcPort' | 'dstPort' | 'protocol' | 'bytes' | 'packets' | 'firstMs' | 'lastMs'>): string {
  return `${r.srcAddr} ${r.srcPort} > ${r.dstAddr} ${r.dstPort} p${r.protocol} ${r.bytes}B ${r.packets}pk ${r.firstMs}..${r.lastMs}`;
}

export interface Nfcapd {
  readonly port: number;
  readonly pid: number;
  /** Stops nfcapd and returns how many flow records nfdump counts (cheap for millions of records). */
  stopAndCount(): Promise<number>;
  /** Stops nfcapd (it writes its file on exit) and returns what nfdump prints, as FlowRecord fields. */
  stop(): Promise<NfdumpRecord[]>;
}

export interface NfdumpRecord {
  srcAddr: string; dstAddr: string; srcPort: number; dstPort: number; protocol: number;
  bytes: number; packets: number; firstMs: number; lastMs: number; receivedMs: number;
}

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/**
 * Starts nfcapd on a free loopback port, writing to a temporary folder; with `recvBufferBytes`, its
 * socket gets that receive buffer (-B), as the kernel caps it (net.core.rmem_max).
 */
export async function startNfcapd(opts: { recvBufferBytes?: number } = {}): Promise<Nfcapd> {
  const dir = mkdtempSync(join(tmpdir(), 'vmshadow-nfcapd-'));
  const port = await freeUdpPort();
  const args = ['-w', dir, '-p', String(port), '-b', '127.0.0.1', '-t', '3600'];
  if (opts.recvBufferBytes !== undefined) args.push('-B', String(opts.recvBufferBytes));
  const child: ChildProcess = spawn('nfcapd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout?.on('data', (d: Buffer) => { log += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { log += d.toString(); });
  // nfcapd says where it writes once it has set up its socket; give it a moment beyond that.
  for (let i = 0; i < 100 && !/flowdir|Startup|Listen/i.test(log) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, 200));
  if (child.exitCode !== null) throw new Error(`nfcapd exited ${child.exitCode} at start: ${log.trim()}`);
  const halt = async (): Promise<void> => {
    if (child.exitCode === null) {
      await new Promise<void>((resolve) => {
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      });
    }
  };
  return {
    port,
    pid: child.pid!,
    stopAndCount: async () => {
      await halt();
      const out = spawnSync('nfdump', ['-R', dir, '-I'], { encoding: 'utf8' });
      rmSync(dir, { recursive: true, force: true });
      const m = /^Flows:\s*(\d+)/m.exec(out.stdout);
      if (m === null) throw new Error(`nfdump -I printed no flow count: ${out.stdout}${out.stderr}`);
      return Number(m[1]);
    },
    stop: async () => {
      if (child.exitCode === null) {
        await new Promise<void>((resolve) => {
          child.once('exit', () => resolve());
          child.kill('SIGTERM');
        });
      }
      const out = spawnSync('nfdump', ['-R', dir, '-o', 'json'], { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' }, maxBuffer: 1 << 30 });
      rmSync(dir, { recursive: true, force: true });
      if (out.status !== 0) throw new Error(`nfdump failed: ${out.stderr}`);
      return parseNfdumpJson(out.stdout);
    },
  };
}

const utcMs = (s: string): number => Date.parse(`${s}Z`);

export function parseNfdumpJson(text: string): NfdumpRecord[] {
  if (text.trim() === '') return [];
  const rows = JSON.parse(text) as Record<string, unknown>[];
  return rows.filter((r) => r.type === 'FLOW').map((r) => ({
    srcAddr: String(r.src4_addr ?? r.src6_addr),
    dstAddr: String(r.dst4_addr ?? r.dst6_addr),
    srcPort: Number(r.src_port ?? 0),
    // ICMP carries type and code where ports would be (type << 8 | code); nfdump prints them apart.
    dstPort: r.icmp_type !== undefined ? Number(r.icmp_type) * 256 + Number(r.icmp_code ?? 0) : Number(r.dst_port ?? 0),
    protocol: Number(r.proto),
    bytes: Number(r.in_bytes ?? r.out_bytes ?? 0),
    packets: Number(r.in_packets ?? r.out_packets ?? 0),
    firstMs: utcMs(String(r.first)),
    lastMs: utcMs(String(r.last)),
    receivedMs: utcMs(String(r.received)),
  }));
}

/** A loopback relay: every datagram it receives goes to `onDatagram` and, unchanged, on to `forwardPort`. */
export async function startRelay(onDatagram: (d: Uint8Array, exporter: string) => void, forwardPort: number | null): Promise<{ port: number; datagrams(): number; close(): Promise<void> }> {
  const s = createSocket({ type: 'udp4', recvBufferSize: 16 * 1024 * 1024 });
  let n = 0;
  s.on('message', (msg, rinfo) => {
    n++;
    onDatagram(new Uint8Array(msg.buffer, msg.byteOffset, msg.length), `${rinfo.address}:${rinfo.port}`);
    if (forwardPort !== null) s.send(msg, forwardPort, '127.0.0.1');
  });
  await new Promise<void>((r) => s.bind(0, '127.0.0.1', () => r()));
  return {
    port: s.address().port,
    datagrams: () => n,
    close: () => new Promise<void>((r) => s.close(() => r())),
  };
}

/** Runs softflowd over a capture, exporting to 127.0.0.1:port; resolves when it has read it all. */
export function runSoftflowd(pcap: string, port: number, version: 5 | 9 | 10): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vmshadow-sf-'));
  return runToEnd('softflowd', softflowdArgs(pcap, port, version, join(dir, 'pid')), 60_000).finally(() => rmSync(dir, { recursive: true, force: true }));
}

/** Runs pmacctd over a capture with the nfprobe (IPFIX/NetFlow) or sfprobe (sFlow) plugin. */
export function runPmacctd(pcap: string, port: number, plugin: 'nfprobe' | 'sfprobe'): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'vmshadow-pm-'));
  const conf = join(dir, 'pmacctd.conf');
  const lines = [
    'daemonize: false',
    `pcap_savefile: ${pcap}`,
    `plugins: ${plugin}`,
    'aggregate: src_host, dst_host, src_port, dst_port, proto, tcpflags',
    plugin === 'nfprobe' ? `nfprobe_receiver: 127.0.0.1:${port}` : `sfprobe_receiver: 127.0.0.1:${port}`,
    ...(plugin === 'nfprobe' ? ['nfprobe_version: 10', 'nfprobe_timeouts: tcp=1:tcp.rst=1:tcp.fin=1:udp=1:icmp=1:general=1:maxlife=1:expint=1'] : ['sampling_rate: 1']),
  ];
  writeFileSync(conf, lines.join('\n') + '\n');
  return runToEnd('pmacctd', ['-f', conf], 60_000).finally(() => rmSync(dir, { recursive: true, force: true }));
}

function runToEnd(bin: string, args: string[], timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${bin} did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      // pmacctd at the end of a capture sometimes reports its plugin gone (exit 1) after a clean shutdown.
      if (code === 0 || (bin === 'pmacctd' && /no more plugins active\. Shutting down\./.test(err))) resolve();
      else reject(new Error(`${bin} exited ${code}: ${err.slice(-500)}`));
    });
  });
}

/** Waits until no datagram has arrived for quietMs. */
export function quiet(count: () => number, quietMs = 200): Promise<void> {
  return untilQuiet(count, quietMs);
}

