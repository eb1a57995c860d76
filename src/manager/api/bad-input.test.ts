// Every route of the API against bad input: no token, a wrong one, the read-only token on a change,
// malformed JSON, wrong types, unknown fields, a body over the limit, the wrong content type, unknown and
// overlong ids, bad query parameters. Each must answer 4xx with {error: {code, message}} (naming the field
// where one is at fault), never 5xx, with the store exactly as before and no call to the manager's control.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { dumpStore } from '../../testing/api-fixtures.js';
import { startTestApi, type TestApi } from '../../testing/api-harness.js';

const BODY_LIMIT = 4096;

interface Route {
  readonly method: 'GET' | 'POST' | 'PATCH';
  /** With real ids of the seeded store; ':id' marks where an id goes. */
  readonly path: string;
  readonly id?: string;
  /** A body that would be accepted. */
  readonly body?: Record<string, unknown>;
  /** A field given the wrong type, and the field name the answer must carry. */
  readonly wrongType?: { body: unknown; field: string };
  readonly badQueries?: readonly { query: string; field: string }[];
}

interface Case {
  readonly name: string;
  readonly method: Route['method'];
  readonly url: string;
  readonly headers: Record<string, string>;
  readonly payload?: string;
  readonly status: number;
  readonly code: string;
  readonly field?: string;
}

const limitQueries = [
  { query: 'limit=0', field: 'querystring.limit' },
  { query: 'limit=1001', field: 'querystring.limit' },
  { query: 'limit=ten', field: 'querystring.limit' },
  { query: 'limit=2.5', field: 'querystring.limit' },
  { query: 'bogus=1', field: 'querystring.bogus' },
];

function routes(t: TestApi): Route[] {
  const s = t.seeded;
  return [
    { method: 'GET', path: '/v1/sites', badQueries: [...limitQueries, { query: 'after=', field: 'querystring.after' }] },
    { method: 'GET', path: '/v1/sites/:id', id: 'eu-central', badQueries: [{ query: 'x=1', field: 'querystring.x' }] },
    { method: 'GET', path: '/v1/hosts', badQueries: limitQueries },
    { method: 'GET', path: '/v1/links', badQueries: limitQueries },
    { method: 'GET', path: '/v1/users', badQueries: limitQueries },
    { method: 'GET', path: '/v1/users/:id', id: s.users[0] ?? '' },
    {
      method: 'GET', path: '/v1/vms',
      badQueries: [...limitQueries, { query: 'sensitive=maybe', field: 'querystring.sensitive' }, { query: `site=${'s'.repeat(201)}`, field: 'querystring.site' }],
    },
    {
      method: 'GET', path: '/v1/vms/:id', id: s.vms.sensitive,
      badQueries: [{ query: 'history=-1', field: 'querystring.history' }, { query: 'history=all', field: 'querystring.history' }, { query: 'history=1001', field: 'querystring.history' }],
    },
    {
      method: 'PATCH', path: '/v1/vms/:id', id: s.vms.sensitive, body: { pinned: true },
      wrongType: { body: { pinned: 'yes' }, field: 'body.pinned' },
    },
    { method: 'GET', path: '/v1/plans', badQueries: [...limitQueries, { query: 'status=pending', field: 'querystring.status' }] },
    { method: 'GET', path: '/v1/plans/:id', id: s.plans.recommended },
    { method: 'POST', path: '/v1/plans/:id/approve', id: s.plans.recommended, body: {}, wrongType: { body: [], field: 'body' } },
    { method: 'POST', path: '/v1/plans/:id/reject', id: s.plans.recommended, body: { reason: 'no' }, wrongType: { body: { reason: 42 }, field: 'body.reason' } },
    { method: 'GET', path: '/v1/migrations', badQueries: [...limitQueries, { query: 'active=perhaps', field: 'querystring.active' }] },
    { method: 'GET', path: '/v1/migrations/:id', id: s.jobs.running },
    { method: 'POST', path: '/v1/migrations/:id/cancel', id: s.jobs.running, body: {}, wrongType: { body: 'cancel', field: 'body' } },
    { method: 'GET', path: '/v1/rounds', badQueries: limitQueries },
    { method: 'POST', path: '/v1/rounds', body: {}, wrongType: { body: 7, field: 'body' } },
    {
      method: 'GET', path: '/v1/audit',
      badQueries: [...limitQueries, { query: 'after=-1', field: 'querystring.after' }, { query: 'order=sideways', field: 'querystring.order' }, { query: 'key=', field: 'querystring.key' }],
    },
    { method: 'GET', path: '/v1/settings', badQueries: [] },
    {
      method: 'PATCH', path: '/v1/settings', body: { mode: 'auto' },
      wrongType: { body: { roundIntervalS: 'often' }, field: 'body.roundIntervalS' },
    },
    { method: 'GET', path: '/v1/events', badQueries: [{ query: 'types=round,weather', field: 'querystring.types' }, { query: 'since=1', field: 'querystring.since' }] },
  ];
}

