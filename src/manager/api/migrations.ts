// Migrations: the executor's jobs, shown as MigrationViews (progress, ETA, outcome).
import { isTerminal, label, type JobRecord } from '../../migration/job.js';
import { migrationView } from '../views.js';
import { type Api, type ApiDeps, DEFAULT_LIMIT, actorOf, getOr404, newestOf } from './context.js';
import { ApiError } from './errors.js';
import { EmptyBody, IdParams, Items, MigrationListQuery, MigrationView, errorResponses, responses, NoQuery } from './schemas.js';

export function registerMigrations(app: Api, deps: ApiDeps): void {
  app.get('/v1/migrations', {
    schema: {
      tags: ['migrations'], summary: 'List migrations, newest first', querystring: MigrationListQuery,
      response: responses({ 200: Items(MigrationView), ...errorResponses(400, 401) }),
    },
  }, async (req) => {
    const active = req.query.active;
    // Jobs are indexed by status 'active' | 'ended'; the state is checked too, so a stale index never lies.
    const jobs = await newestOf<JobRecord>(deps, 'jobs', {
      limit: req.query.limit ?? DEFAULT_LIMIT,
      atMs: (j) => j.createdAtMs,
      ...(active === undefined ? {} : { keep: (j: JobRecord) => isTerminal(j.state) !== active }),
      ...(active === true ? { status: 'active' } : {}),
    });
    return { items: jobs.map(migrationView) };
  });

  app.get('/v1/migrations/:id', {
    schema: {
      querystring: NoQuery,
      tags: ['migrations'], summary: 'One migration with its progress and history', params: IdParams,
      response: responses({ 200: MigrationView, ...errorResponses(400, 401, 404) }),
    },
  }, async (req) => migrationView((await getOr404<JobRecord>(deps, 'jobs', 'migration', req.params.id)).value));

  app.post('/v1/migrations/:id/cancel', {
    schema: {
      querystring: NoQuery,
      tags: ['migrations'], summary: 'Cancel a queued migration or abort a running one (the VM stays at its source)',
      params: IdParams, body: EmptyBody,
      response: responses({ 200: MigrationView, ...errorResponses(400, 401, 403, 404, 409, 413, 503) }),
    },
    config: { optionalBody: true },
  }, async (req) => {
    const job = (await getOr404<JobRecord>(deps, 'jobs', 'migration', req.params.id)).value;
    if (isTerminal(job.state)) {
      throw new ApiError('JOB_ENDED', `migration ${job.id} of ${job.vm} already ended (${label(job.state)}); only a queued or running migration can be cancelled`);
    }
    return migrationView(await deps.control.cancelMigration(job.id, actorOf(req)));
  });
}
