// One error shape for every failure the API answers: {"error": {"code", "message", "field"?}}. AppError codes
// map to HTTP statuses; Fastify's own errors (bad JSON, body too large) and schema validation failures are
// turned into the same shape, with the field at fault named like `body.mode` or `querystring.limit`.
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, describeValue, isAppError } from '../../core/errors.js';

export interface ApiErrorBody {
  readonly error: {
    readonly code: string;
    readonly message: string;
    readonly field?: string;
    /** NOT_LEADER only: where changes must go. */
    readonly leader?: string | null;
  };
}

export const STATUS_OF_CODE: Readonly<Record<string, number>> = {
  INPUT_INVALID: 400,
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  JOB_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  PLAN_NOT_PENDING: 409,
  JOB_ENDED: 409,
  JOB_NOT_CANCELLABLE: 409,
  PLAN_STALE: 409,
  STORE_CONFLICT: 409,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  NOT_LEADER: 503,
  UNAVAILABLE: 503,
  STORE_UNAVAILABLE: 503,
  STORE_CLOSED: 503,
  EXECUTOR_HALTED: 503,
};

/** An AppError the API answers with a status; `field` and `leader` travel into the body. */
export class ApiError extends AppError {
  readonly field: string | undefined;
  readonly leader: string | null | undefined;
  constructor(code: string, message: string, opts: { field?: string; leader?: string | null; cause?: unknown } = {}) {
    super(code, message, { cause: opts.cause });
    this.name = 'ApiError';
    this.field = opts.field;
    this.leader = opts.leader;
  }
}

export const notFound = (what: string, id: string): ApiError =>
  new ApiError('NOT_FOUND', `${what} ${JSON.stringify(id)} does not exist`);

export const badInput = (field: string, value: unknown, problem: string): ApiError =>
  new ApiError('INPUT_INVALID', `${field}: ${problem} (got ${describeValue(value)})`, { field });

/** A validation failure as AJV/TypeBox reports it (Fastify puts the list on `error.validation`). */
interface SchemaIssue {
  readonly keyword: string;
  readonly instancePath: string;
  readonly schemaPath?: string;
  readonly params?: Record<string, unknown>;
  readonly message?: string;
}

const PART_OF_CONTEXT: Readonly<Record<string, 'body' | 'query' | 'params' | 'headers'>> = {
  body: 'body', querystring: 'query', params: 'params', headers: 'headers',
};

function pathParts(instancePath: string): string[] {
  return instancePath.split('/').slice(1).map((s) => s.replace(/~1/g, '/').replace(/~0/g, '~'));
}

function valueAt(root: unknown, parts: readonly string[]): unknown {
  let v = root;
  for (const p of parts) {
    if (typeof v !== 'object' || v === null) return undefined;
    v = (v as Record<string, unknown>)[p];
  }
  return v;
}

const fieldName = (context: string, parts: readonly string[]): string =>
  [context, ...parts].map((p, i) => (i > 0 && /^\d+$/.test(p) ? `[${p}]` : `${i > 0 ? '.' : ''}${p}`)).join('');

