import { InputError } from '../core/errors.js';
import { linkIdOf, type SiteId, type UserId, type VmId } from '../core/ids.js';
import { ACTIVITY_CLASSES, createSnapshot, type ActivityClass, type Snapshot, type SnapshotInput, type Vm } from '../core/model.js';
import { arr, checkNum, isObj, num, obj, oneOf, onlyKeys, optNum, str } from '../core/validate.js';
import { parsePlanParams, type PlanParams } from '../placement/params.js';

/** The only schema this version reads. A file naming another is refused, never guessed at. */
export const SCENARIO_SCHEMA = 'vmshadow.scenario/v1';

/** What a desktop's user is doing; each maps to a traffic class, a sensitivity and a memory dirty rate. */
export const SIM_ACTIVITIES = ['text-editing', 'video', 'gaming', 'conferencing', 'bulk-download', 'idle'] as const;
export type SimActivity = (typeof SIM_ACTIVITIES)[number];

export interface ActivityProfile {
  readonly class: ActivityClass;
  readonly sensitivity: number;
  readonly dirtyRateMiBps: number;
}

/**
 * Defaults, after the research system's example: text editing is barely latency-sensitive, video and
 * games are; a bulk download or an idle desktop is not. Scenario files may override any of them.
 */
export const DEFAULT_ACTIVITIES: Readonly<Record<SimActivity, ActivityProfile>> = Object.freeze({
  'text-editing': { class: 'remote-desktop', sensitivity: 0.35, dirtyRateMiBps: 2 },
  video: { class: 'video-streaming', sensitivity: 0.9, dirtyRateMiBps: 24 },
  gaming: { class: 'gaming', sensitivity: 1, dirtyRateMiBps: 40 },
  conferencing: { class: 'conferencing', sensitivity: 0.85, dirtyRateMiBps: 12 },
  'bulk-download': { class: 'bulk-transfer', sensitivity: 0.05, dirtyRateMiBps: 8 },
  idle: { class: 'background', sensitivity: 0, dirtyRateMiBps: 0.5 },
});

export type ScenarioEvent =
  | { readonly atS: number; readonly type: 'activity'; readonly vm: VmId; readonly activity: SimActivity }
  | {
    readonly atS: number; readonly type: 'user-move'; readonly user: UserId; readonly country: string;
    readonly lat: number; readonly lon: number; readonly network: string; readonly rttMs: readonly (number | null)[];
  }
  | { readonly atS: number; readonly type: 'vm-arrive'; readonly vm: Record<string, unknown> }
  | { readonly atS: number; readonly type: 'vm-depart'; readonly vm: VmId }
  /** The WAN link between two sites goes down: migrations crossing it fail, and the planner no longer sees it. */
  | { readonly atS: number; readonly type: 'link-down'; readonly a: SiteId; readonly b: SiteId }
  | { readonly atS: number; readonly type: 'link-up'; readonly a: SiteId; readonly b: SiteId };

export const STALL_ACTIONS = ['raise-downtime', 'post-copy', 'abort'] as const;

/**
 * The policy every simulated migration runs under (the driver's MigrationPolicy). Unset fields follow the
 * planner's params: the pause limit is params.maxDowntimeMs, post-copy is allowed where params.postCopy is
 * 'allow', and a stall switches to post-copy where allowed, else aborts.
 */
export interface SimMigrationSettings {
  /** The stepwise raise of the pause limit on a stall stops here. Default: params.maxDowntimeMs (no raise). */
  readonly maxDowntimeCeilingMs?: number;
  /** Remaining bytes not falling for this long is a stall. Default 30 s. */
  readonly stallTimeoutS?: number;
  /** Default ['post-copy', 'abort']; an action that cannot apply passes to the next. */
  readonly onStall?: readonly (typeof STALL_ACTIONS)[number][];
  /** A migration not in post-copy by then is aborted. Default: twice params.maxCostS. */
  readonly deadlineS?: number;
}

export interface Scenario {
  readonly schema: typeof SCENARIO_SCHEMA;
  readonly name: string;
  readonly seed: number;
  readonly durationS: number;
  readonly roundIntervalS: number;
  readonly params: PlanParams;
  readonly activities: Readonly<Record<SimActivity, ActivityProfile>>;
  /** The cloud at time 0. */
  readonly cloud: Snapshot;
  /** The raw JSON of the cloud, kept so VMs that arrive later are validated the same way. */
  readonly cloudInput: SnapshotInput;
  /** Sorted by time; ties keep file order. */
  readonly events: readonly ScenarioEvent[];
  /** How migrations run; absent: every field at its default. */
  readonly migration?: SimMigrationSettings;
}

/** Planning rounds one simulation may run. */
const MAX_ROUNDS = 200_000;

const TOP_KEYS = ['schema', 'name', 'seed', 'durationS', 'roundIntervalS', 'params', 'activities', 'cloud', 'events', 'description', 'migration'];

