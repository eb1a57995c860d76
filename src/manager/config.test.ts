import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import fc from 'fast-check';
import { InputError } from '../core/errors.js';
import { DEFAULT_PLAN_PARAMS } from '../placement/params.js';
import type { Settings } from '../store/records.js';
import { CONFIG_TABLE, initialSettings, loadManagerConfig, parseHostPort, type ConfigKey } from './config.js';

const dir = mkdtempSync(join(tmpdir(), 'vmshadow-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function configFile(value: unknown): string {
  const f = join(dir, `c${n++}.json`);
  writeFileSync(f, typeof value === 'string' ? value : JSON.stringify(value));
  return f;
}

function loadError(opts: Parameters<typeof loadManagerConfig>[0]): InputError {
  try {
    loadManagerConfig(opts);
  } catch (e) {
    assert.ok(e instanceof InputError, `an InputError, not ${String(e)}`);
    return e;
  }
  assert.fail('loadManagerConfig() accepted it');
}

/** Keys whose valid values are easy to generate, with their text form (flag, env) and JSON form (file). */
const VALID: Partial<Record<ConfigKey, fc.Arbitrary<{ text: string; json: unknown; value: unknown }>>> = {
  roundIntervalS: fc.integer({ min: 1, max: 86_400 }).map((x) => ({ text: String(x), json: x, value: x })),
  mode: fc.constantFrom('auto', 'approve', 'dry-run').map((x) => ({ text: x, json: x, value: x })),
  planner: fc.constantFrom('greedy', 'ilp').map((x) => ({ text: x, json: x, value: x })),
  leaseTtlS: fc.integer({ min: 2, max: 600 }).map((x) => ({ text: String(x), json: x, value: x })),
  logLevel: fc.constantFrom('debug', 'info', 'warn', 'error').map((x) => ({ text: x, json: x, value: x })),
  probePort: fc.integer({ min: 1, max: 65_535 }).map((x) => ({ text: String(x), json: x, value: x })),
  listen: fc.tuple(fc.constantFrom('127.0.0.1', '0.0.0.0', 'localhost', '::1'), fc.integer({ min: 0, max: 65_535 }))
    .map(([h, p]) => {
      const text = h.includes(':') ? `[${h}]:${p}` : `${h}:${p}`;
      return { text, json: text, value: { host: h, port: p } };
    }),
  replica: fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/).map((x) => ({ text: x, json: x, value: x })),
};

/** Values every key rejects, as text (flag, env) and as JSON (file). */
const INVALID: Partial<Record<ConfigKey, { text: string; json: unknown }[]>> = {
  roundIntervalS: [{ text: 'soon', json: 'soon' }, { text: '0', json: 0 }, { text: '1e9', json: -3 }],
  mode: [{ text: 'yolo', json: 'yolo' }, { text: 'AUTO', json: 7 }],
  planner: [{ text: 'magic', json: null }],
  leaseTtlS: [{ text: '1', json: 1 }, { text: '', json: '15' }],
  listen: [{ text: 'localhost', json: 8080 }, { text: '1.2.3.4:99999', json: '1.2.3.4:99999' }],
  store: [{ text: 'mysql://db/x', json: 'mysql://db/x' }, { text: 'sqlite:', json: 42 }],
  probeTimeoutMs: [{ text: '1.5', json: 1.5 }, { text: '-1', json: 0 }],
  openReads: [{ text: 'maybe', json: 'true' }],
  replica: [{ text: 'has space', json: '-lead' }],
  params: [{ text: '{"minSavingMs": -1}', json: { minSavingMs: -1 } }, { text: 'fast', json: [] }],
  collectorReceive: [{ text: 'fast', json: 'recvmmsg' }],
};

const flagOf = (k: ConfigKey): string => CONFIG_TABLE.find((r) => r.key === k)!.flag;
const envOf = (k: ConfigKey): string => CONFIG_TABLE.find((r) => r.key === k)!.env;

