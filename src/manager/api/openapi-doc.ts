// The API reference in docs/api.md, rendered from the manager's own OpenAPI document so that it cannot drift
// from the routes: renderApiReference() turns the document into Markdown (one section per path and method:
// summary, token, parameters, request body fields, responses); currentOpenApi() builds the real API on an
// empty in-memory store and asks it for /docs/json. Run as a program, it prints the reference:
//
//   node dist/src/manager/api/openapi-doc.js > docs/api.md
//
// openapi-doc.test.ts fails when docs/api.md differs from what this prints.
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AppError } from '../../core/errors.js';
import { openStore } from '../../store/open.js';
import type { ManagerControl } from '../control.js';
import { createEventBus } from '../events.js';
import { createManagerLogger } from '../logging.js';
import { createMetrics } from '../metrics.js';
import { buildApi } from './server.js';

export const REGENERATE_COMMAND = 'node dist/src/manager/api/openapi-doc.js > docs/api.md';

type Json = Record<string, unknown>;

const METHODS = ['get', 'put', 'post', 'patch', 'delete'] as const;
/** Nesting shown in a field table (`items[].moves[].after`); deeper objects are named, not expanded. */
const MAX_DEPTH = 4;

const isObj = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);
const asObj = (v: unknown): Json => (isObj(v) ? v : {});
const asArr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const asStr = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);

/** A table cell: one line, pipes escaped. */
function cell(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ').replace(/\|/g, '\\|').trim();
}

function code(s: string): string {
  return s.includes('`') ? `\`\` ${s} \`\`` : `\`${s}\``;
}

/** The anchor of an operation, e.g. `patch-v1-vms-id`. */
export function operationAnchor(method: string, path: string): string {
  return `${method}-${path}`.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
}

interface Context {
  readonly doc: Json;
}

/** Follows local `$ref`s (`#/components/schemas/X`), at most 20 deep; an unresolvable one stays as it is. */
function deref(ctx: Context, schema: unknown): Json {
  let s = asObj(schema);
  for (let i = 0; i < 20 && typeof s.$ref === 'string'; i++) {
    const ref = s.$ref;
    if (!ref.startsWith('#/')) return s;
    let target: unknown = ctx.doc;
    for (const part of ref.slice(2).split('/')) target = asObj(target)[part.replace(/~1/g, '/').replace(/~0/g, '~')];
    if (!isObj(target)) return s;
    const { $ref: _ref, ...rest } = s;
    s = { ...target, ...rest };
  }
  return s;
}

function refName(schema: unknown): string | undefined {
  const ref = asStr(asObj(schema).$ref);
  return ref?.slice(ref.lastIndexOf('/') + 1);
}

/** A schema's type in words: `string`, `integer`, `array of string`, `"a" \| "b"`, `string or null`. */
export function typeText(ctx: Context, schema: unknown): string {
  const named = refName(schema);
  const s = deref(ctx, schema);
  if ('const' in s) return JSON.stringify(s.const);
  if (Array.isArray(s.enum)) return s.enum.map((v) => JSON.stringify(v)).join(' | ');
  const alts = asArr(s.anyOf ?? s.oneOf);
  if (alts.length > 0) return [...new Set(alts.map((a) => typeText(ctx, a)))].join(' or ');
  if (Array.isArray(s.type)) return s.type.map((t: unknown) => typeText(ctx, { ...s, type: t })).join(' or ');
  switch (s.type) {
    case 'array': return `array of ${typeText(ctx, s.items)}`;
    case 'object': {
      if (named !== undefined) return named;
      const ap = s.additionalProperties;
      if (isObj(ap) && s.properties === undefined) return `map of string to ${typeText(ctx, ap)}`;
      return 'object';
    }
    case 'string': return typeof s.format === 'string' ? `string (${s.format})` : 'string';
    case 'integer': case 'number': case 'boolean': case 'null': return s.type;
    default:
      if (isObj(s.properties)) return named ?? 'object';
      return named ?? 'any';
  }
}

function num(v: unknown): string {
  return typeof v === 'number' ? String(v) : JSON.stringify(v);
}

/** The checks a value must pass, in words: `≥ 1, ≤ 1000, default 100`. */
export function constraintText(ctx: Context, schema: unknown): string {
  return constraintList(ctx, schema).join(', ');
}

