// Snapshot builders for tests: compact descriptions in, valid SnapshotInput out; plus fast-check
// arbitraries for random but valid clouds and planner settings, and plan checkers shared by the
// placement tests.
import fc from 'fast-check';
import { linkIdOf, siteId, type SiteId, type VmId } from '../core/ids.js';
import { createSnapshot, type Snapshot, type SnapshotInput } from '../core/model.js';
import { cooldownMs, parsePlanParams, type PlanParams } from '../placement/params.js';
import type { Plan } from '../placement/plan.js';

// ---------------------------------------------------------------------------------------------------
// Compact builders
// ---------------------------------------------------------------------------------------------------

export interface SiteSpec {
  readonly id: string;
  readonly vcpu: number;
  readonly memoryMiB: number;
}

export interface LinkSpec {
  readonly rttMs?: number;
  readonly bandwidthMbps?: number;
  readonly foregroundShare?: number;
}

export interface VmSpec {
  readonly id: string;
  readonly site: string;
  readonly vcpu?: number;
  readonly memoryMiB?: number;
  readonly diskGiB?: number;
  readonly dirtyRateMiBps?: number;
  readonly workingSetMiB?: number;
  readonly sensitivity?: number;
  /** User ids (equal shares) or user id → share. */
  readonly users?: readonly string[] | Readonly<Record<string, number>>;
  readonly pinned?: boolean;
  readonly excluded?: boolean;
  readonly lastMovedAtMs?: number | null;
  readonly recentMoves?: number;
  readonly diskDeltaGiB?: Readonly<Record<string, number>>;
}

export interface CloudSpec {
  readonly atMs?: number;
  readonly sites: readonly SiteSpec[];
  /** Every pair of sites is joined by a link with these settings… */
  readonly mesh?: LinkSpec;
  /** …except where overridden here, keyed "a~b" (either order); `null` leaves that pair unlinked. */
  readonly links?: Readonly<Record<string, LinkSpec | null>>;
  /** User id → RTT to each site, in the order of `sites`. */
  readonly users: Readonly<Record<string, readonly (number | null)[]>>;
  readonly vms: readonly VmSpec[];
}

/** Defaults: a 1 Gbit/s link with half kept for foreground traffic (500 Mbit/s spare). */
export const DEFAULT_LINK: Required<LinkSpec> = { rttMs: 50, bandwidthMbps: 1000, foregroundShare: 0.5 };

/** A 2-vCPU 4 GiB idle remote desktop without disk to copy, sensitivity 0.9. */
export const DEFAULT_VM = {
  vcpu: 2, memoryMiB: 4096, diskGiB: 0, dirtyRateMiBps: 0, sensitivity: 0.9,
} as const;

function normLinkKey(k: string): string {
  const [a = '', b = ''] = k.split('~');
  return linkIdOf(siteId(a), siteId(b));
}

