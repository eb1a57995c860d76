// Plans: what the planner proposed each round; in approve mode an operator approves or rejects them.
import type { PlanRecord } from '../../store/records.js';
import { type Api, type ApiDeps, DEFAULT_LIMIT, actorOf, getOr404, newestOf } from './context.js';
import { ApiError } from './errors.js';
import { EmptyBody, IdParams, Items, Plan, PlanListQuery, RejectBody, errorResponses, responses, NoQuery } from './schemas.js';

async function pendingPlan(deps: ApiDeps, id: string, verb: 'approved' | 'rejected'): Promise<PlanRecord> {
  const plan = (await getOr404<PlanRecord>(deps, 'plans', 'plan', id)).value;
  if (plan.status !== 'recommended') {
    const by = plan.decidedBy !== null ? ` by ${plan.decidedBy}` : '';
    throw new ApiError('PLAN_NOT_PENDING', `plan ${id} is ${plan.status}${plan.status === 'approved' || plan.status === 'rejected' ? by : ''}, only a recommended plan can be ${verb}`);
  }
  return plan;
}

export function registerPlans(app: Api, deps: ApiDeps): void {
  app.get('/v1/plans', {
    schema: {
      tags: ['plans'], summary: 'List plans, newest first', querystring: PlanListQuery,
      response: responses({ 200: Items(Plan), ...errorResponses(400, 401) }),
    },
  }, async (req) => {
    const status = req.query.status;
    const items = await newestOf<PlanRecord>(deps, 'plans', {
      limit: req.query.limit ?? DEFAULT_LIMIT,
      atMs: (p) => p.atMs,
      idsInTimeOrder: true,
      // Plans are indexed by status (store/repos.ts); the value is checked too.
      ...(status !== undefined ? { status, keep: (p: PlanRecord) => p.status === status } : {}),
    });
    return { items };
  });

  app.get('/v1/plans/:id', {
    schema: {
      querystring: NoQuery,
      tags: ['plans'], summary: 'One plan with its moves, rejections and inputs', params: IdParams,
      response: responses({ 200: Plan, ...errorResponses(400, 401, 404) }),
    },
  }, async (req) => (await getOr404<PlanRecord>(deps, 'plans', 'plan', req.params.id)).value);

  app.post('/v1/plans/:id/approve', {
    schema: {
      querystring: NoQuery,
      tags: ['plans'], summary: 'Approve a recommended plan: its moves are submitted', params: IdParams, body: EmptyBody,
      response: responses({ 200: Plan, ...errorResponses(400, 401, 403, 404, 409, 413, 503) }),
    },
    config: { optionalBody: true },
  }, async (req) => {
    await pendingPlan(deps, req.params.id, 'approved');
    return deps.control.approvePlan(req.params.id, actorOf(req));
  });

  app.post('/v1/plans/:id/reject', {
    schema: {
      querystring: NoQuery,
      tags: ['plans'], summary: 'Reject a recommended plan', params: IdParams, body: RejectBody,
      response: responses({ 200: Plan, ...errorResponses(400, 401, 403, 404, 409, 413, 503) }),
    },
    config: { optionalBody: true },
  }, async (req) => {
    await pendingPlan(deps, req.params.id, 'rejected');
    const reason = req.body.reason?.trim();
    return deps.control.rejectPlan(req.params.id, actorOf(req), reason === undefined || reason === '' ? null : reason);
  });
}
