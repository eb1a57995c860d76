// The event stream over a real socket, read by a plain HTTP client as a browser's EventSource would.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { vmId } from '../../core/ids.js';
import { job, progress, T0 } from '../../testing/api-fixtures.js';
import { startTestApi, type TestApi } from '../../testing/api-harness.js';
import { parseEventTypes, sseFrame } from './events.js';

interface Frame {
  readonly event: string | null;
  readonly data: string | null;
  readonly comment: string | null;
}

/** An SSE connection: frames as they arrive, and a way to wait for one. */
interface SseClient {
  readonly res: IncomingMessage;
  readonly req: ClientRequest;
  readonly frames: Frame[];
  next(pred: (f: Frame) => boolean, timeoutMs?: number): Promise<Frame>;
  readonly ended: Promise<void>;
}

function connect(port: number, path: string, headers: Record<string, string> = {}): Promise<SseClient> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      const frames: Frame[] = [];
      const waiters: { pred: (f: Frame) => boolean; done: (f: Frame) => void }[] = [];
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buf += chunk;
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event: string | null = null;
          let data: string | null = null;
          let comment: string | null = null;
          for (const line of block.split('\n')) {
            if (line.startsWith(':')) comment = line.slice(1).trim();
            else if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data = line.slice(6);
          }
          const f = { event, data, comment };
          frames.push(f);
          for (const w of [...waiters]) {
            if (w.pred(f)) {
              waiters.splice(waiters.indexOf(w), 1);
              w.done(f);
            }
          }
        }
      });
      const ended = new Promise<void>((r) => {
        res.on('end', r);
        res.on('close', r);
      });
      resolve({
        res, req, frames, ended,
        next(pred, timeoutMs = 5000) {
          const seen = frames.find(pred);
          if (seen !== undefined) return Promise.resolve(seen);
          return new Promise((ok, fail) => {
            const timer = setTimeout(() => fail(new Error(`no matching frame within ${timeoutMs} ms; got ${JSON.stringify(frames)}`)), timeoutMs);
            waiters.push({ pred, done: (f) => { clearTimeout(timer); ok(f); } });
          });
        },
      });
    });
    req.on('error', reject);
    req.end();
  });
}

async function until(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

describe('GET /v1/events (Server-Sent Events over a real socket)', () => {
  let t: TestApi;
  let port: number;
  const clients: SseClient[] = [];
  before(async () => {
    t = await startTestApi({ sseHeartbeatMs: 100 });
    await t.app.listen({ host: '127.0.0.1', port: 0 });
    port = (t.app.server.address() as AddressInfo).port;
  });
  after(async () => {
    for (const c of clients) c.req.destroy();
    await t.close();
  });

  it('delivers a published migration as a MigrationView, skipping types the client did not ask for', async () => {
    const c = await connect(port, `/v1/events?types=migration,progress&token=${t.readToken}`);
    clients.push(c);
    assert.equal(c.res.statusCode, 200);
    assert.match(String(c.res.headers['content-type']), /^text\/event-stream/);
    await c.next((f) => f.comment?.startsWith('connected') === true);
    assert.equal(t.bus.listeners, 1);
    t.bus.publish({ type: 'round', round: { id: 'r-x' } as never });
    const j = job('job-9', 'vm-desk-1', 'us-east', 'eu-central', 'running', T0);
    t.bus.publish({ type: 'migration', job: j });
    t.bus.publish({ type: 'progress', jobId: 'job-9', vm: vmId('vm-desk-1'), progress: progress('job-9', T0 + 5000, 3e9, 1e9, 4e9) });
    const m = await c.next((f) => f.event === 'migration');
    const data = JSON.parse(m.data ?? '') as { type: string; migration: { id: string; percent: number; state: string } };
    assert.equal(data.type, 'migration');
    assert.deepEqual([data.migration.id, data.migration.percent, data.migration.state], ['job-9', 50, 'running:precopy']);
    const p = await c.next((f) => f.event === 'progress');
    const pd = JSON.parse(p.data ?? '') as { type: string; jobId: string; vm: string; progress: { remainingBytes: number } };
    assert.deepEqual([pd.type, pd.jobId, pd.vm, pd.progress.remainingBytes], ['progress', 'job-9', 'vm-desk-1', 1e9]);
    assert.ok(!c.frames.some((f) => f.event === 'round'), 'the round event was filtered out');
  });

  it('sends a heartbeat comment while nothing happens', async () => {
    const c = await connect(port, '/v1/events', t.reader);
    clients.push(c);
    await c.next((f) => f.comment?.startsWith('heartbeat') === true, 2000);
  });

  it('unsubscribes from the event bus when the client goes away', async () => {
    const before = t.bus.listeners;
    const c = await connect(port, '/v1/events?types=vm', t.admin);
    await c.next((f) => f.comment?.startsWith('connected') === true);
    assert.equal(t.bus.listeners, before + 1);
    c.req.destroy();
    await until(() => t.bus.listeners === before, 'the listener to go');
    t.bus.publish({ type: 'settings', settings: { mode: 'auto' } as never }); // nobody left to write to: no throw
  });

  it('refuses a missing or wrong token with 401 JSON before any stream starts', async () => {
    const none = await connect(port, '/v1/events');
    assert.equal(none.res.statusCode, 401);
    assert.match(String(none.res.headers['content-type']), /^application\/json/);
    await none.ended;
    const wrong = await connect(port, '/v1/events?token=wrong-token-0123456789');
    assert.equal(wrong.res.statusCode, 401);
    await wrong.ended;
  });

  it('ends open streams when the server closes', async () => {
    const s = await startTestApi({ sseHeartbeatMs: 60_000 });
    await s.app.listen({ host: '127.0.0.1', port: 0 });
    const c = await connect((s.app.server.address() as AddressInfo).port, '/v1/events', s.reader);
    try {
      await c.next((f) => f.comment?.startsWith('connected') === true);
      const started = Date.now();
      await s.close();
      await c.ended;
      assert.ok(Date.now() - started < 3000, 'close does not wait for the client');
      assert.equal(s.bus.listeners, 0);
    } finally {
      c.req.destroy();
    }
  });
});

describe('event stream helpers', () => {
  it('parseEventTypes() reads a comma list and refuses an unknown type naming the field', () => {
    assert.equal(parseEventTypes(undefined), null);
    assert.equal(parseEventTypes(' '), null);
    assert.deepEqual([...(parseEventTypes('plan, migration,,plan') ?? [])], ['plan', 'migration']);
    assert.throws(() => parseEventTypes('plan,planz'), /querystring\.types: "planz" is not an event type/);
  });

  it('sseFrame() writes one event line and one data line, newlines inside values escaped', () => {
    const f = sseFrame({ type: 'audit', entry: { seq: 1, key: 'k', atMs: 0, value: { kind: 'x', actor: 'a', message: 'two\nlines' } } });
    assert.equal(f.split('\n').length, 4);
    assert.ok(f.startsWith('event: audit\ndata: {'));
    assert.ok(f.endsWith('\n\n'));
  });
});