/** Builds the plain-JSON SnapshotInput for a compact cloud description (valid if the spec is). */
export function buildCloud(spec: CloudSpec): SnapshotInput {
  const overrides = new Map<string, LinkSpec | null>(
    Object.entries(spec.links ?? {}).map(([k, v]) => [normLinkKey(k), v]),
  );
  const links: unknown[] = [];
  for (let i = 0; i < spec.sites.length; i++) {
    for (let j = i + 1; j < spec.sites.length; j++) {
      const a = spec.sites[i]!.id;
      const b = spec.sites[j]!.id;
      const o = overrides.get(linkIdOf(siteId(a), siteId(b)));
      if (o === null) continue;
      links.push({ a, b, ...DEFAULT_LINK, ...spec.mesh, ...o });
    }
  }
  return {
    atMs: spec.atMs ?? 0,
    sites: spec.sites.map((s) => ({
      id: s.id, country: 'DE', lat: 0, lon: 0, capacity: { vcpu: s.vcpu, memoryMiB: s.memoryMiB },
    })),
    users: Object.entries(spec.users).map(([id, rttMs]) => ({ id, country: 'DE', lat: 0, lon: 0, rttMs: [...rttMs] })),
    links,
    vms: spec.vms.map((v) => {
      let users: { userId: string; share: number }[] = [];
      if (Array.isArray(v.users)) {
        const ids = v.users as readonly string[];
        users = ids.map((u) => ({ userId: u, share: 1 / ids.length }));
      } else if (v.users !== undefined) {
        const shares = v.users as Readonly<Record<string, number>>;
        users = Object.entries(shares).map(([u, share]) => ({ userId: u, share }));
      }
      const out: Record<string, unknown> = {
        id: v.id,
        siteId: v.site,
        vcpu: v.vcpu ?? DEFAULT_VM.vcpu,
        memoryMiB: v.memoryMiB ?? DEFAULT_VM.memoryMiB,
        diskGiB: v.diskGiB ?? DEFAULT_VM.diskGiB,
        dirtyRateMiBps: v.dirtyRateMiBps ?? DEFAULT_VM.dirtyRateMiBps,
        sensitivity: v.sensitivity ?? DEFAULT_VM.sensitivity,
        activity: 'remote-desktop',
        users,
        pinned: v.pinned ?? false,
        excluded: v.excluded ?? false,
        lastMovedAtMs: v.lastMovedAtMs ?? null,
        recentMoves: v.recentMoves ?? 0,
      };
      if (v.workingSetMiB !== undefined) out.workingSetMiB = v.workingSetMiB;
      if (v.diskDeltaGiB !== undefined) out.diskDeltaGiB = { ...v.diskDeltaGiB };
      return out;
    }),
  };
}

/** `createSnapshot(buildCloud(spec))`. */
export function snapshotOf(spec: CloudSpec): Snapshot {
  return createSnapshot(buildCloud(spec));
}

/** Planner settings: the defaults with these overrides, validated like operator input. */
export function paramsWith(overrides: Record<string, unknown> = {}): PlanParams {
  return parsePlanParams(overrides);
}

// ---------------------------------------------------------------------------------------------------
// Arbitraries
// ---------------------------------------------------------------------------------------------------

export interface ArbCloudOptions {
  readonly minSites?: number;
  readonly maxSites?: number;
  readonly maxVms?: number;
  readonly maxUsers?: number;
}

/** The snapshot clock in generated clouds: ten days in, so "moved n hours ago" stays non-negative. */
export const ARB_AT_MS = 10 * 24 * 3_600_000;

/** `arb` with probability about p, else null. */
function rarely<T>(arb: fc.Arbitrary<T>, p: number): fc.Arbitrary<T | null> {
  const some = Math.round(p * 60);
  return fc.oneof({ weight: 60 - some, arbitrary: fc.constant(null) }, { weight: some, arbitrary: arb });
}

const MEMORY_SIZES = [512, 1024, 2048, 4096, 8192, 16384] as const;

/**
 * Random but valid clouds: 2–6 sites in a (mostly) full mesh, 1–30 VMs, 1–20 users. Capacities hold the
 * initial placement, often with no slack at all so that make-room has something to do; sensitivities
 * cover the evictable (≤ 0.2), in-between and sensitive ranges; some VMs are pinned, excluded or moved
 * recently (with a streak, so back-off applies).
 */
