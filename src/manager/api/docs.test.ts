// The open routes: the OpenAPI document and its UI, Prometheus metrics, health, and the dashboard's files.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../../store/open.js';
import type { Store } from '../../store/store.js';
import { createFakeControl } from '../../testing/fake-control.js';
import { startTestApi, type TestApi } from '../../testing/api-harness.js';
import { createEventBus } from '../events.js';
import { createManagerLogger } from '../logging.js';
import { createMetrics } from '../metrics.js';
import { buildApi } from './server.js';

/** The routes of the contract (brief issue6-api.md), as OpenAPI paths. */
const CONTRACT = [
  'GET /healthz', 'GET /metrics',
  'GET /v1/sites', 'GET /v1/sites/{id}', 'GET /v1/hosts', 'GET /v1/links',
  'GET /v1/users', 'GET /v1/users/{id}',
  'GET /v1/vms', 'GET /v1/vms/{id}', 'PATCH /v1/vms/{id}',
  'GET /v1/plans', 'GET /v1/plans/{id}', 'POST /v1/plans/{id}/approve', 'POST /v1/plans/{id}/reject',
  'GET /v1/migrations', 'GET /v1/migrations/{id}', 'POST /v1/migrations/{id}/cancel',
  'GET /v1/rounds', 'POST /v1/rounds', 'GET /v1/audit', 'GET /v1/settings', 'PATCH /v1/settings', 'GET /v1/events',
].sort();

interface Operation {
  parameters?: { name: string; in: string; schema?: unknown }[];
  requestBody?: { content: Record<string, { schema: { additionalProperties?: unknown } }> };
  responses: Record<string, { content?: Record<string, { schema?: unknown }> }>;
  security?: unknown[];
  summary?: string;
}
interface OpenApiDoc {
  openapi: string;
  info: { title: string };
  paths: Record<string, Record<string, Operation>>;
  components: { securitySchemes: Record<string, { type: string; scheme: string }> };
  security: unknown[];
}

describe('OpenAPI document and UI', () => {
  let t: TestApi;
  let doc: OpenApiDoc;
  before(async () => {
    t = await startTestApi();
    const r = await t.app.inject({ method: 'GET', url: '/docs/json' });
    assert.equal(r.statusCode, 200);
    doc = JSON.parse(r.body) as OpenApiDoc;
  });
  after(async () => {
    await t.close();
  });

  it('/docs/json is an OpenAPI 3 document listing exactly the contract routes, with bearer security', () => {
    assert.match(doc.openapi, /^3\.\d+\.\d+$/);
    assert.equal(doc.info.title, 'VMShadow manager API');
    const ops = Object.entries(doc.paths).flatMap(([p, o]) => Object.keys(o).filter((m) => m !== 'head').map((m) => `${m.toUpperCase()} ${p}`)).sort();
    assert.deepEqual(ops, CONTRACT);
    assert.deepEqual(doc.components.securitySchemes.bearer, { type: 'http', scheme: 'bearer' });
    assert.deepEqual(doc.security, [{ bearer: [] }]);
    assert.deepEqual(doc.paths['/healthz']?.get?.security, [], 'health needs no token');
  });

  it('gives every operation a summary, its parameters, its body schema and its 200 and error responses', () => {
    for (const [path, ops] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(ops)) {
        if (method === 'head') continue;
        const name = `${method.toUpperCase()} ${path}`;
        assert.ok((op.summary ?? '').length > 5, `${name} has a summary`);
        assert.ok(op.responses['200'] !== undefined, `${name} documents 200`);
        const ok = op.responses['200'].content ?? {};
        assert.ok(Object.values(ok).some((c) => c.schema !== undefined), `${name} has a 200 schema`);
        if (path.includes('{id}')) {
          assert.ok(op.parameters?.some((p) => p.in === 'path' && p.name === 'id'), `${name} documents the id`);
          assert.ok(op.responses['404'] !== undefined, `${name} documents 404`);
        }
        if (path.startsWith('/v1/')) assert.ok(op.responses['401'] !== undefined, `${name} documents 401`);
        if (method !== 'get') {
          const body = op.requestBody?.content['application/json']?.schema;
          assert.ok(body !== undefined, `${name} documents its body`);
          assert.equal(body.additionalProperties, false, `${name} refuses unknown fields`);
          assert.ok(op.responses['403'] !== undefined && op.responses['503'] !== undefined, `${name} documents 403 and 503`);
        }
      }
    }
    const list = doc.paths['/v1/vms']?.get?.parameters?.map((p) => p.name).sort();
    assert.deepEqual(list, ['after', 'limit', 'sensitive', 'site']);
  });

  it('/docs serves the Swagger UI as HTML', async () => {
    const r = await t.app.inject({ method: 'GET', url: '/docs' });
    assert.equal(r.statusCode, 200);
    assert.match(String(r.headers['content-type']), /^text\/html/);
    assert.match(r.body, /swagger/i);
  });
});

