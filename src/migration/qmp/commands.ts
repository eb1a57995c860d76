// Typed helpers for the QMP commands the migration driver uses, thin over execute(). Names and
// argument spellings are QEMU 7.2's (checked against its query-qmp-schema by commands.qemu.test.ts);
// replies keep QEMU's kebab-case keys so they can be read against the QMP reference.
import type { CallOptions, QmpExecutor } from './client.js';
import { QmpClosedError, QmpProtocolError } from './errors.js';

// ---- replies ----

export type RunState =
  | 'debug' | 'inmigrate' | 'internal-error' | 'io-error' | 'paused' | 'postmigrate' | 'prelaunch'
  | 'finish-migrate' | 'restore-vm' | 'running' | 'save-vm' | 'shutdown' | 'suspended' | 'watchdog'
  | 'guest-panicked' | 'colo';

export interface StatusInfo {
  readonly running: boolean;
  readonly singlestep?: boolean;
  readonly status: RunState;
}

export type MigrationStatus =
  | 'none' | 'setup' | 'cancelling' | 'cancelled' | 'active' | 'postcopy-active' | 'postcopy-paused'
  | 'postcopy-recover' | 'completed' | 'failed' | 'colo' | 'pre-switchover' | 'device' | 'wait-unplug';

/** RAM (or, for the old block migration, disk) counters of query-migrate. Bytes unless named otherwise. */
export interface MigrationStats {
  readonly transferred: number;
  readonly remaining: number;
  readonly total: number;
  /** Pages found zero (sent as a flag, not as data). */
  readonly duplicate: number;
  readonly skipped?: number;
  /** Pages sent in full. */
  readonly normal: number;
  readonly 'normal-bytes': number;
  /** Pages dirtied per second, as QEMU measured it in the last round. */
  readonly 'dirty-pages-rate': number;
  /** Throughput in Mbit/s. */
  readonly mbps: number;
  readonly 'dirty-sync-count': number;
  readonly 'postcopy-requests': number;
  readonly 'page-size': number;
  readonly 'multifd-bytes'?: number;
  readonly 'pages-per-second'?: number;
  readonly 'precopy-bytes'?: number;
  readonly 'downtime-bytes'?: number;
  readonly 'postcopy-bytes'?: number;
  readonly 'dirty-sync-missed-zero-copy'?: number;
}

export interface XbzrleCacheStats {
  readonly 'cache-size': number;
  readonly bytes: number;
  readonly pages: number;
  readonly 'cache-miss': number;
  readonly 'cache-miss-rate': number;
  readonly 'encoding-rate'?: number;
  readonly overflow: number;
}

export interface CompressionStats {
  readonly pages: number;
  readonly busy: number;
  readonly 'busy-rate': number;
  readonly 'compressed-size': number;
  readonly 'compression-rate': number;
}

/** query-migrate's reply. Times in ms. Fields appear only in the states where QEMU knows them. */
export interface MigrationInfo {
  readonly status?: MigrationStatus;
  readonly ram?: MigrationStats;
  readonly disk?: MigrationStats;
  readonly 'xbzrle-cache'?: XbzrleCacheStats;
  readonly compression?: CompressionStats;
  readonly 'total-time'?: number;
  readonly 'expected-downtime'?: number;
  readonly downtime?: number;
  readonly 'setup-time'?: number;
  readonly 'cpu-throttle-percentage'?: number;
  readonly 'error-desc'?: string;
  readonly 'blocked-reasons'?: readonly string[];
  readonly 'postcopy-blocktime'?: number;
  readonly 'postcopy-vcpu-blocktime'?: readonly number[];
  readonly 'socket-address'?: readonly SocketAddress[];
}

export type MigrationCapabilityName =
  | 'xbzrle' | 'rdma-pin-all' | 'auto-converge' | 'zero-blocks' | 'compress' | 'events' | 'postcopy-ram'
  | 'x-colo' | 'release-ram' | 'block' | 'return-path' | 'pause-before-switchover' | 'multifd'
  | 'dirty-bitmaps' | 'postcopy-blocktime' | 'late-block-activate' | 'x-ignore-shared' | 'validate-uuid'
  | 'background-snapshot' | 'zero-copy-send' | 'postcopy-preempt';

