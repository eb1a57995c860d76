// PURE: migration settings chosen for the link and the VM, each with the reason it was chosen.
import { estimateMigration } from '../placement/cost.js';
import type { LinkMeasure, MigrationPolicy, SettingChoice, StallAction, VmShape } from './driver.js';

const MiB = 1024 * 1024;

/** What the source host can spare for the migration. */
export interface HostBudget {
  /** Cores the source host has free for compression threads. */
  readonly cpuFreeCores: number;
}

export interface MigrationSettings {
  /** Cap on the migration stream, bytes per second (QEMU's max-bandwidth). */
  readonly maxBandwidthBytesPerS: number;
  readonly downtimeLimitMs: number;
  readonly multifd: boolean;
  readonly multifdChannels: number;
  readonly compression: 'none' | 'zstd';
  readonly compressionLevel: number;
  readonly xbzrle: boolean;
  readonly xbzrleCacheBytes: number;
  readonly autoConverge: boolean;
  /** The postcopy-ram capability is set, so the driver may switch to post-copy. */
  readonly postCopyCapable: boolean;
  /** Switch to post-copy after the first full pass instead of waiting for a stall. */
  readonly postCopyAfterFirstPass: boolean;
  /** The policy's stall actions, minus those these settings make impossible. */
  readonly stallActions: readonly StallAction[];
  readonly choices: readonly SettingChoice[];
}

/** Above this BDP one TCP stream's window is the limit, not the link: spread over several. */
const MULTIFD_BDP_BYTES = 4 * MiB;
const MAX_CHANNELS = 8;
/** zstd level 1 on one core compresses far faster than this: below it, the link is the bottleneck. */
const COMPRESS_BELOW_MBPS = 1000;
const ROUNDS = 30;

