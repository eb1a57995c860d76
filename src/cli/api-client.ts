// A small client of the manager's REST API for the CLI: where the manager is and which token to send
// (flags > environment > ~/.config/vmshadow/cli.json > http://127.0.0.1:8080), one typed method per route,
// errors that say what failed (the manager unreachable, or the API's own code and message), and a reader
// for the Server-Sent Events stream on plain fetch.
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { AppError, InputError } from '../core/errors.js';
import { isObj } from '../core/validate.js';
import type { SettingsPatch } from '../manager/control.js';
import type { MigrationView } from '../manager/views.js';
import type { MigrationProgress } from '../migration/driver.js';
import type {
  AuditEvent, FingerprintPoint, HostRecord, LinkRecord, PlanRecord, PlanStatus, RoundRecord, RttPoint, Settings,
  SiteRecord, UserRecord, VmRecord,
} from '../store/records.js';
import type { LogEntry } from '../store/store.js';

export const DEFAULT_API_URL = 'http://127.0.0.1:8080';

export interface ApiTarget {
  /** Without a trailing slash: "http://10.0.0.5:8080" (a path prefix is kept). */
  readonly baseUrl: string;
  readonly token: string | null;
  /** Where each came from ('--api', 'env VMSHADOW_API', 'config FILE', 'default'). */
  readonly sources: { readonly api: string; readonly token: string };
}

/** $VMSHADOW_CLI_CONFIG, else $XDG_CONFIG_HOME/vmshadow/cli.json, else ~/.config/vmshadow/cli.json. */
export function cliConfigPath(env: Readonly<Record<string, string | undefined>>, home: string = homedir()): string {
  if (env.VMSHADOW_CLI_CONFIG !== undefined && env.VMSHADOW_CLI_CONFIG !== '') return env.VMSHADOW_CLI_CONFIG;
  const xdg = env.XDG_CONFIG_HOME;
  return join(xdg !== undefined && xdg !== '' ? xdg : join(home, '.config'), 'vmshadow', 'cli.json');
}

function checkUrl(v: unknown, field: string): string {
  if (typeof v !== 'string') throw new InputError(field, v, 'must be the manager\'s URL, e.g. http://127.0.0.1:8080');
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new InputError(field, v, 'must be the manager\'s URL, e.g. http://127.0.0.1:8080');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new InputError(field, v, 'must be an http:// or https:// URL');
  if (u.search !== '' || u.hash !== '') throw new InputError(field, v, 'must have no query or fragment');
  return u.href.replace(/\/+$/, '');
}

function checkToken(v: unknown, field: string): string {
  if (typeof v !== 'string' || v === '' || /\s/.test(v)) throw new InputError(field, typeof v === 'string' ? '(hidden)' : v, 'must be a token without spaces');
  return v;
}