export interface MigrationCapability {
  readonly capability: MigrationCapabilityName;
  readonly state: boolean;
}

/** migrate-set-parameters' arguments (and query-migrate-parameters' reply). Sizes in bytes, times in ms. */
export interface MigrationParameters {
  readonly 'announce-initial'?: number;
  readonly 'announce-max'?: number;
  readonly 'announce-rounds'?: number;
  readonly 'announce-step'?: number;
  readonly 'compress-level'?: number;
  readonly 'compress-threads'?: number;
  readonly 'compress-wait-thread'?: boolean;
  readonly 'decompress-threads'?: number;
  readonly 'throttle-trigger-threshold'?: number;
  readonly 'cpu-throttle-initial'?: number;
  readonly 'cpu-throttle-increment'?: number;
  readonly 'cpu-throttle-tailslow'?: boolean;
  /** null (set) or "" clears it. */
  readonly 'tls-creds'?: string | null;
  readonly 'tls-hostname'?: string | null;
  readonly 'tls-authz'?: string | null;
  /** Bytes per second. */
  readonly 'max-bandwidth'?: number;
  /** Milliseconds. */
  readonly 'downtime-limit'?: number;
  readonly 'x-checkpoint-delay'?: number;
  readonly 'block-incremental'?: boolean;
  readonly 'multifd-channels'?: number;
  /** Bytes. */
  readonly 'xbzrle-cache-size'?: number;
  /** Bytes per second; 0 is unlimited. */
  readonly 'max-postcopy-bandwidth'?: number;
  readonly 'max-cpu-throttle'?: number;
  readonly 'multifd-compression'?: 'none' | 'zlib' | 'zstd';
  readonly 'multifd-zlib-level'?: number;
  readonly 'multifd-zstd-level'?: number;
}

export type SocketAddress =
  | { readonly type: 'inet'; readonly host: string; readonly port: string }
  | { readonly type: 'unix'; readonly path: string }
  | { readonly type: 'fd'; readonly str: string };

export type BlockJobStatus =
  | 'undefined' | 'created' | 'running' | 'paused' | 'ready' | 'standby' | 'waiting' | 'pending'
  | 'aborting' | 'concluded' | 'null';

export interface BlockJobInfo {
  readonly type: string;
  readonly device: string;
  /** Progress: offset of len (bytes, an estimate that grows as the guest writes). */
  readonly len: number;
  readonly offset: number;
  readonly busy: boolean;
  readonly paused: boolean;
  readonly speed: number;
  readonly 'io-status': 'ok' | 'failed' | 'nospace';
  readonly ready: boolean;
  readonly status: BlockJobStatus;
  readonly 'auto-finalize': boolean;
  readonly 'auto-dismiss': boolean;
  readonly error?: string;
}

// ---- arguments ----

/** blockdev-add's arguments: `driver` plus its options (e.g. nbd: server, export, tls-creds). */
export interface BlockdevOptions {
  readonly driver: string;
  readonly 'node-name'?: string;
  readonly 'read-only'?: boolean;
  readonly [option: string]: unknown;
}

export interface NbdServerStartArgs {
  /** Where the NBD server listens: note the `data` wrapper QMP wants here. */
  readonly addr:
    | { readonly type: 'inet'; readonly data: { readonly host: string; readonly port: string } }
    | { readonly type: 'unix'; readonly data: { readonly path: string } };
  readonly 'tls-creds'?: string;
  readonly 'tls-authz'?: string;
  readonly 'max-connections'?: number;
}

export interface NbdExportArgs {
  readonly id: string;
  readonly 'node-name': string;
  /** Export name clients ask for (default: node-name). */
  readonly name?: string;
  readonly writable?: boolean;
  readonly description?: string;
}