function problemOf(issue: SchemaIssue, siblings: readonly SchemaIssue[], value: unknown): string {
  const p = issue.params ?? {};
  switch (issue.keyword) {
    case 'type':
      if (p.type === 'integer') return 'must be a whole number';
      if (p.type === 'number' && typeof value === 'number') return 'must be a finite number';
      if (p.type === 'number') return 'must be a number';
      if (p.type === 'boolean') return 'must be true or false';
      if (p.type === 'object') return 'must be a JSON object';
      if (p.type === 'array') return 'must be an array';
      return `must be of type ${String(p.type)}`;
    case 'enum': return `must be one of ${(p.allowedValues as unknown[] | undefined ?? []).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'const':
    case 'anyOf': {
      const allowed = siblings.filter((s) => s.keyword === 'const').map((s) => JSON.stringify(s.params?.allowedValue));
      return allowed.length > 0 ? `must be one of ${allowed.join(', ')}` : (issue.message ?? 'has the wrong shape');
    }
    case 'minimum': return `must be at least ${String(p.limit)}`;
    case 'exclusiveMinimum': return `must be more than ${String(p.limit)}`;
    case 'maximum': return `must be at most ${String(p.limit)}`;
    case 'exclusiveMaximum': return `must be less than ${String(p.limit)}`;
    case 'minLength': return `must be at least ${String(p.limit)} characters long`;
    case 'maxLength': return `must be at most ${String(p.limit)} characters long`;
    case 'maxItems': return `must have at most ${String(p.limit)} items`;
    case 'minItems': return `must have at least ${String(p.limit)} items`;
    case 'minProperties': return `must set at least ${String(p.limit)} field${p.limit === 1 ? '' : 's'}`;
    case 'pattern': return `must match ${String(p.pattern)}`;
    default: return issue.message ?? `fails ${issue.keyword}`;
  }
}

/**
 * The one field a validation failure is about, and a message naming it and the value it had:
 * `body.mode: must be one of "auto", "approve", "dry-run" (got "fast")`.
 */
export function describeValidation(
  context: string, issues: readonly SchemaIssue[], request: FastifyRequest | null,
): { field: string; message: string } {
  const part = PART_OF_CONTEXT[context];
  const root: unknown = request === null || part === undefined ? undefined : request[part];
  // An unknown field first (the most common typo), then a missing one, then the deepest other issue.
  const extra = issues.find((i) => i.keyword === 'additionalProperties');
  if (extra !== undefined) {
    const names = (extra.params?.additionalProperties as string[] | undefined) ?? [];
    const name = names[0] ?? '?';
    const parts = [...pathParts(extra.instancePath), name];
    const field = fieldName(context, parts);
    return { field, message: `${field}: is not a known field (got ${describeValue(valueAt(root, parts))})` };
  }
  const required = issues.find((i) => i.keyword === 'required');
  if (required !== undefined) {
    const names = (required.params?.requiredProperties as string[] | undefined)
      ?? (typeof required.params?.missingProperty === 'string' ? [required.params.missingProperty] : []);
    const field = fieldName(context, [...pathParts(required.instancePath), names[0] ?? '?']);
    return { field, message: `${field}: is required (got nothing)` };
  }
  const relevant = issues.filter((i) => i.keyword !== 'boolean');
  const first = [...relevant].sort((a, b) => pathParts(b.instancePath).length - pathParts(a.instancePath).length)[0]
    ?? issues[0];
  if (first === undefined) return { field: context, message: `${context}: is not valid` };
  const parts = pathParts(first.instancePath);
  const field = fieldName(context, parts);
  const siblings = issues.filter((i) => i.instancePath === first.instancePath);
  const value = valueAt(root, parts);
  const got = typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).length === 0
    ? 'an empty object' : describeValue(value);
  return { field, message: `${field}: ${problemOf(first, siblings, value)} (got ${got})` };
}

/** Maps any thrown error to the status and body the API answers. Unknown errors are 500 (and logged). */
export function toErrorResponse(err: unknown, request: FastifyRequest | null): { status: number; body: ApiErrorBody } {
  const fe = err as Partial<FastifyError> & { validation?: SchemaIssue[]; validationContext?: string };
  if (Array.isArray(fe.validation)) {
    const { field, message } = describeValidation(fe.validationContext ?? 'body', fe.validation, request);
    return { status: 400, body: { error: { code: 'INPUT_INVALID', message, field } } };
  }
  if (err instanceof ApiError || isAppError(err)) {
    const status = STATUS_OF_CODE[err.code] ?? 500;
    const extra: { field?: string; leader?: string | null } = {};
    if (err instanceof ApiError) {
      if (err.field !== undefined) extra.field = err.field;
      if (err.leader !== undefined) extra.leader = err.leader;
    } else if ('field' in err && typeof err.field === 'string') {
      extra.field = err.field;
    }
    if (status >= 500 && err.code !== 'NOT_LEADER' && err.code !== 'UNAVAILABLE') {
      return { status, body: { error: { code: err.code, message: err.message } } };
    }
    return { status, body: { error: { code: err.code, message: err.message, ...extra } } };
  }
  switch (fe.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return { status: 413, body: { error: { code: 'PAYLOAD_TOO_LARGE', message: `request body is larger than the limit of ${String(request?.routeOptions.bodyLimit ?? '?')} bytes`, field: 'body' } } };
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return { status: 415, body: { error: { code: 'UNSUPPORTED_MEDIA_TYPE', message: `request body must be application/json (got ${describeValue(request?.headers['content-type'])})`, field: 'body' } } };
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return { status: 400, body: { error: { code: 'INPUT_INVALID', message: 'body: is empty although the content type says JSON (send {} or no content type)', field: 'body' } } };
    case 'FST_ERR_BAD_URL':
      return { status: 400, body: { error: { code: 'INPUT_INVALID', message: `url: is not a valid URL (a percent-encoding is malformed): ${describeValue(request?.url)}`, field: 'url' } } };
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return { status: 400, body: { error: { code: 'INPUT_INVALID', message: 'body: its length differs from the Content-Length header', field: 'body' } } };
    default:
      break;
  }
  const sc = typeof fe.statusCode === 'number' ? fe.statusCode : 500;
  if (sc >= 400 && sc < 500) {
    const code = sc === 404 ? 'NOT_FOUND' : sc === 413 ? 'PAYLOAD_TOO_LARGE' : sc === 415 ? 'UNSUPPORTED_MEDIA_TYPE' : 'BAD_REQUEST';
    return { status: sc, body: { error: { code, message: fe.message ?? 'bad request' } } };
  }
  return { status: 500, body: { error: { code: 'INTERNAL', message: 'the manager failed to answer this request; the log has the details' } } };
}

export function sendError(reply: FastifyReply, status: number, body: ApiErrorBody): FastifyReply {
  return reply.code(status).header('cache-control', 'no-store').type('application/json; charset=utf-8').send(body);
}
