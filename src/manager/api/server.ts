// The manager's HTTP API: Fastify with TypeBox schemas, the OpenAPI document and its UI at /docs, bearer
// tokens on /v1, Prometheus metrics at /metrics, the event stream, and the dashboard's files at '/'.
// buildApi() wires the routes; manager/main.ts listens.
import Fastify, { LogController, type FastifyBaseLogger, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { Logger } from '../../core/logger.js';
import type { Settings } from '../../store/records.js';
import type { Store } from '../../store/store.js';
import { createTokenVerifier, type TokenVerifier } from '../auth.js';
import type { ManagerControl } from '../control.js';
import type { EventBus } from '../events.js';
import { toFastifyLogger, type PinoLogger } from '../logging.js';
import type { Metrics } from '../metrics.js';
import { registerAudit } from './audit.js';
import type { Api, ApiDeps } from './context.js';
import { registerDashboard } from './dashboard.js';
import { ApiError, sendError, toErrorResponse } from './errors.js';
import { registerEvents } from './events.js';
import { registerHealth } from './health.js';
import { registerMigrations } from './migrations.js';
import { registerPlans } from './plans.js';
import { registerRounds } from './rounds.js';
import { registerSettings } from './settings.js';
import { registerSites } from './sites.js';
import { registerUsers } from './users.js';
import { strictValidatorCompiler } from './validation.js';
import { registerVms } from './vms.js';

export interface ApiOptions {
  readonly store: Store;
  readonly control: ManagerControl;
  readonly events: EventBus;
  readonly metrics: Metrics;
  readonly log: PinoLogger | FastifyBaseLogger | Logger;
  /** GET routes under /v1 need no token (the lab demo's --open-reads). Changes always need the admin token. */
  readonly openReads?: boolean;
  /** Request bodies above this answer 413 (default 1 MiB). */
  readonly bodyLimitBytes?: number;
  /** The dashboard's built files, served at '/'; null or absent: '/' answers a short JSON index. */
  readonly dashboardDir?: string | null;
  /** Heartbeat comment interval of the event stream (default 15 s). */
  readonly sseHeartbeatMs?: number;
  /** How tokens are checked (default: against the store's 'tokens' collection). */
  readonly tokens?: TokenVerifier;
  /** The manager's configured settings: GET /v1/settings shows the stored ones over these (default: 404 until stored). */
  readonly settingsDefaults?: Settings | null;
  /** The version shown in the OpenAPI document. */
  readonly version?: string;
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
export const DEFAULT_BODY_LIMIT_BYTES = 1024 * 1024;

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The body may be left out (it then counts as {}). */
    optionalBody?: boolean;
  }
}

function pathOf(req: FastifyRequest): string {
  const u = req.url;
  const q = u.indexOf('?');
  return q < 0 ? u : u.slice(0, q);
}

const isProtected = (path: string): boolean => path === '/v1' || path.startsWith('/v1/');

function bearerOf(req: FastifyRequest, path: string): string | null {
  const h = req.headers.authorization;
  if (typeof h === 'string' && h.length > 0) {
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(h);
    return m?.[1] ?? '';
  }
  if (path === '/v1/events') {
    const t = (req.query as Record<string, unknown> | undefined)?.token;
    if (typeof t === 'string') return t;
  }
  return null;
}

