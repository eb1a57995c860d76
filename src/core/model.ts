import { InputError } from './errors.js';
import type { HostId, LinkId, SiteId, UserId, VmId } from './ids.js';
import { linkIdOf } from './ids.js';
import {
  arr, checkNum, num, obj, onlyKeys, oneOf, optBool, optNum, optStr, str, type Obj,
} from './validate.js';

export interface Resources {
  readonly vcpu: number;
  readonly memoryMiB: number;
}

export interface Site {
  readonly id: SiteId;
  readonly name: string;
  /** The cloud region the site stands in (an AWS region name in generated clouds). */
  readonly region: string;
  /** ISO 3166 alpha-2. */
  readonly country: string;
  readonly lat: number;
  readonly lon: number;
  readonly capacity: Resources;
}

export interface Host {
  readonly id: HostId;
  readonly siteId: SiteId;
  readonly capacity: Resources;
}

export const ACTIVITY_CLASSES = [
  'remote-desktop', 'conferencing', 'gaming', 'video-streaming', 'bulk-transfer', 'background',
] as const;
export type ActivityClass = (typeof ACTIVITY_CLASSES)[number];

export interface VmUser {
  readonly userId: UserId;
  /** This user's share of the VM's interactive traffic; a VM's shares sum to 1. */
  readonly share: number;
}

export interface Vm {
  readonly id: VmId;
  readonly siteId: SiteId;
  readonly hostId: HostId | null;
  readonly vcpu: number;
  readonly memoryMiB: number;
  readonly diskGiB: number;
  /** Rate at which the guest re-dirties memory while it runs. */
  readonly dirtyRateMiBps: number;
  /** Pages the guest keeps rewriting; re-dirtied bytes per pre-copy round never exceed it. */
  readonly workingSetMiB: number;
  /** Location sensitivity in [0, 1] from the fingerprint. */
  readonly sensitivity: number;
  readonly activity: ActivityClass;
  readonly users: readonly VmUser[];
  readonly pinned: boolean;
  readonly excluded: boolean;
  readonly lastMovedAtMs: number | null;
  /** Moves in the VM's current streak (moves closer together than the back-off reset); drives the cooldown. */
  readonly recentMoves: number;
  /**
   * GiB still to copy to a site that already holds a replica of the disk ("*": every site not listed, as for
   * desktops cloned from a golden image replicated everywhere); sites not covered need the whole disk.
   */
  readonly diskDeltaGiB: Readonly<Record<string, number>>;
}

export interface User {
  readonly id: UserId;
  readonly name: string;
  readonly country: string;
  readonly lat: number;
  readonly lon: number;
  /** The network the user is on now ("home-wifi", "4g", …): RTTs change when it does. */
  readonly network: string;
  /** Round-trip time from this user to each site, aligned with `Snapshot.sites`; null where unknown. */
  readonly rttMs: readonly (number | null)[];
}

export interface Link {
  readonly id: LinkId;
  readonly a: SiteId;
  readonly b: SiteId;
  readonly rttMs: number;
  readonly bandwidthMbps: number;
  /** Share of the bandwidth kept for foreground traffic; migrations get the rest. */
  readonly foregroundShare: number;
}

/** An immutable picture of the cloud at one instant, with indexes for lookups by id. */
export interface Snapshot {
  readonly atMs: number;
  readonly sites: readonly Site[];
  readonly hosts: readonly Host[];
  readonly vms: readonly Vm[];
  readonly users: readonly User[];
  readonly links: readonly Link[];
  readonly siteIndex: ReadonlyMap<SiteId, number>;
  readonly vmIndex: ReadonlyMap<VmId, number>;
  readonly userIndex: ReadonlyMap<UserId, number>;
  readonly linkById: ReadonlyMap<LinkId, Link>;
}

/** The plain-JSON form of a snapshot, as scenario files and the API carry it. */
export interface SnapshotInput {
  atMs?: number;
  sites: unknown;
  hosts?: unknown;
  vms: unknown;
  users: unknown;
  links: unknown;
}

