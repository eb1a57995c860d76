// The cloud the manager looks after: sites, hosts, links, VMs (with the addresses their flows are
// attributed by) and known users. Read from an inventory file or from the lab's state, validated, and
// imported into the store without overwriting what the manager learned (where a VM runs now, its
// fingerprint, operator flags).
import { InputError } from '../core/errors.js';
import type { HostId, SiteId, UserId, VmId } from '../core/ids.js';
import { linkIdOf } from '../core/ids.js';
import { createSnapshot } from '../core/model.js';
import { arr, checkNum, obj, onlyKeys, optStr, str, type Obj } from '../core/validate.js';
import type { LabState } from '../lab/lab.js';
import type { Store } from '../store/store.js';
import type { HostRecord, LinkRecord, SiteRecord, UserRecord, UserSiteRtt, VmRecord } from '../store/records.js';
import { createInventory, normaliseIp, type Inventory } from '../telemetry/inventory.js';

export interface ManagerInventory {
  readonly sites: readonly SiteRecord[];
  readonly hosts: readonly HostRecord[];
  readonly links: readonly LinkRecord[];
  readonly vms: readonly VmRecord[];
  readonly users: readonly UserRecord[];
}

const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;

function addresses(o: Obj, path: string): string[] {
  const raw = o.addresses === undefined ? [] : arr(o.addresses, `${path}.addresses`);
  return raw.map((a, i) => {
    const p = `${path}.addresses[${i}]`;
    if (typeof a !== 'string') throw new InputError(p, a, 'must be an IP or MAC address');
    const mac = a.toLowerCase();
    if (MAC.test(mac)) return mac;
    const ip = normaliseIp(a);
    if (ip === null) throw new InputError(p, a, 'must be an IPv4, IPv6 or MAC (aa:bb:cc:dd:ee:ff) address');
    return ip;
  });
}

/** A fresh VM record: no fingerprint yet. */
export function newVmRecord(v: Omit<VmRecord, 'sensitivity' | 'sensitive' | 'activity' | 'reasons' | 'users' | 'fingerprintAtMs' | 'migratingJobId' | 'lastMovedAtMs' | 'recentMoves'>): VmRecord {
  return {
    ...v, sensitivity: 0, sensitive: false, activity: 'background', reasons: [], users: [], fingerprintAtMs: null,
    migratingJobId: null, lastMovedAtMs: null, recentMoves: 0,
  };
}

/**
 * Validates an inventory file: the cloud part exactly as a scenario's snapshot (createSnapshot names every
 * bad field), plus each VM's `addresses` and optional `name`, and users given by `endpoint`.
 */
