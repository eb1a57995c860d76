// Users: where people sit and their round-trip times to each site.
import type { RttPoint, UserRecord } from '../../store/records.js';
import { type Api, type ApiDeps, DEFAULT_LIMIT, getOr404, pageOf } from './context.js';
import { IdParams, LogEntry, Page, PageQuery, RttPoint as RttPointSchema, User, errorResponses, responses, NoQuery } from './schemas.js';
import { Type } from 'typebox';

/** RTT observations returned with one user, newest first. */
export const USER_RTT_HISTORY = 100;

export function registerUsers(app: Api, deps: ApiDeps): void {
  app.get('/v1/users', {
    schema: {
      tags: ['users'], summary: 'List users', querystring: PageQuery,
      response: responses({ 200: Page(User), ...errorResponses(400, 401) }),
    },
  }, (req) => pageOf<UserRecord>(deps, 'users', { limit: req.query.limit ?? DEFAULT_LIMIT, after: req.query.after }));

  app.get('/v1/users/:id', {
    schema: {
      querystring: NoQuery,
      tags: ['users'], summary: `One user with its newest ${USER_RTT_HISTORY} RTT observations`, params: IdParams,
      response: responses({
        200: Type.Object({ user: User, rtts: Type.Array(LogEntry(RttPointSchema)) }),
        ...errorResponses(400, 401, 404),
      }),
    },
  }, async (req) => {
    const user = (await getOr404<UserRecord>(deps, 'users', 'user', req.params.id)).value;
    const rtts = await deps.store.read<RttPoint>('rtts', { key: req.params.id, limit: USER_RTT_HISTORY, order: 'desc' });
    return { user, rtts };
  });
}
