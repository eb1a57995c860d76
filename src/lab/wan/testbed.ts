// A WAN testbed on one machine: one namespace per site (and per user), each with a bridge `br0`
// holding an address of one shared L2 subnet; the bridges are joined by VXLAN whose datagrams all
// pass through the user-space relay (relay.ts) in the run's `…-wan` namespace.
//
//   site ns "east"                       ns "wan" (relay process)                site ns "west"
//   br0 10.77.0.1 ─ vx0 ─ wan0 10.255.0.1 ═ e0 (10.255.0.11 = "east→west")
//                                             e1 (10.255.1.10 = "west→east") ═ wan0 10.255.1.1 ─ vx0 ─ br0 10.77.0.2
//
// Endpoint i's VXLAN floods to 10.255.i.(10+j) for every linked endpoint j (head-end replication) and
// learns remote MACs behind those addresses, because the relay sends j's datagrams to i from
// 10.255.i.(10+j). A guest's tap on a site's br0 is on the stretched segment; after a migration the
// guest's announcement re-teaches every bridge and VXLAN table.
import { AppError, InputError } from '../../core/errors.js';
import { NetnsRun, runCommand, type CleanupReport, type CommandOptions, type CommandResult, type SpawnedProcess } from '../netns.js';
import { defaultQueueBytes, type LinkParams } from './link.js';
import { startRelayProcess, VXLAN_PORT, type LinkDirection, type RelayConfig, type RelayLinkConfig, type RelayProcess, type RelayStats } from './relay.js';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface TestbedEndpoint {
  name: string;
  /** CIDR on br0; default: host number (index + 1) in the testbed's subnet */
  address?: string;
}

export interface TestbedLink {
  a: string;
  b: string;
  /** round trip; each direction gets rttMs / 2 */
  rttMs: number;
  /** 0 or absent: unlimited */
  rateMbps?: number;
  lossPct?: number;
  jitterMs?: number;
  /** default: one bandwidth-delay product, at least 64 KiB */
  queueBytes?: number;
}

export type TestbedLinkChange = Partial<Omit<TestbedLink, 'a' | 'b'>>;

export interface WanTestbedOptions {
  sites: TestbedEndpoint[];
  /** users are endpoints like sites (own namespace, bridge, address), linked to the sites they reach */
  users?: TestbedEndpoint[];
  links: TestbedLink[];
  /** the stretched L2 subnet; default 10.77.0.0/24 */
  subnet?: string;
  /** registry, relay config and control socket; default /run/vmshadow */
  stateDir?: string;
  /** build inside this run (the lab's); default: a new run that destroy() removes whole */
  run?: NetnsRun;
  vni?: number;
  seed?: number;
  /** default true: keeps IPv6 autoconfiguration chatter off the links */
  disableIpv6?: boolean;
  /**
   * Largest TCP receive buffer (net.ipv4.tcp_rmem max) in each namespace. 'auto' (default): twice the
   * largest bandwidth-delay product of the endpoint's rate-limited links (at least 256 KiB), which
   * lets a flow fill the link (the advertised window is ~0.7 of the buffer) without slow start
   * overflowing a one-BDP queue; 32 MiB when a link is unlimited.
   */
  tcpRmemMaxBytes?: 'auto' | number;
}

export interface TestbedEndpointInfo {
  name: string;
  kind: 'site' | 'user';
  ns: string;
  /** address on br0, without prefix */
  address: string;
  cidr: string;
  underlay: string;
}

export interface WanTestbed {
  readonly run: NetnsRun;
  readonly runId: string;
  /** the bridge in every site and user namespace */
  readonly bridge: string;
  readonly relayNs: string;
  readonly relay: RelayProcess;
  readonly endpoints: readonly TestbedEndpointInfo[];
  siteNs(name: string): string;
  siteAddress(name: string): string;
  /** Changes a link at run time (rttMs is split evenly between the directions). */
  setLink(a: string, b: string, change: TestbedLinkChange, direction?: LinkDirection): Promise<void>;
  stats(): Promise<RelayStats>;
  /** Adds a tap on the site's bridge; start QEMU with testbed.spawnIn(site, …) so it finds the tap. */
  addTap(site: string, tapName: string, opts?: { mtu?: number }): Promise<void>;
  execIn(site: string, argv: readonly string[], opts?: CommandOptions): Promise<CommandResult & { code: number }>;
  /** Sets the largest TCP receive/send buffers in one namespace (per-namespace sysctls). */
  setTcpBuffers(site: string, o: { rmemMaxBytes?: number; wmemMaxBytes?: number }): Promise<void>;
  /** Starts a process in the site's namespace, recorded for cleanup. */
  spawnIn(site: string, argv: readonly string[], opts?: SpawnOptions): SpawnedProcess;
  /** Stops the relay and removes the testbed (the whole run when the testbed created it). */
  destroy(): Promise<CleanupReport>;
}

