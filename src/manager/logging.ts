// The manager's logs: JSON lines through pino. Library code takes our small Logger interface
// (core/logger.ts); fromPino() lets it write through the manager's pino logger, and toFastifyLogger() lets
// Fastify write through one of ours.
import { pino, type DestinationStream, type Logger as PinoLogger } from 'pino';
import type { FastifyBaseLogger } from 'fastify';
import type { LogLevel, Logger } from '../core/logger.js';

export type { PinoLogger };

export interface ManagerLoggerOptions {
  /** A file path, a file descriptor (1 = stdout, 2 = stderr) or a stream with write(); default stderr. */
  readonly destination?: string | number | DestinationStream;
  readonly level?: LogLevel | 'trace' | 'fatal' | 'silent';
  /** Fields on every line (replica name, …). */
  readonly base?: Record<string, unknown>;
}

/** Headers and fields that must never reach a log line. */
const REDACT = [
  'req.headers.authorization', 'headers.authorization', 'authorization', 'token', 'adminToken', 'readToken',
];

export function createManagerLogger(opts: ManagerLoggerOptions = {}): PinoLogger {
  const d = opts.destination ?? 2;
  const stream: DestinationStream = typeof d === 'string' || typeof d === 'number'
    ? pino.destination({ dest: d, sync: true, ...(typeof d === 'string' ? { mkdir: true } : {}) })
    : d;
  return pino({
    level: opts.level ?? 'info',
    base: { ...opts.base },
    timestamp: pino.stdTimeFunctions.epochTime,
    messageKey: 'msg',
    formatters: { level: (label) => ({ level: label }) },
    redact: { paths: REDACT, censor: '[redacted]' },
  }, stream);
}

/** Our Logger interface over a pino logger: `log.info('msg', {fields})` becomes `pino.info({fields}, 'msg')`. */
export function fromPino(p: PinoLogger | FastifyBaseLogger): Logger {
  return {
    debug: (msg, fields) => p.debug(fields ?? {}, msg),
    info: (msg, fields) => p.info(fields ?? {}, msg),
    warn: (msg, fields) => p.warn(fields ?? {}, msg),
    error: (msg, fields) => p.error(fields ?? {}, msg),
    child: (fields) => fromPino(p.child(fields)),
  };
}

function isPinoLike(l: unknown): l is FastifyBaseLogger {
  return typeof l === 'object' && l !== null && 'level' in l && typeof (l as { fatal?: unknown }).fatal === 'function'
    && typeof (l as { trace?: unknown }).trace === 'function';
}

type LogFn = FastifyBaseLogger['info'];

/** Splits pino-style arguments ((obj, msg) or (msg) or (err)) into our (msg, fields). */
function toOurs(write: (msg: string, fields?: Record<string, unknown>) => void): LogFn {
  return ((a: unknown, b?: unknown) => {
    if (typeof a === 'string') {
      write(a);
    } else if (a instanceof Error) {
      write(typeof b === 'string' ? b : a.message, { err: { message: a.message, name: a.name, stack: a.stack } });
    } else if (typeof a === 'object' && a !== null) {
      const fields: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(a)) {
        fields[k] = v instanceof Error ? { message: v.message, name: v.name, stack: v.stack } : v;
      }
      write(typeof b === 'string' ? b : '', fields);
    } else {
      write(String(a));
    }
  });
}

/** A logger Fastify accepts (pino's shape), writing through ours; a pino logger is returned as it is. */
export function toFastifyLogger(l: Logger | PinoLogger | FastifyBaseLogger): FastifyBaseLogger {
  if (isPinoLike(l)) return l;
  const make = (o: Logger): FastifyBaseLogger => ({
    level: 'info',
    trace: toOurs((m, f) => o.debug(m, f)),
    debug: toOurs((m, f) => o.debug(m, f)),
    info: toOurs((m, f) => o.info(m, f)),
    warn: toOurs((m, f) => o.warn(m, f)),
    error: toOurs((m, f) => o.error(m, f)),
    fatal: toOurs((m, f) => o.error(m, f)),
    silent: toOurs(() => undefined),
    child: (bindings) => make(o.child(bindings)),
  });
  return make(l);
}
