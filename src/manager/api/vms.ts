// VMs: their fingerprint, where they run, and the operator's pins.
import { Type } from 'typebox';
import { vmId } from '../../core/ids.js';
import type { FingerprintPoint, VmRecord } from '../../store/records.js';
import { type Api, type ApiDeps, DEFAULT_LIMIT, actorOf, getOr404, pageOf } from './context.js';
import {
  FingerprintPoint as FingerprintSchema, IdParams, LogEntry, Page, Vm, VmGetQuery, VmListQuery, VmPatchBody, errorResponses, responses, NoQuery,
} from './schemas.js';

export function registerVms(app: Api, deps: ApiDeps): void {
  app.get('/v1/vms', {
    schema: {
      tags: ['vms'], summary: 'List VMs, optionally of one site or only the (in)sensitive ones', querystring: VmListQuery,
      response: responses({ 200: Page(Vm), ...errorResponses(400, 401) }),
    },
  }, (req) => {
    const { site, sensitive } = req.query;
    const keep = site === undefined && sensitive === undefined
      ? undefined
      : (v: VmRecord) => (site === undefined || v.siteId === site) && (sensitive === undefined || v.sensitive === sensitive);
    return pageOf<VmRecord>(deps, 'vms', {
      limit: req.query.limit ?? DEFAULT_LIMIT, after: req.query.after, ...(keep !== undefined ? { keep } : {}),
    });
  });

  app.get('/v1/vms/:id', {
    schema: {
      tags: ['vms'], summary: 'One VM with its fingerprint history, newest first', params: IdParams, querystring: VmGetQuery,
      response: responses({
        200: Type.Object({ vm: Vm, fingerprints: Type.Array(LogEntry(FingerprintSchema)) }),
        ...errorResponses(400, 401, 404),
      }),
    },
  }, async (req) => {
    const vm = (await getOr404<VmRecord>(deps, 'vms', 'VM', req.params.id)).value;
    const n = req.query.history ?? 50;
    const fingerprints = n === 0 ? [] : await deps.store.read<FingerprintPoint>('fingerprints', { key: req.params.id, limit: n, order: 'desc' });
    return { vm, fingerprints };
  });

  app.patch('/v1/vms/:id', {
    schema: {
      querystring: NoQuery,
      tags: ['vms'], summary: 'Pin a VM (never moved) or exclude it (neither moved nor evicted)',
      params: IdParams, body: VmPatchBody,
      response: responses({ 200: Vm, ...errorResponses(400, 401, 403, 404, 409, 413, 503) }),
    },
  }, async (req) => {
    await getOr404<VmRecord>(deps, 'vms', 'VM', req.params.id);
    const flags: { pinned?: boolean; excluded?: boolean } = {};
    if (req.body.pinned !== undefined) flags.pinned = req.body.pinned;
    if (req.body.excluded !== undefined) flags.excluded = req.body.excluded;
    return deps.control.setVmFlags(vmId(req.params.id), flags, actorOf(req));
  });
}