export const BRIDGE = 'br0';
const UNDERLAY_DEV = 'wan0';
const VXLAN_DEV = 'vx0';
const MAX_ENDPOINTS = 200;
const NAME_RE = /^[a-z][a-z0-9-]{0,29}$/;

const LARGE_BUFFER_BYTES = 32 * 1024 * 1024;
const TCP_SYSCTLS: [string, string][] = [
  ['net.ipv4.tcp_wmem', `4096 65536 ${LARGE_BUFFER_BYTES}`],
  // A loss test must not leave a remembered ssthresh for the next connection.
  ['net.ipv4.tcp_no_metrics_save', '1'],
];

/** See WanTestbedOptions.tcpRmemMaxBytes. */
export function autoRmemMaxBytes(links: readonly { rttMs: number; rateMbps: number }[]): number {
  if (links.length === 0 || links.some((l) => l.rateMbps <= 0)) return LARGE_BUFFER_BYTES;
  const bdp = Math.max(...links.map((l) => (l.rateMbps * 1e6 * (l.rttMs / 1000)) / 8));
  return Math.max(256 * 1024, Math.ceil(2 * bdp));
}

function parseIpv4(s: string): number | null {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(s);
  if (m === null) return null;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return null;
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

function formatIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');
}

function parseCidr(s: string, field: string): { ip: number; prefix: number } {
  const [ipS, prefS] = s.split('/');
  const ip = parseIpv4(ipS ?? '');
  const prefix = Number(prefS);
  if (ip === null || !Number.isInteger(prefix) || prefix < 8 || prefix > 30) {
    throw new InputError(field, s, 'must be an IPv4 CIDR with a prefix of 8–30, like 10.77.0.0/24');
  }
  return { ip, prefix };
}