export function arbCloud(opts: ArbCloudOptions = {}): fc.Arbitrary<SnapshotInput> {
  const minSites = opts.minSites ?? 2;
  const maxSites = opts.maxSites ?? 6;
  const maxVms = opts.maxVms ?? 30;
  const maxUsers = opts.maxUsers ?? 20;
  return fc.record({
    nSites: fc.integer({ min: minSites, max: maxSites }),
    nUsers: fc.integer({ min: 1, max: maxUsers }),
    nVms: fc.integer({ min: 1, max: maxVms }),
  }).chain(({ nSites, nUsers, nVms }) => {
    const rtt = fc.oneof(
      { weight: 30, arbitrary: fc.integer({ min: 1, max: 300 }) },
      { weight: 1, arbitrary: fc.constant(null) },
    );
    const user = fc.array(rtt, { minLength: nSites, maxLength: nSites });
    // Now and then a pair of sites has no link.
    const link = rarely(fc.record({
      rttMs: fc.integer({ min: 1, max: 250 }),
      bandwidthMbps: fc.constantFrom(50, 100, 1000, 10_000),
      foregroundShare: fc.constantFrom(0, 0.25, 0.5, 0.9),
    }), 14 / 15);
    const sensitivity = fc.oneof(
      fc.integer({ min: 0, max: 20 }),
      fc.integer({ min: 21, max: 49 }),
      fc.integer({ min: 50, max: 100 }),
      fc.integer({ min: 50, max: 100 }),
    ).map((x) => x / 100);
    const vm = fc.record({
      site: fc.integer({ min: 0, max: nSites - 1 }),
      vcpu: fc.integer({ min: 1, max: 8 }),
      memoryMiB: fc.constantFrom(...MEMORY_SIZES),
      diskGiB: fc.constantFrom(0, 0, 10, 40, 100),
      dirtyRateMiBps: fc.constantFrom(0, 0, 0, 5, 20, 80, 400),
      workingSetPct: fc.integer({ min: 0, max: 100 }),
      sensitivity,
      users: fc.oneof(
        { weight: 1, arbitrary: fc.constant([] as [number, number][]) },
        {
          weight: 9,
          arbitrary: fc.uniqueArray(fc.tuple(fc.integer({ min: 0, max: nUsers - 1 }), fc.integer({ min: 1, max: 5 })),
            { minLength: 1, maxLength: Math.min(3, nUsers), selector: ([u]) => u }),
        },
      ),
      pinned: fc.integer({ min: 0, max: 9 }).map((x) => x === 0),
      excluded: fc.integer({ min: 0, max: 19 }).map((x) => x === 0),
      moved: rarely(fc.record({
        agoMs: fc.integer({ min: 0, max: 48 * 3_600_000 }),
        recentMoves: fc.integer({ min: 1, max: 5 }),
      }), 1 / 5),
      deltaSite: rarely(fc.tuple(fc.integer({ min: 0, max: nSites - 1 }), fc.integer({ min: 0, max: 5 })), 1 / 4),
    });
    return fc.record({
      users: fc.array(user, { minLength: nUsers, maxLength: nUsers }),
      links: fc.array(link, { minLength: (nSites * (nSites - 1)) / 2, maxLength: (nSites * (nSites - 1)) / 2 }),
      vms: fc.array(vm, { minLength: nVms, maxLength: nVms }),
      slack: fc.array(fc.record({
        // A third of the sites are full (no slack at all); the rest have a little to plenty.
        full: fc.integer({ min: 0, max: 2 }).map((x) => x === 0),
        vcpu: fc.integer({ min: 0, max: 24 }),
        memoryMiB: fc.constantFrom(0, 2048, 8192, 32768, 65536),
      }), { minLength: nSites, maxLength: nSites }),
    }).map(({ users, links, vms, slack }) => {
      const sites = Array.from({ length: nSites }, (_, j) => `s${j}`);
      const used = sites.map(() => ({ vcpu: 0, memoryMiB: 0 }));
      for (const v of vms) {
        used[v.site]!.vcpu += v.vcpu;
        used[v.site]!.memoryMiB += v.memoryMiB;
      }
      const linkList: unknown[] = [];
      let k = 0;
      for (let i = 0; i < nSites; i++) {
        for (let j = i + 1; j < nSites; j++) {
          const l = links[k++];
          if (l) linkList.push({ a: sites[i], b: sites[j], ...l });
        }
      }
      return {
        atMs: ARB_AT_MS,
        sites: sites.map((id, j) => ({
          id, country: 'DE', lat: 0, lon: 0,
          capacity: slack[j]!.full ? used[j]!
            : { vcpu: used[j]!.vcpu + slack[j]!.vcpu, memoryMiB: used[j]!.memoryMiB + slack[j]!.memoryMiB },
        })),
        users: users.map((rttMs, i) => ({ id: `u${i}`, country: 'DE', lat: 0, lon: 0, rttMs })),
        links: linkList,
        vms: vms.map((v, i) => {
          const totalW = v.users.reduce((t, [, w]) => t + w, 0);
          return {
            id: `vm${i}`,
            siteId: sites[v.site],
            vcpu: v.vcpu,
            memoryMiB: v.memoryMiB,
            diskGiB: v.diskGiB,
            dirtyRateMiBps: v.dirtyRateMiBps,
            workingSetMiB: Math.round((v.memoryMiB * v.workingSetPct) / 100),
            sensitivity: v.sensitivity,
            activity: 'remote-desktop',
            users: v.users.map(([u, w]) => ({ userId: `u${u}`, share: w / totalW })),
            pinned: v.pinned,
            excluded: v.excluded,
            lastMovedAtMs: v.moved === null ? null : ARB_AT_MS - v.moved.agoMs,
            recentMoves: v.moved === null ? 0 : v.moved.recentMoves,
            diskDeltaGiB: v.deltaSite === null ? {} : { [sites[v.deltaSite[0]]!]: v.deltaSite[1] },
          };
        }),
      };
    });
  });
}

