// Liveness and readiness, metrics, and the OpenAPI document: always open, no token.
import { Type } from 'typebox';
import { type Api, type ApiDeps } from './context.js';
import { ApiError } from './errors.js';
import { Health, errorResponses, responses } from './schemas.js';

export function registerHealth(app: Api, deps: ApiDeps): void {
  app.get('/healthz', {
    schema: {
      tags: ['health'], summary: 'Ready: the store answers. Says which replica this is and whether it leads',
      security: [],
      response: responses({ 200: Health, ...errorResponses(503) }),
    },
  }, async () => {
    try {
      await deps.store.count('settings');
    } catch (e) {
      throw new ApiError('UNAVAILABLE', `the store (${deps.store.location}) does not answer: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
    }
    return {
      ok: true,
      replica: deps.control.replica,
      leader: deps.control.isLeader(),
      store: deps.store.kind,
      schemaVersion: deps.store.schemaVersion,
    };
  });

  app.get('/metrics', {
    schema: {
      tags: ['health'], summary: 'Prometheus metrics (text exposition format)', security: [],
      response: responses({ 200: { description: 'Prometheus text', content: { 'text/plain': { schema: Type.String() } } } }),
    },
  }, async (_req, reply) => {
    deps.metrics.setLeader(deps.control.isLeader());
    const text = await deps.metrics.render();
    return reply.type(deps.metrics.contentType).header('cache-control', 'no-store').send(text);
  });
}
