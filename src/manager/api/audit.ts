// The audit trail: every decision with its inputs, append-only.
import type { AuditEvent } from '../../store/records.js';
import { type Api, type ApiDeps, DEFAULT_LIMIT } from './context.js';
import { AuditEvent as AuditSchema, AuditQuery, Items, LogEntry, errorResponses, responses } from './schemas.js';

export function registerAudit(app: Api, deps: ApiDeps): void {
  app.get('/v1/audit', {
    schema: {
      tags: ['audit'],
      summary: 'Audit trail entries: newest first, or oldest first after a seq (to follow it)',
      querystring: AuditQuery,
      response: responses({ 200: Items(LogEntry(AuditSchema)), ...errorResponses(400, 401) }),
    },
  }, async (req) => {
    const q = req.query;
    const order = q.order ?? (q.after !== undefined ? 'asc' : 'desc');
    const items = await deps.store.read<AuditEvent>('audit', {
      limit: q.limit ?? DEFAULT_LIMIT,
      order,
      ...(q.after !== undefined ? { afterSeq: q.after } : {}),
      ...(q.key !== undefined ? { key: q.key } : {}),
    });
    return { items };
  });
}
