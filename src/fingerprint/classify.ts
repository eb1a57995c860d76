// The verdict for one VM in one window: activity class, location-sensitivity score, users, reasons.
//
// How it decides (the numbers are in signatures.ts):
//   1. every conversation gets evidence per class: the best matching behaviour rule (a product of
//      ramps over rates, sizes, balance, duration), then the port prior nudges it (+portPriorWeight to
//      the port's class, ×portConflictKeep to the others);
//   2. the VM's evidence per class is the packet-weighted sum over its conversations, plus a small
//      background baseline so that thin traffic falls back to "background";
//   3. score = the sensitive classes' share of the evidence; sensitive when score ≥ sensitiveAt;
//      the activity is the strongest class on the side of the line the score chose;
//   4. users = remote ends of the conversations that carry display, media or game evidence.
// Pure: the same records give the same verdict, in any order.

import type { FlowRecord } from '../telemetry/flow.js';
import { extractFeatures, metric, ramp, type ConversationFeatures, type VmFeatures } from './features.js';
import {
  ACTIVITY_CLASSES, DEFAULT_SIGNATURES, SENSITIVE_CLASSES, WEB_PORTS,
  type ActivityClass, type BehaviourRule, type Signatures,
} from './signatures.js';

export type Evidence = Record<ActivityClass, number>;

export interface User {
  readonly addr: string;
  /** Share of the VM's interactive traffic (display, media, game) this remote end carries, 0..1. */
  readonly share: number;
  /** The conversations it holds, as "tcp/3389". */
  readonly services: readonly string[];
}

export interface ConversationVerdict {
  readonly conversation: ConversationFeatures;
  /** Evidence per class after the port prior. */
  readonly evidence: Evidence;
  /** The rule that gave each class its behaviour evidence, when one did. */
  readonly rules: Partial<Record<ActivityClass, { readonly rule: BehaviourRule; readonly evidence: number }>>;
  /** Packet share of this conversation among the VM's considered conversations. */
  readonly weight: number;
}

export interface Verdict {
  readonly vm: string;
  readonly activity: ActivityClass;
  readonly sensitive: boolean;
  /** Location-sensitivity in [0, 1]. */
  readonly score: number;
  readonly evidence: Evidence;
  readonly users: readonly User[];
  readonly reasons: readonly string[];
  readonly features: VmFeatures;
  readonly conversations: readonly ConversationVerdict[];
}

const INTERACTIVE: readonly ActivityClass[] = ['remote-desktop', 'conferencing', 'gaming'];

/** How sustained a conversation is, 0..1: enough packets over enough time to be a session. */
const sustained = (c: ConversationFeatures, sig: Signatures): number =>
  ramp(c.packetsIn + c.packetsOut, sig.presence.packets) * ramp(c.durationMs, sig.presence.durationMs);

const zero = (): Evidence => ({
  'remote-desktop': 0, conferencing: 0, gaming: 0, 'video-streaming': 0, 'bulk-transfer': 0, background: 0,
});

const transportOf = (protocol: number): string =>
  protocol === 6 ? 'tcp' : protocol === 17 ? 'udp' : protocol === 1 ? 'icmp' : `proto${protocol}`;

/** "tcp/3389" — the conversation's service. */
export const serviceOf = (c: ConversationFeatures): string =>
  c.protocol === 6 || c.protocol === 17 ? `${transportOf(c.protocol)}/${c.servicePort}` : transportOf(c.protocol);

function matches(rule: BehaviourRule, c: ConversationFeatures): boolean {
  const w = rule.when;
  if (w.transport !== undefined && transportOf(c.protocol) !== w.transport) return false;
  if (w.vmRole !== undefined && !w.vmRole.includes(c.vmRole)) return false;
  if (w.service !== undefined) {
    const web = (c.protocol === 6 || c.protocol === 17) && WEB_PORTS.includes(c.servicePort);
    if ((w.service === 'web') !== web) return false;
  }
  return true;
}

/** A rule's evidence on a conversation: the product of its ramps. */
export function ruleEvidence(rule: BehaviourRule, c: ConversationFeatures): number {
  if (!matches(rule, c)) return 0;
  let e = rule.weight ?? 1;
  for (const term of rule.terms) e *= ramp(metric(c, term.metric), term);
  return e;
}

/** Evidence per class for one conversation, after the port prior. */
export function judgeConversation(c: ConversationFeatures, sig: Signatures, weight: number): ConversationVerdict {
  const evidence = zero();
  const rules: ConversationVerdict['rules'] = {};
  for (const rule of sig.rules) {
    const e = ruleEvidence(rule, c);
    if (e > evidence[rule.activity]) {
      evidence[rule.activity] = e;
      rules[rule.activity] = { rule, evidence: e };
    }
  }
  const prior = c.portPrior;
  if (prior !== undefined) {
    for (const k of ACTIVITY_CLASSES) {
      evidence[k] = k === prior.activity ? evidence[k] + sig.portPriorWeight : evidence[k] * sig.portConflictKeep;
    }
  }
  return { conversation: c, evidence, rules, weight };
}