function urlOf(r: Route, id?: string, query?: string): string {
  const path = r.id === undefined ? r.path : r.path.replace(':id', encodeURIComponent(id ?? r.id));
  return query === undefined ? path : `${path}?${query}`;
}

function casesFor(t: TestApi, r: Route): Case[] {
  const out: Case[] = [];
  const mutating = r.method !== 'GET';
  const auth = mutating ? t.admin : t.reader;
  const json = { 'content-type': 'application/json' };
  const ok = r.body === undefined ? undefined : JSON.stringify(r.body);
  const base = { method: r.method, ...(ok !== undefined ? { payload: ok } : {}) };
  const name = (what: string): string => `${r.method} ${r.path}: ${what}`;
  const withBody = (h: Record<string, string>): Record<string, string> => (ok !== undefined ? { ...h, ...json } : h);

  out.push({ ...base, name: name('no token'), url: urlOf(r), headers: withBody({}), status: 401, code: 'UNAUTHORIZED' });
  out.push({ ...base, name: name('a wrong token'), url: urlOf(r), headers: withBody({ authorization: 'Bearer not-the-token-0123456789' }), status: 401, code: 'UNAUTHORIZED' });
  out.push({ ...base, name: name('a malformed Authorization header'), url: urlOf(r), headers: withBody({ authorization: 'Basic YWRtaW46YWRtaW4=' }), status: 401, code: 'UNAUTHORIZED' });
  if (mutating) {
    out.push({ ...base, name: name('the read-only token'), url: urlOf(r), headers: withBody(t.reader), status: 403, code: 'FORBIDDEN' });
    out.push({ ...base, name: name('the token as ?token= (only the event stream takes it)'), url: urlOf(r, undefined, `token=${t.adminToken}`), headers: withBody({}), status: 401, code: 'UNAUTHORIZED' });
    out.push({ method: r.method, name: name('malformed JSON'), url: urlOf(r), headers: { ...auth, ...json }, payload: '{"pinned": tru', status: 400, code: 'INPUT_INVALID', field: 'body' });
    out.push({ method: r.method, name: name('JSON that is not an object'), url: urlOf(r), headers: { ...auth, ...json }, payload: 'null', status: 400, code: 'INPUT_INVALID', field: 'body' });
    if (r.wrongType !== undefined) {
      out.push({ method: r.method, name: name('a wrong type'), url: urlOf(r), headers: { ...auth, ...json }, payload: JSON.stringify(r.wrongType.body), status: 400, code: 'INPUT_INVALID', field: r.wrongType.field });
    }
    out.push({ method: r.method, name: name('an unknown field'), url: urlOf(r), headers: { ...auth, ...json }, payload: JSON.stringify({ ...r.body, colour: 'red' }), status: 400, code: 'INPUT_INVALID', field: 'body.colour' });
    out.push({ method: r.method, name: name('a __proto__ field'), url: urlOf(r), headers: { ...auth, ...json }, payload: `{"__proto__": {"admin": true}${ok !== undefined && ok !== '{}' ? `, ${ok.slice(1, -1)}` : ''}}`, status: 400, code: 'INPUT_INVALID', field: 'body.__proto__' });
    out.push({ method: r.method, name: name('a body over the limit'), url: urlOf(r), headers: { ...auth, ...json }, payload: JSON.stringify({ reason: 'x'.repeat(BODY_LIMIT * 2) }), status: 413, code: 'PAYLOAD_TOO_LARGE' });
    out.push({ method: r.method, name: name('a body that is not JSON'), url: urlOf(r), headers: { ...auth, 'content-type': 'text/plain' }, payload: 'pinned=true', status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' });
  }
  if (r.id !== undefined) {
    out.push({ ...base, name: name('an unknown id'), url: urlOf(r, 'no-such-thing'), headers: withBody(auth), status: 404, code: 'NOT_FOUND' });
    out.push({ ...base, name: name('an id with odd characters'), url: urlOf(r, '../../etc/passwd'), headers: withBody(auth), status: 404, code: 'NOT_FOUND' });
    out.push({ ...base, name: name('an id with a malformed percent-encoding'), url: r.path.replace(':id', '%E0%A4%A'), headers: withBody(auth), status: 400, code: 'INPUT_INVALID', field: 'url' });
    out.push({ ...base, name: name('an overlong id'), url: urlOf(r, 'x'.repeat(300)), headers: withBody(auth), status: 400, code: 'INPUT_INVALID', field: 'params.id' });
  }
  for (const q of r.badQueries ?? []) {
    out.push({ ...base, name: name(`bad query ${q.query.slice(0, 40)}`), url: urlOf(r, undefined, q.query), headers: withBody(auth), status: 400, code: 'INPUT_INVALID', field: q.field });
  }
  return out;
}

describe('every route refuses bad input with a 4xx, a clear message, no state change and no control call', () => {
  let t: TestApi;
  let dump0: string;
  before(async () => {
    t = await startTestApi({ bodyLimitBytes: BODY_LIMIT });
    dump0 = await dumpStore(t.store);
  });
  after(async () => {
    await t.close();
  });

  it('covers every /v1 route the server has', async () => {
    const doc = JSON.parse((await t.app.inject({ method: 'GET', url: '/docs/json' })).body) as { paths: Record<string, Record<string, unknown>> };
    const served = Object.entries(doc.paths).flatMap(([p, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${p.replace(/\{id\}/g, ':id')}`))
      .filter((r) => r.includes(' /v1/')).sort();
    const tested = routes(t).map((r) => `${r.method} ${r.path}`).sort();
    assert.deepEqual(tested, served);
  });

  it('answers each bad request as expected', async () => {
    const failures: string[] = [];
    let n = 0;
    for (const r of routes(t)) {
      for (const c of casesFor(t, r)) {
        n++;
        const res = await t.app.inject({ method: c.method, url: c.url, headers: c.headers, ...(c.payload !== undefined ? { payload: c.payload } : {}) });
        let body: { error?: { code?: unknown; message?: unknown; field?: unknown } } = {};
        try {
          body = JSON.parse(res.body) as typeof body;
        } catch {
          failures.push(`${c.name}: body is not JSON: ${res.body.slice(0, 100)}`);
          continue;
        }
        const e = body.error;
        const problems: string[] = [];
        if (res.statusCode !== c.status) problems.push(`status ${res.statusCode}, expected ${c.status}`);
        if (res.statusCode >= 500) problems.push('a 5xx for bad input');
        if (e?.code !== c.code) problems.push(`code ${String(e?.code)}, expected ${c.code}`);
        if (typeof e?.message !== 'string' || e.message.length < 10) problems.push(`message ${String(e?.message)}`);
        if (c.field !== undefined && e?.field !== c.field) problems.push(`field ${String(e?.field)}, expected ${c.field}`);
        if (c.field !== undefined && typeof e?.message === 'string' && !e.message.includes(c.field)) problems.push(`message does not name ${c.field}: ${e.message}`);
        if (res.headers['content-type']?.toString().startsWith('application/json') !== true) problems.push(`content-type ${String(res.headers['content-type'])}`);
        if (problems.length > 0) failures.push(`${c.name}: ${problems.join('; ')} — ${res.body.slice(0, 200)}`);
        if (t.control.calls.length > 0) {
          failures.push(`${c.name}: called the control: ${JSON.stringify(t.control.calls)}`);
          t.control.calls.length = 0;
        }
      }
    }
    assert.deepEqual(failures, []);
    assert.ok(n > 150, `${n} cases`);
    assert.equal(await dumpStore(t.store), dump0, 'the store is exactly as before');
  });

  it('names the field and the value it had, in words an operator understands', async () => {
    // Payloads are objects, or JSON text where JavaScript cannot write the value (1e999 parses as Infinity).
    const cases: [string, unknown, RegExp][] = [
      ['/v1/settings', { mode: 'fast' }, /^body\.mode: must be one of "auto", "approve", "dry-run" \(got "fast"\)$/],
      ['/v1/settings', { roundIntervalS: 0 }, /^body\.roundIntervalS: must be at least 1 \(got 0\)$/],
      ['/v1/settings', { params: { maxPrecopyRounds: 2.5 } }, /^body\.params\.maxPrecopyRounds: must be a whole number \(got 2\.5\)$/],
      ['/v1/settings', { params: { pinned: [1] } }, /^body\.params\.pinned\[0\]: must be of type string \(got 1\)$/],
      ['/v1/settings', {}, /^body: must set at least 1 field \(got an empty object\)$/],
      ['/v1/settings', '{"params": {"minSavingMs": 1e999}}', /^body\.params\.minSavingMs: must be a finite number \(got Infinity\)$/],
      [`/v1/vms/${t.seeded.vms.plain}`, { colour: 'red' }, /^body\.colour: is not a known field \(got "red"\)$/],
    ];
    for (const [url, payload, re] of cases) {
      const r = await t.app.inject({ method: 'PATCH', url, headers: { ...t.admin, 'content-type': 'application/json' }, payload: typeof payload === 'string' ? payload : JSON.stringify(payload) });
      assert.equal(r.statusCode, 400, r.body);
      assert.match((JSON.parse(r.body) as { error: { message: string } }).error.message, re);
    }
    assert.equal(t.control.calls.length, 0);
  });

  it('answers unknown routes and methods with a JSON 404, never a 5xx', async () => {
    for (const [method, url] of [['GET', '/v1/nothing'], ['DELETE', '/v1/vms/vm-desk-1'], ['PUT', '/v1/settings'], ['GET', '/v2/sites'], ['POST', '/healthz']] as const) {
      const r = await t.app.inject({ method, url, headers: t.admin });
      assert.equal(r.statusCode, 404, `${method} ${url}: ${r.body}`);
      assert.equal((JSON.parse(r.body) as { error: { code: string } }).error.code, 'NOT_FOUND');
    }
  });
});