const SITE_KEYS = ['id', 'name', 'region', 'country', 'lat', 'lon', 'capacity'];
const VM_KEYS = [
  'id', 'siteId', 'hostId', 'vcpu', 'memoryMiB', 'diskGiB', 'dirtyRateMiBps', 'workingSetMiB', 'sensitivity',
  'activity', 'users', 'pinned', 'excluded', 'lastMovedAtMs', 'recentMoves', 'diskDeltaGiB',
];
const USER_KEYS = ['id', 'name', 'country', 'lat', 'lon', 'network', 'rttMs'];
const LINK_KEYS = ['a', 'b', 'rttMs', 'bandwidthMbps', 'foregroundShare'];

function resources(o: Obj, key: string, path: string): Resources {
  const r = obj(o[key], `${path}.${key}`);
  onlyKeys(r, `${path}.${key}`, ['vcpu', 'memoryMiB']);
  return {
    vcpu: num(r, 'vcpu', `${path}.${key}`, { min: 0, max: 1e9 }),
    memoryMiB: num(r, 'memoryMiB', `${path}.${key}`, { min: 0, max: 1e15 }),
  };
}

function uniqueId<T extends string>(o: Obj, path: string, seen: Set<string>, kind: string): T {
  const id = str(o, 'id', path);
  if (seen.has(id)) throw new InputError(`${path}.id`, id, `duplicate ${kind} id`);
  seen.add(id);
  return id as T;
}

function country(o: Obj, path: string): string {
  const c = str(o, 'country', path);
  if (!/^[A-Z]{2}$/.test(c)) throw new InputError(`${path}.country`, c, 'must be an ISO 3166 alpha-2 code such as "DE"');
  return c;
}

/**
 * Validates plain JSON into a Snapshot. Every problem is an InputError naming the field and its value:
 * unknown ids, negative sizes, shares that do not sum to 1, a placement that already exceeds capacity.
 */
