/// <reference lib="dom" />
// Browser-only: the REST calls and the SSE stream, on the page's own origin. The admin token (asked for once,
// kept in localStorage) goes in the Authorization header, and as ?token= on the stream (EventSource cannot
// set headers). Without a token reads still work when the manager runs with --open-reads.
import { STREAM_EVENT_TYPES, type StreamEvent } from './state.js';

const TOKEN_KEY = 'vmshadow.token';

export function getToken(): string | null {
  try {
    const t = localStorage.getItem(TOKEN_KEY);
    return t === null || t.trim() === '' ? null : t;
  } catch {
    return null;
  }
}

export function setToken(token: string | null): void {
  try {
    if (token === null || token.trim() === '') localStorage.removeItem(TOKEN_KEY);
    else localStorage.setItem(TOKEN_KEY, token.trim());
  } catch {
    // Storage disabled (private mode): the token lives until the page reloads.
  }
  memoryToken = token === null || token.trim() === '' ? null : token.trim();
}

let memoryToken: string | null = null;
const currentToken = (): string | null => getToken() ?? memoryToken;

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }

  /** The call needs a (better) token: none, unknown, or read-only on a mutation. */
  get needsToken(): boolean {
    return this.status === 401 || this.status === 403;
  }
}

export async function api<T>(path: string, init: { method?: string; body?: unknown } = {}): Promise<T> {
  const headers: Record<string, string> = { accept: 'application/json' };
  const token = currentToken();
  if (token !== null) headers.authorization = `Bearer ${token}`;
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  let res: Response;
  try {
    res = await fetch(path, {
      method: init.method ?? 'GET',
      headers,
      body: init.body === undefined ? null : JSON.stringify(init.body),
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'UNREACHABLE', `${init.method ?? 'GET'} ${path} failed: the manager is unreachable (${String(e)})`);
  }
  const text = await res.text();
  let body: unknown = null;
  try {
    body = text === '' ? null : JSON.parse(text);
  } catch {
    body = null;
  }
  if (!res.ok) {
    const err = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
    const code = typeof err?.code === 'string' ? err.code : `HTTP_${res.status}`;
    const msg = typeof err?.message === 'string' ? err.message : `${init.method ?? 'GET'} ${path} answered ${res.status}`;
    throw new ApiError(res.status, code, msg);
  }
  return body as T;
}

export type StreamStatus = 'connecting' | 'live' | 'down';

export interface StreamHandlers {
  onEvent(ev: StreamEvent): void;
  onStatus(status: StreamStatus): void;
  /** The stream came back after a gap: events may have been missed, reload the picture. */
  onReopen(): void;
}

/**
 * Keeps one EventSource open. The browser retries a dropped connection by itself; when it gives up (the
 * server answered an error status, e.g. 503 from a replica restarting) this opens a new one after a back-off
 * of 1 s doubling to 15 s.
 */
export function connectStream(h: StreamHandlers): { close(): void } {
  let es: EventSource | null = null;
  let closed = false;
  let hadGap = false;
  let backoffMs = 1000;
  let timer: ReturnType<typeof setTimeout> | null = null;

  const open = (): void => {
    if (closed) return;
    const token = currentToken();
    es = new EventSource(token === null ? '/v1/events' : `/v1/events?token=${encodeURIComponent(token)}`);
    h.onStatus('connecting');
    es.addEventListener('open', () => {
      backoffMs = 1000;
      h.onStatus('live');
      if (hadGap) h.onReopen();
      hadGap = false;
    });
    es.addEventListener('error', () => {
      hadGap = true;
      if (es === null) return;
      if (es.readyState === EventSource.CLOSED) {
        h.onStatus('down');
        es.close();
        es = null;
        timer = setTimeout(open, backoffMs);
        backoffMs = Math.min(15_000, backoffMs * 2);
      } else {
        h.onStatus('connecting');
      }
    });
    for (const type of STREAM_EVENT_TYPES) {
      es.addEventListener(type, (msg: MessageEvent<string>) => {
        let ev: StreamEvent;
        try {
          ev = JSON.parse(msg.data) as StreamEvent;
        } catch {
          console.warn(`The event stream sent a '${type}' event that is not JSON; skipped`);
          return;
        }
        if (ev === null || typeof ev !== 'object' || ev.type !== type) return;
        h.onEvent(ev);
      });
    }
  };

  open();
  return {
    close() {
      closed = true;
      if (timer !== null) clearTimeout(timer);
      es?.close();
      es = null;
    },
  };
}
