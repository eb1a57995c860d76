// PURE. The mechanical labelling rule for captures of nDPI's test suite, from nDPI's own per-flow
// verdicts (tests/result/<capture>.out), written down before the engine saw any of these captures.
//
// For one capture:
//   1. EXCLUDE by file name, when the capture is a test of nDPI itself rather than a user's activity:
//      fuzzed, malformed, crashing, manipulated or invalid input, attacks, scans and malware
//      (EXCLUDED_NAME below).
//   2. Parse every flow line: protocol, both endpoints (nDPI prints the initiator on the left and the
//      responder on the right), nDPI's protocol name, packets and bytes each way.
//   3. Each flow's class is ndpiClassOf(name) (ndpi-classes.ts). `Unknown` flows have no class and take
//      no part in steps 4-5. No flow with a class → EXCLUDED (nothing attributable).
//   4. The DOMINANT CLASS is the class with the most bytes (both directions) over the capture's flows;
//      it is the capture's activity, and sensitive iff it is remote-desktop, conferencing, gaming or
//      video-streaming.
//   5. The VM is one endpoint of the dominant class's flows, the candidate with the most bytes in those
//      flows, candidates taken tier by tier (the first tier that has any):
//        - remote-desktop: responder & private, initiator & private, responder, initiator — the VM
//          serves the desktop; a private initiator wins over a public responder because a public
//          responder is a relay or a cloud service, not the desktop;
//        - every other class: private, then any address — the VM is the local host running the
//          application.
//      "Private": IPv4 10/8, 172.16/12, 192.168/16, 100.64/10, 169.254/16; IPv6 fc00::/7, fe80::/10.
//      Multicast, broadcast, loopback and unspecified addresses are never candidates.
//      Ties: more bytes over all of the capture's flows, then the address in string order.
//   6. EXCLUDE when no flow of the VM (any class, Unknown included) has >= 3 packets.
// Steps done by the tool, not here (they need files): captures identical in content (SHA-256) to one of
// the 50 shared captures or to an earlier new capture (by file name order) are excluded; after flow
// records are made, a capture whose records carry < 3 packets for the VM is excluded (softflowd cannot
// see it: tunnels it does not decode, link types it does not read).

import type { ActivityClass } from './signatures.js';
import { SENSITIVE_CLASSES } from './signatures.js';
import { ndpiClassOf } from './ndpi-classes.js';

export const EXCLUDED_NAME = /fuzz|malformed|crash|segv|overflow|invalid|garbage|manipulated|bad-|badpackets|_error|synscan|webattack|exploit|dos_|malware|trickbot/i;

export interface NdpiFlow {
  readonly transport: string;
  readonly initiator: string;
  readonly initiatorPort: number;
  readonly responder: string;
  readonly responderPort: number;
  readonly protocol: string;
  readonly packets: number;
  readonly bytes: number;
}

const FLOW_LINE = /^\s*\d+\t(\S+) (\S+) (?:<->|->) (\S+) (?:\[[^\]]*\])*?\[proto: [0-9.]+\/([^\]]+)\].*?\[(\d+) pkts\/(\d+) bytes (?:<->|->) (\d+) pkts\/(\d+) bytes\]/;

function endpoint(s: string): { addr: string; port: number } {
  const v6 = /^\[(.+)\]:(\d+)$/.exec(s);
  if (v6 !== null) return { addr: v6[1] ?? '', port: Number(v6[2]) };
  const i = s.lastIndexOf(':');
  return i < 0 ? { addr: s, port: 0 } : { addr: s.slice(0, i), port: Number(s.slice(i + 1)) };
}

/** The flow lines of an ndpiReader result file; other lines are ignored. */
export function parseNdpiOut(text: string): NdpiFlow[] {
  const flows: NdpiFlow[] = [];
  for (const line of text.split('\n')) {
    const m = FLOW_LINE.exec(line);
    if (m === null) continue;
    const a = endpoint(m[2] ?? '');
    const b = endpoint(m[3] ?? '');
    flows.push({
      transport: m[1] ?? '', initiator: a.addr, initiatorPort: a.port, responder: b.addr, responderPort: b.port,
      protocol: m[4] ?? '',
      packets: Number(m[5]) + Number(m[7]),
      bytes: Number(m[6]) + Number(m[8]),
    });
  }
  return flows;
}

function v4(addr: string): number[] | undefined {
  const p = addr.split('.');
  if (p.length !== 4) return undefined;
  const n = p.map(Number);
  return n.every((x) => Number.isInteger(x) && x >= 0 && x <= 255) ? n : undefined;
}