function parseMigration(raw: unknown): SimMigrationSettings {
  const p = 'migration';
  const o = obj(raw, p);
  onlyKeys(o, p, ['maxDowntimeCeilingMs', 'stallTimeoutS', 'onStall', 'deadlineS']);
  const out: { -readonly [K in keyof SimMigrationSettings]: SimMigrationSettings[K] } = {};
  if (o.maxDowntimeCeilingMs !== undefined) out.maxDowntimeCeilingMs = num(o, 'maxDowntimeCeilingMs', p, { min: 0 });
  if (o.stallTimeoutS !== undefined) out.stallTimeoutS = num(o, 'stallTimeoutS', p, { above: 0, max: 366 * 86_400 });
  if (o.deadlineS !== undefined) out.deadlineS = num(o, 'deadlineS', p, { above: 0, max: 366 * 86_400 });
  if (o.onStall !== undefined) {
    const list = arr(o.onStall, `${p}.onStall`);
    if (list.length === 0) throw new InputError(`${p}.onStall`, list, `must name at least one of ${STALL_ACTIONS.join(', ')}`);
    out.onStall = list.map((v, i) => {
      if (typeof v !== 'string' || !(STALL_ACTIONS as readonly string[]).includes(v)) {
        throw new InputError(`${p}.onStall[${i}]`, v, `must be one of ${STALL_ACTIONS.join(', ')}`);
      }
      return v as (typeof STALL_ACTIONS)[number];
    });
  }
  return out;
}

/** Runs createSnapshot, re-labelling its errors with where the snapshot sits in the file. */
function snapshotAt(prefix: string, input: SnapshotInput): Snapshot {
  try {
    return createSnapshot(input);
  } catch (e) {
    if (e instanceof InputError) throw e.withField(`${prefix}.${e.field}`);
    throw e;
  }
}

/**
 * Validates a scenario file's parsed JSON. Any problem is an InputError naming the field (a JSON path)
 * and its value: an unknown schema version, an unknown site or VM, a negative size, an event for a VM
 * that does not exist at that time, a placement already over capacity.
 */
