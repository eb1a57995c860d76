import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { createJsonLogger } from '../core/logger.js';
import { createManagerLogger, fromPino, toFastifyLogger } from './logging.js';

function sink(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  let buf = '';
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      buf += chunk.toString('utf8');
      cb();
    },
  });
  return { stream, lines: () => buf.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>) };
}

describe('createManagerLogger()', () => {
  it('writes one JSON object per line with level, time, message, base fields and redacted tokens', () => {
    const s = sink();
    const log = createManagerLogger({ destination: s.stream, base: { replica: 'a' } });
    log.info({ vm: 'vm-1', token: 'secret-token', headers: { authorization: 'Bearer secret-token' } }, 'moved');
    log.debug('not at info level');
    const [line, ...rest] = s.lines();
    assert.equal(rest.length, 0);
    assert.equal(line?.level, 'info');
    assert.equal(line?.msg, 'moved');
    assert.equal(line?.replica, 'a');
    assert.equal(line?.vm, 'vm-1');
    assert.equal(typeof line?.time, 'number');
    assert.ok(!JSON.stringify(line).includes('secret-token'), 'tokens never reach the log');
  });

  it('lets code taking our Logger log through pino, children keeping their fields', () => {
    const s = sink();
    const ours = fromPino(createManagerLogger({ destination: s.stream, level: 'debug' })).child({ component: 'loop' });
    ours.warn('round slow', { ms: 1200 });
    ours.debug('detail');
    const lines = s.lines();
    assert.deepEqual(lines.map((l) => [l.level, l.msg, l.component, l.ms]), [['warn', 'round slow', 'loop', 1200], ['debug', 'detail', 'loop', undefined]]);
  });

  it('lets Fastify log through our Logger (pino-style calls become message and fields)', () => {
    const out: string[] = [];
    const f = toFastifyLogger(createJsonLogger({ write: (l) => out.push(l), level: 'debug', clock: { nowMs: () => 5 } }));
    f.child({ reqId: 'r1' }).info({ status: 200 }, 'request');
    f.error(new Error('boom'));
    f.warn('plain');
    const lines = out.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines[0]?.msg, 'request');
    assert.equal(lines[0]?.reqId, 'r1');
    assert.equal(lines[0]?.status, 200);
    assert.equal(lines[1]?.msg, 'boom');
    assert.equal(lines[1]?.level, 'error');
    assert.equal(lines[2]?.msg, 'plain');
    const pinoLogger = createManagerLogger({ destination: sink().stream });
    assert.equal(toFastifyLogger(pinoLogger), pinoLogger, 'a pino logger is used as it is');
  });
});
