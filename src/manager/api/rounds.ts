// Rounds: one pass of the control loop each (observe, fingerprint, plan, act).
import type { RoundRecord } from '../../store/records.js';
import { type Api, type ApiDeps, DEFAULT_LIMIT, actorOf, newestOf } from './context.js';
import { EmptyBody, Items, Round, RoundListQuery, errorResponses, responses, NoQuery } from './schemas.js';

export function registerRounds(app: Api, deps: ApiDeps): void {
  app.get('/v1/rounds', {
    schema: {
      tags: ['rounds'], summary: 'List control rounds, newest first', querystring: RoundListQuery,
      response: responses({ 200: Items(Round), ...errorResponses(400, 401) }),
    },
  }, async (req) => ({
    items: await newestOf<RoundRecord>(deps, 'rounds', { limit: req.query.limit ?? DEFAULT_LIMIT, atMs: (r) => r.seq, idsInTimeOrder: true }),
  }));

  app.post('/v1/rounds', {
    schema: {
      querystring: NoQuery,
      tags: ['rounds'], summary: 'Run a round now instead of waiting for the interval; answers when it is recorded',
      body: EmptyBody,
      response: responses({ 200: Round, ...errorResponses(400, 401, 403, 413, 503) }),
    },
    config: { optionalBody: true },
  }, (req) => deps.control.runRound(actorOf(req)));
}