/**
 * Planner settings as operator JSON, validated by parsePlanParams: thresholds spread around the
 * defaults, small budgets so they bind, cooldowns from none to a few hours, either post-copy policy.
 * `vmIds` lets the pinned/excluded lists name real VMs.
 */
export function arbPlanParams(vmIds: readonly string[] = []): fc.Arbitrary<PlanParams> {
  const none = fc.constant([] as string[]);
  const ids = vmIds.length === 0 ? none
    : fc.oneof({ weight: 3, arbitrary: none }, { weight: 1, arbitrary: fc.subarray([...vmIds], { maxLength: Math.min(2, vmIds.length) }) });
  return fc.record({
    minSavingMs: fc.constantFrom(0, 1, 5, 10, 25, 50),
    minSensitivity: fc.constantFrom(0.3, 0.5, 0.7),
    evictableMaxSensitivity: fc.constantFrom(0, 0.1, 0.2, 0.25),
    maxMovesPerRound: fc.oneof({ weight: 1, arbitrary: fc.constant(0) }, { weight: 9, arbitrary: fc.integer({ min: 1, max: 10 }) }),
    maxMovesPerLink: fc.oneof({ weight: 1, arbitrary: fc.constant(0) }, { weight: 9, arbitrary: fc.integer({ min: 1, max: 4 }) }),
    baseCooldownMs: fc.constantFrom(0, 60_000, 30 * 60_000, 3 * 3_600_000),
    maxCooldownMs: fc.constantFrom(3_600_000, 12 * 3_600_000, 24 * 3_600_000),
    postCopy: fc.constantFrom('allow', 'reject'),
    maxDowntimeMs: fc.constantFrom(50, 300, 1000),
    maxPrecopyRounds: fc.constantFrom(1, 5, 30),
    maxCostS: fc.constantFrom(60, 3_600, 3_600),
    evictionPenalty: fc.constantFrom(1e-6, 0.01, 0.5),
    evictionRttWeight: fc.constantFrom(0, 0.5, 1),
    pinned: ids,
    excluded: ids,
  }).map((raw) => parsePlanParams({ ...raw, maxCooldownMs: Math.max(raw.maxCooldownMs, raw.baseCooldownMs) }));
}

/** A generated cloud with settings that may pin or exclude some of its VMs. */
export function arbCase(opts: ArbCloudOptions = {}): fc.Arbitrary<{ input: SnapshotInput; params: PlanParams }> {
  return arbCloud(opts).chain((input) =>
    arbPlanParams((input.vms as { id: string }[]).map((v) => v.id)).map((params) => ({ input, params })));
}

// ---------------------------------------------------------------------------------------------------
// Plan checkers (each returns a list of violations, empty when the plan is sound)
// ---------------------------------------------------------------------------------------------------

