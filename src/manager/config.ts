// The manager's start-up configuration: command-line flags over environment variables over a JSON config
// file over defaults, validated before anything starts. Every error names the key and where its value came
// from, so an operator with three sources of settings can tell which one to fix:
//   env VMSHADOW_ROUND_INTERVAL_S: must be a number ≥ 1 (got "soon")
//   config /etc/vmshadow/manager.json: mode: must be one of auto, approve, dry-run (got "yolo")
//
// | key (file)      | flag                 | environment                | default                          |
// |-----------------|----------------------|----------------------------|----------------------------------|
// | (the file)      | --config FILE        | VMSHADOW_CONFIG            | /etc/vmshadow/manager.json if it exists |
// | dataDir         | --data-dir DIR       | VMSHADOW_DATA_DIR          | /var/lib/vmshadow                |
// | listen          | --listen HOST:PORT   | VMSHADOW_LISTEN            | 127.0.0.1:8080 (REST API, dashboard) |
// | store           | --store URL          | VMSHADOW_STORE             | sqlite:<dataDir>/vmshadow.db     |
// | openReads       | --open-reads         | VMSHADOW_OPEN_READS        | false (GETs need a token)        |
// | roundIntervalS  | --round-interval-s N | VMSHADOW_ROUND_INTERVAL_S  | 60                               |
// | mode            | --mode M             | VMSHADOW_MODE              | approve (auto, approve, dry-run) |
// | planner         | --planner P          | VMSHADOW_PLANNER           | greedy (greedy, ilp)             |
// | params          | --params JSON        | VMSHADOW_PARAMS (JSON)     | {} (placement/params.ts defaults; merged key by key) |
// | collector       | --collector HOST:PORT| VMSHADOW_COLLECTOR         | off (UDP: IPFIX, NetFlow, sFlow) |
// | inventoryFile   | --inventory FILE     | VMSHADOW_INVENTORY         | none                             |
// | labStateDir     | --lab-state-dir DIR  | VMSHADOW_LAB_STATE_DIR     | none (set when running on the lab) |
// | replica         | --replica NAME       | VMSHADOW_REPLICA           | the host name                    |
// | leaseTtlS       | --lease-ttl-s N      | VMSHADOW_LEASE_TTL_S       | 15 (leader lease)                |
// | logLevel        | --log-level L        | VMSHADOW_LOG_LEVEL         | info (debug, info, warn, error)  |
// | probePort       | --probe-port N       | VMSHADOW_PROBE_PORT        | 443 (TCP port RTT probes connect to) |
// | probeTimeoutMs  | --probe-timeout-ms N | VMSHADOW_PROBE_TIMEOUT_MS  | 2000                             |
// | probeIntervalS  | --probe-interval-s N | VMSHADOW_PROBE_INTERVAL_S  | 30                               |
// | driver          | --driver D           | VMSHADOW_DRIVER            | qemu (qemu: real QEMU over QMP; sim: the simulated driver) |
// | windowS         | --window-s N         | VMSHADOW_WINDOW_S          | 10 (flow window the fingerprint judges) |
// | probe           | --probe on|off       | VMSHADOW_PROBE             | on (off: configured RTTs and GeoIP only) |
// | collectorReceive| --collector-receive R| VMSHADOW_UDP_RECEIVE       | auto (auto, native, dgram: the collector's UDP receive path) |
// | (admin token)   | —                    | VMSHADOW_ADMIN_TOKEN       | generated at first start         |
// | (read token)    | —                    | VMSHADOW_READ_TOKEN        | none                             |
//
// Tokens come only from the environment: never from a file (files get copied and committed) nor from flags
// (flags show in `ps`). An empty environment variable counts as unset.
import { existsSync, readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { InputError } from '../core/errors.js';
import type { LogLevel } from '../core/logger.js';
import { isObj } from '../core/validate.js';
import { parsePlanParams, type PlanParams } from '../placement/params.js';
import type { ManagerMode, Settings } from '../store/records.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

export type StoreTarget =
  | { readonly kind: 'sqlite'; readonly path: string; readonly url: string; readonly location: string }
  | { readonly kind: 'postgres'; readonly url: string; readonly location: string };

export interface ManagerConfig {
  readonly dataDir: string;
  /** The REST API and dashboard. Port 0 picks a free one. */
  readonly listen: HostPort;
  readonly store: StoreTarget;
  readonly openReads: boolean;
  readonly roundIntervalS: number;
  readonly mode: ManagerMode;
  readonly planner: 'greedy' | 'ilp';
  readonly params: PlanParams;
  /** Where flow exporters send IPFIX / NetFlow / sFlow (UDP); null: no collector. */
  readonly collector: HostPort | null;
  readonly inventoryFile: string | null;
  readonly labStateDir: string | null;
  readonly replica: string;
  readonly leaseTtlS: number;
  readonly logLevel: LogLevel;
  readonly probePort: number;
  readonly probeTimeoutMs: number;
  readonly probeIntervalS: number;
  /** 'qemu': real QEMU guests over QMP (on the lab's hosts with --lab-state-dir, else on this machine's); 'sim': simulated. */
  readonly driver: 'qemu' | 'sim';
  /** The flow window each fingerprint judges. */
  readonly windowS: number;
  /** Active RTT probes from the sites; off: configured RTTs and the GeoIP estimate only. */
  readonly probe: boolean;
  /** The collector's UDP receive path: native recvmmsg when its addon loads ('auto'), or one forced. */
  readonly collectorReceive: 'auto' | 'native' | 'dgram';
  readonly adminToken: string | null;
  readonly readToken: string | null;
  /** The config file that was read, if any. */
  readonly configFile: string | null;
  /** Where each key's value came from: '--listen', 'env VMSHADOW_LISTEN', 'config FILE', 'default'. */
  readonly sources: Readonly<Record<ConfigKey, string>>;
  /** VMSHADOW_* variables nobody reads (a typo?), to log at start. */
  readonly warnings: readonly string[];
}

export const DEFAULT_CONFIG_FILE = '/etc/vmshadow/manager.json';
export const DEFAULT_MANAGER_DATA_DIR = '/var/lib/vmshadow';

/** A value that failed a check: the loader adds where it came from. */
class Problem extends Error {
  constructor(readonly problem: string, readonly value?: unknown) {
    super(problem);
  }
}

interface KeySpec<T> {
  readonly flag: string;
  readonly env: string;
  readonly boolFlag?: boolean;
  /** From a flag or environment variable (always a string, or true for a boolean flag). */
  readonly text: (s: string) => T;
  /** From the config file (JSON). */
  readonly json: (v: unknown) => T;
}

const MODES = ['auto', 'approve', 'dry-run'] as const;
const PLANNERS = ['greedy', 'ilp'] as const;
const LOG_LEVELS = ['debug', 'info', 'warn', 'error'] as const;

function nonEmptyString(v: unknown): string {
  if (typeof v !== 'string' || v.trim() === '') throw new Problem('must be a non-empty string', v);
  return v;
}

function numberIn(min: number, max: number, integer: boolean): { text: (s: string) => number; json: (v: unknown) => number } {
  const what = `must be a ${integer ? 'whole number' : 'number'} ≥ ${min}${max < Infinity ? ` and ≤ ${max}` : ''}`;
  const check = (n: number, raw: unknown): number => {
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n)) || n < min || n > max) throw new Problem(what, raw);
    return n;
  };
  return {
    text: (s) => {
      if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s.trim())) throw new Problem(what, s);
      return check(Number(s), s);
    },
    json: (v) => {
      if (typeof v !== 'number') throw new Problem(what, v);
      return check(v, v);
    },
  };
}

