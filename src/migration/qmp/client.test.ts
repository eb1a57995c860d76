import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { FakeQmpServer, type FakeQmpOptions } from '../../testing/fake-qmp.js';
import { QmpClient, type QmpClientOptions, type QmpEvent } from './client.js';
import { QemuMonitor } from './commands.js';
import { QmpClosedError, QmpError, QmpProtocolError, QmpTimeoutError } from './errors.js';

const servers: FakeQmpServer[] = [];
const clients: QmpClient[] = [];

async function setup(fakeOpts: FakeQmpOptions = {}, clientOpts: QmpClientOptions = {}): Promise<{ fake: FakeQmpServer; qmp: QmpClient }> {
  const fake = await FakeQmpServer.start(fakeOpts);
  servers.push(fake);
  const qmp = await QmpClient.connect(fake.target, { connectTimeoutMs: 2000, defaultTimeoutMs: 2000, ...clientOpts });
  clients.push(qmp);
  return { fake, qmp };
}

function socketOf(fake: FakeQmpServer): string {
  return 'path' in fake.target ? fake.target.path : `${fake.target.host}:${fake.target.port}`;
}

async function rejectsWithin<E extends Error>(p: Promise<unknown>, type: new (...a: never[]) => E, maxMs: number): Promise<{ err: E; ms: number }> {
  const t0 = Date.now();
  try {
    await p;
  } catch (err) {
    const ms = Date.now() - t0;
    assert.ok(err instanceof type, `expected ${type.name}, got ${String(err)}`);
    assert.ok(ms <= maxMs, `took ${ms} ms, more than ${maxMs}`);
    return { err, ms };
  }
  assert.fail(`expected a ${type.name}, but the promise resolved`);
}

afterEach(async () => {
  for (const c of clients.splice(0)) await c.close();
  for (const s of servers.splice(0)) await s.stop();
});