/** vCPU and memory in use at each site once every move of the plan has finished. */
export function usageAfter(s: Snapshot, plan: Plan): { vcpu: number; memoryMiB: number }[] {
  const used = s.sites.map(() => ({ vcpu: 0, memoryMiB: 0 }));
  const where = new Map<VmId, SiteId>(s.vms.map((v) => [v.id, v.siteId]));
  for (const m of plan.moves) where.set(m.vm, m.to);
  for (const v of s.vms) {
    const u = used[s.siteIndex.get(where.get(v.id)!)!]!;
    u.vcpu += v.vcpu;
    u.memoryMiB += v.memoryMiB;
  }
  return used;
}

export function capacityViolations(s: Snapshot, plan: Plan): string[] {
  const out: string[] = [];
  usageAfter(s, plan).forEach((u, j) => {
    const site = s.sites[j]!;
    if (u.vcpu > site.capacity.vcpu + 1e-6) out.push(`${site.id}: ${u.vcpu} vCPU > ${site.capacity.vcpu}`);
    if (u.memoryMiB > site.capacity.memoryMiB + 1e-6) out.push(`${site.id}: ${u.memoryMiB} MiB > ${site.capacity.memoryMiB}`);
  });
  return out;
}

export function budgetViolations(plan: Plan, params: PlanParams): string[] {
  const out: string[] = [];
  if (plan.moves.length > params.maxMovesPerRound) out.push(`${plan.moves.length} moves > ${params.maxMovesPerRound}`);
  const perLink = new Map<string, number>();
  for (const m of plan.moves) {
    const k = linkIdOf(m.from, m.to);
    perLink.set(k, (perLink.get(k) ?? 0) + 1);
  }
  for (const [k, n] of perLink) if (n > params.maxMovesPerLink) out.push(`${n} moves over ${k} > ${params.maxMovesPerLink}`);
  return out;
}

/** Every VM moved at most once, and every VM either moved or rejected exactly once with a reason. */
export function accountingViolations(s: Snapshot, plan: Plan): string[] {
  const out: string[] = [];
  const seen = new Map<string, number>();
  for (const m of plan.moves) seen.set(m.vm, (seen.get(m.vm) ?? 0) + 1);
  for (const r of plan.rejected) {
    seen.set(r.vm, (seen.get(r.vm) ?? 0) + 1);
    if (r.detail.length === 0) out.push(`${r.vm} rejected '${r.reason}' without detail`);
  }
  for (const v of s.vms) if (seen.get(v.id) !== 1) out.push(`${v.id} appears ${seen.get(v.id) ?? 0} times`);
  if (seen.size !== s.vms.length) out.push(`plan names ${seen.size - s.vms.length} unknown VMs`);
  return out;
}

/** `after` only names VMs moved in the same plan, and following it never loops. */
export function orderViolations(plan: Plan): string[] {
  const out: string[] = [];
  const moved = new Map(plan.moves.map((m) => [m.vm as string, m]));
  for (const m of plan.moves) {
    for (const a of m.after) if (!moved.has(a)) out.push(`${m.vm} waits for ${a}, which does not move`);
    if (m.after.includes(m.vm)) out.push(`${m.vm} waits for itself`);
  }
  const state = new Map<string, 'open' | 'done'>();
  const visit = (v: string, path: string[]): void => {
    const st = state.get(v);
    if (st === 'done') return;
    if (st === 'open') {
      out.push(`cycle: ${[...path, v].join(' → ')}`);
      return;
    }
    state.set(v, 'open');
    for (const a of moved.get(v)?.after ?? []) visit(a, [...path, v]);
    state.set(v, 'done');
  };
  for (const v of moved.keys()) visit(v, []);
  return out;
}

/**
 * Starting each move only once everything in its `after` has finished (moves otherwise in plan order)
 * never needs more room at a destination than is free at that moment, counting a move's room as taken
 * at its destination from its start and as freed at its source only when it finishes.
 */