function oneOfSpec<T extends string>(allowed: readonly T[]): { text: (s: string) => T; json: (v: unknown) => T } {
  const check = (v: unknown): T => {
    if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) throw new Problem(`must be one of ${allowed.join(', ')}`, v);
    return v as T;
  };
  return { text: check, json: check };
}

const BOOL_TEXT: Record<string, boolean> = { true: true, '1': true, yes: true, on: true, false: false, '0': false, no: false, off: false };

function boolSpec(): { text: (s: string) => boolean; json: (v: unknown) => boolean } {
  return {
    text: (s) => {
      const b = BOOL_TEXT[s.trim().toLowerCase()];
      if (b === undefined) throw new Problem('must be true or false (or 1/0, yes/no, on/off)', s);
      return b;
    },
    json: (v) => {
      if (typeof v !== 'boolean') throw new Problem('must be true or false', v);
      return v;
    },
  };
}

/** "HOST:PORT" or "[IPv6]:PORT". Port 0 lets the system pick one. */
export function parseHostPort(s: string): HostPort {
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(s) ?? /^([^\s:[\]]+):(\d{1,5})$/.exec(s);
  if (m === null) throw new Problem('must be HOST:PORT (e.g. 127.0.0.1:8080, [::1]:8080)', s);
  const port = Number(m[2]);
  if (port > 65535) throw new Problem('must have a port from 0 to 65535', s);
  return { host: m[1]!, port };
}

