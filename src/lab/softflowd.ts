// softflowd on a site's bridge. softflowd 1.1.0 (Debian 12) opens its live capture with a packet-buffer
// timeout of 0 and without immediate mode; with libpcap 1.10's TPACKET_V3 ring, the kernel then hands
// packets over only when a whole ring block is full, so on a quiet interface softflowd processes nothing and
// exports nothing ("Packets received by libpcap: 80 / Packets processed: 0", irino/softflowd PR #71). The lab
// preloads a 10-line shim that turns on libpcap's immediate mode before softflowd activates its capture.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AppError } from '../core/errors.js';
import { repoRoot } from './guest.js';

const run = promisify(execFile);

export const PCAP_IMMEDIATE_SOURCE = `// Built by the VMShadow lab (src/lab/softflowd.ts): LD_PRELOADed into softflowd so that its live capture
// delivers each packet at once (libpcap immediate mode) instead of when a TPACKET_V3 block fills.
#define _GNU_SOURCE
#include <dlfcn.h>
typedef struct pcap pcap_t;
int pcap_activate(pcap_t *p) {
  int (*real)(pcap_t *) = (int (*)(pcap_t *))dlsym(RTLD_NEXT, "pcap_activate");
  int (*immediate)(pcap_t *, int) = (int (*)(pcap_t *, int))dlsym(RTLD_NEXT, "pcap_set_immediate_mode");
  if (immediate) immediate(p, 1);
  return real ? real(p) : -1;
}
`;

const builds = new Map<string, Promise<string>>();

/** The shim's path, built with gcc the first time (or when its source changed) under `<repo>/.cache/softflowd`. */
export function ensurePcapImmediateShim(opts: { dir?: string } = {}): Promise<string> {
  const dir = opts.dir ?? join(repoRoot(), '.cache', 'softflowd');
  let p = builds.get(dir);
  if (p === undefined) {
    p = buildShim(dir);
    builds.set(dir, p);
    p.catch(() => builds.delete(dir));
  }
  return p;
}

async function buildShim(dir: string): Promise<string> {
  const src = join(dir, 'pcap-immediate.c');
  const lib = join(dir, 'pcap-immediate.so');
  const current = existsSync(src) ? readFileSync(src, 'utf8') : '';
  if (current === PCAP_IMMEDIATE_SOURCE && existsSync(lib)) return lib;
  mkdirSync(dir, { recursive: true });
  const tmpSrc = `${src}.${process.pid}.c`;
  const tmpLib = `${lib}.${process.pid}.tmp`;
  writeFileSync(tmpSrc, PCAP_IMMEDIATE_SOURCE);
  try {
    await run('gcc', ['-shared', '-fPIC', '-O2', '-Wall', '-o', tmpLib, tmpSrc, '-ldl'], { timeout: 60_000 });
  } catch (e) {
    const err = e as { code?: unknown; stderr?: string };
    const why = err.code === 'ENOENT' ? 'gcc is not installed (apt-get install -y --no-install-recommends gcc libc6-dev)' : String(err.stderr ?? (e as Error).message).trim();
    throw new AppError('SOFTFLOWD_SHIM', `Cannot build softflowd's capture shim ${lib}: ${why}`, { cause: e });
  }
  renameSync(tmpLib, lib);
  renameSync(tmpSrc, src);
  return lib;
}

export interface SoftflowdOptions {
  iface: string;
  /** HOST:PORT */
  collector: string;
  version: 5 | 9 | 10;
  activeTimeoutS: number;
  idleTimeoutS: number;
  pidFile: string;
  ctlSocket: string;
}

/** softflowd's command line: foreground, one interface, quiet flows exported after idleTimeoutS. PURE. */
export function softflowdArgv(o: SoftflowdOptions): string[] {
  const idle = String(o.idleTimeoutS);
  return [
    'softflowd', '-d', '-i', o.iface, '-n', o.collector, '-v', String(o.version),
    '-t', `maxlife=${o.activeTimeoutS}`, '-t', `general=${idle}`, '-t', `tcp=${idle}`, '-t', `udp=${idle}`, '-t', `icmp=${idle}`,
    '-t', `expint=${Math.max(1, Math.min(10, o.idleTimeoutS))}`,
    '-p', o.pidFile, '-c', o.ctlSocket,
    // IPFIX with millisecond timestamps, as the project's collector and the capture tests use it.
    ...(o.version === 10 ? ['-A', 'milli'] : []),
  ];
}