function linkParams(l: TestbedLinkChange, isNew: boolean, field: string): Partial<LinkParams> {
  const out: Partial<LinkParams> = {};
  const nonNeg = (k: keyof TestbedLinkChange): number | undefined => {
    const v = l[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new InputError(`${field}.${k}`, v, 'must be a number ≥ 0');
    return v;
  };
  const rtt = nonNeg('rttMs');
  if (rtt !== undefined) out.delayMs = rtt / 2;
  const rate = nonNeg('rateMbps');
  if (rate !== undefined) out.rateMbps = rate;
  const loss = nonNeg('lossPct');
  if (loss !== undefined) {
    if (loss > 100) throw new InputError(`${field}.lossPct`, loss, 'must be at most 100');
    out.lossPct = loss;
  }
  const jitter = nonNeg('jitterMs');
  if (jitter !== undefined) out.jitterMs = jitter;
  const q = nonNeg('queueBytes');
  if (q !== undefined) out.queueBytes = Math.max(1, Math.round(q));
  else if (isNew) out.queueBytes = defaultQueueBytes(rate ?? 0, rtt ?? 0);
  return out;
}

/** Builds the testbed; on any failure removes what it built and rethrows. */
export async function createWanTestbed(opts: WanTestbedOptions): Promise<WanTestbed> {
  const users = opts.users ?? [];
  const all = [...opts.sites.map((e) => ({ ...e, kind: 'site' as const })), ...users.map((e) => ({ ...e, kind: 'user' as const }))];
  if (opts.sites.length === 0) throw new InputError('sites', opts.sites, 'must name at least one site');
  if (all.length > MAX_ENDPOINTS) throw new InputError('sites', all.length, `at most ${MAX_ENDPOINTS} sites and users together`);
  const index = new Map<string, number>();
  all.forEach((e, i) => {
    const field = `${e.kind}s[${i < opts.sites.length ? i : i - opts.sites.length}].name`;
    if (!NAME_RE.test(e.name) || e.name === 'wan') throw new InputError(field, e.name, 'must be 1–30 lowercase letters, digits or "-", start with a letter, and not be "wan"');
    if (index.has(e.name)) throw new InputError(field, e.name, 'is used twice');
    index.set(e.name, i);
  });
  const subnet = parseCidr(opts.subnet ?? '10.77.0.0/24', 'subnet');
  const mask = subnet.prefix === 0 ? 0 : (0xffffffff << (32 - subnet.prefix)) >>> 0;
  const net = (subnet.ip & mask) >>> 0;
  const cidrs = all.map((e, i) => {
    if (e.address !== undefined) {
      parseCidr(e.address, `${e.kind}s.${e.name}.address`);
      return e.address;
    }
    const host = i + 1;
    if (host >= 2 ** (32 - subnet.prefix) - 1) throw new InputError('subnet', opts.subnet, `is too small for ${all.length} sites and users`);
    return `${formatIpv4((net + host) >>> 0)}/${subnet.prefix}`;
  });
  const peers = all.map(() => new Set<number>());
  const links = opts.links.map((l, k) => {
    const field = `links[${k}]`;
    const i = index.get(l.a);
    const j = index.get(l.b);
    if (i === undefined) throw new InputError(`${field}.a`, l.a, `must name a site or user (${[...index.keys()].join(', ')})`);
    if (j === undefined) throw new InputError(`${field}.b`, l.b, `must name a site or user (${[...index.keys()].join(', ')})`);
    if (i === j) throw new InputError(`${field}.b`, l.b, 'must differ from a');
    if (peers[i]!.has(j)) throw new InputError(field, `${l.a}-${l.b}`, 'links the same pair twice');
    if (typeof l.rttMs !== 'number') throw new InputError(`${field}.rttMs`, l.rttMs, 'must be a number ≥ 0');
    peers[i]!.add(j);
    peers[j]!.add(i);
    return { i, j, params: linkParams(l, true, field) };
  });

  const rmemOpt = opts.tcpRmemMaxBytes ?? 'auto';
  if (rmemOpt !== 'auto' && !(Number.isInteger(rmemOpt) && rmemOpt >= 65536)) throw new InputError('tcpRmemMaxBytes', rmemOpt, "must be 'auto' or a whole number ≥ 65536");
  const rmemMax = all.map((_, i) =>
    rmemOpt !== 'auto'
      ? rmemOpt
      : autoRmemMaxBytes(
          opts.links
            .filter((l) => index.get(l.a) === i || index.get(l.b) === i)
            .map((l) => ({ rttMs: l.rttMs, rateMbps: l.rateMbps ?? 0 })),
        ),
  );
  const ownsRun = opts.run === undefined;
  const run = opts.run ?? NetnsRun.create(opts.stateDir === undefined ? {} : { stateDir: opts.stateDir });
  const underlay = (i: number): string => `10.255.${i}.1`;
  const relayAddr = (i: number, j: number): string => `10.255.${i}.${10 + j}`;
  const built: string[] = [];
  let relay: RelayProcess | null = null;
  try {
    const relayNs = await run.addNamespace('wan');
    built.push(relayNs);
    const nss = all.map((e) => run.nsName(e.name));
    await Promise.all(
      all.map(async (e, i) => {
        const ns = await run.addNamespace(e.name);
        built.push(ns);
        const relayDev = `e${i}`;
        await run.addVeth({ ns, name: UNDERLAY_DEV }, { ns: relayNs, name: relayDev }, { mtu: 1600 });
        await run.addAddress(ns, UNDERLAY_DEV, `${underlay(i)}/24`);
        for (const j of peers[i]!) await run.addAddress(relayNs, relayDev, `${relayAddr(i, j)}/24`);
        await run.linkUp(ns, UNDERLAY_DEV);
        await run.linkUp(relayNs, relayDev);
        await run.addVxlan(ns, { name: VXLAN_DEV, vni: opts.vni ?? 77, local: underlay(i), dev: UNDERLAY_DEV, dstPort: VXLAN_PORT, mtu: 1500 });
        for (const j of peers[i]!) await run.vxlanFlood(ns, VXLAN_DEV, relayAddr(i, j));
        await run.addBridge(ns, BRIDGE);
        // A fixed bridge MAC: otherwise it follows the lowest port MAC and changes when a tap joins.
        await runCommand(['ip', '-n', ns, 'link', 'set', BRIDGE, 'address', bridgeMac(run.runId, i)]);
        await run.setMaster(ns, VXLAN_DEV, BRIDGE);
        // Inner checksums would be left to offload and arrive broken through the user-space relay.
        await ethtoolTxOff(run, ns, VXLAN_DEV);
        if (opts.disableIpv6 ?? true) {
          await run.sysctl(ns, 'net.ipv6.conf.all.disable_ipv6', '1');
          await run.sysctl(ns, 'net.ipv6.conf.default.disable_ipv6', '1');
        }
        for (const [k, v] of TCP_SYSCTLS) await run.sysctl(ns, k, v);
        await run.sysctl(ns, 'net.ipv4.tcp_rmem', `4096 131072 ${rmemMax[i]!}`);
        await run.linkUp(ns, VXLAN_DEV);
        await run.linkUp(ns, BRIDGE);
        await run.addAddress(ns, BRIDGE, cidrs[i]!);
      }),
    );
    const relayLinks: RelayLinkConfig[] = links.map(({ i, j, params }) => {
      const p: LinkParams = { delayMs: 0, rateMbps: 0, queueBytes: 1, lossPct: 0, jitterMs: 0, ...params };
      return {
        a: all[i]!.name,
        b: all[j]!.name,
        aListen: { address: relayAddr(i, j), port: VXLAN_PORT },
        bListen: { address: relayAddr(j, i), port: VXLAN_PORT },
        aEndpoint: { address: underlay(i), port: VXLAN_PORT },
        bEndpoint: { address: underlay(j), port: VXLAN_PORT },
        aToB: p,
        bToA: { ...p },
      };
    });
    const config: RelayConfig = { links: relayLinks, seed: opts.seed ?? 1, socketBufferBytes: 4 * 1024 * 1024, maxInFlightPackets: 32768 };
    relay = await startRelayProcess(run, relayNs, config);
    const rp = relay;
    run.setMeta({ wanTestbed: { relayNs, relayPid: rp.pid, controlSocket: rp.controlSocket, endpoints: all.map((e, i) => ({ name: e.name, kind: e.kind, ns: nss[i], cidr: cidrs[i] })) } });

    const endpoints: TestbedEndpointInfo[] = all.map((e, i) => ({
      name: e.name,
      kind: e.kind,
      ns: nss[i]!,
      address: cidrs[i]!.split('/')[0]!,
      cidr: cidrs[i]!,
      underlay: underlay(i),
    }));
    const ep = (name: string): TestbedEndpointInfo => {
      const e = endpoints.find((x) => x.name === name);
      if (e === undefined) throw new InputError('site', name, `must name a site or user of this testbed (${endpoints.map((x) => x.name).join(', ')})`);
      return e;
    };
    let destroyed: Promise<CleanupReport> | null = null;
    return {
      run,
      runId: run.runId,
      bridge: BRIDGE,
      relayNs,
      relay: rp,
      endpoints,
      siteNs: (name) => ep(name).ns,
      siteAddress: (name) => ep(name).address,
      setLink: async (a, b, change, direction) => {
        await rp.setLink(a, b, linkParams(change, false, 'change'), direction);
      },
      stats: () => rp.stats(),
      addTap: async (site, tapName, o = {}) => {
        await run.addTap(ep(site).ns, tapName, { bridge: BRIDGE, ...(o.mtu === undefined ? {} : { mtu: o.mtu }) });
      },
      execIn: (site, argv, o) => run.execIn(ep(site).ns, argv, o),
      setTcpBuffers: async (site, o) => {
        const ns = ep(site).ns;
        if (o.rmemMaxBytes !== undefined) await run.sysctl(ns, 'net.ipv4.tcp_rmem', `4096 131072 ${Math.round(o.rmemMaxBytes)}`);
        if (o.wmemMaxBytes !== undefined) await run.sysctl(ns, 'net.ipv4.tcp_wmem', `4096 65536 ${Math.round(o.wmemMaxBytes)}`);
      },
      spawnIn: (site, argv, o) => run.spawnIn(ep(site).ns, argv, o),
      destroy: () => {
        destroyed ??= (async () => {
          await rp.stop();
          if (ownsRun) return run.destroy();
          const report: CleanupReport = { runId: run.runId, processesStopped: [rp.pid], namespacesDeleted: [], devicesDeleted: [], filesRemoved: [], errors: [] };
          for (const ns of [...nss, relayNs]) {
            try {
              await run.deleteNamespace(ns);
              report.namespacesDeleted.push(ns);
            } catch (e) {
              report.errors.push(`namespace ${ns}: ${(e as Error).message}`);
            }
          }
          return report;
        })();
        return destroyed;
      },
    };
  } catch (e) {
    if (relay !== null) await relay.stop().catch(() => undefined);
    if (ownsRun) await run.destroy().catch(() => undefined);
    else for (const ns of built) await run.deleteNamespace(ns).catch(() => undefined);
    throw e;
  }
}

function bridgeMac(runId: string, i: number): string {
  const h = (n: number): string => n.toString(16).padStart(2, '0');
  return `02:${runId.slice(0, 2)}:${runId.slice(2, 4)}:${runId.slice(4, 6)}:${h((i >> 8) & 255)}:${h(i & 255)}`;
}

async function ethtoolTxOff(run: NetnsRun, ns: string, dev: string): Promise<void> {
  try {
    await run.ethtool(ns, ['-K', dev, 'tx', 'off']);
  } catch (e) {
    if (e instanceof AppError && e.code === 'COMMAND_MISSING') {
      throw new AppError('COMMAND_MISSING', `Cannot build the WAN testbed: ethtool is missing, and without 'ethtool -K ${dev} tx off' TCP across the relay times out (apt-get install -y --no-install-recommends ethtool)`, { cause: e });
    }
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------
// A bulk TCP transfer between two endpoints (Node on both ends, started inside their namespaces).

export const TCP_TOOL = fileURLToPath(new URL('./tcp-tool.js', import.meta.url));

export interface TcpTransferResult {
  bytes: number;
  /** sender's and receiver's sha256 agree: every byte arrived once, in order */
  intact: boolean;
  seconds: number;
  mbps: number;
  /** throughput after the first `skipMs` (slow start), over whole 100 ms buckets */
  steadyMbps: number;
  /** received throughput per 100 ms, for diagnosis */
  intervalMbps: number[];
}

function firstJsonLine(child: ChildProcess, what: string, timeoutMs: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => reject(new AppError('TCP_TOOL', `${what}: no answer within ${timeoutMs} ms; stderr: ${err.trim() || '(none)'}`)), timeoutMs);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      err += d;
    });
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out.slice(0, nl)) as Record<string, unknown>);
      } catch (e) {
        reject(new AppError('TCP_TOOL', `${what}: unreadable output ${JSON.stringify(out.slice(0, 200))}`, { cause: e }));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new AppError('TCP_TOOL', `${what} exited with code ${String(code)} before answering; stderr: ${err.trim() || '(none)'}`));
    });
  });
}

