import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { startTestApi, type TestApi } from '../../testing/api-harness.js';
import { currentOpenApi, operationAnchor, REGENERATE_COMMAND, renderApiReference, withChecks } from './openapi-doc.js';

const API_MD = fileURLToPath(new URL('../../../../docs/api.md', import.meta.url));
const MODULE = fileURLToPath(new URL('./openapi-doc.js', import.meta.url));
const run = promisify(execFile);

/** The first line where two texts differ, to say where docs/api.md went stale. */
function firstDifference(a: string, b: string): string {
  const al = a.split('\n');
  const bl = b.split('\n');
  for (let i = 0; i < Math.max(al.length, bl.length); i++) {
    if (al[i] !== bl[i]) return `line ${i + 1}:\n  docs/api.md: ${JSON.stringify(al[i] ?? '(end of file)')}\n  rendered:    ${JSON.stringify(bl[i] ?? '(end of file)')}`;
  }
  return 'no line differs';
}

describe('docs/api.md, the API reference rendered from the OpenAPI document', () => {
  let t: TestApi;
  let served: object;
  before(async () => {
    t = await startTestApi();
    const r = await t.app.inject({ method: 'GET', url: '/docs/json' });
    assert.equal(r.statusCode, 200);
    served = JSON.parse(r.body) as object;
  });
  after(async () => {
    await t.close();
  });

  it('is exactly what the running API\'s /docs/json renders to (regenerate it when a route changes)', () => {
    const rendered = renderApiReference(served);
    const onDisk = readFileSync(API_MD, 'utf8');
    assert.ok(onDisk === rendered,
      `docs/api.md is out of date with the API's OpenAPI document; regenerate it with \`npx tsc -p . && ${REGENERATE_COMMAND}\`. First difference at ${firstDifference(onDisk, rendered)}`);
  });

  it('the generator reads the same document from its own empty API as a seeded, leading API serves', async () => {
    assert.deepEqual(await currentOpenApi(), served);
  });

  it('has a section, an index line and an anchor for every operation of the document', () => {
    const text = readFileSync(API_MD, 'utf8');
    const paths = (served as { paths: Record<string, Record<string, unknown>> }).paths;
    let n = 0;
    for (const [path, ops] of Object.entries(paths)) {
      for (const method of Object.keys(ops).filter((m) => m !== 'head')) {
        n++;
        assert.ok(text.includes(`### ${method.toUpperCase()} \`${path}\``), `${method} ${path} has a section`);
        assert.ok(text.includes(`<a id="${operationAnchor(method, path)}"></a>`), `${method} ${path} has an anchor`);
        assert.ok(text.includes(`](#${operationAnchor(method, path)})`), `${method} ${path} is in the index`);
      }
    }
    assert.ok(n >= 20, `the API has its operations (${n})`);
    assert.match(text, /PATCH `\/v1\/settings`[\s\S]*?\| `params\.minSavingMs` \| number \| no \|/, 'request body fields are listed, nested ones too');
    assert.match(text, /### GET `\/healthz`\n\n[^\n]+\n\nToken: none\./, 'open routes say they need no token');
  });

  it('printed by the module as a program, it is the same text', async () => {
    const { stdout } = await run(process.execPath, [MODULE], { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
    assert.equal(stdout, renderApiReference(served));
  });
});

describe('renderApiReference()', () => {
  const error = {
    type: 'object', required: ['error'],
    properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string' }, message: { type: 'string', description: 'What failed' } } } },
  };
  const doc = {
    openapi: '3.1.0',
    info: { title: 'Toy API', version: '7', description: 'A toy.' },
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } },
      schemas: { Thing: { type: 'object', required: ['id'], properties: { id: { type: 'string' }, size: { anyOf: [{ type: 'integer', minimum: 1, description: 'How big' }, { type: 'null' }] } } } },
    },
    security: [{ bearer: [] }],
    paths: {
      '/ping': { get: { summary: 'Answers', security: [], responses: { 200: { description: 'pong', content: { 'text/plain': { schema: { type: 'string' } } } } } } },
      '/things/{id}': {
        get: {
          summary: 'One thing',
          parameters: [{ name: 'id', in: 'path', required: true, schema: { type: 'string', maxLength: 9 }, description: 'Its id' }],
          responses: {
            200: { description: 'Default Response', content: { 'application/json': { schema: { type: 'object', properties: { thing: { $ref: '#/components/schemas/Thing' }, tags: { type: 'array', items: { enum: ['a|b', 'c'] } } } } } } },
            404: { description: 'Default Response', content: { 'application/json': { schema: error } } },
          },
        },
        patch: {
          summary: 'Change a thing',
          requestBody: { required: true, content: { 'application/json': { schema: { type: 'object', additionalProperties: false, minProperties: 1, properties: { size: { type: 'integer', default: 3 } } } } } },
          responses: {
            200: { content: { 'application/json': { schema: { type: 'object', properties: { thing: { $ref: '#/components/schemas/Thing' }, tags: { type: 'array', items: { enum: ['a|b', 'c'] } } } } } } },
            400: { content: { 'application/json': { schema: error } } }, 503: { content: { 'application/json': { schema: error } } },
          },
        },
      },
    },
  };
  const text = renderApiReference(doc);

  it('gives each operation its heading, summary, token, parameters and body fields', () => {
    assert.match(text, /^# Toy API: reference\n/);
    assert.match(text, /### GET `\/ping`\n\nAnswers\.\n\nToken: none\./);
    assert.match(text, /### PATCH `\/things\/\{id\}`\n\nChange a thing\.\n\nToken: bearer \(the admin token\)\./);
    assert.match(text, /### GET `\/things\/\{id\}`\n\nOne thing\.\n\nToken: bearer \(the admin or the read-only token\)\./);
    assert.match(text, /\| `id` \| path \| string \| yes \| Its id \(length 0–9\) \|/);
    assert.match(text, /\*\*Request body\*\* \(`application\/json`, required; at least 1 field, no other fields\)/);
    assert.match(text, /\| `size` \| integer \| no \| default 3 \|/);
  });

  it('follows $refs into nested field rows, reads nullable branches and escapes pipes', () => {
    assert.match(text, /\| `thing` \| Thing \| no \| {2}\|/);
    assert.match(text, /\| `thing\.size` \| integer or null \| no \| How big \(≥ 1\) \|/);
    assert.match(text, /\| `tags` \| array of "a\\\|b" \\\| "c" \| no \|/);
  });

  it('shows the error shape once, lists error statuses per operation, and points a repeated body back to its first', () => {
    assert.match(text, /## Errors\n[\s\S]*\| `error\.message` \| string \| yes \| What failed \|/);
    assert.match(text, /- Errors \(the \[error shape\]\(#errors\)\): `404`\./);
    assert.match(text, /- Errors \(the \[error shape\]\(#errors\)\): `400`, `503`\./);
    assert.match(text, /- `200` `application\/json`: the same fields as the 200 response of \[GET `\/things\/\{id\}`\]\(#get-things-id\)\./);
    assert.match(text, /- `200` `text\/plain`: string\. pong\./);
  });

  it('renders any document with one section per operation, and the same document to the same text', () => {
    const methods = fc.subarray(['get', 'post', 'patch', 'delete', 'head'], { minLength: 1 });
    const op = fc.record({ summary: fc.string(), description: fc.option(fc.string(), { nil: undefined }), parameters: fc.option(fc.array(fc.jsonValue(), { maxLength: 3 }), { nil: undefined }), responses: fc.dictionary(fc.constantFrom('200', '400', '404'), fc.jsonValue()) });
    const paths = fc.dictionary(fc.stringMatching(/^\/[a-z{}/]{1,12}$/), methods.chain((ms) => fc.tuple(...ms.map(() => op)).map((os) => Object.fromEntries(ms.map((m, i) => [m, os[i]])))), { maxKeys: 5 });
    fc.assert(fc.property(paths, fc.jsonValue(), (p, junk) => {
      const d = { openapi: '3.0.0', info: { title: 'X' }, paths: p, components: junk };
      const out = renderApiReference(d);
      const expected = Object.values(p).reduce((n, o) => n + Object.keys(o).filter((m) => m !== 'head').length, 0);
      assert.equal(out.match(/^### /gm)?.length ?? 0, expected);
      assert.equal(renderApiReference(structuredClone(d)), out);
      assert.ok(out.endsWith('\n') && !out.includes('\n\n\n'));
    }), { seed: 7, numRuns: 200 });
  });
});

describe('withChecks()', () => {
  it('leaves out the checks whose numbers the description already gives', () => {
    assert.equal(withChecks('At most this many (1..1000, default 100)', ['≥ 1', '≤ 1000', 'default 100']), 'At most this many (1..1000, default 100)');
    assert.equal(withChecks('An id', ['length 1–200']), 'An id (length 1–200)');
    assert.equal(withChecks('', ['≥ 0', 'no other fields']), '≥ 0, no other fields');
    assert.equal(withChecks('Up to 5', ['≤ 5', 'no other fields']), 'Up to 5 (no other fields)');
  });
});