export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}

function hostPortSpec(): { text: (s: string) => HostPort; json: (v: unknown) => HostPort } {
  return {
    text: (s) => parseHostPort(s.trim()),
    json: (v) => {
      if (typeof v !== 'string') throw new Problem('must be a "HOST:PORT" string', v);
      return parseHostPort(v);
    },
  };
}

/** Off, or HOST:PORT. */
function optionalHostPortSpec(): { text: (s: string) => HostPort | null; json: (v: unknown) => HostPort | null } {
  const hp = hostPortSpec();
  return {
    text: (s) => (s.trim().toLowerCase() === 'off' ? null : hp.text(s)),
    json: (v) => (v === null || v === 'off' ? null : hp.json(v)),
  };
}

function pathSpec(): { text: (s: string) => string; json: (v: unknown) => string } {
  return { text: (s) => resolve(nonEmptyString(s)), json: (v) => resolve(nonEmptyString(v)) };
}

/** Redacts the password of a PostgreSQL URL for logs and /healthz. */
function withoutPassword(u: URL): string {
  const c = new URL(u.href);
  if (c.password !== '') c.password = '***';
  return c.href;
}

/** sqlite:PATH (also sqlite://PATH, sqlite::memory:) or postgres://USER:PASS@HOST:PORT/DB (postgresql:// too). */
export function parseStoreUrl(s: string): StoreTarget {
  const t = s.trim();
  if (/^postgres(ql)?:\/\//.test(t)) {
    let u: URL;
    try {
      u = new URL(t);
    } catch {
      throw new Problem('is not a valid postgres:// URL', s);
    }
    if (u.hostname === '') throw new Problem('must name the database host (postgres://USER@HOST:PORT/DB)', s);
    return { kind: 'postgres', url: t, location: withoutPassword(u) };
  }
  if (t.startsWith('sqlite:')) {
    let path = t.slice('sqlite:'.length);
    if (path.startsWith('//')) path = path.slice(2);
    if (path === '') throw new Problem('must name the database file (sqlite:/var/lib/vmshadow/vmshadow.db)', s);
    if (path !== ':memory:') path = resolve(path);
    return { kind: 'sqlite', path, url: `sqlite:${path}`, location: `sqlite:${path}` };
  }
  throw new Problem('must be sqlite:PATH or postgres://USER@HOST:PORT/DB', s);
}

function storeSpec(): { text: (s: string) => StoreTarget; json: (v: unknown) => StoreTarget } {
  return {
    text: parseStoreUrl,
    json: (v) => {
      if (typeof v !== 'string') throw new Problem('must be a URL string (sqlite:PATH or postgres://…)', v);
      return parseStoreUrl(v);
    },
  };
}

/** A partial PlanParams object; checked as a whole once every source is merged. */
function paramsSpec(): { text: (s: string) => Record<string, unknown>; json: (v: unknown) => Record<string, unknown> } {
  const obj = (v: unknown, raw: unknown): Record<string, unknown> => {
    if (!isObj(v)) throw new Problem('must be a JSON object of planner settings, e.g. {"minSavingMs": 5}', raw);
    return v;
  };
  return {
    text: (s) => {
      let v: unknown;
      try {
        v = JSON.parse(s);
      } catch {
        throw new Problem('must be a JSON object of planner settings, e.g. {"minSavingMs": 5}', s);
      }
      return obj(v, s);
    },
    json: (v) => obj(v, v),
  };
}