describe('loadManagerConfig()', () => {
  it('with nothing set gives the defaults: SQLite in the data dir, 127.0.0.1:8080, approve mode, no tokens', () => {
    const c = loadManagerConfig({ argv: [], env: {}, hostname: 'mgr-1.example.org' });
    assert.equal(c.dataDir, '/var/lib/vmshadow');
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 8080 });
    assert.deepEqual(c.store, { kind: 'sqlite', path: '/var/lib/vmshadow/vmshadow.db', url: 'sqlite:/var/lib/vmshadow/vmshadow.db', location: 'sqlite:/var/lib/vmshadow/vmshadow.db' });
    assert.equal(c.mode, 'approve');
    assert.equal(c.openReads, false);
    assert.equal(c.roundIntervalS, 60);
    assert.deepEqual(c.params, DEFAULT_PLAN_PARAMS);
    assert.equal(c.collector, null);
    assert.equal(c.replica, 'mgr-1.example.org');
    assert.equal(c.adminToken, null);
    assert.equal(c.configFile, null);
    assert.ok(Object.values(c.sources).every((s) => s === 'default'));
  });

  it('--data-dir puts the SQLite store in that directory; --store postgres:// selects PostgreSQL and hides its password', () => {
    const c = loadManagerConfig({ argv: ['--data-dir', join(dir, 'state'), '--listen', '0.0.0.0:9000'] });
    assert.equal(c.store.kind, 'sqlite');
    assert.equal(c.store.kind === 'sqlite' ? c.store.path : '', join(dir, 'state', 'vmshadow.db'));
    assert.deepEqual(c.listen, { host: '0.0.0.0', port: 9000 });
    const p = loadManagerConfig({ argv: ['--store', 'postgres://vms:s3cret@db1:5432/vmshadow'] });
    assert.equal(p.store.kind, 'postgres');
    assert.equal(p.store.url, 'postgres://vms:s3cret@db1:5432/vmshadow');
    assert.doesNotMatch(p.store.location, /s3cret/);
    assert.match(p.store.location, /db1:5432\/vmshadow/);
  });

  it('a key set in several sources takes the flag over the environment over the file, and says where it came from', () => {
    const keys = Object.keys(VALID) as ConfigKey[];
    const perKey = fc.record(Object.fromEntries(keys.map((k) => [k, fc.record({
      flag: fc.option(VALID[k]!, { nil: undefined }),
      env: fc.option(VALID[k]!, { nil: undefined }),
      file: fc.option(VALID[k]!, { nil: undefined }),
    })])) as Record<ConfigKey, fc.Arbitrary<{ flag?: { text: string; json: unknown; value: unknown }; env?: { text: string; json: unknown; value: unknown }; file?: { text: string; json: unknown; value: unknown } }>>);
    fc.assert(fc.property(perKey, (set) => {
      const argv: string[] = [];
      const env: Record<string, string> = {};
      const file: Record<string, unknown> = {};
      for (const [k, s] of Object.entries(set) as [ConfigKey, typeof set[ConfigKey]][]) {
        if (s.flag !== undefined) argv.push(`${flagOf(k)}=${s.flag.text}`);
        if (s.env !== undefined) env[envOf(k)] = s.env.text;
        if (s.file !== undefined) file[k] = s.file.json;
      }
      const f = configFile(file);
      const c = loadManagerConfig({ argv: [...argv, '--config', f], env, hostname: 'h' });
      for (const [k, s] of Object.entries(set) as [ConfigKey, typeof set[ConfigKey]][]) {
        const want = s.flag ?? s.env ?? s.file;
        const got = (c as unknown as Record<string, unknown>)[k];
        if (want === undefined) {
          assert.equal(c.sources[k], 'default');
        } else {
          assert.deepEqual(got, want.value, k);
          assert.equal(c.sources[k], s.flag !== undefined ? flagOf(k) : s.env !== undefined ? `env ${envOf(k)}` : `config ${f}`);
        }
      }
    }), { numRuns: 150 });
  });

  it('an invalid value in any source is an InputError naming the key and the source', () => {
    const cases = Object.entries(INVALID).flatMap(([k, bads]) => bads.map((b) => ({ key: k as ConfigKey, ...b })));
    fc.assert(fc.property(fc.constantFrom(...cases), fc.constantFrom('flag', 'env', 'file'), (bad, where) => {
      const f = configFile(where === 'file' ? { [bad.key]: bad.json } : {});
      const argv = where === 'flag' ? [`${flagOf(bad.key)}=${bad.text}`, '--config', f] : ['--config', f];
      const env = where === 'env' ? { [envOf(bad.key)]: bad.text } : {};
      if (where === 'env' && bad.text === '') return; // empty = unset
      const e = loadError({ argv, env });
      if (where === 'flag' && bad.key === 'openReads') {
        assert.match(e.message, /--open-reads' does not take an argument/); // a boolean flag
        return;
      }
      const prefix = where === 'flag' ? `${flagOf(bad.key)}: ` : where === 'env' ? `env ${envOf(bad.key)}: ` : `config ${f}: ${bad.key}`;
      assert.ok(e.message.startsWith(prefix), `${e.message} starts with ${prefix}`);
      assert.match(e.message, /must|is not/);
      assert.doesNotMatch(e.message, /\n\s+at /);
    }), { numRuns: 120 });
  });

  it('names the environment variable and the value: env VMSHADOW_ROUND_INTERVAL_S "soon"', () => {
    const e = loadError({ env: { VMSHADOW_ROUND_INTERVAL_S: 'soon' } });
    assert.equal(e.message, 'env VMSHADOW_ROUND_INTERVAL_S: must be a number ≥ 1 and ≤ 86400 (got "soon")');
  });

  it('names the config file and the key: mode "yolo"', () => {
    const f = configFile({ mode: 'yolo' });
    const e = loadError({ argv: ['--config', f] });
    assert.equal(e.message, `config ${f}: mode: must be one of auto, approve, dry-run (got "yolo")`);
  });

  it('a bad value in the file is an error even while a flag overrides it', () => {
    const f = configFile({ roundIntervalS: 'hourly' });
    const e = loadError({ argv: ['--config', f, '--round-interval-s', '30'] });
    assert.match(e.message, new RegExp(`^config ${f}: roundIntervalS: `));
  });

  it('unknown keys in the file are errors that list the known ones; tokens in the file are refused', () => {
    const f = configFile({ listen: '127.0.0.1:1', roundIntervalSeconds: 30 });
    const e = loadError({ argv: ['--config', f] });
    assert.match(e.message, new RegExp(`^config ${f}: roundIntervalSeconds: is not a known key \\(known: .*roundIntervalS`));
    const t = configFile({ adminToken: 'abcdefgh12345678' });
    const te = loadError({ argv: ['--config', t] });
    assert.match(te.message, /adminToken: must not be in a file; set VMSHADOW_ADMIN_TOKEN/);
    assert.doesNotMatch(te.message, /abcdefgh/);
  });

  it('a config file that is missing or not JSON names where it was given; the default file is read only if it exists', () => {
    assert.match(loadError({ argv: ['--config', join(dir, 'nope.json')] }).message, /^--config: cannot be read: ENOENT/);
    assert.match(loadError({ env: { VMSHADOW_CONFIG: join(dir, 'nope.json') } }).message, /^env VMSHADOW_CONFIG: cannot be read: ENOENT/);
    const bad = configFile('{"mode": ');
    assert.match(loadError({ argv: ['--config', bad] }).message, new RegExp(`^config ${bad}: is not valid JSON`));
    assert.equal(loadManagerConfig({ file: join(dir, 'absent.json') }).configFile, null);
    const dflt = configFile({ mode: 'dry-run' });
    const c = loadManagerConfig({ file: dflt });
    assert.equal(c.mode, 'dry-run');
    assert.equal(c.sources.mode, `config ${dflt}`);
    assert.equal(loadManagerConfig({ file: dflt, env: { VMSHADOW_MODE: 'auto' } }).mode, 'auto');
  });

  it('VMSHADOW_ADMIN_TOKEN sets the admin token; a short one is refused without echoing it; an empty variable counts as unset', () => {
    assert.equal(loadManagerConfig({ env: { VMSHADOW_ADMIN_TOKEN: 'lab-admin-token-1' } }).adminToken, 'lab-admin-token-1');
    const e = loadError({ env: { VMSHADOW_ADMIN_TOKEN: 'abc' } });
    assert.match(e.message, /^env VMSHADOW_ADMIN_TOKEN: must be at least 8 characters/);
    assert.doesNotMatch(e.message, /"abc"/);
    assert.equal(loadManagerConfig({ env: { VMSHADOW_ADMIN_TOKEN: '', VMSHADOW_MODE: '' } }).adminToken, null);
    assert.match(loadError({ env: { VMSHADOW_ADMIN_TOKEN: 'same-token-1', VMSHADOW_READ_TOKEN: 'same-token-1' } }).message, /VMSHADOW_READ_TOKEN: must differ/);
  });

  it('merges planner params key by key across sources and blames a bad one on the source that set it', () => {
    const f = configFile({ params: { minSavingMs: 5, maxMovesPerRound: 3 } });
    const c = loadManagerConfig({ argv: ['--config', f, '--params', '{"maxMovesPerRound": 7}'], env: { VMSHADOW_PARAMS: '{"minSensitivity": 0.6}' } });
    assert.equal(c.params.minSavingMs, 5);
    assert.equal(c.params.maxMovesPerRound, 7);
    assert.equal(c.params.minSensitivity, 0.6);
    assert.equal(c.sources.params, '--params');
    const e = loadError({ argv: ['--config', configFile({ params: { maxDowntimeMs: 0 } })], env: { VMSHADOW_PARAMS: '{"minSavingMs": 1}' } });
    assert.match(e.message, /^config .*: params\.maxDowntimeMs: must be greater than 0/);
    const u = loadError({ env: { VMSHADOW_PARAMS: '{"minSavingMS": 1}' } });
    assert.match(u.message, /^env VMSHADOW_PARAMS: minSavingMS: is not a known field/);
  });

  it('refuses unknown flags and positional arguments', () => {
    assert.equal(loadError({ argv: ['--lisen', '1.2.3.4:5'] }).field, 'arguments');
    assert.equal(loadError({ argv: ['serve'] }).field, 'arguments');
  });

  it('warns about VMSHADOW_* variables it does not know (a typo) but not about the ones other parts read', () => {
    const c = loadManagerConfig({ env: { VMSHADOW_ROUND_INTERVAL: '30', VMSHADOW_DEBUG: '1', VMSHADOW_ADMIN_TOKEN: 'abcdefgh1', PATH: '/bin' } });
    assert.equal(c.warnings.length, 1);
    assert.match(c.warnings[0]!, /VMSHADOW_ROUND_INTERVAL is not a setting.*VMSHADOW_ROUND_INTERVAL_S/);
  });

  it('--collector off turns the flow collector off over a file that sets one', () => {
    const f = configFile({ collector: '0.0.0.0:2055' });
    assert.deepEqual(loadManagerConfig({ argv: ['--config', f] }).collector, { host: '0.0.0.0', port: 2055 });
    assert.equal(loadManagerConfig({ argv: ['--config', f, '--collector', 'off'] }).collector, null);
  });
});