function constraintList(ctx: Context, schema: unknown): string[] {
  const s = deref(ctx, schema);
  const out: string[] = [];
  if (s.minimum !== undefined) out.push(`≥ ${num(s.minimum)}`);
  if (s.exclusiveMinimum !== undefined) out.push(`> ${num(s.exclusiveMinimum)}`);
  if (s.maximum !== undefined) out.push(`≤ ${num(s.maximum)}`);
  if (s.exclusiveMaximum !== undefined) out.push(`< ${num(s.exclusiveMaximum)}`);
  if (s.minLength !== undefined || s.maxLength !== undefined) {
    out.push(`length ${s.minLength === undefined ? '0' : num(s.minLength)}–${s.maxLength === undefined ? '…' : num(s.maxLength)}`);
  }
  if (s.minItems !== undefined) out.push(`at least ${num(s.minItems)} items`);
  if (s.maxItems !== undefined) out.push(`at most ${num(s.maxItems)} items`);
  if (s.minProperties !== undefined) out.push(`at least ${num(s.minProperties)} field${s.minProperties === 1 ? '' : 's'}`);
  if (typeof s.pattern === 'string') out.push(`pattern ${code(s.pattern)}`);
  if (s.additionalProperties === false && isObj(s.properties)) out.push('no other fields');
  if (s.default !== undefined) out.push(`default ${JSON.stringify(s.default)}`);
  // A nullable field's checks sit on its non-null branch, like its words.
  for (const a of asArr(s.anyOf ?? s.oneOf)) for (const c of constraintList(ctx, a)) if (!out.includes(c)) out.push(c);
  return out;
}

function descriptionOf(ctx: Context, schema: unknown): string {
  const s = deref(ctx, schema);
  const own = asStr(s.description);
  if (own !== undefined) return own;
  // A nullable field's words often sit on its non-null branch.
  for (const a of asArr(s.anyOf ?? s.oneOf)) {
    const d = asStr(deref(ctx, a).description);
    if (d !== undefined) return d;
  }
  return '';
}

/**
 * A description with the schema's checks after it, leaving out a check whose numbers the words already give
 * ("At most this many items (1..1000, default 100)" needs no "≥ 1, ≤ 1000, default 100" after it).
 */
export function withChecks(description: string, checks: readonly string[]): string {
  const said = new Set(description.match(/-?\d+(\.\d+)?/g) ?? []);
  const left = checks.filter((c) => {
    const nums = c.match(/-?\d+(\.\d+)?/g);
    return nums === null || !nums.every((n) => said.has(n));
  });
  if (description === '') return left.join(', ');
  return left.length === 0 ? description : `${description} (${left.join(', ')})`;
}

function explain(ctx: Context, schema: unknown): string {
  return withChecks(descriptionOf(ctx, schema), constraintList(ctx, schema));
}

interface FieldRow {
  readonly name: string;
  readonly type: string;
  readonly required: boolean;
  readonly about: string;
}

/** The object a field's rows continue into: itself, its array's items, or the one object branch of a nullable. */
function objectInside(ctx: Context, schema: unknown): { schema: Json; suffix: string } | null {
  const s = deref(ctx, schema);
  if (isObj(s.properties)) return { schema: s, suffix: '.' };
  if (s.type === 'array') {
    const inner = objectInside(ctx, s.items);
    return inner === null ? null : { schema: inner.schema, suffix: `[]${inner.suffix}` };
  }
  const ap = s.additionalProperties;
  if (isObj(ap) && s.properties === undefined) {
    const inner = objectInside(ctx, ap);
    return inner === null ? null : { schema: inner.schema, suffix: `.*${inner.suffix}` };
  }
  const objects = asArr(s.anyOf ?? s.oneOf).map((a) => objectInside(ctx, a)).filter((x) => x !== null);
  return objects.length === 1 ? objects[0]! : null;
}

/** One row per field of an object schema, nested fields as `a.b`, `a[].b`, `a.*.b` (map values). */
export function fieldRows(ctx: Context, schema: unknown, prefix = '', depth = 0): FieldRow[] {
  const s = deref(ctx, schema);
  const props = asObj(s.properties);
  const required = new Set(asArr(s.required).filter((x): x is string => typeof x === 'string'));
  const rows: FieldRow[] = [];
  for (const [key, sub] of Object.entries(props)) {
    const name = `${prefix}${key}`;
    rows.push({ name, type: typeText(ctx, sub), required: required.has(key), about: explain(ctx, sub) });
    const inner = depth + 1 < MAX_DEPTH ? objectInside(ctx, sub) : null;
    if (inner !== null) rows.push(...fieldRows(ctx, inner.schema, `${name}${inner.suffix.slice(0, -1)}.`, depth + 1));
  }
  return rows;
}