function replicaSpec(): { text: (s: string) => string; json: (v: unknown) => string } {
  const check = (v: unknown): string => {
    if (typeof v !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(v)) {
      throw new Problem('must be 1–63 letters, digits, ".", "_" or "-", starting with a letter or digit', v);
    }
    return v;
  };
  return { text: check, json: check };
}

function optionalPathSpec(): { text: (s: string) => string | null; json: (v: unknown) => string | null } {
  const p = pathSpec();
  return { text: p.text, json: (v) => (v === null ? null : p.json(v)) };
}

const SPECS = {
  dataDir: { flag: 'data-dir', env: 'VMSHADOW_DATA_DIR', ...pathSpec() },
  listen: { flag: 'listen', env: 'VMSHADOW_LISTEN', ...hostPortSpec() },
  store: { flag: 'store', env: 'VMSHADOW_STORE', ...storeSpec() },
  openReads: { flag: 'open-reads', env: 'VMSHADOW_OPEN_READS', boolFlag: true, ...boolSpec() },
  roundIntervalS: { flag: 'round-interval-s', env: 'VMSHADOW_ROUND_INTERVAL_S', ...numberIn(1, 86_400, false) },
  mode: { flag: 'mode', env: 'VMSHADOW_MODE', ...oneOfSpec(MODES) },
  planner: { flag: 'planner', env: 'VMSHADOW_PLANNER', ...oneOfSpec(PLANNERS) },
  params: { flag: 'params', env: 'VMSHADOW_PARAMS', ...paramsSpec() },
  collector: { flag: 'collector', env: 'VMSHADOW_COLLECTOR', ...optionalHostPortSpec() },
  inventoryFile: { flag: 'inventory', env: 'VMSHADOW_INVENTORY', ...optionalPathSpec() },
  labStateDir: { flag: 'lab-state-dir', env: 'VMSHADOW_LAB_STATE_DIR', ...optionalPathSpec() },
  replica: { flag: 'replica', env: 'VMSHADOW_REPLICA', ...replicaSpec() },
  leaseTtlS: { flag: 'lease-ttl-s', env: 'VMSHADOW_LEASE_TTL_S', ...numberIn(2, 600, false) },
  logLevel: { flag: 'log-level', env: 'VMSHADOW_LOG_LEVEL', ...oneOfSpec(LOG_LEVELS) },
  probePort: { flag: 'probe-port', env: 'VMSHADOW_PROBE_PORT', ...numberIn(1, 65_535, true) },
  probeTimeoutMs: { flag: 'probe-timeout-ms', env: 'VMSHADOW_PROBE_TIMEOUT_MS', ...numberIn(10, 60_000, true) },
  probeIntervalS: { flag: 'probe-interval-s', env: 'VMSHADOW_PROBE_INTERVAL_S', ...numberIn(1, 86_400, false) },
  driver: { flag: 'driver', env: 'VMSHADOW_DRIVER', ...oneOfSpec(['qemu', 'sim'] as const) },
  windowS: { flag: 'window-s', env: 'VMSHADOW_WINDOW_S', ...numberIn(1, 3600, false) },
  probe: { flag: 'probe', env: 'VMSHADOW_PROBE', ...boolSpec() },
  collectorReceive: { flag: 'collector-receive', env: 'VMSHADOW_UDP_RECEIVE', ...oneOfSpec(['auto', 'native', 'dgram'] as const) },
} satisfies Record<string, KeySpec<unknown>>;

export type ConfigKey = keyof typeof SPECS;
export const CONFIG_KEYS = Object.keys(SPECS) as ConfigKey[];

type Values = { [K in ConfigKey]: ReturnType<(typeof SPECS)[K]['text']> };

/** The flag, environment variable and file key of each setting, for docs and `--help`. */
export const CONFIG_TABLE: readonly { key: ConfigKey; flag: string; env: string }[] = CONFIG_KEYS.map((key) => ({
  key, flag: `--${SPECS[key].flag}`, env: SPECS[key].env,
}));

/** Other VMSHADOW_* variables that are read elsewhere (not by the manager's config). */
const OTHER_ENV = new Set(['VMSHADOW_CONFIG', 'VMSHADOW_ADMIN_TOKEN', 'VMSHADOW_READ_TOKEN', 'VMSHADOW_DEBUG', 'VMSHADOW_API', 'VMSHADOW_TOKEN', 'VMSHADOW_CLI_CONFIG']);