describe('QmpClient.connect()', () => {
  it('reads the greeting, exposes the version and negotiates capabilities before any command', async () => {
    const { fake, qmp } = await setup({ version: { major: 7, minor: 2, micro: 22, package: 'Debian 1:7.2' }, capabilities: ['oob'] });
    assert.deepEqual(qmp.version, { major: 7, minor: 2, micro: 22, package: 'Debian 1:7.2' });
    assert.deepEqual(qmp.greeting.capabilities, ['oob']);
    assert.equal(qmp.oobEnabled, false);
    assert.deepEqual(fake.received.map((c) => [c.command, c.args]), [['qmp_capabilities', {}]]);
  });

  it('enables oob only when asked and offered, and then sends exec-oob', async () => {
    const { fake, qmp } = await setup({ capabilities: ['oob'], handlers: { 'migrate-pause': { return: {} } } }, { oob: true });
    assert.equal(qmp.oobEnabled, true);
    assert.deepEqual(fake.received[0]?.args, { enable: ['oob'] });
    await qmp.execute('migrate-pause', undefined, { oob: true });
    assert.equal(fake.received[1]?.oob, true);

    const plain = await setup({ capabilities: [] }, { oob: true });
    assert.equal(plain.qmp.oobEnabled, false);
    await assert.rejects(plain.qmp.execute('migrate-pause', undefined, { oob: true }), /oob was not negotiated/);
  });

  it('works over TCP as well as a unix socket', async () => {
    const { qmp } = await setup({ tcp: true });
    assert.match(qmp.socketName, /^127\.0\.0\.1:\d+$/);
    assert.equal((await new QemuMonitor(qmp).queryStatus()).status, 'running');
  });

  it('times out, naming the stage and the likely cause, when the monitor never greets', async () => {
    const fake = await FakeQmpServer.start({ greeting: false });
    servers.push(fake);
    const { err } = await rejectsWithin(QmpClient.connect(fake.target, { connectTimeoutMs: 200 }), QmpTimeoutError, 1500);
    assert.match(err.message, /timed out after 200 ms while waiting for the greeting; another client may hold the monitor/);
  });

  it('fails fast with QmpClosedError when nothing listens on the socket', async () => {
    const { err } = await rejectsWithin(QmpClient.connect({ path: '/nonexistent/vmshadow.qmp' }), QmpClosedError, 1000);
    assert.equal(err.reason, 'connect-failed');
    assert.match(err.message, /QMP connect to \/nonexistent\/vmshadow\.qmp failed while connecting: .*ENOENT/);
  });

  it('with retryRefused, waits for a socket that appears after the connect began (a QEMU just started)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qmp-retry-'));
    try {
      const path = join(dir, 'late.qmp');
      const connecting = QmpClient.connect({ path }, { connectTimeoutMs: 2000, retryRefused: true });
      await new Promise((r) => setTimeout(r, 150));
      servers.push(await FakeQmpServer.start({ path }));
      const qmp = await connecting;
      clients.push(qmp);
      assert.equal(qmp.isConnected, true);
      // Without the option a missing socket fails at once.
      await assert.rejects(QmpClient.connect({ path: join(dir, 'none.qmp') }, { connectTimeoutMs: 2000 }), /ENOENT/);
      const { err } = await rejectsWithin(QmpClient.connect({ path: join(dir, 'none.qmp') }, { connectTimeoutMs: 200, retryRefused: true }), QmpTimeoutError, 1000);
      assert.match(err.message, /while connecting \(attempt \d+, the socket refused: ENOENT\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('keeps an event QEMU sent before its greeting (a connection accepted while QEMU starts)', async () => {
    const early = '{"timestamp": {"seconds": 1700000000, "microseconds": 0}, "event": "RESUME"}\r\n';
    const greeting = '{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}, "package": ""}, "capabilities": ["oob"]}}\r\n';
    const fake = await FakeQmpServer.start({ greeting: early + greeting });
    servers.push(fake);
    const qmp = await QmpClient.connect(fake.target, { connectTimeoutMs: 1000 });
    clients.push(qmp);
    assert.equal(qmp.version.micro, 22);
    assert.deepEqual(qmp.recentEvents().map((e) => e.event), ['RESUME']);
  });

  it('refuses a peer whose first message is not a QMP greeting', async () => {
    const fake = await FakeQmpServer.start({ greeting: '{"hello": "world"}\n' });
    servers.push(fake);
    const { err } = await rejectsWithin(QmpClient.connect(fake.target, { connectTimeoutMs: 1000 }), QmpClosedError, 1000);
    assert.equal(err.reason, 'protocol-error');
    assert.ok(err.cause instanceof QmpProtocolError);
  });

  it('surfaces a refused qmp_capabilities as a QmpError', async () => {
    const fake = await FakeQmpServer.start({ handlers: { qmp_capabilities: { error: { class: 'GenericError', desc: 'no' } } } });
    servers.push(fake);
    const { err } = await rejectsWithin(QmpClient.connect(fake.target, { connectTimeoutMs: 1000 }), QmpError, 1000);
    assert.equal(err.command, 'qmp_capabilities');
  });
});

describe('QmpClient.execute()', () => {
  it('routes replies by id when they come back out of order between events', async () => {
    const { fake, qmp } = await setup({
      handlers: {
        slow: (call) => ({ return: { who: 'slow', got: call.args }, delayMs: 120 }),
        fast: (call) => ({ return: { who: 'fast', got: call.args }, eventsBefore: [{ event: 'TICK', data: { n: 1 } }] }),
      },
    });
    const seen: string[] = [];
    qmp.onEvent((e) => seen.push(e.event));
    const slow = qmp.execute('slow', { n: 1 });
    const fast = qmp.execute('fast', { n: 2 });
    const order: string[] = [];
    void slow.then(() => order.push('slow'));
    void fast.then(() => order.push('fast'));
    fake.emitEvent('BETWEEN', { x: true });
    assert.deepEqual(await Promise.all([slow, fast]), [{ who: 'slow', got: { n: 1 } }, { who: 'fast', got: { n: 2 } }]);
    assert.deepEqual(order, ['fast', 'slow']);
    assert.deepEqual(new Set(seen), new Set(['TICK', 'BETWEEN']));
    const ids = fake.received.map((c) => c.id);
    assert.equal(new Set(ids).size, ids.length, 'every command carries its own id');
  });

  it('reassembles a reply sent one byte at a time, and splits several messages sent in one write', async () => {
    const { fake, qmp } = await setup({ handlers: { bytewise: { hang: true }, merged: { hang: true } } });
    const bytewise = qmp.execute('bytewise');
    const call1 = await fake.waitForCommand('bytewise');
    const reply = `{"return": {"text": "h\u00e9llo \u2603"}, "id": ${JSON.stringify(call1.id)}}\r\n`;
    for (const byte of Buffer.from(reply)) {
      fake.sendRaw(Uint8Array.of(byte));
      await new Promise((r) => setImmediate(r));
    }
    assert.deepEqual(await bytewise, { text: 'h\u00e9llo \u2603' });

    const events: QmpEvent[] = [];
    qmp.onEvent((e) => events.push(e));
    const merged = qmp.execute('merged');
    const call2 = await fake.waitForCommand('merged');
    const ts = '"timestamp": {"seconds": 1700000000, "microseconds": 250000}';
    fake.sendRaw(`{${ts}, "event": "A"}\r\n{"return": 42, "id": ${JSON.stringify(call2.id)}}\r\n{${ts}, "event": "B", "data": {"k": 1}}\r\n`);
    assert.equal(await merged, 42);
    await qmp.waitForEvent('B', null, 1000, { since: 0 });
    assert.deepEqual(events.map((e) => [e.event, e.data, e.timestampMs]), [['A', {}, 1700000000250], ['B', { k: 1 }, 1700000000250]]);
  });

  it('rejects with QmpError carrying QMP\'s error class, the command and the socket', async () => {
    const { fake, qmp } = await setup({
      handlers: { migrate: { error: { class: 'GenericError', desc: "There's a migration process in progress" } }, hold: { hang: true } },
    });
    const hold = qmp.execute('hold', undefined, { timeoutMs: 5000 });
    const err = await qmp.execute('migrate', { uri: 'tcp:10.0.0.2:4444' }).then(
      () => assert.fail('migrate should fail'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof QmpError);
    assert.equal(err.errorClass, 'GenericError');
    assert.equal(err.desc, "There's a migration process in progress");
    assert.equal(err.command, 'migrate');
    assert.equal(err.socket, socketOf(fake));
    assert.equal(err.code, 'QMP_COMMAND_FAILED');
    assert.equal(
      err.message,
      `QMP migrate on ${socketOf(fake)} failed: GenericError: There's a migration process in progress (client connected, 1 other call pending)`,
    );
    const missing = await qmp.execute('no-such-command').catch((e: unknown) => e);
    assert.ok(missing instanceof QmpError);
    assert.equal(missing.errorClass, 'CommandNotFound');
    await qmp.close();
    await assert.rejects(hold, QmpClosedError);
  });

  it('times out a call that gets no reply, stays usable, and drops the late reply', async () => {
    const { fake, qmp } = await setup({ handlers: { slow: { return: 'late', delayMs: 300 }, quick: { return: 'quick' } } });
    const { err, ms } = await rejectsWithin(qmp.execute('slow', undefined, { timeoutMs: 100 }), QmpTimeoutError, 1000);
    assert.ok(ms >= 95, `timed out after ${ms} ms, before its deadline`);
    assert.equal(err.operation, 'slow');
    assert.equal(err.retryable, true);
    assert.match(err.message, /QMP slow on .* got no reply within 100 ms \(client connected, 0 other calls pending, 1 timeout in a row\)/);
    assert.equal(qmp.isConnected, true);
    // The late reply arrives while the next call is pending; it must not be taken for that call's answer.
    const next = qmp.execute('slow', undefined, { timeoutMs: 2000 });
    await new Promise((r) => setTimeout(r, 250));
    assert.equal(await qmp.execute('quick'), 'quick');
    assert.equal(await next, 'late');
    assert.equal(fake.received.filter((c) => c.command === 'slow').length, 2);
  });

  it('closes itself after breakAfterTimeouts calls in a row go unanswered (a wedged monitor)', async () => {
    const { qmp } = await setup({ handlers: { wedge: { hang: true } } }, { breakAfterTimeouts: 2 });
    const waiting = qmp.waitForEvent('NEVER', null, 5000);
    await assert.rejects(qmp.execute('wedge', undefined, { timeoutMs: 50 }), QmpTimeoutError);
    assert.equal(qmp.isConnected, true);
    const { err } = await rejectsWithin(qmp.execute('wedge', undefined, { timeoutMs: 50 }), QmpTimeoutError, 1000);
    assert.match(err.message, /client closing: 2 calls in a row unanswered/);
    assert.equal(qmp.isConnected, false);
    assert.equal(qmp.closeReason, 'timeouts');
    await assert.rejects(waiting, QmpClosedError);
    await assert.rejects(qmp.execute('query-status'), (e: unknown) => e instanceof QmpClosedError && e.reason === 'timeouts');
  });

  it('a reply in between resets the count of timeouts in a row', async () => {
    const { qmp } = await setup({ handlers: { wedge: { hang: true } } }, { breakAfterTimeouts: 2 });
    await assert.rejects(qmp.execute('wedge', undefined, { timeoutMs: 30 }), QmpTimeoutError);
    await qmp.execute('query-status');
    await assert.rejects(qmp.execute('wedge', undefined, { timeoutMs: 30 }), QmpTimeoutError);
    assert.equal(qmp.isConnected, true);
  });

  it('close() rejects every pending call with QmpClosedError and refuses new ones', async () => {
    const { qmp } = await setup({ handlers: { hold: { hang: true } } });
    const calls = [qmp.execute('hold'), qmp.execute('hold')];
    assert.equal(qmp.pendingCalls, 2);
    const outcomes = calls.map((p) => rejectsWithin(p, QmpClosedError, 500));
    await qmp.close();
    for (const o of outcomes) {
      const { err } = await o;
      assert.equal(err.reason, 'closed');
      assert.match(err.message, /QMP hold on .* failed: the client was closed by its owner \(client closed with 2 calls pending\)/);
    }
    await assert.rejects(qmp.execute('query-status'), /QMP query-status on .* failed: the client was closed by its owner/);
    await qmp.close(); // idempotent
    assert.equal((await qmp.closed).reason, 'closed');
  });

  it('rejects pending calls promptly when the peer goes away (QEMU died)', async () => {
    const { fake, qmp } = await setup({ handlers: { hold: { hang: true } } });
    const closedReasons: string[] = [];
    qmp.onClose((e) => closedReasons.push(e.reason));
    const pending = qmp.execute('hold', undefined, { timeoutMs: 10_000 });
    await fake.waitForCommand('hold');
    fake.dropConnections();
    const { err, ms } = await rejectsWithin(pending, QmpClosedError, 500);
    assert.equal(err.reason, 'eof');
    assert.match(err.message, /QEMU exited or was killed/);
    assert.ok(ms < 500);
    assert.deepEqual(closedReasons, ['eof']);
    assert.equal((await qmp.closed).reason, 'eof');
  });

  it('a reply that is an abrupt close fails only with QmpClosedError, not a timeout', async () => {
    const { qmp } = await setup({ handlers: { die: { close: true, delayMs: 20 } } });
    const { err } = await rejectsWithin(qmp.execute('die', undefined, { timeoutMs: 5000 }), QmpClosedError, 1000);
    assert.equal(err.reason, 'eof');
  });

  it('breaks the connection on a line longer than maxLineBytes instead of buffering it', async () => {
    const { fake, qmp } = await setup({ handlers: { huge: { hang: true } } }, { maxLineBytes: 64 * 1024 });
    const pending = rejectsWithin(qmp.execute('huge'), QmpClosedError, 2000);
    await fake.waitForCommand('huge');
    const blob = Buffer.alloc(16 * 1024, 0x61);
    let sent = 0;
    for (let i = 0; i < 8 && qmp.isConnected; i++) {
      fake.sendRaw(blob);
      sent += blob.length;
      await new Promise((r) => setTimeout(r, 5));
    }
    const { err } = await pending;
    assert.ok(sent <= 96 * 1024, `the client read ${sent} bytes of one line before giving up`);
    assert.equal(err.reason, 'protocol-error');
    assert.ok(err.cause instanceof QmpProtocolError);
    assert.match(err.message, /line over 65536 bytes/);
  });

  it('breaks the connection on a line that is not JSON', async () => {
    const { fake, qmp } = await setup({ handlers: { hold: { hang: true } } });
    const pending = qmp.execute('hold');
    await fake.waitForCommand('hold');
    fake.sendRaw('<html>garbage</html>\n');
    const { err } = await rejectsWithin(pending, QmpClosedError, 1000);
    assert.equal(err.reason, 'protocol-error');
    assert.match(err.message, /not JSON: "<html>garbage<\/html>"/);
  });

  it('ignores a reply for an id it never sent, and messages of unknown kind', async () => {
    const { fake, qmp } = await setup();
    fake.sendRaw('{"return": {}, "id": 999999}\n{"something": "else"}\n{"return": {}}\n');
    assert.equal((await new QemuMonitor(qmp).queryStatus()).status, 'running');
    assert.equal(qmp.isConnected, true);
  });

  it('an aborted call rejects at once and its late reply is dropped', async () => {
    const { qmp } = await setup({ handlers: { slow: { return: 1, delayMs: 100 } } });
    const ac = new AbortController();
    const p = qmp.execute('slow', undefined, { signal: ac.signal });
    ac.abort();
    await assert.rejects(p, /abandoned: the caller aborted/);
    await new Promise((r) => setTimeout(r, 150));
    assert.equal(await qmp.execute('query-status').then(() => qmp.isConnected), true);
  });
});

describe('QmpClient events', () => {
  it('waitForEvent() finds an event QEMU sent before the reply of the command that caused it', async () => {
    const { qmp } = await setup();
    await qmp.execute('stop');
    const e = await qmp.waitForEvent('STOP', null, 100);
    assert.equal(e.event, 'STOP');
    // 'now' looks only forward: the STOP already happened.
    await assert.rejects(qmp.waitForEvent('STOP', null, 50, { since: 'now' }), QmpTimeoutError);
  });

  it('waitForEvent() does not match an event from before the last command', async () => {
    const { qmp } = await setup();
    await qmp.execute('stop');
    await qmp.execute('cont');
    const { err } = await rejectsWithin(qmp.waitForEvent('STOP', null, 80), QmpTimeoutError, 1000);
    assert.match(err.message, /wait for event STOP on .*: none within 80 ms/);
    const resume = await qmp.waitForEvent('RESUME', null, 100);
    assert.equal(resume.event, 'RESUME');
  });

  it('waitForEvent() with a cursor sees events after it, filtered by the predicate, as they arrive', async () => {
    const { fake, qmp } = await setup();
    const cursor = qmp.eventCursor();
    fake.emitEvent('MIGRATION', { status: 'setup' });
    fake.emitEvent('MIGRATION', { status: 'active' });
    const active = await qmp.waitForEvent('MIGRATION', (e) => e.data['status'] === 'active', 1000, { since: cursor });
    assert.equal(active.data['status'], 'active');
    const done = qmp.waitForEvent('MIGRATION', (e) => e.data['status'] === 'completed', 1000, { since: qmp.eventCursor() });
    setTimeout(() => fake.emitEvent('MIGRATION', { status: 'completed' }), 30);
    assert.equal((await done).data['status'], 'completed');
    assert.ok((await done).seq > active.seq);
  });

  it('waitForEvent() refuses to look back past what the buffer still holds', async () => {
    const { fake, qmp } = await setup({}, { eventBufferSize: 4 });
    const cursor = qmp.eventCursor();
    for (let i = 0; i < 10; i++) fake.emitEvent('TICK', { i });
    await qmp.waitForEvent('TICK', (e) => e.data['i'] === 9, 1000, { since: 'now' }).catch(() => undefined);
    while (qmp.eventCursor() < 10) await new Promise((r) => setTimeout(r, 5));
    assert.equal(qmp.recentEvents().length, 4);
    await assert.rejects(qmp.waitForEvent('NEVER', null, 50, { since: cursor }), /cannot look back to event 0/);
  });

  it('events() yields every event in order and ends when the connection closes', async () => {
    const { fake, qmp } = await setup();
    const collected: string[] = [];
    const reading = (async () => {
      for await (const e of qmp.events()) collected.push(`${e.event}:${String(e.data['n'])}`);
    })();
    for (let n = 0; n < 5; n++) fake.emitEvent('TICK', { n });
    while (qmp.eventCursor() < 5) await new Promise((r) => setTimeout(r, 5));
    fake.dropConnections();
    await reading;
    assert.deepEqual(collected, ['TICK:0', 'TICK:1', 'TICK:2', 'TICK:3', 'TICK:4']);
  });

  it('events() throws rather than queue without bound behind a slow consumer', async () => {
    const { fake, qmp } = await setup();
    const it = qmp.events({ maxQueued: 3 });
    for (let n = 0; n < 6; n++) fake.emitEvent('TICK', { n });
    while (qmp.eventCursor() < 6) await new Promise((r) => setTimeout(r, 5));
    const got: number[] = [];
    await assert.rejects(
      (async () => {
        for (;;) {
          const r = await it.next();
          if (r.done === true) break;
          got.push(r.value.data['n'] as number);
        }
      })(),
      /overflowed: the consumer fell 3 events behind/,
    );
    assert.deepEqual(got, [0, 1, 2]);
  });

  it('a throwing event listener does not break the client', async () => {
    const { fake, qmp } = await setup();
    qmp.onEvent(() => {
      throw new Error('listener bug');
    });
    const cursor = qmp.eventCursor();
    fake.emitEvent('X');
    await qmp.waitForEvent('X', null, 1000, { since: cursor });
    assert.equal((await new QemuMonitor(qmp).queryStatus()).running, true);
  });
});

describe('QemuMonitor over the fake', () => {
  it('sends QEMU\'s argument spellings: capability lists, kebab-case parameters, nbd export type', async () => {
    const { fake, qmp } = await setup({
      handlers: {
        'migrate-set-capabilities': { return: {} },
        'migrate-set-parameters': { return: {} },
        'block-export-add': { return: {} },
        'block-job-cancel': { return: {} },
      },
    });
    const mon = new QemuMonitor(qmp);
    await mon.setMigrationCapabilities({ multifd: true, xbzrle: false });
    await mon.setMigrationParameters({ 'max-bandwidth': 6_250_000, 'downtime-limit': 300, 'tls-creds': undefined });
    await mon.blockExportAddNbd({ id: 'exp0', 'node-name': 'disk0', writable: true });
    await mon.blockJobCancel('mirror0');
    assert.deepEqual(
      fake.received.slice(1).map((c) => [c.command, c.args]),
      [
        ['migrate-set-capabilities', { capabilities: [{ capability: 'multifd', state: true }, { capability: 'xbzrle', state: false }] }],
        ['migrate-set-parameters', { 'max-bandwidth': 6_250_000, 'downtime-limit': 300 }],
        ['block-export-add', { type: 'nbd', id: 'exp0', 'node-name': 'disk0', writable: true }],
        ['block-job-cancel', { device: 'mirror0' }],
      ],
    );
  });

  it('quit() counts the connection closing right after as success', async () => {
    const { qmp } = await setup({ handlers: { quit: { close: true } } });
    await new QemuMonitor(qmp).quit();
    assert.equal((await qmp.closed).reason, 'eof');
  });

  it('rejects a reply of the wrong shape with a QmpProtocolError', async () => {
    const { qmp } = await setup({ handlers: { 'query-block-jobs': { return: { not: 'an array' } }, 'query-status': { return: { status: 1 } } } });
    const mon = new QemuMonitor(qmp, 'vm-7 monitor');
    await assert.rejects(mon.queryBlockJobs(), /QMP query-block-jobs on vm-7 monitor returned \{"not":"an array"\}, not an array/);
    await assert.rejects(mon.queryStatus(), QmpProtocolError);
  });
});
