import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AppError } from '../core/errors.js';
import { systemClock } from '../core/clock.js';
import { silentLogger, type Logger } from '../core/logger.js';
import { CollectorCore, DEFAULT_COLLECTOR_OPTIONS, type CollectorStats } from './collector.js';
import type { FlowRecord } from './flow.js';
import { createInventory } from './inventory.js';
import { listenUdp, untilQuiet } from './udp.js';

/**
 * softflowd's arguments to read a capture and export it to 127.0.0.1:port, in the foreground, with
 * adjusted times (and millisecond timestamps for IPFIX). No -c: after -r it makes softflowd hang.
 */
export function softflowdArgs(pcap: string, port: number, version: 5 | 9 | 10, pidFile: string): string[] {
  const args = ['-r', pcap, '-n', `127.0.0.1:${port}`, '-v', String(version), '-a', '-d', '-p', pidFile];
  if (version === 10) args.push('-A', 'milli');
  return args;
}

export interface CaptureFlows {
  readonly records: FlowRecord[];
  readonly stats: CollectorStats;
}

/**
 * Flow records for a packet capture, produced exactly as in production: softflowd reads the capture and
 * exports IPFIX (millisecond timestamps) over UDP to the project's own collector on loopback.
 */
export async function flowsFromCapture(pcap: string, opts: { softflowd?: string; timeoutMs?: number; log?: Logger } = {}): Promise<CaptureFlows> {
  const records: FlowRecord[] = [];
  const core = new CollectorCore({
    ...DEFAULT_COLLECTOR_OPTIONS,
    inventory: createInventory([]),
    onWindow: () => undefined,
    onRecord: (r) => records.push(r),
    log: opts.log ?? silentLogger,
  });
  const udp = await listenUdp(core, { host: '127.0.0.1', port: 0 }, systemClock);
  let dir: string | null = null;
  try {
    dir = mkdtempSync(join(tmpdir(), 'vmshadow-softflowd-'));
    const args = [...softflowdArgs(pcap, udp.address.port, 10, join(dir, 'softflowd.pid')), '-6'];
    const bin = opts.softflowd ?? 'softflowd';
    const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    const timeoutMs = opts.timeoutMs ?? 60_000;
    const code = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new AppError('SOFTFLOWD_TIMEOUT', `softflowd did not finish reading ${pcap} within ${timeoutMs} ms; killed it`));
      }, timeoutMs);
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(new AppError('SOFTFLOWD_MISSING', `Cannot run ${bin}: ${e.message} (install the softflowd package)`, { cause: e }));
      });
      child.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    if (code !== 0) throw new AppError('SOFTFLOWD_FAILED', `softflowd exited with ${code} reading ${pcap}: ${stderr.trim().split('\n').slice(-2).join(' / ')}`);
    // The last datagrams may still be in the socket's queue: wait until a quiet spell.
    await untilQuiet(() => core.stats.datagrams, 150);
    core.tick(Date.now(), true);
    if (core.stats.lostRecords > 0 || core.stats.lostDatagrams > 0) {
      throw new AppError('EXPORT_LOST', `softflowd's export of ${pcap} lost ${core.stats.lostRecords} records on loopback; the verdict would rest on part of the capture`, { retryable: true });
    }
    return { records, stats: core.stats };
  } finally {
    await udp.close();
    if (dir !== null) rmSync(dir, { recursive: true, force: true });
  }
}