export interface BlockdevMirrorArgs {
  readonly 'job-id'?: string;
  /** Node name of the source. */
  readonly device: string;
  /** Node name of the target (added with blockdev-add). */
  readonly target: string;
  readonly sync: 'top' | 'full' | 'none';
  readonly speed?: number;
  readonly granularity?: number;
  readonly 'buf-size'?: number;
  readonly 'on-source-error'?: 'report' | 'ignore' | 'enospc' | 'stop' | 'auto';
  readonly 'on-target-error'?: 'report' | 'ignore' | 'enospc' | 'stop' | 'auto';
  readonly 'copy-mode'?: 'background' | 'write-blocking';
  readonly 'auto-finalize'?: boolean;
  readonly 'auto-dismiss'?: boolean;
  readonly 'filter-node-name'?: string;
  readonly replaces?: string;
}

export interface TlsCredsX509Args {
  readonly id: string;
  /** Directory holding ca-cert.pem and server-cert.pem/server-key.pem or client-cert.pem/client-key.pem. */
  readonly dir: string;
  readonly endpoint: 'client' | 'server';
  readonly 'verify-peer'?: boolean;
  readonly priority?: string;
  readonly 'sanity-check'?: boolean;
}

// ---- the helpers ----

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Drops keys whose value is undefined, so what a stand-in executor records is what goes on the wire. */
function defined<T extends object>(args: T): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(args)) if (v !== undefined) out[k] = v;
  return out;
}

/** The QEMU commands the migration driver sends, over any QmpExecutor (the client or a stand-in). */
export class QemuMonitor {
  constructor(
    private readonly qmp: QmpExecutor,
    /** Names the monitor in the errors this class raises itself. */
    private readonly name = 'QMP',
  ) {}

  private async object<T>(command: string, args: Record<string, unknown> | undefined, opts?: CallOptions): Promise<T> {
    const r = await this.qmp.execute(command, args, opts);
    if (!isRecord(r)) throw new QmpProtocolError(this.name, `QMP ${command} on ${this.name} returned ${JSON.stringify(r)?.slice(0, 80)}, not an object`);
    return r as T;
  }

  private async array<T>(command: string, opts?: CallOptions): Promise<T[]> {
    const r = await this.qmp.execute(command, undefined, opts);
    if (!Array.isArray(r)) throw new QmpProtocolError(this.name, `QMP ${command} on ${this.name} returned ${JSON.stringify(r)?.slice(0, 80)}, not an array`);
    return r as T[];
  }

  private async none(command: string, args?: Record<string, unknown>, opts?: CallOptions): Promise<void> {
    await this.qmp.execute(command, args, opts);
  }

  async queryStatus(opts?: CallOptions): Promise<StatusInfo> {
    const r = await this.object<StatusInfo>('query-status', undefined, opts);
    if (typeof r.status !== 'string' || typeof r.running !== 'boolean') {
      throw new QmpProtocolError(this.name, `QMP query-status on ${this.name} returned no status/running: ${JSON.stringify(r).slice(0, 120)}`);
    }
    return r;
  }

  queryMigrate(opts?: CallOptions): Promise<MigrationInfo> {
    return this.object<MigrationInfo>('query-migrate', undefined, opts);
  }

  queryMigrateParameters(opts?: CallOptions): Promise<MigrationParameters> {
    return this.object<MigrationParameters>('query-migrate-parameters', undefined, opts);
  }

  queryMigrateCapabilities(opts?: CallOptions): Promise<MigrationCapability[]> {
    return this.array<MigrationCapability>('query-migrate-capabilities', opts);
  }

  /** Capabilities as a map, e.g. { multifd: true, xbzrle: false }. */
  setMigrationCapabilities(caps: Partial<Record<MigrationCapabilityName, boolean>>, opts?: CallOptions): Promise<void> {
    const capabilities = Object.entries(caps)
      .filter((e): e is [string, boolean] => typeof e[1] === 'boolean')
      .map(([capability, state]) => ({ capability, state }));
    return this.none('migrate-set-capabilities', { capabilities }, opts);
  }

  setMigrationParameters(params: MigrationParameters, opts?: CallOptions): Promise<void> {
    return this.none('migrate-set-parameters', defined(params), opts);
  }

  /** Starts an outgoing migration (returns at once; follow it with query-migrate and MIGRATION events). */
  migrate(uri: string, opts?: CallOptions & { resume?: boolean }): Promise<void> {
    return this.none('migrate', defined({ uri, resume: opts?.resume }), opts);
  }