export function parseManagerInventory(raw: unknown): ManagerInventory {
  const o = obj(raw, 'inventory');
  onlyKeys(o, 'inventory', ['sites', 'hosts', 'links', 'vms', 'users']);
  const vmsRaw = arr(o.vms, 'vms');
  const usersRaw = o.users === undefined ? [] : arr(o.users, 'users');
  const users: UserRecord[] = usersRaw.map((u, i) => {
    const p = `users[${i}]`;
    const uo = obj(u, p);
    onlyKeys(uo, p, ['id', 'name', 'endpoint', 'country', 'rttMs']);
    const endpoint = normaliseIp(str(uo, 'endpoint', p));
    if (endpoint === null) throw new InputError(`${p}.endpoint`, uo.endpoint, 'must be an IPv4 or IPv6 address');
    const country = optStr(uo, 'country', p) ?? null;
    if (country !== null && !/^[A-Z]{2}$/.test(country)) throw new InputError(`${p}.country`, country, 'must be an ISO 3166 alpha-2 code such as "DE"');
    const id = str(uo, 'id', p) as UserId;
    // RTTs the operator knows (a site's own measurement): used where no fresh probe answers.
    const rtt: Record<string, UserSiteRtt> = {};
    if (uo.rttMs !== undefined) {
      const ro = obj(uo.rttMs, `${p}.rttMs`);
      for (const [site, v] of Object.entries(ro)) rtt[site] = { rttMs: checkNum(v, `${p}.rttMs.${site}`, { min: 0, max: 100_000 }), source: 'config', atMs: 0, stale: false };
    }
    return { id, name: optStr(uo, 'name', p) ?? id, endpoint, country, lat: null, lon: null, network: 'network-1', rtt, vms: [], lastSeenAtMs: 0 };
  });
  const stripped = vmsRaw.map((v, i) => {
    const vo = { ...obj(v, `vms[${i}]`) };
    delete vo.addresses;
    delete vo.name;
    delete vo.users;
    return { sensitivity: 0, activity: 'background', ...vo };
  });
  // A host's `endpoint` (the directory its hypervisor keeps VMs in, or an address) is ours, not the snapshot's.
  const hostsRaw = o.hosts === undefined ? [] : arr(o.hosts, 'hosts');
  const endpoints = hostsRaw.map((h, i) => {
    const ho = obj(h, `hosts[${i}]`);
    return optStr(ho, 'endpoint', `hosts[${i}]`) ?? null;
  });
  const hostsStripped = hostsRaw.map((h) => {
    const ho = { ...(h as Obj) };
    delete ho.endpoint;
    return ho;
  });
  const snap = createSnapshot({ sites: o.sites, hosts: hostsStripped, links: o.links, vms: stripped, users: [] });
  const vms = snap.vms.map((v, i) => {
    const vo = obj(vmsRaw[i], `vms[${i}]`);
    return newVmRecord({
      id: v.id, name: optStr(vo, 'name', `vms[${i}]`) ?? v.id, siteId: v.siteId, hostId: v.hostId, vcpu: v.vcpu, memoryMiB: v.memoryMiB,
      diskGiB: v.diskGiB, dirtyRateMiBps: v.dirtyRateMiBps, workingSetMiB: v.workingSetMiB, addresses: addresses(vo, `vms[${i}]`),
      pinned: v.pinned, excluded: v.excluded, diskDeltaGiB: v.diskDeltaGiB,
    });
  });
  checkUniqueAddresses(vms);
  users.forEach((u, i) => {
    for (const site of Object.keys(u.rtt)) {
      if (!snap.siteIndex.has(site as SiteId)) throw new InputError(`users[${i}].rttMs.${site}`, site, 'is not a known site');
    }
  });
  return {
    sites: snap.sites,
    hosts: snap.hosts.map((h, i) => ({ id: h.id, siteId: h.siteId, capacity: h.capacity, endpoint: endpoints[i] ?? null })),
    links: snap.links,
    vms,
    users,
  };
}

function checkUniqueAddresses(vms: readonly VmRecord[]): void {
  const owner = new Map<string, VmId>();
  vms.forEach((v, i) => v.addresses.forEach((a, j) => {
    const o = owner.get(a);
    if (o !== undefined && o !== v.id) throw new InputError(`vms[${i}].addresses[${j}]`, a, `is already ${o}'s address`);
    owner.set(a, v.id);
  }));
}

/** Room for every lab VM at every lab site: the lab's guests are small and its sites are namespaces. */
const LAB_SITE_CAPACITY = { vcpu: 64, memoryMiB: 65_536 };

/**
 * The lab as an inventory: its sites (with their real regions), hosts, site-to-site links as configured,
 * VMs with their guest's IP and MAC (plus `extraAddresses`, e.g. a desktop that runs beside its VM), and
 * users by their namespace's address.
 */