export async function buildApi(opts: ApiOptions): Promise<Api> {
  const log = toFastifyLogger(opts.log);
  const bodyLimit = opts.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES;
  const app = Fastify({
    loggerInstance: log,
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit,
    routerOptions: { maxParamLength: 1000 },
    exposeHeadRoutes: true,
    return503OnClosing: true,
    forceCloseConnections: 'idle',
    // A URL the router cannot decode gets the same error shape as everything else.
    frameworkErrors: (err, req, reply) => {
      const { status, body } = toErrorResponse(err, req);
      void sendError(reply, status, body);
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  app.setValidatorCompiler(strictValidatorCompiler);
  // Response schemas are documentation: JSON.stringify keeps every field a record has.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));

  const deps: ApiDeps = {
    store: opts.store,
    control: opts.control,
    events: opts.events,
    metrics: opts.metrics,
    log,
    sseHeartbeatMs: opts.sseHeartbeatMs ?? 15_000,
    maxScan: 200_000,
    settingsDefaults: opts.settingsDefaults ?? null,
  };
  const tokens = opts.tokens ?? createTokenVerifier(opts.store);
  const openReads = opts.openReads === true;

  // JSON bodies only (anything else is 415): an empty body counts as none; anything else must parse.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit }, (_req, body, done) => {
    const text = typeof body === 'string' ? body : body.toString('utf8');
    if (text.trim() === '') {
      done(null, undefined);
      return;
    }
    try {
      done(null, JSON.parse(text) as unknown);
    } catch (e) {
      done(new ApiError('INPUT_INVALID', `body: is not valid JSON (${e instanceof Error ? e.message : String(e)})`, { field: 'body' }), undefined);
    }
  });

  app.decorateRequest('identity', null);

  app.setErrorHandler((err, req, reply) => {
    const { status, body } = toErrorResponse(err, req);
    if (status >= 500 && body.error.code === 'INTERNAL') {
      req.log.error({ err, method: req.method, route: req.routeOptions.url }, 'request failed');
    } else if (status >= 500) {
      req.log.warn({ code: body.error.code, message: body.error.message, route: req.routeOptions.url }, 'request refused');
    }
    if (status === 401) void reply.header('www-authenticate', 'Bearer realm="vmshadow"');
    return sendError(reply, status, body);
  });

  app.setNotFoundHandler((req, reply) =>
    sendError(reply, 404, { error: { code: 'NOT_FOUND', message: `no route ${req.method} ${pathOf(req).slice(0, 200)} (the API is under /v1; see /docs)` } }));

  // Tokens: every /v1 route needs one (reads: admin or read-only, unless openReads; changes: admin).
  app.addHook('onRequest', async (req) => {
    const path = pathOf(req);
    if (!isProtected(path)) return;
    const mutating = MUTATING.has(req.method);
    const presented = bearerOf(req, path);
    if (presented === null) {
      if (!mutating && openReads) return;
      throw new ApiError('UNAUTHORIZED', `${req.method} ${path.slice(0, 200)} needs a token: send "Authorization: Bearer <token>" (${mutating ? 'the admin token' : 'the admin or the read-only token'})`);
    }
    const who = await tokens.verify(presented);
    if (who === null) {
      throw new ApiError('UNAUTHORIZED', 'the bearer token is not valid: it matches neither the admin nor the read-only token');
    }
    if (mutating && who.role !== 'admin') {
      throw new ApiError('FORBIDDEN', `${req.method} ${path.slice(0, 200)} changes state and needs the admin token; this is the read-only token`);
    }
    req.identity = who;
  });

  // A body-optional route without a body gets {} to validate.
  app.addHook('preValidation', (req, _reply, done) => {
    if (req.body === undefined && req.routeOptions.config.optionalBody === true) req.body = {};
    done();
  });

  // Only the leader changes anything; a follower names it.
  app.addHook('preHandler', async (req) => {
    if (!MUTATING.has(req.method) || !isProtected(pathOf(req)) || opts.control.isLeader()) return;
    const leader = await opts.control.leader().catch(() => null);
    throw new ApiError('NOT_LEADER',
      `replica ${opts.control.replica} does not lead and makes no changes; send this to ${leader === null ? 'the leader (none known right now)' : `the leader, ${leader}`}`,
      { leader });
  });

  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    opts.metrics.apiRequest(route, reply.statusCode);
    const fields = { method: req.method, route, status: reply.statusCode, ms: Math.round(reply.elapsedTime * 10) / 10, actor: req.identity?.actor };
    // Changes and failures at info (an access log of what matters); reads and open routes at debug.
    if (reply.statusCode >= 400 || (MUTATING.has(req.method) && isProtected(pathOf(req)))) req.log.info(fields, 'request');
    else req.log.debug(fields, 'request');
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'VMShadow manager API',
        version: opts.version ?? '1',
        description: 'Sites, hosts, links, VMs with their fingerprints, users, plans to approve, migrations, settings, '
          + 'the audit trail and an event stream. Every change needs the admin token; reads need the admin or the '
          + 'read-only token unless the manager runs with open reads. Errors: {"error": {"code", "message", "field"?}}.',
      },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
      tags: [
        { name: 'health' }, { name: 'inventory' }, { name: 'vms' }, { name: 'users' }, { name: 'plans' },
        { name: 'migrations' }, { name: 'rounds' }, { name: 'audit' }, { name: 'settings' }, { name: 'events' },
      ],
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true });

  registerHealth(app, deps);
  registerSites(app, deps);
  registerVms(app, deps);
  registerUsers(app, deps);
  registerPlans(app, deps);
  registerMigrations(app, deps);
  registerRounds(app, deps);
  registerAudit(app, deps);
  registerSettings(app, deps);
  const streams = registerEvents(app, deps);
  registerDashboard(app, opts.dashboardDir ?? null);

  app.addHook('preClose', (done) => {
    streams.closeAll();
    done();
  });

  await app.ready();
  return app;
}
