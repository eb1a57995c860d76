// Sites, hosts and WAN links: the cloud's inventory, read from the store.
import type { HostRecord, LinkRecord, SiteRecord } from '../../store/records.js';
import { type Api, type ApiDeps, DEFAULT_LIMIT, getOr404, pageOf } from './context.js';
import { Host, IdParams, Link, Page, PageQuery, Site, errorResponses, responses, NoQuery } from './schemas.js';

export function registerSites(app: Api, deps: ApiDeps): void {
  app.get('/v1/sites', {
    schema: {
      tags: ['inventory'], summary: 'List sites', querystring: PageQuery,
      response: responses({ 200: Page(Site), ...errorResponses(400, 401) }),
    },
  }, (req) => pageOf<SiteRecord>(deps, 'sites', { limit: req.query.limit ?? DEFAULT_LIMIT, after: req.query.after }));

  app.get('/v1/sites/:id', {
    schema: {
      querystring: NoQuery,
      tags: ['inventory'], summary: 'One site', params: IdParams,
      response: responses({ 200: Site, ...errorResponses(400, 401, 404) }),
    },
  }, async (req) => (await getOr404<SiteRecord>(deps, 'sites', 'site', req.params.id)).value);

  app.get('/v1/hosts', {
    schema: {
      tags: ['inventory'], summary: 'List hosts', querystring: PageQuery,
      response: responses({ 200: Page(Host), ...errorResponses(400, 401) }),
    },
  }, (req) => pageOf<HostRecord>(deps, 'hosts', { limit: req.query.limit ?? DEFAULT_LIMIT, after: req.query.after }));

  app.get('/v1/links', {
    schema: {
      tags: ['inventory'], summary: 'List WAN links between sites', querystring: PageQuery,
      response: responses({ 200: Page(Link), ...errorResponses(400, 401) }),
    },
  }, (req) => pageOf<LinkRecord>(deps, 'links', { limit: req.query.limit ?? DEFAULT_LIMIT, after: req.query.after }));
}