export function inventoryFromLab(state: Pick<LabState, 'sites' | 'vms' | 'users' | 'links'>, extraAddresses: Readonly<Record<string, readonly string[]>> = {}): ManagerInventory {
  const sites: SiteRecord[] = state.sites.map((s) => ({
    id: s.id as SiteId, name: `${s.id} (${s.city})`, region: s.region, country: s.country, lat: s.lat, lon: s.lon,
    capacity: LAB_SITE_CAPACITY,
  }));
  const siteIds = new Set(state.sites.map((s) => s.id));
  const hosts: HostRecord[] = state.sites.flatMap((s) => s.hosts.map((h) => ({ id: h.id as HostId, siteId: s.id as SiteId, capacity: LAB_SITE_CAPACITY, endpoint: h.workDir })));
  const links: LinkRecord[] = state.links.filter((l) => siteIds.has(l.a) && siteIds.has(l.b)).map((l) => ({
    id: linkIdOf(l.a as SiteId, l.b as SiteId), a: l.a as SiteId, b: l.b as SiteId, rttMs: l.rttMs,
    bandwidthMbps: l.rateMbps > 0 ? l.rateMbps : 10_000, foregroundShare: 0.5,
  }));
  const vms: VmRecord[] = state.vms.map((v) => newVmRecord({
    id: v.name as VmId, name: v.name, siteId: v.site as SiteId, hostId: v.host as HostId, vcpu: v.vcpu, memoryMiB: v.memoryMiB,
    diskGiB: v.diskMiB / 1024, dirtyRateMiBps: v.dirty.rateMiBps, workingSetMiB: v.dirty.workingSetMiB,
    addresses: [v.ip, v.mac.toLowerCase(), ...(extraAddresses[v.name] ?? [])], pinned: false, excluded: false, diskDeltaGiB: {},
  }));
  checkUniqueAddresses(vms);
  const users: UserRecord[] = state.users.map((u) => ({
    id: u.name as UserId, name: u.name, endpoint: u.address, country: u.country, lat: u.lat, lon: u.lon, network: 'network-1',
    rtt: {}, vms: [], lastSeenAtMs: 0,
  }));
  return { sites, hosts, links, vms, users };
}

/** The collector's address → VM map for an inventory's VMs. */
export function telemetryInventory(vms: readonly Pick<VmRecord, 'id' | 'addresses'>[]): Inventory {
  return createInventory(vms.map((v) => ({
    vm: v.id,
    ips: v.addresses.filter((a) => !MAC.test(a)),
    macs: v.addresses.filter((a) => MAC.test(a)),
  })));
}

export interface ImportReport {
  readonly sites: number;
  readonly hosts: number;
  readonly links: number;
  readonly vmsAdded: number;
  readonly vmsUpdated: number;
  readonly usersAdded: number;
}

/**
 * Writes an inventory into the store. Sites, hosts and links are replaced. A VM already in the store keeps
 * what the manager learned or an operator set (where it runs, its fingerprint and users, pinned/excluded,
 * its moves) and takes the inventory's size and addresses; a new VM is added. Known users keep their RTTs.
 */
export async function importInventory(store: Store, inv: ManagerInventory): Promise<ImportReport> {
  await store.putMany('sites', inv.sites.map((s) => ({ id: s.id, value: s })));
  await store.putMany('hosts', inv.hosts.map((h) => ({ id: h.id, value: h, group: h.siteId })));
  await store.putMany('links', inv.links.map((l) => ({ id: l.id, value: l })));
  let added = 0;
  let updated = 0;
  const vms: VmRecord[] = [];
  for (const v of inv.vms) {
    const d = await store.get<VmRecord>('vms', v.id);
    if (d === null) {
      added++;
      vms.push(v);
    } else {
      updated++;
      vms.push({
        ...d.value, name: v.name, vcpu: v.vcpu, memoryMiB: v.memoryMiB, diskGiB: v.diskGiB, dirtyRateMiBps: v.dirtyRateMiBps,
        workingSetMiB: v.workingSetMiB, addresses: v.addresses, diskDeltaGiB: v.diskDeltaGiB,
      });
    }
  }
  await store.putMany('vms', vms.map((v) => ({ id: v.id, value: v })));
  let usersAdded = 0;
  const users: UserRecord[] = [];
  for (const u of inv.users) {
    const d = await store.get<UserRecord>('users', u.id);
    if (d === null) {
      usersAdded++;
      users.push(u);
    } else {
      users.push({
        ...d.value, name: u.name, endpoint: u.endpoint, country: u.country ?? d.value.country, lat: u.lat ?? d.value.lat, lon: u.lon ?? d.value.lon,
        rtt: { ...d.value.rtt, ...u.rtt },
      });
    }
  }
  if (users.length > 0) await store.putMany('users', users.map((u) => ({ id: u.id, value: u })));
  return { sites: inv.sites.length, hosts: inv.hosts.length, links: inv.links.length, vmsAdded: added, vmsUpdated: updated, usersAdded };
}