describe('GET /metrics', () => {
  it('answers Prometheus text without a token, counting API requests by route pattern (no ids in labels)', async () => {
    const t = await startTestApi();
    try {
      await t.app.inject({ method: 'GET', url: '/v1/vms/vm-desk-1', headers: t.reader });
      await t.app.inject({ method: 'GET', url: '/v1/vms/vm-desk-2', headers: t.reader });
      await t.app.inject({ method: 'GET', url: '/v1/vms/nope', headers: t.reader });
      t.metrics.observeVm({ id: 'vm-desk-1', sensitivity: 0.9, sensitive: true } as never);
      const r = await t.app.inject({ method: 'GET', url: '/metrics' });
      assert.equal(r.statusCode, 200);
      assert.match(String(r.headers['content-type']), /^text\/plain; version=0\.0\.4/);
      assert.match(r.body, /^# HELP vmshadow_api_requests_total /m);
      assert.match(r.body, /^# TYPE vmshadow_api_requests_total counter$/m);
      assert.match(r.body, /^vmshadow_api_requests_total\{route="\/v1\/vms\/:id",status="200"\} 2$/m);
      assert.match(r.body, /^vmshadow_api_requests_total\{route="\/v1\/vms\/:id",status="404"\} 1$/m);
      assert.match(r.body, /^vmshadow_leader 1$/m);
      assert.match(r.body, /^vmshadow_vm_sensitivity\{vm="vm-desk-1"\} 0\.9$/m);
      assert.doesNotMatch(r.body, /vm-desk-2/);
    } finally {
      await t.close();
    }
  });
});

describe('GET /healthz when the store does not answer', () => {
  it('answers 503 naming the store', async () => {
    const store: Store = await openStore(':memory:');
    const broken = new Proxy(store, {
      get(target, prop) {
        if (prop === 'count') return () => Promise.reject(new Error('database is locked'));
        const v: unknown = Reflect.get(target, prop, target);
        return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
      },
    });
    const app = await buildApi({
      store: broken, control: createFakeControl(store), events: createEventBus(), metrics: createMetrics(),
      log: createManagerLogger({ level: 'silent' }),
    });
    try {
      const r = await app.inject({ method: 'GET', url: '/healthz' });
      assert.equal(r.statusCode, 503);
      const e = (JSON.parse(r.body) as { error: { code: string; message: string } }).error;
      assert.equal(e.code, 'UNAVAILABLE');
      assert.match(e.message, /the store \(sqlite:.*\) does not answer: database is locked/);
    } finally {
      await app.close();
      await store.close();
    }
  });
});

describe('the dashboard\'s files', () => {
  let dir: string;
  let t: TestApi;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vmshadow-dash-'));
    const root = join(dir, 'dist');
    await mkdir(join(root, 'assets'), { recursive: true });
    await writeFile(join(root, 'index.html'), '<!doctype html><title>VMShadow</title>');
    await writeFile(join(root, 'assets', 'app.js'), 'console.log(1)');
    await writeFile(join(root, 'assets', 'app.css'), 'body{}');
    await writeFile(join(root, '.env'), 'SECRET=1');
    await writeFile(join(root, 'tool.exe'), 'MZ');
    await writeFile(join(dir, 'outside.txt'), 'OUTSIDE-CONTENT');
    await symlink(join(dir, 'outside.txt'), join(root, 'link.txt'));
    t = await startTestApi({ dashboardDir: root });
  });
  after(async () => {
    await t.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves index.html at / and files by name with their content type, without a token', async () => {
    const i = await t.app.inject({ method: 'GET', url: '/' });
    assert.equal(i.statusCode, 200);
    assert.match(String(i.headers['content-type']), /^text\/html/);
    assert.match(i.body, /<title>VMShadow<\/title>/);
    const js = await t.app.inject({ method: 'GET', url: '/assets/app.js' });
    assert.equal(js.statusCode, 200);
    assert.match(String(js.headers['content-type']), /^text\/javascript/);
    assert.equal(js.headers['x-content-type-options'], 'nosniff');
    assert.match(String((await t.app.inject({ method: 'GET', url: '/assets/app.css' })).headers['content-type']), /^text\/css/);
    assert.equal((await t.app.inject({ method: 'GET', url: '/index.html?v=2' })).statusCode, 200);
  });

  it('answers 404 for anything outside the folder, hidden, of an unknown type or missing', async () => {
    for (const url of [
      '/../outside.txt', '/%2e%2e/outside.txt', '/assets/..%2f..%2foutside.txt', '/assets/%2e%2e/%2e%2e/outside.txt',
      '/link.txt', '/.env', '/tool.exe', '/missing.html', '/assets', '/%00index.html', '/assets%5c..%5c..%5coutside.txt',
    ]) {
      const r = await t.app.inject({ method: 'GET', url });
      assert.equal(r.statusCode, 404, `${url}: ${r.statusCode} ${r.body}`);
      assert.doesNotMatch(r.body, /OUTSIDE-CONTENT|SECRET|MZ/, url);
      assert.equal((JSON.parse(r.body) as { error: { code: string } }).error.code, 'NOT_FOUND', url);
    }
  });

  it('answers a URL with a malformed percent-encoding with a JSON 400', async () => {
    const r = await t.app.inject({ method: 'GET', url: '/%E0%A4%A' });
    assert.equal(r.statusCode, 400);
    assert.deepEqual((JSON.parse(r.body) as { error: { code: string; field: string } }).error.field, 'url');
  });

  it('keeps /v1 behind its tokens: an unknown API path is a JSON 404 for a token holder, 401 without', async () => {
    assert.equal((await t.app.inject({ method: 'GET', url: '/v1/nothing' })).statusCode, 401);
    const r = await t.app.inject({ method: 'GET', url: '/v1/nothing', headers: t.reader });
    assert.equal(r.statusCode, 404);
    assert.match(String(r.headers['content-type']), /^application\/json/);
  });

  it('answers 404 saying the dashboard is not built when its folder does not exist', async () => {
    const s = await startTestApi({ dashboardDir: join(dir, 'not-built') });
    try {
      const r = await s.app.inject({ method: 'GET', url: '/' });
      assert.equal(r.statusCode, 404);
      assert.match(r.body, /the dashboard is not built/);
    } finally {
      await s.close();
    }
  });

  it('without a dashboard folder, / answers a short JSON index of where things are', async () => {
    const s = await startTestApi();
    try {
      const r = await s.app.inject({ method: 'GET', url: '/' });
      assert.equal(r.statusCode, 200);
      assert.equal((JSON.parse(r.body) as { docs: string }).docs, '/docs');
    } finally {
      await s.close();
    }
  });
});