describe('parseHostPort()', () => {
  it('reads IPv4, names and bracketed IPv6, and refuses a missing or too-large port', () => {
    assert.deepEqual(parseHostPort('10.0.0.1:80'), { host: '10.0.0.1', port: 80 });
    assert.deepEqual(parseHostPort('[::1]:8080'), { host: '::1', port: 8080 });
    assert.throws(() => parseHostPort('::1:8080'));
    assert.throws(() => parseHostPort('host:70000'));
    assert.throws(() => parseHostPort('host'));
  });
});

describe('initialSettings()', () => {
  const stored: Settings = { mode: 'auto', roundIntervalS: 15, planner: 'ilp', params: { ...DEFAULT_PLAN_PARAMS, minSavingMs: 42 } };
  it('keeps settings an operator changed through the API unless this start sets the key explicitly', () => {
    const dflt = loadManagerConfig({});
    assert.deepEqual(initialSettings(dflt, stored), stored);
    assert.deepEqual(initialSettings(dflt, null), { mode: 'approve', roundIntervalS: 60, planner: 'greedy', params: DEFAULT_PLAN_PARAMS });
    const set = loadManagerConfig({ env: { VMSHADOW_MODE: 'dry-run' } });
    const s = initialSettings(set, stored);
    assert.equal(s.mode, 'dry-run');
    assert.equal(s.roundIntervalS, 15);
    assert.equal(s.params.minSavingMs, 42);
  });
});