/** The CLI config file: {"api": "http://…", "token": "…"}; a missing file is no file. */
function readCliConfig(path: string): { api?: unknown; token?: unknown } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new InputError(`config ${path}`, path, `cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new InputError(`config ${path}`, text.slice(0, 40), `is not valid JSON: ${(e as Error).message}`);
  }
  if (!isObj(json)) throw new InputError(`config ${path}`, json, 'must be a JSON object like {"api": "http://127.0.0.1:8080", "token": "…"}');
  for (const k of Object.keys(json)) {
    if (k !== 'api' && k !== 'token') throw new InputError(`config ${path}: ${k}`, json[k], 'is not a known key (known: api, token)');
  }
  return json;
}

/** Where the manager is and the token to send: flags > environment > CLI config file > default URL, no token. */
export function resolveApiTarget(opts: {
  readonly flags: { readonly api?: string | undefined; readonly token?: string | undefined };
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Defaults to cliConfigPath(env). */
  readonly configPath?: string;
}): ApiTarget {
  const env = (n: string): string | undefined => (opts.env[n] === '' ? undefined : opts.env[n]);
  const path = opts.configPath ?? cliConfigPath(opts.env);
  const needFile = opts.flags.api === undefined && env('VMSHADOW_API') === undefined
    || opts.flags.token === undefined && env('VMSHADOW_TOKEN') === undefined;
  const file = needFile ? readCliConfig(path) : {};
  let baseUrl = DEFAULT_API_URL;
  let apiSource = 'default';
  if (opts.flags.api !== undefined) [baseUrl, apiSource] = [checkUrl(opts.flags.api, '--api'), '--api'];
  else if (env('VMSHADOW_API') !== undefined) [baseUrl, apiSource] = [checkUrl(env('VMSHADOW_API'), 'env VMSHADOW_API'), 'env VMSHADOW_API'];
  else if (file.api !== undefined) [baseUrl, apiSource] = [checkUrl(file.api, `config ${path}: api`), `config ${path}`];
  let token: string | null = null;
  let tokenSource = 'none';
  if (opts.flags.token !== undefined) [token, tokenSource] = [checkToken(opts.flags.token, '--token'), '--token'];
  else if (env('VMSHADOW_TOKEN') !== undefined) [token, tokenSource] = [checkToken(env('VMSHADOW_TOKEN'), 'env VMSHADOW_TOKEN'), 'env VMSHADOW_TOKEN'];
  else if (file.token !== undefined) [token, tokenSource] = [checkToken(file.token, `config ${path}: token`), `config ${path}`];
  return { baseUrl, token, sources: { api: apiSource, token: tokenSource } };
}

/** The API answered with an error: its status, code, message and (for bad input) the field at fault. */
export class ApiRequestError extends AppError {
  constructor(
    readonly status: number,
    code: string,
    message: string,
    readonly apiMessage: string,
    readonly field: string | null,
  ) {
    super(code, message, { retryable: status === 503 });
    this.name = 'ApiRequestError';
  }
}

const UNREACHABLE: Readonly<Record<string, string>> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  ETIMEDOUT: 'connection timed out',
  UND_ERR_SOCKET: 'connection closed',
  UND_ERR_CONNECT_TIMEOUT: 'connection timed out',
};

/** What a fetch that threw says about the connection, in words. */
function connectionProblem(e: unknown, timeoutMs: number): string {
  const err = e as { name?: string; message?: string; cause?: { code?: string; message?: string; errors?: { code?: string }[] } };
  if (err.name === 'TimeoutError') return `no answer within ${timeoutMs / 1000} s`;
  if (err.name === 'AbortError') return 'aborted';
  const code = err.cause?.code ?? err.cause?.errors?.[0]?.code;
  if (code !== undefined) return UNREACHABLE[code] ?? code;
  return err.cause?.message ?? err.message ?? String(e);
}

export interface Page<T> {
  readonly items: T[];
}

export interface SseMessage {
  readonly event: string;
  readonly data: string;
  readonly id: string | null;
}

/**
 * An incremental parser of a text/event-stream (the WHATWG rules: lines end in \n, \r\n or \r; a blank line
 * dispatches; `:` starts a comment; `data:` lines join with \n; one space after the colon is dropped).
 */
export function createSseParser(onMessage: (m: SseMessage) => void): { push(text: string): void } {
  let buf = '';
  let skipLf = false;
  let event = '';
  let data: string[] = [];
  let id: string | null = null;
  const line = (l: string): void => {
    if (l === '') {
      if (data.length > 0) onMessage({ event: event === '' ? 'message' : event, data: data.join('\n'), id });
      event = '';
      data = [];
      return;
    }
    if (l.startsWith(':')) return;
    const colon = l.indexOf(':');
    const field = colon < 0 ? l : l.slice(0, colon);
    let value = colon < 0 ? '' : l.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') event = value;
    else if (field === 'data') data.push(value);
    else if (field === 'id' && !value.includes('\0')) id = value;
  };
  return {
    push(text: string): void {
      let s = text;
      if (skipLf && s.startsWith('\n')) s = s.slice(1);
      skipLf = false;
      buf += s;
      for (;;) {
        const m = /\r\n|\r|\n/.exec(buf);
        if (m === null) break;
        // A lone \r at the very end may be the first half of \r\n split across chunks.
        if (m[0] === '\r' && m.index === buf.length - 1) skipLf = true;
        line(buf.slice(0, m.index));
        buf = buf.slice(m.index + m[0].length);
      }
    },
  };
}

/** One event from /v1/events: its type and parsed data. */
export type StreamEvent =
  | { readonly type: 'migration'; readonly data: { readonly type: 'migration'; readonly migration: MigrationView }; readonly raw: string }
  | { readonly type: 'progress'; readonly data: { readonly type: 'progress'; readonly jobId: string; readonly vm: string; readonly progress: MigrationProgress }; readonly raw: string }
  | { readonly type: string; readonly data: unknown; readonly raw: string };

type Query = Record<string, string | number | boolean | undefined>;

export interface ApiClientOptions {
  /** Per request (not the event stream). Default 30 s. */
  readonly timeoutMs?: number;
}

export class ApiClient {
  readonly baseUrl: string;
  private readonly token: string | null;
  private readonly timeoutMs: number;

  constructor(target: Pick<ApiTarget, 'baseUrl' | 'token'>, opts: ApiClientOptions = {}) {
    this.baseUrl = target.baseUrl;
    this.token = target.token;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  private url(path: string, q: Query = {}): string {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) if (v !== undefined) qs.set(k, String(v));
    const s = qs.toString();
    return `${this.baseUrl}${path}${s === '' ? '' : `?${s}`}`;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return { accept: 'application/json', ...(this.token !== null ? { authorization: `Bearer ${this.token}` } : {}), ...extra };
  }

  private async send(method: string, path: string, q: Query, body: unknown, accept: string, timeoutMs: number | null, signal?: AbortSignal): Promise<Response> {
    const signals = [...(timeoutMs !== null ? [AbortSignal.timeout(timeoutMs)] : []), ...(signal !== undefined ? [signal] : [])];
    try {
      return await fetch(this.url(path, q), {
        method,
        headers: this.headers({ accept, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }),
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        ...(signals.length > 0 ? { signal: signals.length === 1 ? signals[0]! : AbortSignal.any(signals) } : {}),
      });
    } catch (e) {
      throw new AppError('API_UNREACHABLE', `cannot reach the manager at ${this.baseUrl}: ${connectionProblem(e, timeoutMs ?? 0)}`, { retryable: true, cause: e });
    }
  }

  /** Turns an error answer into an ApiRequestError that names the call and carries the API's code and message. */
  private async failure(method: string, path: string, res: Response): Promise<ApiRequestError> {
    const text = await res.text().catch(() => '');
    let code = `HTTP_${res.status}`;
    let message = text.trim().slice(0, 200) || res.statusText;
    let field: string | null = null;
    let leader: string | null | undefined;
    try {
      const j = JSON.parse(text) as { error?: { code?: unknown; message?: unknown; field?: unknown; leader?: unknown } };
      if (isObj(j.error)) {
        if (typeof j.error.code === 'string') code = j.error.code;
        if (typeof j.error.message === 'string') message = j.error.message;
        if (typeof j.error.field === 'string') field = j.error.field;
        if (typeof j.error.leader === 'string' || j.error.leader === null) leader = j.error.leader;
      }
    } catch {
      // not JSON: keep the start of the text
    }
    let hint = '';
    if (res.status === 401) {
      hint = this.token === null
        ? '; no token was sent: give one with --token, VMSHADOW_TOKEN or ~/.config/vmshadow/cli.json'
        : '; the manager does not know the token sent (--token, VMSHADOW_TOKEN or ~/.config/vmshadow/cli.json)';
    } else if (res.status === 403) {
      hint = '; this needs the admin token';
    } else if (code === 'NOT_LEADER' && leader !== undefined) {
      hint = leader === null ? '; no leader is known right now, try again shortly' : `; send it to the leader, ${leader}`;
    }
    return new ApiRequestError(res.status, code, `${method} ${path} (${this.baseUrl}) failed with ${res.status}: ${message}${hint}`, message, field);
  }

  private async call<T>(method: string, path: string, opts: { query?: Query; body?: unknown; timeoutMs?: number } = {}): Promise<T> {
    const res = await this.send(method, path, opts.query ?? {}, opts.body, 'application/json', opts.timeoutMs ?? this.timeoutMs);
    if (!res.ok) throw await this.failure(method, path, res);
    const text = await res.text();
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new AppError('API_BAD_RESPONSE',
        `${method} ${path}: ${this.baseUrl} answered ${res.status} with something that is not JSON (${res.headers.get('content-type') ?? 'no content type'}: ${JSON.stringify(text.slice(0, 60))}); is it a VMShadow manager?`);
    }
  }

  health(): Promise<{ ok: boolean; replica: string; leader: boolean; store: string; schemaVersion: number }> {
    return this.call('GET', '/healthz');
  }

  sites(): Promise<Page<SiteRecord>> {
    return this.call('GET', '/v1/sites');
  }

  site(id: string): Promise<SiteRecord> {
    return this.call('GET', `/v1/sites/${encodeURIComponent(id)}`);
  }

  hosts(): Promise<Page<HostRecord>> {
    return this.call('GET', '/v1/hosts');
  }

  links(): Promise<Page<LinkRecord>> {
    return this.call('GET', '/v1/links');
  }

  users(): Promise<Page<UserRecord>> {
    return this.call('GET', '/v1/users');
  }

  user(id: string): Promise<{ user: UserRecord; rtts: LogEntry<RttPoint>[] }> {
    return this.call('GET', `/v1/users/${encodeURIComponent(id)}`);
  }

  vms(q: { site?: string; sensitive?: boolean; limit?: number; after?: string } = {}): Promise<Page<VmRecord> & { next: string | null }> {
    return this.call('GET', '/v1/vms', { query: q });
  }

  vm(id: string, q: { history?: number } = {}): Promise<{ vm: VmRecord; fingerprints: LogEntry<FingerprintPoint>[] }> {
    return this.call('GET', `/v1/vms/${encodeURIComponent(id)}`, { query: q });
  }

  setVmFlags(id: string, flags: { pinned?: boolean; excluded?: boolean }): Promise<VmRecord> {
    return this.call('PATCH', `/v1/vms/${encodeURIComponent(id)}`, { body: flags });
  }

  plans(q: { status?: PlanStatus; limit?: number } = {}): Promise<Page<PlanRecord>> {
    return this.call('GET', '/v1/plans', { query: q });
  }

  plan(id: string): Promise<PlanRecord> {
    return this.call('GET', `/v1/plans/${encodeURIComponent(id)}`);
  }

  approvePlan(id: string): Promise<PlanRecord> {
    return this.call('POST', `/v1/plans/${encodeURIComponent(id)}/approve`, { body: {} });
  }

  rejectPlan(id: string, reason?: string): Promise<PlanRecord> {
    return this.call('POST', `/v1/plans/${encodeURIComponent(id)}/reject`, { body: reason === undefined ? {} : { reason } });
  }

  migrations(q: { active?: boolean; limit?: number } = {}): Promise<Page<MigrationView>> {
    return this.call('GET', '/v1/migrations', { query: q });
  }

  migration(id: string): Promise<MigrationView> {
    return this.call('GET', `/v1/migrations/${encodeURIComponent(id)}`);
  }

  cancelMigration(id: string): Promise<MigrationView> {
    return this.call('POST', `/v1/migrations/${encodeURIComponent(id)}/cancel`, { body: {} });
  }

  rounds(q: { limit?: number } = {}): Promise<Page<RoundRecord>> {
    return this.call('GET', '/v1/rounds', { query: q });
  }

  /** Runs a round now; the answer comes once it is recorded, so this waits up to 10 minutes. */
  runRound(): Promise<RoundRecord> {
    return this.call('POST', '/v1/rounds', { body: {}, timeoutMs: Math.max(this.timeoutMs, 600_000) });
  }

  audit(q: { after?: number; key?: string; order?: 'asc' | 'desc'; limit?: number } = {}): Promise<Page<LogEntry<AuditEvent>>> {
    return this.call('GET', '/v1/audit', { query: q });
  }

  settings(): Promise<Settings> {
    return this.call('GET', '/v1/settings');
  }

  updateSettings(patch: SettingsPatch): Promise<Settings> {
    return this.call('PATCH', '/v1/settings', { body: patch });
  }

  /**
   * Opens the event stream and resolves once the manager has answered (it subscribes before it answers, so
   * anything read from the API after this resolves is also covered by the stream). The iterator ends when the
   * manager closes the stream or `signal` aborts; a connection that breaks mid-stream throws API_STREAM_BROKEN,
   * and the caller decides whether to reconnect.
   */
  async openEvents(opts: { types?: readonly string[]; signal?: AbortSignal } = {}): Promise<AsyncGenerator<StreamEvent>> {
    const path = '/v1/events';
    const query = opts.types !== undefined && opts.types.length > 0 ? { types: opts.types.join(',') } : {};
    const res = await this.send('GET', path, query, undefined, 'text/event-stream', null, opts.signal);
    if (!res.ok) throw await this.failure('GET', path, res);
    return this.readEvents(res, opts.signal);
  }

  /** The event stream as one iterator (opened on the first next()). */
  async *events(opts: { types?: readonly string[]; signal?: AbortSignal } = {}): AsyncGenerator<StreamEvent> {
    yield* await this.openEvents(opts);
  }

  private async *readEvents(res: Response, signal: AbortSignal | undefined): AsyncGenerator<StreamEvent> {
    if (res.body === null) return;
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    const queue: SseMessage[] = [];
    const parser = createSseParser((m) => queue.push(m));
    try {
      for (;;) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (e) {
          if (signal?.aborted === true) return;
          throw new AppError('API_STREAM_BROKEN', `the event stream from ${this.baseUrl} broke: ${connectionProblem(e, 0)}`, { retryable: true, cause: e });
        }
        parser.push(chunk.done ? decoder.decode() : decoder.decode(chunk.value, { stream: true }));
        while (queue.length > 0) {
          const m = queue.shift()!;
          let data: unknown;
          try {
            data = JSON.parse(m.data);
          } catch {
            throw new AppError('API_BAD_RESPONSE', `the event stream from ${this.baseUrl} sent a '${m.event}' event whose data is not JSON: ${JSON.stringify(m.data.slice(0, 60))}`);
          }
          yield { type: m.event, data, raw: m.data };
        }
        if (chunk.done) return;
      }
    } finally {
      await reader.cancel().catch(() => undefined);
    }
  }
}
