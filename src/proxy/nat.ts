// Path re-pointing for sites in different subnets (case b in docs/proxy.md), with nftables.
//
// The VM keeps one stable private address (its "VIP", e.g. 172.30.0.50) wherever it runs; each site reaches
// it through a site address of its own subnet (10.1.1.50 at site A, 10.2.1.50 at site B) by a stateless 1:1
// rewrite at the site edge (siteFloatingIpScript). The proxy's backend sockets always connect to the VIP; in
// the proxy's namespace a stateless rewrite sends those packets to the site address the VIP is at now, and
// turns the replies' source back into the VIP. A re-point swaps one map element in one nft transaction:
// every later packet of every established connection takes the new path, and the sockets at both ends see
// the same 4-tuple throughout, so their TCP state stays valid. Stateless (no conntrack NAT) on purpose: a
// conntrack NAT binding is fixed when a connection starts and would keep established flows on the old site.
//
// Hooks: 'route' type at output (priority raw) so the kernel re-routes each packet after its destination
// changes; 'filter' type at prerouting (priority raw) so the reply's source is rewritten before the socket
// lookup. nft updates the IP and TCP/UDP checksums for address rewrites (pseudo-header).
import { spawn } from 'node:child_process';
import { AppError, InputError } from '../core/errors.js';
import { isIpLiteral, type PathChange } from './routes.js';
import type { PathRewriter } from './server.js';

const TABLE_RE = /^[a-z][a-z0-9_]{0,30}$/;
const IPV4_RE = /^\d{1,3}(\.\d{1,3}){3}$/;

/** Runs `nft -f -` with `script` on stdin, inside `netns` when given. */
export function runNft(script: string, netns: string | null = null, timeoutMs = 10_000): Promise<void> {
  const argv = netns === null ? ['nft', '-f', '-'] : ['ip', 'netns', 'exec', netns, 'nft', '-f', '-'];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => {
      err = (err + d).slice(-4000);
    });
    child.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(e.code === 'ENOENT'
        ? new AppError('COMMAND_MISSING', `Cannot run ${argv.join(' ')}: ${argv[0]} is not installed (apt-get install -y --no-install-recommends ${argv[0] === 'nft' ? 'nftables' : 'iproute2'})`, { cause: e })
        : new AppError('NFT_FAILED', `Cannot run ${argv.join(' ')}: ${e.message}`, { cause: e }));
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new AppError('NFT_FAILED', `${argv.join(' ')} failed (${code === null ? `signal ${String(signal)}` : `exit code ${code}`}): ${err.trim() || '(no output)'}; script: ${script.replace(/\s+/g, ' ').slice(0, 400)}`, { retryable: true }));
    });
    child.stdin.end(script);
  });
}

function checkTable(table: string): string {
  if (!TABLE_RE.test(table)) throw new InputError('table', table, 'must be 1–31 lowercase letters, digits or "_", starting with a letter');
  return table;
}

function checkIpv4(v: string, field: string): string {
  if (!IPV4_RE.test(v) || !isIpLiteral(v)) throw new InputError(field, v, 'must be an IPv4 address');
  return v;
}

/** The proxy namespace's table: empty maps and the two rewriting chains (replaces any older table of the name). */
export function proxyTableScript(table: string): string {
  checkTable(table);
  return [
    `add table ip ${table}`,
    `delete table ip ${table}`,
    `table ip ${table} {`,
    '  map to_site { type ipv4_addr : ipv4_addr; }',
    '  map from_site { type ipv4_addr : ipv4_addr; }',
    '  chain out { type route hook output priority raw; policy accept; ip daddr set ip daddr map @to_site; }',
    '  chain pre { type filter hook prerouting priority raw; policy accept; ip saddr set ip saddr map @from_site; }',
    '}',
    '',
  ].join('\n');
}

export interface NftPathRewriterOptions {
  /** the nft table this rewriter owns: created fresh at start, deleted by close() (default vmshadow_proxy) */
  table?: string;
  /** the namespace to run nft in; null (default): the proxy's own */
  netns?: string | null;
  /** replaceable for tests; default runNft */
  nft?: (script: string, netns: string | null) => Promise<void>;
}