export function transientViolations(s: Snapshot, plan: Plan): string[] {
  const out: string[] = [];
  const free = s.sites.map((site) => ({ vcpu: site.capacity.vcpu, memoryMiB: site.capacity.memoryMiB }));
  for (const v of s.vms) {
    const f = free[s.siteIndex.get(v.siteId)!]!;
    f.vcpu -= v.vcpu;
    f.memoryMiB -= v.memoryMiB;
  }
  // Run the plan as waves: a wave starts every move whose `after` is complete; the wave's moves all
  // hold room at both ends until the wave is over.
  const done = new Set<string>();
  let left = [...plan.moves];
  while (left.length > 0) {
    const wave = left.filter((m) => m.after.every((a) => done.has(a)));
    if (wave.length === 0) {
      out.push(`moves ${left.map((m) => m.vm).join(', ')} can never start`);
      break;
    }
    for (const m of wave) {
      const vm = s.vms[s.vmIndex.get(m.vm)!]!;
      const f = free[s.siteIndex.get(m.to)!]!;
      f.vcpu -= vm.vcpu;
      f.memoryMiB -= vm.memoryMiB;
    }
    free.forEach((f, j) => {
      if (f.vcpu < -1e-6 || f.memoryMiB < -1e-6) {
        out.push(`${s.sites[j]!.id} over capacity while moves ${wave.map((m) => m.vm).join(', ')} run`);
      }
    });
    for (const m of wave) {
      const vm = s.vms[s.vmIndex.get(m.vm)!]!;
      const f = free[s.siteIndex.get(m.from)!]!;
      f.vcpu += vm.vcpu;
      f.memoryMiB += vm.memoryMiB;
      done.add(m.vm);
    }
    left = left.filter((m) => !wave.includes(m));
  }
  return out;
}

/** Moves the plan must never contain: of pinned, excluded or cooling-down VMs. */
export function blockedMoveViolations(s: Snapshot, plan: Plan, params: PlanParams): string[] {
  const out: string[] = [];
  for (const m of plan.moves) {
    const vm = s.vms[s.vmIndex.get(m.vm)!]!;
    if (vm.pinned || params.pinned.includes(vm.id)) out.push(`${vm.id} is pinned`);
    if (vm.excluded || params.excluded.includes(vm.id)) out.push(`${vm.id} is excluded`);
    if (vm.lastMovedAtMs !== null && s.atMs < vm.lastMovedAtMs + cooldownMs(params, vm.recentMoves)) {
      out.push(`${vm.id} is cooling down`);
    }
  }
  return out;
}

/** Moves below the thresholds: for too small a saving, or evicting a VM too sensitive to evict. */
export function thresholdViolations(s: Snapshot, plan: Plan, params: PlanParams): string[] {
  const out: string[] = [];
  for (const m of plan.moves) {
    const vm = s.vms[s.vmIndex.get(m.vm)!]!;
    if (m.kind === 'closer-to-users' && !(m.savingMs >= params.minSavingMs && m.savingMs > 0)) {
      out.push(`${vm.id} moves to save ${m.savingMs} ms (minimum ${params.minSavingMs})`);
    }
    if (m.kind === 'make-room' && vm.sensitivity > params.evictableMaxSensitivity) {
      out.push(`${vm.id} (sensitivity ${vm.sensitivity}) evicted`);
    }
  }
  return out;
}

/** Every check above that holds for any plan of either planner. */
export function planViolations(s: Snapshot, plan: Plan, params: PlanParams): string[] {
  return [
    ...capacityViolations(s, plan), ...budgetViolations(plan, params), ...accountingViolations(s, plan),
    ...orderViolations(plan), ...transientViolations(s, plan), ...blockedMoveViolations(s, plan, params),
    ...thresholdViolations(s, plan, params),
  ];
}

/** The plan as one line per move, for failure messages. */
export function describePlan(plan: Plan): string {
  return plan.moves.map((m) => `${m.vm} ${m.from}→${m.to} ${m.kind} benefit ${m.benefit.toFixed(2)}${m.after.length > 0 ? ` after ${m.after.join(',')}` : ''}`).join('\n');
}