export const MANAGER_USAGE = `Usage: vmshadow manager [--config FILE] [--data-dir DIR] [--listen HOST:PORT] [--store URL] [--open-reads]
  [--round-interval-s N] [--mode auto|approve|dry-run] [--planner greedy|ilp] [--params JSON]
  [--collector HOST:PORT|off] [--inventory FILE] [--lab-state-dir DIR] [--replica NAME] [--lease-ttl-s N]
  [--log-level debug|info|warn|error] [--probe-port N] [--probe-timeout-ms N] [--probe-interval-s N]
  [--driver qemu|sim] [--window-s N] [--probe on|off]
Every flag has an environment variable (VMSHADOW_DATA_DIR, VMSHADOW_LISTEN, …) and a config-file key
(dataDir, listen, …); flags win over the environment, the environment over the file.
VMSHADOW_ADMIN_TOKEN sets the admin token (else one is generated at first start and printed once).
`;

export interface LoadManagerConfigOptions {
  /** The arguments after `vmshadow manager`. */
  readonly argv?: readonly string[];
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** The config file to read when neither --config nor VMSHADOW_CONFIG names one; read only if it exists. */
  readonly file?: string;
  /** The default replica name (the host name). */
  readonly hostname?: string;
}

function tokenFrom(env: Readonly<Record<string, string | undefined>>, name: string): string | null {
  const t = env[name];
  if (t === undefined || t === '') return null;
  if (t.length < 8 || /\s/.test(t)) throw new InputError(`env ${name}`, '(hidden)', 'must be at least 8 characters with no spaces');
  return t;
}