function fieldTable(rows: readonly FieldRow[]): string[] {
  return [
    '| field | type | required | meaning |',
    '|---|---|---|---|',
    ...rows.map((r) => `| ${code(r.name)} | ${cell(r.type)} | ${r.required ? 'yes' : 'no'} | ${cell(r.about)} |`),
  ];
}

/** Whether a response body is the shared error shape `{"error": {...}}`. */
function isErrorSchema(ctx: Context, schema: unknown): boolean {
  const s = deref(ctx, schema);
  const props = Object.keys(asObj(s.properties));
  return props.length === 1 && props[0] === 'error';
}

interface Operation {
  readonly method: string;
  readonly path: string;
  readonly op: Json;
}

function operationsOf(doc: Json): Operation[] {
  const out: Operation[] = [];
  for (const [path, item] of Object.entries(asObj(doc.paths))) {
    for (const method of METHODS) {
      const op = asObj(item)[method];
      if (isObj(op)) out.push({ method, path, op });
    }
  }
  return out;
}

function tokenText(doc: Json, op: Json, method: string): string {
  const security = Array.isArray(op.security) ? op.security : asArr(doc.security);
  if (security.length === 0 || security.every((s) => Object.keys(asObj(s)).length === 0)) return 'none';
  const schemes = [...new Set(security.flatMap((s) => Object.keys(asObj(s))))];
  const scheme = schemes.join(' or ');
  const role = method === 'get' ? 'the admin or the read-only token' : 'the admin token';
  return `${scheme} (${role})`;
}

/**
 * The Markdown API reference of an OpenAPI 3 document. PURE: the same document gives the same text. Each
 * response body shown once in full; a later identical one points back to it.
 */