export function createSnapshot(input: SnapshotInput): Snapshot {
  const atMs = input.atMs === undefined ? 0 : checkNum(input.atMs, 'atMs', { min: 0 });

  const siteIds = new Set<string>();
  const sites: Site[] = arr(input.sites, 'sites').map((raw, i) => {
    const p = `sites[${i}]`;
    const o = obj(raw, p);
    onlyKeys(o, p, SITE_KEYS);
    const id = uniqueId<SiteId>(o, p, siteIds, 'site');
    return Object.freeze({
      id,
      name: optStr(o, 'name', p) ?? id,
      region: optStr(o, 'region', p) ?? id,
      country: country(o, p),
      lat: num(o, 'lat', p, { min: -90, max: 90 }),
      lon: num(o, 'lon', p, { min: -180, max: 180 }),
      capacity: Object.freeze(resources(o, 'capacity', p)),
    });
  });
  if (sites.length === 0) throw new InputError('sites', input.sites, 'must list at least one site');
  const siteIndex = new Map<SiteId, number>(sites.map((s, i) => [s.id, i]));

  const knownSite = (v: unknown, path: string): SiteId => {
    if (typeof v !== 'string' || !siteIndex.has(v as SiteId)) throw new InputError(path, v, 'is not a known site');
    return v as SiteId;
  };

  const hostIds = new Set<string>();
  const hostSite = new Map<string, SiteId>();
  const hosts: Host[] = (input.hosts === undefined ? [] : arr(input.hosts, 'hosts')).map((raw, i) => {
    const p = `hosts[${i}]`;
    const o = obj(raw, p);
    onlyKeys(o, p, ['id', 'siteId', 'capacity']);
    const id = uniqueId<HostId>(o, p, hostIds, 'host');
    const site = knownSite(o.siteId, `${p}.siteId`);
    hostSite.set(id, site);
    return Object.freeze({ id, siteId: site, capacity: Object.freeze(resources(o, 'capacity', p)) });
  });

  const userIds = new Set<string>();
  const users: User[] = arr(input.users, 'users').map((raw, i) => {
    const p = `users[${i}]`;
    const o = obj(raw, p);
    onlyKeys(o, p, USER_KEYS);
    const id = uniqueId<UserId>(o, p, userIds, 'user');
    const rtt = arr(o.rttMs, `${p}.rttMs`);
    if (rtt.length !== sites.length) {
      throw new InputError(`${p}.rttMs`, rtt, `must have one entry per site (${sites.length})`);
    }
    return Object.freeze({
      id,
      name: optStr(o, 'name', p) ?? id,
      country: country(o, p),
      lat: num(o, 'lat', p, { min: -90, max: 90 }),
      lon: num(o, 'lon', p, { min: -180, max: 180 }),
      network: optStr(o, 'network', p) ?? 'fixed',
      rttMs: Object.freeze(rtt.map((v, j) => (v === null ? null : checkNum(v, `${p}.rttMs[${j}]`, { min: 0, max: 100_000 })))),
    });
  });
  const userIndex = new Map<UserId, number>(users.map((u, i) => [u.id, i]));

  const linkById = new Map<LinkId, Link>();
  const links: Link[] = arr(input.links, 'links').map((raw, i) => {
    const p = `links[${i}]`;
    const o = obj(raw, p);
    onlyKeys(o, p, LINK_KEYS);
    const a = knownSite(o.a, `${p}.a`);
    const b = knownSite(o.b, `${p}.b`);
    if (a === b) throw new InputError(`${p}.b`, b, 'a link must join two different sites');
    const id = linkIdOf(a, b);
    if (linkById.has(id)) throw new InputError(p, id, 'duplicate link between these sites');
    const link: Link = Object.freeze({
      id, a, b,
      rttMs: num(o, 'rttMs', p, { min: 0, max: 100_000 }),
      bandwidthMbps: num(o, 'bandwidthMbps', p, { above: 0, max: 1e7 }),
      foregroundShare: optNum(o, 'foregroundShare', p, 0.5, { min: 0, max: 0.95 }),
    });
    linkById.set(id, link);
    return link;
  });

  const vmIds = new Set<string>();
  const used = sites.map(() => ({ vcpu: 0, memoryMiB: 0, vms: 0 }));
  const hostUse = new Map<string, { vcpu: number; memoryMiB: number; vms: number }>(hosts.map((h) => [h.id, { vcpu: 0, memoryMiB: 0, vms: 0 }]));
  const vms: Vm[] = arr(input.vms, 'vms').map((raw, i) => {
    const p = `vms[${i}]`;
    const o = obj(raw, p);
    onlyKeys(o, p, VM_KEYS);
    const id = uniqueId<VmId>(o, p, vmIds, 'VM');
    const site = knownSite(o.siteId, `${p}.siteId`);
    let host: HostId | null = null;
    if (o.hostId !== undefined && o.hostId !== null) {
      const h = hostSite.get(o.hostId as string);
      if (h === undefined) throw new InputError(`${p}.hostId`, o.hostId, 'is not a known host');
      if (h !== site) throw new InputError(`${p}.hostId`, o.hostId, `is at site ${h}, not at the VM's site ${site}`);
      host = o.hostId as HostId;
    }
    const memoryMiB = num(o, 'memoryMiB', p, { above: 0, max: 1e12 });
    const vmUsers = (o.users === undefined ? [] : arr(o.users, `${p}.users`)).map((ru, j) => {
      const up = `${p}.users[${j}]`;
      const uo = obj(ru, up);
      onlyKeys(uo, up, ['userId', 'share']);
      const uid = str(uo, 'userId', up);
      if (!userIndex.has(uid as UserId)) throw new InputError(`${up}.userId`, uid, 'is not a known user');
      return Object.freeze({ userId: uid as UserId, share: num(uo, 'share', up, { above: 0, max: 1 }) });
    });
    if (vmUsers.length > 0) {
      const total = vmUsers.reduce((s, u) => s + u.share, 0);
      if (Math.abs(total - 1) > 1e-6) throw new InputError(`${p}.users`, total, 'shares must sum to 1');
    }
    const deltaRaw = o.diskDeltaGiB === undefined ? {} : obj(o.diskDeltaGiB, `${p}.diskDeltaGiB`);
    const diskDeltaGiB: Record<string, number> = {};
    for (const [k, v] of Object.entries(deltaRaw)) {
      if (k !== '*') knownSite(k, `${p}.diskDeltaGiB`);
      diskDeltaGiB[k] = checkNum(v, `${p}.diskDeltaGiB.${k}`, { min: 0 });
    }
    const vm: Vm = Object.freeze({
      id,
      siteId: site,
      hostId: host,
      vcpu: num(o, 'vcpu', p, { above: 0, max: 1e6 }),
      memoryMiB,
      diskGiB: optNum(o, 'diskGiB', p, 0, { min: 0, max: 1e9 }),
      dirtyRateMiBps: optNum(o, 'dirtyRateMiBps', p, 0, { min: 0, max: 1e9 }),
      workingSetMiB: optNum(o, 'workingSetMiB', p, memoryMiB, { min: 0, max: memoryMiB }),
      sensitivity: optNum(o, 'sensitivity', p, 0, { min: 0, max: 1 }),
      activity: o.activity === undefined ? 'background' : oneOf(o, 'activity', p, ACTIVITY_CLASSES),
      users: Object.freeze(vmUsers),
      pinned: optBool(o, 'pinned', p, false),
      excluded: optBool(o, 'excluded', p, false),
      lastMovedAtMs: o.lastMovedAtMs === undefined || o.lastMovedAtMs === null
        ? null : num(o, 'lastMovedAtMs', p, { min: 0 }),
      recentMoves: optNum(o, 'recentMoves', p, 0, { min: 0, integer: true }),
      diskDeltaGiB: Object.freeze(diskDeltaGiB),
    });
    if (host !== null) {
      const h = hostUse.get(host)!;
      h.vcpu += vm.vcpu;
      h.memoryMiB += vm.memoryMiB;
      h.vms += 1;
    }
    const u = used[siteIndex.get(site)!]!;
    u.vcpu += vm.vcpu;
    u.memoryMiB += vm.memoryMiB;
    u.vms += 1;
    return vm;
  });
  const vmIndex = new Map<VmId, number>(vms.map((v, i) => [v.id, i]));

  hosts.forEach((h, i) => {
    const u = hostUse.get(h.id)!;
    for (const k of ['vcpu', 'memoryMiB'] as const) {
      if (u[k] > h.capacity[k] + 1e-9) {
        throw new InputError(`hosts[${i}].capacity.${k}`, h.capacity[k], `placement already exceeds capacity: ${u.vms} VMs on ${h.id} use ${u[k]} ${k === 'vcpu' ? 'vCPU' : 'MiB'}`);
      }
    }
  });
  sites.forEach((s, i) => {
    const u = used[i]!;
    if (u.vcpu > s.capacity.vcpu + 1e-9) {
      throw new InputError(`sites[${i}].capacity.vcpu`, s.capacity.vcpu,
        `placement already exceeds capacity: ${u.vms} VMs at ${s.id} use ${u.vcpu} vCPU`);
    }
    if (u.memoryMiB > s.capacity.memoryMiB + 1e-9) {
      throw new InputError(`sites[${i}].capacity.memoryMiB`, s.capacity.memoryMiB,
        `placement already exceeds capacity: ${u.vms} VMs at ${s.id} use ${u.memoryMiB} MiB`);
    }
  });

  return Object.freeze({
    atMs,
    sites: Object.freeze(sites),
    hosts: Object.freeze(hosts),
    vms: Object.freeze(vms),
    users: Object.freeze(users),
    links: Object.freeze(links),
    siteIndex, vmIndex, userIndex, linkById,
  });
}

/** The plain-JSON form of a snapshot: `createSnapshot(toSnapshotInput(s))` gives back an equal snapshot. */
export function toSnapshotInput(s: Snapshot): SnapshotInput {
  return {
    atMs: s.atMs,
    sites: s.sites,
    hosts: s.hosts,
    vms: s.vms.map((v) => ({ ...v, hostId: v.hostId ?? undefined })),
    users: s.users,
    links: s.links.map(({ id: _id, ...rest }) => rest),
  };
}

/** GiB of a VM's disk that must cross the WAN to reach `site`. */
export function diskToCopyGiB(vm: Vm, site: string): number {
  return vm.diskDeltaGiB[site] ?? vm.diskDeltaGiB['*'] ?? vm.diskGiB;
}

export function linkBetween(s: Snapshot, a: SiteId, b: SiteId): Link | undefined {
  return s.linkById.get(linkIdOf(a, b));
}