/** `vmshadow manager`'s flags; unknown flags and positional arguments are errors. */
export function parseManagerFlags(argv: readonly string[]): Record<string, string | boolean | undefined> {
  const options: Record<string, { type: 'string' | 'boolean' }> = { config: { type: 'string' } };
  for (const key of CONFIG_KEYS) {
    const s: KeySpec<unknown> = SPECS[key];
    options[s.flag] = { type: s.boolFlag === true ? 'boolean' : 'string' };
  }
  try {
    return parseArgs({ args: [...argv], options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new InputError('arguments', argv.join(' '), `${(e as Error).message}\n\n${MANAGER_USAGE}`);
  }
}

function readConfigFile(path: string, named: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new InputError(named, path, `cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InputError(`config ${path}`, text.slice(0, 40), `is not valid JSON: ${(e as Error).message}`);
  }
  if (!isObj(json)) throw new InputError(`config ${path}`, json, 'must be a JSON object of settings');
  for (const k of Object.keys(json)) {
    if (k === 'adminToken' || k === 'readToken') {
      throw new InputError(`config ${path}: ${k}`, '(hidden)', `must not be in a file; set VMSHADOW_${k === 'adminToken' ? 'ADMIN' : 'READ'}_TOKEN in the environment`);
    }
    if (!(CONFIG_KEYS as string[]).includes(k)) {
      throw new InputError(`config ${path}: ${k}`, json[k], `is not a known key (known: ${CONFIG_KEYS.join(', ')})`);
    }
  }
  return json;
}

interface Layer {
  /** How errors name a key from this layer: '--listen', 'env VMSHADOW_LISTEN', 'config F: listen'. */
  readonly name: (key: ConfigKey) => string;
  readonly source: (key: ConfigKey) => string;
  readonly get: (key: ConfigKey) => { raw: unknown; parse: () => unknown } | undefined;
}

function wrap<T>(field: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof Problem) throw new InputError(field, e.value, e.problem);
    if (e instanceof InputError) throw new InputError(field, e.value, e.problem, { cause: e });
    throw e;
  }
}

/**
 * Reads the manager's configuration: flags > environment > config file > defaults. Throws InputError naming
 * the key and where it came from; never starts anything.
 */
export function loadManagerConfig(opts: LoadManagerConfigOptions = {}): ManagerConfig {
  const env = opts.env ?? {};
  const envOf = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v === '' ? undefined : v;
  };
  const flags = parseManagerFlags(opts.argv ?? []);

  let configFile: string | null = null;
  let file: Record<string, unknown> = {};
  if (typeof flags.config === 'string') {
    configFile = resolve(flags.config);
    file = readConfigFile(configFile, '--config');
  } else if (envOf('VMSHADOW_CONFIG') !== undefined) {
    configFile = resolve(envOf('VMSHADOW_CONFIG')!);
    file = readConfigFile(configFile, 'env VMSHADOW_CONFIG');
  } else if (opts.file !== undefined && existsSync(opts.file)) {
    configFile = resolve(opts.file);
    file = readConfigFile(configFile, 'config');
  }

  const layers: Layer[] = [
    {
      name: (k) => `--${SPECS[k].flag}`,
      source: (k) => `--${SPECS[k].flag}`,
      get: (k) => {
        const v = flags[SPECS[k].flag];
        if (v === undefined) return undefined;
        const spec: KeySpec<unknown> = SPECS[k];
        return { raw: v, parse: () => (typeof v === 'boolean' ? v : spec.text(v)) };
      },
    },
    {
      name: (k) => `env ${SPECS[k].env}`,
      source: (k) => `env ${SPECS[k].env}`,
      get: (k) => {
        const v = envOf(SPECS[k].env);
        if (v === undefined) return undefined;
        const spec: KeySpec<unknown> = SPECS[k];
        return { raw: v, parse: () => spec.text(v) };
      },
    },
    {
      name: (k) => `config ${configFile ?? ''}: ${k}`,
      source: () => `config ${configFile ?? ''}`,
      get: (k) => {
        if (!(k in file)) return undefined;
        const v = file[k];
        const spec: KeySpec<unknown> = SPECS[k];
        return { raw: v, parse: () => spec.json(v) };
      },
    },
  ];

  const sources = {} as Record<ConfigKey, string>;
  const picked: Partial<Values> = {};
  // Every source's params are checked for shape, then merged key by key (flags over env over file).
  const paramLayers: { name: string; source: string; value: Record<string, unknown> }[] = [];
  // Every source is checked, also one that a higher one overrides: a bad value in the file is a mistake
  // even while a flag hides it.
  for (const key of CONFIG_KEYS) {
    sources[key] = 'default';
    for (const layer of layers) {
      const got = layer.get(key);
      if (got === undefined) continue;
      const value = wrap(layer.name(key), got.parse);
      if (key === 'params') paramLayers.push({ name: layer.name(key), source: layer.source(key), value: value as Record<string, unknown> });
      if (sources[key] !== 'default') continue;
      (picked as Record<string, unknown>)[key] = value;
      sources[key] = layer.source(key);
    }
  }

  const dataDir = picked.dataDir ?? DEFAULT_MANAGER_DATA_DIR;
  const params = mergeParams(paramLayers);
  const adminToken = tokenFrom(env, 'VMSHADOW_ADMIN_TOKEN');
  const readToken = tokenFrom(env, 'VMSHADOW_READ_TOKEN');
  if (adminToken !== null && adminToken === readToken) {
    throw new InputError('env VMSHADOW_READ_TOKEN', '(hidden)', 'must differ from VMSHADOW_ADMIN_TOKEN, or a read-only client could act as admin');
  }
  const collector = picked.collector ?? null;
  const listen = picked.listen ?? { host: '127.0.0.1', port: 8080 };

  const known = new Set([...CONFIG_KEYS.map((k) => SPECS[k].env), ...OTHER_ENV]);
  const warnings = Object.keys(env)
    .filter((n) => n.startsWith('VMSHADOW_') && !known.has(n))
    .sort()
    .map((n) => `environment variable ${n} is not a setting the manager knows; known: ${CONFIG_KEYS.map((k) => SPECS[k].env).join(', ')}`);

  return {
    dataDir,
    listen,
    store: picked.store ?? parseStoreUrl(`sqlite:${resolve(dataDir, 'vmshadow.db')}`),
    openReads: picked.openReads ?? false,
    roundIntervalS: picked.roundIntervalS ?? 60,
    mode: picked.mode ?? 'approve',
    planner: picked.planner ?? 'greedy',
    params,
    collector,
    inventoryFile: picked.inventoryFile ?? null,
    labStateDir: picked.labStateDir ?? null,
    replica: picked.replica ?? replicaName(opts.hostname ?? osHostname()),
    leaseTtlS: picked.leaseTtlS ?? 15,
    logLevel: picked.logLevel ?? 'info',
    probePort: picked.probePort ?? 443,
    probeTimeoutMs: picked.probeTimeoutMs ?? 2000,
    probeIntervalS: picked.probeIntervalS ?? 30,
    driver: picked.driver ?? 'qemu',
    windowS: picked.windowS ?? 10,
    probe: picked.probe ?? true,
    collectorReceive: picked.collectorReceive ?? 'auto',
    adminToken,
    readToken,
    configFile,
    sources,
    warnings,
  };
}

/** A host name made into a valid replica name. */
function replicaName(h: string): string {
  const s = h.replace(/[^A-Za-z0-9._-]/g, '-').replace(/^[^A-Za-z0-9]+/, '').slice(0, 63);
  return s === '' ? 'manager' : s;
}

/**
 * Merges the planner settings of every source key by key and checks the result; an error is blamed on the
 * source that set the key at fault (or, for a key left at its default, the source that set the others).
 * `layers` is in precedence order, highest first.
 */
function mergeParams(layers: readonly { name: string; source: string; value: Record<string, unknown> }[]): PlanParams {
  const merged: Record<string, unknown> = {};
  const from = new Map<string, string>();
  for (const l of [...layers].reverse()) {
    for (const [k, v] of Object.entries(l.value)) {
      merged[k] = v;
      from.set(k, l.name);
    }
  }
  try {
    return parsePlanParams(merged, 'params');
  } catch (e) {
    if (!(e instanceof InputError) || layers.length === 0) throw e;
    const sub = e.field.startsWith('params.') ? e.field.slice('params.'.length) : '';
    const key = sub.split(/[.[]/)[0] ?? '';
    const blamed = from.get(key) ?? layers[0]!.name;
    const field = blamed.startsWith('config ') ? `${blamed}.${sub}` : `${blamed}: ${sub}`;
    throw new InputError(sub === '' ? blamed : field, e.value, e.problem, { cause: e });
  }
}

/**
 * The settings the manager starts with, given those stored by an earlier run (changed since through the API):
 * a stored setting is kept unless this start sets the key explicitly (flag, environment or file).
 */
export function initialSettings(cfg: ManagerConfig, stored: Settings | null): Settings {
  const fromCfg: Settings = { mode: cfg.mode, roundIntervalS: cfg.roundIntervalS, planner: cfg.planner, params: cfg.params };
  if (stored === null) return fromCfg;
  const explicit = (k: ConfigKey): boolean => cfg.sources[k] !== 'default';
  return {
    mode: explicit('mode') ? cfg.mode : stored.mode,
    roundIntervalS: explicit('roundIntervalS') ? cfg.roundIntervalS : stored.roundIntervalS,
    planner: explicit('planner') ? cfg.planner : stored.planner,
    params: explicit('params') ? cfg.params : stored.params,
  };
}

/** The configuration as one line of JSON for the start-up log: no tokens, no database password. */
export function describeConfig(cfg: ManagerConfig): Record<string, unknown> {
  return {
    dataDir: cfg.dataDir, listen: formatHostPort(cfg.listen), store: cfg.store.location, openReads: cfg.openReads,
    roundIntervalS: cfg.roundIntervalS, mode: cfg.mode, planner: cfg.planner,
    collector: cfg.collector === null ? 'off' : formatHostPort(cfg.collector), inventoryFile: cfg.inventoryFile,
    labStateDir: cfg.labStateDir, replica: cfg.replica, leaseTtlS: cfg.leaseTtlS, logLevel: cfg.logLevel,
    probePort: cfg.probePort, probeTimeoutMs: cfg.probeTimeoutMs, probeIntervalS: cfg.probeIntervalS,
    driver: cfg.driver, windowS: cfg.windowS, probe: cfg.probe,
    adminToken: cfg.adminToken === null ? 'generated' : 'from VMSHADOW_ADMIN_TOKEN',
    readToken: cfg.readToken === null ? 'none' : 'from VMSHADOW_READ_TOKEN',
    configFile: cfg.configFile, sources: cfg.sources,
  };
}