export function renderApiReference(openapi: object): string {
  const doc = openapi as Json;
  const ctx: Context = { doc };
  const info = asObj(doc.info);
  const ops = operationsOf(doc);
  const L: string[] = [];
  const title = asStr(info.title) ?? 'API';
  L.push(`# ${title}: reference`, '');
  L.push(`<!-- Generated from the OpenAPI document by src/manager/api/openapi-doc.ts. Do not edit by hand; regenerate with: ${REGENERATE_COMMAND} -->`, '');
  const description = asStr(info.description);
  if (description !== undefined) L.push(description, '');
  L.push(`OpenAPI ${asStr(doc.openapi) ?? '?'}, API version ${asStr(info.version) ?? '?'}. A running manager serves this document at ${code('/docs/json')} and a browsable form of it at ${code('/docs')}.`, '');

  L.push('## Tokens', '');
  const schemes = asObj(asObj(doc.components).securitySchemes);
  for (const [name, sch] of Object.entries(schemes)) {
    const so = asObj(sch);
    const how = so.type === 'http' && so.scheme === 'bearer' ? `the header ${code('Authorization: Bearer <token>')}` : [asStr(so.type), asStr(so.scheme) ?? asStr(so.name)].filter((x) => x !== undefined).join(' ');
    L.push(`- ${code(name)}: ${how}.`);
  }
  L.push('- Reads (GET) take the admin or the read-only token; changes take the admin token. An operation marked "Token: none" needs none.', '');

  // The error shape, once.
  let errorSchema: unknown = null;
  for (const { op } of ops) {
    for (const r of Object.values(asObj(op.responses))) {
      const sch = asObj(asObj(asObj(r).content)['application/json']).schema;
      if (sch !== undefined && isErrorSchema(ctx, sch)) {
        errorSchema = sch;
        break;
      }
    }
    if (errorSchema !== null) break;
  }
  if (errorSchema !== null) {
    L.push('## Errors', '', `Every error answers with one JSON shape; the status code is listed under each operation.`, '');
    L.push(...fieldTable(fieldRows(ctx, errorSchema)), '');
  }

  L.push('## Operations', '', '| method | path | what it does |', '|---|---|---|');
  for (const { method, path, op } of ops) {
    L.push(`| ${method.toUpperCase()} | [${code(path)}](#${operationAnchor(method, path)}) | ${cell(asStr(op.summary) ?? '')} |`);
  }
  L.push('');

  const shown = new Map<string, string>();
  for (const { method, path, op } of ops) {
    const anchor = operationAnchor(method, path);
    L.push(`<a id="${anchor}"></a>`, '', `### ${method.toUpperCase()} ${code(path)}`, '');
    const summary = asStr(op.summary);
    if (summary !== undefined) L.push(`${summary}.`.replace(/\.\.$/, '.'), '');
    const desc = asStr(op.description);
    if (desc !== undefined) L.push(desc, '');
    L.push(`Token: ${tokenText(doc, op, method)}.`, '');

    const params = asArr(op.parameters).map((p) => deref(ctx, p));
    if (params.length > 0) {
      L.push('**Parameters**', '', '| name | in | type | required | meaning |', '|---|---|---|---|---|');
      for (const p of params) {
        const words = withChecks(asStr(p.description) ?? '', constraintList(ctx, p.schema));
        L.push(`| ${code(String(p.name))} | ${String(p.in)} | ${cell(typeText(ctx, p.schema))} | ${p.required === true ? 'yes' : 'no'} | ${cell(words)} |`);
      }
      L.push('');
    }

    const body = deref(ctx, op.requestBody);
    for (const [type, media] of Object.entries(asObj(body.content))) {
      const sch = asObj(media).schema;
      const rows = fieldRows(ctx, sch);
      const c = constraintText(ctx, sch);
      L.push(`**Request body** (${code(type)}, ${body.required === true ? 'required' : 'optional'}${c === '' ? '' : `; ${c}`})`, '');
      if (rows.length > 0) L.push(...fieldTable(rows), '');
      else L.push(`${typeText(ctx, sch)}; no fields.`, '');
    }

    L.push('**Responses**', '');
    const errors: string[] = [];
    for (const [status, resp] of Object.entries(asObj(op.responses))) {
      const r = deref(ctx, resp);
      const content = Object.entries(asObj(r.content));
      const jsonSchema = asObj(asObj(r.content)['application/json']).schema;
      if (jsonSchema !== undefined && isErrorSchema(ctx, jsonSchema)) {
        errors.push(status);
        continue;
      }
      const words = asStr(r.description);
      const said = words === undefined || words === 'Default Response' ? '' : ` ${words}.`;
      if (content.length === 0) {
        L.push(`- ${code(status)}:${said === '' ? ' no body.' : said}`);
        continue;
      }
      for (const [type, media] of content) {
        const sch = asObj(media).schema;
        const rows = fieldRows(ctx, sch);
        if (rows.length === 0) {
          L.push(`- ${code(status)} ${code(type)}: ${typeText(ctx, sch)}.${said}`);
          continue;
        }
        const key = JSON.stringify(deref(ctx, sch));
        const first = shown.get(key);
        if (first !== undefined) {
          L.push(`- ${code(status)} ${code(type)}:${said} the same fields as ${first}.`);
          continue;
        }
        shown.set(key, `the ${status} response of [${method.toUpperCase()} ${code(path)}](#${anchor})`);
        L.push(`- ${code(status)} ${code(type)}:${said}`, '', ...fieldTable(rows).map((x) => `  ${x}`), '');
      }
    }
    if (errors.length > 0) L.push(`- Errors (the [error shape](#errors)): ${errors.map(code).join(', ')}.`);
    L.push('');
  }
  return `${L.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd()}\n`;
}

/** A control for a manager that never acts: the reference needs the routes, not a loop behind them. */
function idleControl(): ManagerControl {
  const no = (): Promise<never> => Promise.reject(new AppError('NOT_LEADER', 'Cannot act: this API only renders its own documentation'));
  return {
    replica: 'docs', isLeader: () => false, leader: () => Promise.resolve(null),
    approvePlan: no, rejectPlan: no, cancelMigration: no, updateSettings: no, setVmFlags: no, runRound: no,
  };
}

/** The manager API's OpenAPI document, as GET /docs/json answers it (the real routes, an empty in-memory store). */
export async function currentOpenApi(): Promise<object> {
  const store = await openStore(':memory:');
  try {
    const app = await buildApi({
      store, control: idleControl(), events: createEventBus(), metrics: createMetrics(), log: createManagerLogger({ level: 'silent' }),
    });
    try {
      const r = await app.inject({ method: 'GET', url: '/docs/json' });
      if (r.statusCode !== 200) throw new AppError('OPENAPI_UNAVAILABLE', `GET /docs/json answered ${r.statusCode}: ${r.body.slice(0, 200)}`);
      return JSON.parse(r.body) as object;
    } finally {
      await app.close();
    }
  } finally {
    await store.close();
  }
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === realpathSync(process.argv[1])) {
  currentOpenApi().then(
    (doc) => process.stdout.write(renderApiReference(doc)),
    (e: unknown) => {
      process.stderr.write(`openapi-doc: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