function pow2AtLeast(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

/**
 * Chooses QEMU migration settings. The rules, in order:
 * - the stream is capped to the link's spare bandwidth, leaving foreground traffic its share;
 * - the downtime limit is the policy's;
 * - post-copy is armed where the policy allows it; it starts right after the first pass when the pre-copy
 *   model says pre-copy will not converge (or would cost far more), otherwise only as a stall action;
 * - multifd (QEMU 7.2 cannot combine it with post-copy) when the link is bandwidth-bound and CPU is free
 *   (then with zstd), or when its bandwidth-delay product exceeds what one TCP window carries;
 * - XBZRLE on the single stream when the guest rewrites pages (it sends deltas of rewritten pages);
 * - auto-converge when pre-copy would not converge and post-copy is not armed.
 */
export function chooseSettings(
  link: LinkMeasure,
  shape: VmShape,
  policy: MigrationPolicy,
  host: HostBudget,
): MigrationSettings {
  const choices: SettingChoice[] = [];
  const spareMbps = Math.max(0.1, link.bandwidthMbps * (1 - link.foregroundShare));
  const maxBandwidthBytesPerS = Math.floor((spareMbps * 1e6) / 8);
  choices.push({
    name: 'max-bandwidth',
    value: maxBandwidthBytesPerS,
    reason: `${round1(spareMbps)} Mbit/s: the link's ${round1(link.bandwidthMbps)} Mbit/s less the ${pct(link.foregroundShare)} kept for foreground traffic`,
  });
  choices.push({ name: 'downtime-limit', value: policy.maxDowntimeMs, reason: `the policy's maximum pause of ${policy.maxDowntimeMs} ms` });

  const ramOnly = { ...shape, diskGiB: 0 };
  const est = estimateMigration(ramOnly, spareMbps, { maxDowntimeMs: policy.maxDowntimeMs, maxRounds: ROUNDS, postCopyAllowed: policy.postCopyAllowed });
  const dirtyMbps = shape.dirtyRateMiBps * MiB * 8 / 1e6;
  const bdpBytes = (link.rttMs / 1000) * (spareMbps * 1e6 / 8);

  const bandwidthBound = spareMbps < COMPRESS_BELOW_MBPS;
  const cpuFree = host.cpuFreeCores >= 1;
  const multifdHelps = (bandwidthBound && cpuFree) || bdpBytes > MULTIFD_BDP_BYTES;
  // Post-copy is armed when the model needs it, or when multifd would not help anyway (QEMU 7.2 cannot
  // combine the two); otherwise multifd wins and a stall is handled by raising the downtime or aborting.
  const postCopyCapable = policy.postCopyAllowed && (est.postCopy || !multifdHelps);
  const postCopyAfterFirstPass = postCopyCapable && est.postCopy;
  if (!policy.postCopyAllowed) {
    choices.push({ name: 'postcopy-ram', value: false, reason: 'the policy does not allow post-copy' });
  } else if (postCopyAfterFirstPass) {
    choices.push({
      name: 'postcopy-ram',
      value: true,
      reason: est.converges
        ? 'pre-copy would resend the working set for many rounds: switch to post-copy after the first pass'
        : `the guest dirties ${round1(dirtyMbps)} Mbit/s against ${round1(spareMbps)} Mbit/s spare, so pre-copy would not converge: switch to post-copy after the first pass`,
    });
  } else if (postCopyCapable) {
    choices.push({ name: 'postcopy-ram', value: true, reason: 'armed as an escape if pre-copy stalls; pre-copy is expected to converge' });
  } else {
    choices.push({ name: 'postcopy-ram', value: false, reason: 'pre-copy is expected to converge and multifd (which QEMU cannot combine with post-copy) speeds it up' });
  }

  const wantCompression = bandwidthBound && cpuFree && !postCopyCapable;
  const wantParallel = bdpBytes > MULTIFD_BDP_BYTES && !postCopyCapable;
  const multifd = wantCompression || wantParallel;
  let multifdChannels = 0;
  if (multifd) {
    const forWindow = Math.ceil(bdpBytes / MULTIFD_BDP_BYTES);
    const forCpu = wantCompression ? Math.max(1, Math.floor(host.cpuFreeCores)) : 1;
    multifdChannels = Math.min(MAX_CHANNELS, Math.max(2, forWindow, forCpu));
    choices.push({
      name: 'multifd',
      value: true,
      reason: `${multifdChannels} channels: ${wantParallel ? `a bandwidth-delay product of ${round1(bdpBytes / MiB)} MiB is more than one TCP window carries` : 'parallel streams for the compression threads'}`,
    });
  } else {
    choices.push({
      name: 'multifd',
      value: false,
      reason: postCopyCapable && multifdHelps
        ? 'post-copy is needed and QEMU cannot combine it with multifd'
        : `one stream fills the link (bandwidth-delay product ${round1(bdpBytes / MiB)} MiB)`,
    });
  }
  const compression = wantCompression ? 'zstd' : 'none';
  choices.push({
    name: 'multifd-compression',
    value: compression,
    reason: wantCompression
      ? `the link (${round1(spareMbps)} Mbit/s) is the bottleneck and the host has ${host.cpuFreeCores} core(s) free`
      : !bandwidthBound ? `the link (${round1(spareMbps)} Mbit/s) outruns compression` : !cpuFree ? 'no CPU free for compression' : 'needs multifd, which post-copy excludes',
  });

  const rewrites = shape.dirtyRateMiBps > 0 && shape.workingSetMiB > 0;
  const xbzrle = !multifd && rewrites;
  const xbzrleCacheBytes = xbzrle ? Math.max(64 * MiB, pow2AtLeast(Math.min(shape.workingSetMiB, shape.memoryMiB) * MiB)) : 0;
  choices.push({
    name: 'xbzrle',
    value: xbzrle,
    reason: xbzrle
      ? `the guest rewrites a ${round1(shape.workingSetMiB)} MiB working set at ${round1(shape.dirtyRateMiBps)} MiB/s: send deltas of rewritten pages (cache ${xbzrleCacheBytes / MiB} MiB)`
      : multifd ? 'not available with multifd' : 'the guest rewrites no memory',
  });

  const autoConverge = !est.converges && !postCopyCapable;
  choices.push({
    name: 'auto-converge',
    value: autoConverge,
    reason: autoConverge
      ? `pre-copy would not converge (${round1(dirtyMbps)} Mbit/s dirtied vs ${round1(spareMbps)} Mbit/s spare) and post-copy is not allowed: throttle the guest`
      : est.converges ? 'pre-copy is expected to converge without throttling the guest' : 'post-copy handles a non-converging guest without throttling it',
  });

  const stallActions = policy.onStall.filter((a) => a !== 'post-copy' || postCopyCapable);
  return {
    maxBandwidthBytesPerS,
    downtimeLimitMs: policy.maxDowntimeMs,
    multifd,
    multifdChannels,
    compression,
    compressionLevel: 1,
    xbzrle,
    xbzrleCacheBytes,
    autoConverge,
    postCopyCapable,
    postCopyAfterFirstPass,
    stallActions: stallActions.length > 0 ? stallActions : ['abort'],
    choices,
  };
}

/** The next downtime limit when a stall calls for raising it: double, up to the policy's ceiling. */
export function raisedDowntimeMs(currentMs: number, ceilingMs: number): number | null {
  if (currentMs >= ceilingMs) return null;
  return Math.min(ceilingMs, Math.max(currentMs * 2, currentMs + 50));
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

function pct(share: number): string {
  return `${Math.round(share * 100)} %`;
}