export function parseScenario(raw: unknown): Scenario {
  const o = obj(raw, 'scenario');
  const schema = o.schema;
  if (schema !== SCENARIO_SCHEMA) {
    throw new InputError('schema', schema, `unknown scenario schema; this version reads "${SCENARIO_SCHEMA}"`);
  }
  onlyKeys(o, 'scenario', TOP_KEYS);
  const durationS = num(o, 'durationS', 'scenario', { above: 0, max: 366 * 86_400 });
  const roundIntervalS = optNum(o, 'roundIntervalS', 'scenario', 300, { min: 1 });
  if (durationS / roundIntervalS > MAX_ROUNDS) {
    throw new InputError('roundIntervalS', roundIntervalS, `gives ${Math.ceil(durationS / roundIntervalS)} planning rounds over durationS ${durationS}; at most ${MAX_ROUNDS} are simulated`);
  }
  const activities: Record<SimActivity, ActivityProfile> = { ...DEFAULT_ACTIVITIES };
  if (o.activities !== undefined) {
    const ao = obj(o.activities, 'activities');
    onlyKeys(ao, 'activities', SIM_ACTIVITIES);
    for (const [k, v] of Object.entries(ao)) {
      const p = `activities.${k}`;
      const po = obj(v, p);
      onlyKeys(po, p, ['class', 'sensitivity', 'dirtyRateMiBps']);
      activities[k as SimActivity] = {
        class: oneOf(po, 'class', p, ACTIVITY_CLASSES),
        sensitivity: num(po, 'sensitivity', p, { min: 0, max: 1 }),
        dirtyRateMiBps: num(po, 'dirtyRateMiBps', p, { min: 0 }),
      };
    }
  }
  const cloudRaw = obj(o.cloud, 'cloud');
  onlyKeys(cloudRaw, 'cloud', ['sites', 'hosts', 'vms', 'users', 'links']);
  const cloudInput: SnapshotInput = { ...cloudRaw, atMs: 0 } as SnapshotInput;
  const cloud = snapshotAt('cloud', cloudInput);

  const vmsAlive = new Set<string>(cloud.vms.map((v) => v.id));
  const everVm = new Set<string>(vmsAlive);
  const users = new Set<string>(cloud.users.map((u) => u.id));
  const rawEvents = o.events === undefined ? [] : arr(o.events, 'events');
  const indexed = rawEvents.map((r, i) => ({ r: obj(r, `events[${i}]`), i }));
  indexed.sort((a, b) => (a.r.atS as number) - (b.r.atS as number) || a.i - b.i);
  const events: ScenarioEvent[] = [];
  for (const { r, i } of indexed) {
    const p = `events[${i}]`;
    const atS = num(r, 'atS', p, { min: 0, max: durationS });
    const type = oneOf(r, 'type', p, ['activity', 'user-move', 'vm-arrive', 'vm-depart', 'link-down', 'link-up'] as const);
    const knownVm = (): VmId => {
      const id = str(r, 'vm', p);
      if (!vmsAlive.has(id)) throw new InputError(`${p}.vm`, id, `is not a VM that exists at ${atS} s`);
      return id as VmId;
    };
    switch (type) {
      case 'activity':
        onlyKeys(r, p, ['atS', 'type', 'vm', 'activity']);
        events.push({ atS, type, vm: knownVm(), activity: oneOf(r, 'activity', p, SIM_ACTIVITIES) });
        break;
      case 'user-move': {
        onlyKeys(r, p, ['atS', 'type', 'user', 'country', 'lat', 'lon', 'network', 'rttMs']);
        const user = str(r, 'user', p);
        if (!users.has(user)) throw new InputError(`${p}.user`, user, 'is not a known user');
        const rtt = arr(r.rttMs, `${p}.rttMs`);
        if (rtt.length !== cloud.sites.length) throw new InputError(`${p}.rttMs`, rtt, `must have one entry per site (${cloud.sites.length})`);
        const country = str(r, 'country', p);
        if (!/^[A-Z]{2}$/.test(country)) throw new InputError(`${p}.country`, country, 'must be an ISO 3166 alpha-2 code');
        events.push({
          atS, type, user: user as UserId, country,
          lat: num(r, 'lat', p, { min: -90, max: 90 }), lon: num(r, 'lon', p, { min: -180, max: 180 }),
          network: str(r, 'network', p),
          rttMs: rtt.map((v, j) => (v === null ? null : checkNum(v, `${p}.rttMs[${j}]`, { min: 0 }))),
        });
        break;
      }
      case 'vm-arrive': {
        onlyKeys(r, p, ['atS', 'type', 'vm']);
        const vm = obj(r.vm, `${p}.vm`);
        // Validated as a one-VM cloud, so errors name the field inside the event.
        const roomy = (xs: unknown): unknown[] => (Array.isArray(xs) ? (xs as unknown[]) : []).map((s: unknown) => (isObj(s) ? { ...s, capacity: { vcpu: 1e9, memoryMiB: 1e15 } } : s));
        const probe = { ...cloudInput, vms: [vm], sites: roomy(cloudInput.sites), hosts: roomy(cloudInput.hosts) };
        let normalised: Vm;
        try {
          normalised = createSnapshot(probe).vms[0]!;
        } catch (e) {
          if (e instanceof InputError) throw e.withField(`${p}.vm${e.field.replace(/^vms\[0\]/, '')}`);
          throw e;
        }
        const id = vm.id as string;
        if (vmsAlive.has(id)) throw new InputError(`${p}.vm.id`, id, 'a VM with this id already exists');
        vmsAlive.add(id);
        everVm.add(id);
        // Kept in its validated form, defaults filled in, as the simulator's state holds VMs.
        events.push({ atS, type, vm: { ...normalised, hostId: normalised.hostId ?? undefined } });
        break;
      }
      case 'vm-depart': {
        onlyKeys(r, p, ['atS', 'type', 'vm']);
        const id = knownVm();
        vmsAlive.delete(id);
        events.push({ atS, type, vm: id });
        break;
      }
      case 'link-down':
      case 'link-up': {
        onlyKeys(r, p, ['atS', 'type', 'a', 'b']);
        const a = str(r, 'a', p);
        const b = str(r, 'b', p);
        for (const [k, v] of [['a', a], ['b', b]] as const) {
          if (!cloud.sites.some((s) => s.id === v)) throw new InputError(`${p}.${k}`, v, 'is not a site of this cloud');
        }
        const id = a === b ? null : linkIdOf(a as SiteId, b as SiteId);
        if (id === null || !cloud.links.some((l) => l.id === id)) throw new InputError(`${p}.b`, b, `no WAN link joins ${a} and ${b}`);
        events.push({ atS, type, a: a as SiteId, b: b as SiteId });
        break;
      }
    }
  }
  const params = parsePlanParams(o.params, 'params');
  for (const key of ['pinned', 'excluded'] as const) {
    params[key].forEach((id, i) => {
      if (!everVm.has(id)) throw new InputError(`params.${key}[${i}]`, id, 'is not a VM of this scenario');
    });
  }
  for (const key of ['name', 'description']) {
    if (o[key] !== undefined && typeof o[key] !== 'string') throw new InputError(key, o[key], 'must be a string');
  }
  return {
    schema: SCENARIO_SCHEMA,
    name: typeof o.name === 'string' ? o.name : 'unnamed',
    seed: optNum(o, 'seed', 'scenario', 0, { integer: true }),
    durationS, roundIntervalS,
    params,
    activities, cloud, cloudInput, events,
    ...(o.migration !== undefined ? { migration: parseMigration(o.migration) } : {}),
  };
}