/**
 * A PathRewriter for the proxy's namespace. Each re-point is one nft transaction: the VIP's entry in `to_site`
 * swapped, and the new site address added to `from_site` (old site addresses stay there, so late replies
 * through the old path are still recognised).
 */
export async function createNftPathRewriter(o: NftPathRewriterOptions = {}): Promise<PathRewriter & { readonly table: string; current(): ReadonlyMap<string, string> }> {
  const table = checkTable(o.table ?? 'vmshadow_proxy');
  const netns = o.netns ?? null;
  const nft = o.nft ?? runNft;
  await nft(proxyTableScript(table), netns);
  const toSite = new Map<string, string>();
  const fromSite = new Map<string, string>();
  let chain: Promise<void> = Promise.resolve();
  let closed = false;
  return {
    table,
    current: () => new Map(toSite),
    repoint: (c: PathChange) => {
      let vip: string;
      let via: string;
      try {
        vip = checkIpv4(c.host, 'host');
        via = checkIpv4(c.via, 'via');
      } catch (e) {
        return Promise.reject(e instanceof Error ? e : new Error(String(e)));
      }
      // Serialised: the maps above must describe what the kernel holds when the next script is built.
      const run = chain.then(async () => {
        if (closed) throw new AppError('PATH_REWRITER_CLOSED', `Cannot re-point ${vip} to ${via}: the path rewriter (table ${table}) is closed`);
        if (toSite.get(vip) === via) return;
        const lines: string[] = [];
        const prevFrom = fromSite.get(via);
        if (prevFrom !== undefined && prevFrom !== vip) lines.push(`delete element ip ${table} from_site { ${via} }`);
        if (prevFrom !== vip) lines.push(`add element ip ${table} from_site { ${via} : ${vip} }`);
        if (toSite.has(vip)) lines.push(`delete element ip ${table} to_site { ${vip} }`);
        lines.push(`add element ip ${table} to_site { ${vip} : ${via} }`);
        await nft(lines.join('\n') + '\n', netns);
        toSite.set(vip, via);
        fromSite.set(via, vip);
      });
      chain = run.catch(() => undefined);
      return run;
    },
    close: async () => {
      closed = true;
      await chain;
      await nft(`add table ip ${table}\ndelete table ip ${table}\n`, netns);
    },
  };
}

export interface FloatingIpMapping {
  /** the VM's stable private address (on its own interface) */
  vip: string;
  /** the address of this site's subnet that other sites and the proxy use to reach it here */
  siteAddress: string;
}

/**
 * What a site does for case (b): a stateless 1:1 rewrite between the site address and the VM's VIP, for
 * packets that arrive for the site address (destination → VIP) and packets that come from the VM on `lanIf`
 * (source → site address). The site must also route the VIP's subnet to the VM's segment (the VM's
 * gateway address on the bridge, the same at every site) and answer for the site address (route it here).
 */
export function siteFloatingIpScript(o: { table?: string; lanIf: string; mappings: readonly FloatingIpMapping[] }): string {
  const table = checkTable(o.table ?? 'vmshadow_site');
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(o.lanIf)) throw new InputError('lanIf', o.lanIf, 'must be an interface name');
  const toVip = o.mappings.map((m) => `${checkIpv4(m.siteAddress, 'siteAddress')} : ${checkIpv4(m.vip, 'vip')}`);
  const toSite = o.mappings.map((m) => `${m.vip} : ${m.siteAddress}`);
  const elements = (xs: string[]): string => (xs.length === 0 ? '' : ` elements = { ${xs.join(', ')} };`);
  return [
    `add table ip ${table}`,
    `delete table ip ${table}`,
    `table ip ${table} {`,
    `  map to_vip { type ipv4_addr : ipv4_addr;${elements(toVip)} }`,
    `  map to_site { type ipv4_addr : ipv4_addr;${elements(toSite)} }`,
    '  chain pre {',
    '    type filter hook prerouting priority raw; policy accept;',
    '    ip daddr set ip daddr map @to_vip',
    `    iifname "${o.lanIf}" ip saddr set ip saddr map @to_site`,
    '  }',
    '}',
    '',
  ].join('\n');
}