  /** On a destination started with `-incoming defer`: listen for the migration stream. */
  migrateIncoming(uri: string, opts?: CallOptions): Promise<void> {
    return this.none('migrate-incoming', { uri }, opts);
  }

  migrateCancel(opts?: CallOptions): Promise<void> {
    return this.none('migrate_cancel', undefined, opts);
  }

  migrateStartPostcopy(opts?: CallOptions): Promise<void> {
    return this.none('migrate-start-postcopy', undefined, opts);
  }

  /** Lets a migration paused at `state` (with pause-before-switchover) go on. */
  migrateContinue(state: MigrationStatus, opts?: CallOptions): Promise<void> {
    return this.none('migrate-continue', { state }, opts);
  }

  cont(opts?: CallOptions): Promise<void> {
    return this.none('cont', undefined, opts);
  }

  stop(opts?: CallOptions): Promise<void> {
    return this.none('stop', undefined, opts);
  }

  /** Asks QEMU to exit. The connection closing right after (or instead of) the reply is success. */
  async quit(opts?: CallOptions): Promise<void> {
    try {
      await this.none('quit', undefined, opts);
    } catch (err) {
      if (err instanceof QmpClosedError && err.reason === 'eof') return;
      throw err;
    }
  }

  nbdServerStart(args: NbdServerStartArgs, opts?: CallOptions): Promise<void> {
    return this.none('nbd-server-start', defined(args), opts);
  }

  nbdServerStop(opts?: CallOptions): Promise<void> {
    return this.none('nbd-server-stop', undefined, opts);
  }

  /** Exports a block node over the running NBD server. */
  blockExportAddNbd(args: NbdExportArgs, opts?: CallOptions): Promise<void> {
    return this.none('block-export-add', defined({ type: 'nbd', ...args }), opts);
  }

  blockExportDel(id: string, opts?: CallOptions & { mode?: 'safe' | 'hard' }): Promise<void> {
    return this.none('block-export-del', defined({ id, mode: opts?.mode }), opts);
  }

  blockdevAdd(options: BlockdevOptions, opts?: CallOptions): Promise<void> {
    return this.none('blockdev-add', defined(options), opts);
  }

  blockdevDel(nodeName: string, opts?: CallOptions): Promise<void> {
    return this.none('blockdev-del', { 'node-name': nodeName }, opts);
  }

  blockdevMirror(args: BlockdevMirrorArgs, opts?: CallOptions): Promise<void> {
    return this.none('blockdev-mirror', defined(args), opts);
  }

  /** Cancels a block job; on a READY mirror this completes it cleanly without pivoting to the target. */
  blockJobCancel(device: string, opts?: CallOptions & { force?: boolean }): Promise<void> {
    return this.none('block-job-cancel', defined({ device, force: opts?.force }), opts);
  }

  /** Completes a READY mirror by pivoting the device onto the target. */
  blockJobComplete(device: string, opts?: CallOptions): Promise<void> {
    return this.none('block-job-complete', { device }, opts);
  }

  queryBlockJobs(opts?: CallOptions): Promise<BlockJobInfo[]> {
    return this.array<BlockJobInfo>('query-block-jobs', opts);
  }

  addTlsCredsX509(args: TlsCredsX509Args, opts?: CallOptions): Promise<void> {
    return this.none('object-add', defined({ 'qom-type': 'tls-creds-x509', ...args }), opts);
  }

  objectDel(id: string, opts?: CallOptions): Promise<void> {
    return this.none('object-del', { id }, opts);
  }
}

/** An NBD blockdev pointing at a destination's export (source side of a disk mirror). */
export function nbdBlockdev(opts: {
  nodeName: string;
  server: SocketAddress;
  exportName: string;
  tlsCreds?: string;
  tlsHostname?: string;
}): BlockdevOptions {
  return defined({
    driver: 'nbd',
    'node-name': opts.nodeName,
    server: opts.server,
    export: opts.exportName,
    'tls-creds': opts.tlsCreds,
    'tls-hostname': opts.tlsHostname,
  }) as unknown as BlockdevOptions;
}