/** Classifies one VM's window of flow records. */
export function classify(
  flows: readonly FlowRecord[],
  vmIp: string,
  opts: { signatures?: Signatures; windowStartMs?: number; windowEndMs?: number } = {},
): Verdict {
  const sig = opts.signatures ?? DEFAULT_SIGNATURES;
  const features = extractFeatures(flows, vmIp, {
    params: sig,
    ...(opts.windowStartMs === undefined ? {} : { windowStartMs: opts.windowStartMs }),
    ...(opts.windowEndMs === undefined ? {} : { windowEndMs: opts.windowEndMs }),
  });
  return classifyFeatures(features, sig);
}

/** Classifies already-extracted features (the manager keeps features per window). */
export function classifyFeatures(features: VmFeatures, sig: Signatures = DEFAULT_SIGNATURES): Verdict {
  const considered = features.conversations.filter((c) => c.packetsIn + c.packetsOut >= sig.minConversationPackets);
  const totalPackets = considered.reduce((t, c) => t + c.packetsIn + c.packetsOut, 0);
  const conversations = considered.map((c) =>
    judgeConversation(c, sig, totalPackets > 0 ? (c.packetsIn + c.packetsOut) / totalPackets : 0));

  const evidence = zero();
  for (const cv of conversations) for (const k of ACTIVITY_CLASSES) evidence[k] += cv.weight * cv.evidence[k];
  for (const k of INTERACTIVE) {
    const present = Math.max(0, ...conversations.map((cv) => cv.evidence[k] * sustained(cv.conversation, sig)));
    evidence[k] = Math.max(evidence[k], sig.presence.weight * present);
  }
  evidence.background += sig.backgroundBaseline;

  const total = ACTIVITY_CLASSES.reduce((t, k) => t + evidence[k], 0);
  const sensitiveEvidence = ACTIVITY_CLASSES.reduce((t, k) => t + (SENSITIVE_CLASSES.has(k) ? evidence[k] : 0), 0);
  const score = clamp01(total > 0 ? sensitiveEvidence / total : 0);
  const sensitive = score >= sig.sensitiveAt;
  const activity = strongest(evidence, (k) => SENSITIVE_CLASSES.has(k) === sensitive);

  const users = usersOf(conversations, sig);
  const reasons = explain({ features, conversations, evidence, score, sensitive, activity, users, sig });
  return { vm: features.vmIp, activity, sensitive, score, evidence, users, reasons, features, conversations };
}

const clamp01 = (x: number): number => (Number.isFinite(x) ? Math.min(1, Math.max(0, x)) : 0);

/** The class with the most evidence among those `allowed`; ties go to the earlier class in ACTIVITY_CLASSES. */
function strongest(evidence: Evidence, allowed: (k: ActivityClass) => boolean): ActivityClass {
  let best: ActivityClass | undefined;
  for (const k of ACTIVITY_CLASSES) {
    if (!allowed(k)) continue;
    if (best === undefined || evidence[k] > evidence[best]) best = k;
  }
  return best ?? 'background';
}


/** Remote ends of display, media and game conversations, with their share of that traffic. */
function usersOf(conversations: readonly ConversationVerdict[], sig: Signatures): User[] {
  const byAddr = new Map<string, { weight: number; services: Set<string> }>();
  let total = 0;
  for (const cv of conversations) {
    const c = cv.conversation;
    // Display, media and game rules name users; a merely interactive exchange does, unless it is
    // mostly a transfer (its acknowledgements are small and steady too).
    const transfer = Math.max(cv.rules['bulk-transfer']?.evidence ?? 0, cv.rules['video-streaming']?.evidence ?? 0);
    const strength = Math.min(1, Math.max(c.interactivity * (1 - transfer), ...INTERACTIVE.map((k) => cv.rules[k]?.evidence ?? 0)));
    const w = strength * (c.packetsIn + c.packetsOut);
    if (w <= 0) continue;
    total += w;
    const u = byAddr.get(c.remoteAddr) ?? { weight: 0, services: new Set<string>() };
    u.weight += w;
    u.services.add(serviceOf(c));
    byAddr.set(c.remoteAddr, u);
  }
  return [...byAddr.entries()]
    .map(([addr, u]) => ({ addr, share: total > 0 ? u.weight / total : 0, services: [...u.services].sort() }))
    .filter((u) => u.share >= sig.minUserShare)
    .sort((a, b) => b.share - a.share || (a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : 0));
}

// ---- explanations ------------------------------------------------------------------------------

/** "18 Mbit/s", "80 kbit/s", "500 bit/s". */
export function formatBitRate(bitsPerSec: number): string {
  if (bitsPerSec >= 10_000_000) return `${Math.round(bitsPerSec / 1e6)} Mbit/s`;
  if (bitsPerSec >= 1_000_000) return `${(bitsPerSec / 1e6).toFixed(1)} Mbit/s`;
  if (bitsPerSec >= 10_000) return `${Math.round(bitsPerSec / 1e3)} kbit/s`;
  if (bitsPerSec >= 1_000) return `${(bitsPerSec / 1e3).toFixed(1)} kbit/s`;
  return `${Math.round(bitsPerSec)} bit/s`;
}