/** Sends from `from` to `to` for `seconds` (or `bytes`) and reports throughput and integrity. */
export async function tcpTransfer(
  tb: WanTestbed,
  from: string,
  to: string,
  opts: { seconds?: number; bytes?: number; port?: number; skipMs?: number; timeoutMs?: number },
): Promise<TcpTransferResult> {
  const port = String(opts.port ?? 5201);
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const srv = tb.spawnIn(to, [process.execPath, TCP_TOOL, 'server', '--port', port, '--host', tb.siteAddress(to), '--timeout-s', String(Math.ceil(timeoutMs / 1000))]);
  try {
    const listening = firstJsonLine(srv.child, `tcp server in ${to}`, 10_000);
    await listening;
    // The server's next line is its result; attach before the transfer so nothing is missed.
    const result = new Promise<Record<string, unknown>>((resolve, reject) => {
      let out = '';
      srv.child.stdout?.on('data', (d: string) => {
        out += d;
        const nl = out.indexOf('\n');
        if (nl >= 0) {
          try {
            resolve(JSON.parse(out.slice(0, nl)) as Record<string, unknown>);
          } catch (e) {
            reject(e instanceof Error ? e : new Error(String(e)));
          }
        }
      });
      srv.child.once('exit', () => reject(new AppError('TCP_TOOL', `tcp server in ${to} exited without a result`)));
    });
    const limit = opts.bytes !== undefined ? ['--bytes', String(opts.bytes)] : ['--seconds', String(opts.seconds ?? 3)];
    const cli = await tb.execIn(from, [process.execPath, TCP_TOOL, 'client', '--host', tb.siteAddress(to), '--port', port, ...limit], { timeoutMs });
    const sent = JSON.parse(cli.stdout.trim().split('\n')[0] ?? '{}') as { bytes: number; sha256: string; seconds: number };
    const got = (await result) as { bytes: number; sha256: string; firstByteMs: number; lastByteMs: number; bucketMs: number; bucketsBytes: number[] };
    const seconds = Math.max(1e-3, (got.lastByteMs - got.firstByteMs) / 1000);
    const skip = Math.ceil((opts.skipMs ?? 1000) / got.bucketMs);
    const steady = got.bucketsBytes.slice(skip, -1);
    const steadyMbps = steady.length === 0 ? 0 : (steady.reduce((s, b) => s + b, 0) * 8) / (steady.length * got.bucketMs * 1000);
    return {
      bytes: got.bytes,
      intact: got.bytes === sent.bytes && got.sha256 === sent.sha256,
      seconds,
      mbps: (got.bytes * 8) / seconds / 1e6,
      steadyMbps,
      intervalMbps: got.bucketsBytes.map((b) => Math.round((b * 8) / (got.bucketMs * 100)) / 10),
    };
  } finally {
    if (srv.child.exitCode === null) srv.child.kill('SIGKILL');
  }
}
