// The event stream (Server-Sent Events): what the manager announces, as it happens. A 'migration' event
// carries a MigrationView (what clients show), not the raw JobRecord.
import type { ServerResponse } from 'node:http';
import { Type } from 'typebox';
import type { ManagerEvent, ManagerEventType } from '../events.js';
import { migrationView } from '../views.js';
import { type Api, type ApiDeps } from './context.js';
import { badInput } from './errors.js';
import { EVENT_TYPES, EventsQuery, errorResponses, responses } from './schemas.js';

/** A client this far behind (bytes queued in its socket) is dropped rather than buffered without end. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

export function parseEventTypes(raw: string | undefined): ReadonlySet<ManagerEventType> | null {
  if (raw === undefined || raw.trim() === '') return null;
  const out = new Set<ManagerEventType>();
  for (const t of raw.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    if (!(EVENT_TYPES as readonly string[]).includes(t)) {
      throw badInput('querystring.types', raw, `"${t}" is not an event type (known: ${EVENT_TYPES.join(', ')})`);
    }
    out.add(t as ManagerEventType);
  }
  return out;
}

/** The SSE frame of one event. */
export function sseFrame(e: ManagerEvent): string {
  const data = e.type === 'migration' ? { type: 'migration', migration: migrationView(e.job) } : e;
  return `event: ${e.type}\ndata: ${JSON.stringify(data)}\n\n`;
}

export interface SseStreams {
  /** Ends every open stream (before the server closes). */
  closeAll(): void;
  readonly size: number;
}

export function registerEvents(app: Api, deps: ApiDeps): SseStreams {
  const open = new Set<ServerResponse>();

  app.get('/v1/events', {
    // A HEAD would open a stream that never sends anything.
    exposeHeadRoute: false,
    schema: {
      tags: ['events'],
      summary: 'Server-Sent Events: round, plan, migration, progress, fingerprint, vm, user, audit, settings',
      description: 'Each event is `event: <type>` and `data: <json>`; a comment line arrives every 15 s as a heartbeat. '
        + 'The token may be passed as ?token= because EventSource cannot set headers.',
      querystring: EventsQuery,
      response: responses({
        200: { description: 'An endless text/event-stream', content: { 'text/event-stream': { schema: Type.String() } } },
        ...errorResponses(400, 401),
      }),
    },
  }, (req, reply) => {
    const types = parseEventTypes(req.query.types);
    reply.hijack();
    const res = reply.raw;
    let closed = false;
    // Subscribed before the answer goes out: whatever a client reads after it sees the stream open is covered.
    const unsubscribe = deps.events.subscribe((e) => {
      if (types === null || types.has(e.type)) write(sseFrame(e));
    });
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    res.write(`retry: 3000\n: connected to ${deps.control.replica}\n\n`);
    open.add(res);
    deps.metrics.sseClients(open.size);
    deps.metrics.apiRequest('/v1/events', 200);

    function write(chunk: string): void {
      if (closed) return;
      if (res.writableLength > MAX_BUFFERED_BYTES) {
        req.log.warn({ bufferedBytes: res.writableLength }, 'event stream client too slow: dropped');
        res.destroy();
        return;
      }
      res.write(chunk);
    }
    const heartbeat = setInterval(() => write(`: heartbeat ${Date.now()}\n\n`), deps.sseHeartbeatMs);
    heartbeat.unref();
    const cleanup = (): void => {
      if (closed) return;
      closed = true;
      clearInterval(heartbeat);
      unsubscribe();
      open.delete(res);
      deps.metrics.sseClients(open.size);
    };
    // The response closes when the client goes away (or the stream is ended): that is the one signal needed.
    res.on('close', cleanup);
    res.on('error', cleanup);
    if (res.destroyed) cleanup();
  });

  return {
    closeAll() {
      for (const res of [...open]) res.end();
    },
    get size() {
      return open.size;
    },
  };
}