function formatBytes(bytes: number): string {
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  if (bytes >= 1e4) return `${Math.round(bytes / 1e3)} kB`;
  if (bytes >= 1e3) return `${(bytes / 1e3).toFixed(1)} kB`;
  return `${bytes} B`;
}

const formatRate = (pps: number): string => (pps >= 10 ? `${Math.round(pps)}` : pps.toFixed(1));
const formatSeconds = (ms: number): string => (ms >= 10_000 ? `${Math.round(ms / 1000)} s` : `${(ms / 1000).toFixed(1)} s`);

/**
 * One conversation in numbers. The remote end is named by its role: "the user" when the VM serves it
 * (a display session), "the server" when the VM is the client, "the peer" otherwise.
 */
export function describeConversation(c: ConversationFeatures): string {
  const [verb, other] = c.vmRole === 'server' ? ['served to', 'the user'] as const
    : c.vmRole === 'client' ? ['to', 'the server'] as const : ['peer-to-peer with', 'the peer'] as const;
  return `${serviceOf(c)} ${verb} ${c.remoteAddr}: ${formatBitRate(c.bitsPerSecOut)} to ${other}, `
    + `${formatBitRate(c.bitsPerSecIn)} from ${other}, `
    + `${formatRate(c.packetsPerSecOut)}/${formatRate(c.packetsPerSecIn)} packets/s out/in, `
    + `${Math.round(c.meanPacketOutBytes)}/${Math.round(c.meanPacketInBytes)}-byte packets out/in, `
    + `${formatBytes(c.bytesOut + c.bytesIn)} over ${formatSeconds(c.durationMs)}`;
}

function explain(v: {
  features: VmFeatures; conversations: readonly ConversationVerdict[]; evidence: Evidence; score: number;
  sensitive: boolean; activity: ActivityClass; users: readonly User[]; sig: Signatures;
}): string[] {
  const { features: f, conversations, evidence, score, sensitive, activity, sig } = v;
  const reasons: string[] = [];
  const ranked = [...ACTIVITY_CLASSES].sort((a, b) => evidence[b] - evidence[a]);
  reasons.push(
    `${activity}, ${sensitive ? 'location-sensitive' : 'not location-sensitive'}: `
    + `score ${score.toFixed(2)} ${sensitive ? '≥' : '<'} ${sig.sensitiveAt.toFixed(2)} `
    + `(evidence ${ranked.filter((k) => evidence[k] > 0.005).map((k) => `${k} ${evidence[k].toFixed(2)}`).join(', ')})`,
  );
  if (f.conversations.length === 0) {
    reasons.push('no flow records for this VM in the window');
    return reasons;
  }
  reasons.push(
    `${f.conversations.length} conversation${f.conversations.length === 1 ? '' : 's'} with ${f.distinctPeers} peer${f.distinctPeers === 1 ? '' : 's'} `
    + `over ${formatSeconds(f.windowMs)}: ${formatBytes(f.bytesOut)} out, ${formatBytes(f.bytesIn)} in `
    + `(upload share ${f.uploadShare.toFixed(2)}), ${Math.round(f.udpByteShare * 100)} % of bytes over UDP, `
    + `active ${Math.round(f.activeFraction * 100)} % of the window`,
  );
  // The conversations that carried the chosen class, strongest contribution first.
  const carriers = conversations
    .map((cv) => ({ cv, contribution: cv.weight * cv.evidence[activity] }))
    .filter((x) => x.contribution > 0)
    .sort((a, b) => b.contribution - a.contribution)
    .slice(0, 3);
  for (const { cv } of carriers) {
    const hit = cv.rules[activity];
    const prior = cv.conversation.portPrior;
    const why = hit !== undefined && hit.evidence > 0
      ? `${hit.rule.description} (rule ${hit.rule.id}, evidence ${hit.evidence.toFixed(2)})`
      : 'no behaviour rule fired';
    const priorText = prior === undefined ? ''
      : prior.activity === activity ? `; port prior ${serviceOf(cv.conversation)} is ${prior.service} (+${sig.portPriorWeight.toFixed(2)})`
        : `; port prior ${serviceOf(cv.conversation)} is ${prior.service} (${prior.activity}), against`;
    reasons.push(`${describeConversation(cv.conversation)}; ${Math.round(cv.weight * 100)} % of packets — ${why}${priorText}`);
  }
  if (carriers.length === 0 && activity === 'background') {
    reasons.push(`nothing else stood out: background is the fallback (baseline ${sig.backgroundBaseline.toFixed(2)})`);
  }
  if (v.users.length > 0) {
    reasons.push(`users: ${v.users.map((u) => `${u.addr} (${Math.round(u.share * 100)} %, ${u.services.join(' ')})`).join(', ')}`);
  }
  return reasons;
}