/** Never a VM: multicast, broadcast, loopback, unspecified. */
export function isUnicastHost(addr: string): boolean {
  const n = v4(addr);
  if (n !== undefined) {
    const [a = 0, , , d = 0] = n;
    return !(a === 0 || a === 127 || a >= 224 || (a === 255 && d === 255));
  }
  const l = addr.toLowerCase();
  return !(l === '::' || l === '::1' || l.startsWith('ff'));
}

export function isPrivate(addr: string): boolean {
  const n = v4(addr);
  if (n !== undefined) {
    const [a = 0, b = 0] = n;
    return a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168)
      || (a === 100 && b >= 64 && b <= 127) || (a === 169 && b === 254);
  }
  const l = addr.toLowerCase();
  return /^f[cd]/.test(l) || /^fe[89ab]/.test(l);
}

export type NdpiLabel =
  | { readonly kept: true; readonly file: string; readonly vmIp: string; readonly activity: ActivityClass;
      readonly sensitive: boolean; readonly why: string }
  | { readonly kept: false; readonly file: string; readonly why: string };

/** Steps 1-6 above for one capture. */
export function labelCapture(file: string, outText: string): NdpiLabel {
  if (EXCLUDED_NAME.test(file)) return { kept: false, file, why: 'name: a test of nDPI itself (fuzz/malformed/crash/attack/scan/malware)' };
  const flows = parseNdpiOut(outText);
  const classed = flows.flatMap((f) => {
    const k = ndpiClassOf(f.protocol);
    return k === undefined ? [] : [{ f, k }];
  });
  if (classed.length === 0) return { kept: false, file, why: `no flow nDPI recognised (${flows.length} flows, all Unknown)` };
  const byClass = new Map<ActivityClass, number>();
  for (const { f, k } of classed) byClass.set(k, (byClass.get(k) ?? 0) + f.bytes);
  const total = [...byClass.values()].reduce((a, b) => a + b, 0);
  const [activity, classBytes] = [...byClass.entries()].sort((x, y) => y[1] - x[1] || (x[0] < y[0] ? -1 : 1))[0] ?? ['background', 0];
  const ofClass = classed.filter((c) => c.k === activity).map((c) => c.f);

  const allBytes = new Map<string, number>();
  for (const f of flows) {
    allBytes.set(f.initiator, (allBytes.get(f.initiator) ?? 0) + f.bytes);
    allBytes.set(f.responder, (allBytes.get(f.responder) ?? 0) + f.bytes);
  }
  type Side = 'initiator' | 'responder';
  const tiers: { side: Side | 'any'; priv: boolean }[] = activity === 'remote-desktop'
    ? [{ side: 'responder', priv: true }, { side: 'initiator', priv: true }, { side: 'responder', priv: false }, { side: 'initiator', priv: false }]
    : [{ side: 'any', priv: true }, { side: 'any', priv: false }];
  let vmIp: string | undefined;
  let tierName = '';
  for (const t of tiers) {
    const bytes = new Map<string, number>();
    for (const f of ofClass) {
      const ends: string[] = t.side === 'initiator' ? [f.initiator] : t.side === 'responder' ? [f.responder] : [f.initiator, f.responder];
      for (const e of new Set(ends)) {
        if (!isUnicastHost(e) || (t.priv && !isPrivate(e))) continue;
        bytes.set(e, (bytes.get(e) ?? 0) + f.bytes);
      }
    }
    const best = [...bytes.entries()].sort((x, y) => y[1] - x[1]
      || (allBytes.get(y[0]) ?? 0) - (allBytes.get(x[0]) ?? 0) || (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))[0];
    if (best !== undefined) {
      vmIp = best[0];
      tierName = `${t.side === 'any' ? '' : `${t.side}, `}${t.priv ? 'private' : 'any address'}`;
      break;
    }
  }
  if (vmIp === undefined) return { kept: false, file, why: `no unicast endpoint in the ${activity} flows` };
  const vm = vmIp;
  const vmFlows = flows.filter((f) => f.initiator === vm || f.responder === vm);
  if (!vmFlows.some((f) => f.packets >= 3)) return { kept: false, file, why: `no flow of >= 3 packets for ${vm} in nDPI's flows` };
  const share = total > 0 ? classBytes / total : 0;
  return {
    kept: true, file, vmIp: vm, activity, sensitive: SENSITIVE_CLASSES.has(activity),
    why: `${activity}: ${classBytes} B of ${total} B recognised (${(share * 100).toFixed(0)} %) in ${ofClass.length} flows `
      + `(${[...new Set(ofClass.map((f) => f.protocol))].slice(0, 4).join(', ')}); VM ${vm} (${tierName})`,
  };
}
