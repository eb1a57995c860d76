// TypeBox schemas of the API. Request schemas (params, querystrings, bodies) are enforced: unknown fields are
// rejected, sizes bounded. Response schemas document the records for the OpenAPI document; responses are
// serialized with JSON.stringify, so a record field missing from a schema is never dropped.
import { Type, type TSchema } from 'typebox';

export const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

const Id = Type.String({ minLength: 1, maxLength: 200, description: 'An id as the store keeps it' });

// ------------------------------------------------------------------------------------------------------------
// Requests

/** For routes that take no query parameters: any given is refused, so a typo is not silently ignored. */
export const NoQuery = Type.Object({}, { additionalProperties: false });

export const IdParams = Type.Object({ id: Id }, { additionalProperties: false });

export const Limit = Type.Integer({ minimum: 1, maximum: 1000, default: 100, description: 'At most this many items (1..1000, default 100)' });
export const After = Type.String({ minLength: 1, maxLength: 200, description: 'Ids strictly after this one (the previous page\'s `next`)' });

export const PageQuery = Type.Object({
  limit: Type.Optional(Limit),
  after: Type.Optional(After),
}, { additionalProperties: false });

export const VmListQuery = Type.Object({
  site: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Only VMs at this site' })),
  sensitive: Type.Optional(Type.Boolean({ description: 'Only location-sensitive VMs (true) or the others (false)' })),
  limit: Type.Optional(Limit),
  after: Type.Optional(After),
}, { additionalProperties: false });

export const VmGetQuery = Type.Object({
  history: Type.Optional(Type.Integer({ minimum: 0, maximum: 1000, default: 50, description: 'Fingerprints to return, newest first (0..1000, default 50)' })),
}, { additionalProperties: false });

export const VmPatchBody = Type.Object({
  pinned: Type.Optional(Type.Boolean({ description: 'A pinned VM is never moved' })),
  excluded: Type.Optional(Type.Boolean({ description: 'An excluded VM is neither moved nor evicted' })),
}, { additionalProperties: false, minProperties: 1 });

export const PLAN_STATUSES = ['recommended', 'approved', 'rejected', 'superseded', 'dry-run', 'submitted', 'done', 'empty'] as const;

export const PlanListQuery = Type.Object({
  status: Type.Optional(Type.Enum([...PLAN_STATUSES], { description: 'Only plans in this status' })),
  limit: Type.Optional(Limit),
}, { additionalProperties: false });

export const EmptyBody = Type.Object({}, { additionalProperties: false, description: 'No fields (the body may be left out)' });

export const RejectBody = Type.Object({
  reason: Type.Optional(Type.String({ maxLength: 2000, description: 'Why, for the audit trail' })),
}, { additionalProperties: false });

export const MigrationListQuery = Type.Object({
  active: Type.Optional(Type.Boolean({ description: 'Only running or queued migrations (true), or only ended ones (false)' })),
  limit: Type.Optional(Limit),
}, { additionalProperties: false });

export const RoundListQuery = Type.Object({ limit: Type.Optional(Limit) }, { additionalProperties: false });

export const AuditQuery = Type.Object({
  after: Type.Optional(Type.Integer({ minimum: 0, description: 'Entries with a seq above this one, oldest first (for following the trail)' })),
  key: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Only entries about this subject (a VM, plan or job id, or "manager")' })),
  order: Type.Optional(Type.Enum(['asc', 'desc'], { description: 'Default: newest first, or oldest first when `after` is given' })),
  limit: Type.Optional(Limit),
}, { additionalProperties: false });

export const EVENT_TYPES = ['round', 'plan', 'migration', 'progress', 'fingerprint', 'vm', 'user', 'audit', 'settings'] as const;

export const EventsQuery = Type.Object({
  types: Type.Optional(Type.String({ maxLength: 200, description: `Comma-separated event types to receive (${EVENT_TYPES.join(', ')}); default all` })),
  token: Type.Optional(Type.String({ maxLength: 512, description: 'The bearer token, for clients that cannot set headers (EventSource)' })),
}, { additionalProperties: false });

export const PlanParamsPatch = Type.Object({
  minSavingMs: Type.Optional(Type.Number({ minimum: 0, maximum: 1e6 })),
  minSensitivity: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
  evictableMaxSensitivity: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
  maxMovesPerRound: Type.Optional(Type.Integer({ minimum: 0, maximum: 1e6 })),
  maxMovesPerLink: Type.Optional(Type.Integer({ minimum: 0, maximum: 1e6 })),
  baseCooldownMs: Type.Optional(Type.Number({ minimum: 0, maximum: 365 * 86_400_000 })),
  maxCooldownMs: Type.Optional(Type.Number({ minimum: 0, maximum: 365 * 86_400_000 })),
  postCopy: Type.Optional(Type.Enum(['allow', 'reject'])),
  maxDowntimeMs: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 3_600_000 })),
  maxPrecopyRounds: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
  maxCostS: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 30 * 86_400 })),
  minBenefitPerCostS: Type.Optional(Type.Number({ minimum: 0, maximum: 1e9 })),
  evictionPenalty: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1e9 })),
  evictionRttWeight: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
  pinned: Type.Optional(Type.Array(Id, { maxItems: 100_000 })),
  excluded: Type.Optional(Type.Array(Id, { maxItems: 100_000 })),
}, { additionalProperties: false, minProperties: 1 });

export const MODES = ['auto', 'approve', 'dry-run'] as const;

export const SettingsPatchBody = Type.Object({
  mode: Type.Optional(Type.Enum([...MODES], { description: 'auto: act on plans; approve: wait for an operator; dry-run: record only' })),
  roundIntervalS: Type.Optional(Type.Number({ minimum: 1, maximum: 86_400 })),
  planner: Type.Optional(Type.Enum(['greedy', 'ilp'])),
  params: Type.Optional(PlanParamsPatch),
}, { additionalProperties: false, minProperties: 1 });

// ------------------------------------------------------------------------------------------------------------
// Responses (documentation)

export const ErrorResponse = Type.Object({
  error: Type.Object({
    code: Type.String({ description: 'INPUT_INVALID, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, PLAN_NOT_PENDING, JOB_ENDED, STORE_CONFLICT, PAYLOAD_TOO_LARGE, NOT_LEADER, …' }),
    message: Type.String({ description: 'What failed, then the current state' }),
    field: Type.Optional(Type.String({ description: 'The field at fault: body.mode, querystring.limit, params.id' })),
    leader: Type.Optional(Nullable(Type.String({ description: 'NOT_LEADER: the replica that leads' }))),
  }),
});

const Resources = Type.Object({ vcpu: Type.Number(), memoryMiB: Type.Number() });

export const Site = Type.Object({
  id: Type.String(), name: Type.String(), region: Type.String(), country: Type.String({ description: 'ISO 3166 alpha-2' }),
  lat: Type.Number(), lon: Type.Number(), capacity: Resources,
});

export const Host = Type.Object({
  id: Type.String(), siteId: Type.String(), capacity: Resources, endpoint: Nullable(Type.String()),
});

export const Link = Type.Object({
  id: Type.String({ description: 'a~b, the site ids in order' }), a: Type.String(), b: Type.String(),
  rttMs: Type.Number(), bandwidthMbps: Type.Number(), foregroundShare: Type.Number({ description: 'Share kept for user traffic' }),
});

const Activity = Type.Enum(['remote-desktop', 'conferencing', 'gaming', 'video-streaming', 'bulk-transfer', 'background']);

export const Vm = Type.Object({
  id: Type.String(), name: Type.String(), siteId: Type.String(), hostId: Nullable(Type.String()),
  vcpu: Type.Number(), memoryMiB: Type.Number(), diskGiB: Type.Number(), dirtyRateMiBps: Type.Number(),
  workingSetMiB: Type.Number(), addresses: Type.Array(Type.String()), pinned: Type.Boolean(), excluded: Type.Boolean(),
  lastMovedAtMs: Nullable(Type.Number()), recentMoves: Type.Number(),
  diskDeltaGiB: Type.Record(Type.String(), Type.Number()),
  sensitivity: Type.Number({ description: '0..1' }), sensitive: Type.Boolean(), activity: Activity,
  reasons: Type.Array(Type.String()),
  users: Type.Array(Type.Object({ userId: Type.String(), share: Type.Number() })),
  fingerprintAtMs: Nullable(Type.Number()), migratingJobId: Nullable(Type.String()),
});

const RttSource = Type.Enum(['probe', 'geoip', 'config']);

export const User = Type.Object({
  id: Type.String(), name: Type.String(), endpoint: Type.String(), country: Nullable(Type.String()),
  lat: Nullable(Type.Number()), lon: Nullable(Type.Number()), network: Type.String(),
  rtt: Type.Record(Type.String(), Type.Object({
    rttMs: Type.Number(), source: RttSource, atMs: Type.Number(), stale: Type.Boolean(),
  }), { description: 'Per site id' }),
  vms: Type.Array(Type.String()), lastSeenAtMs: Type.Number(),
});

export const LogEntry = <T extends TSchema>(value: T) => Type.Object({
  seq: Type.Integer(), key: Type.String(), atMs: Type.Number(), value,
});

export const FingerprintPoint = Type.Object({
  score: Type.Number(), sensitive: Type.Boolean(), activity: Activity, reasons: Type.Array(Type.String()),
  users: Type.Array(Type.Object({ endpoint: Type.String(), share: Type.Number() })), bytes: Type.Number(),
});

export const RttPoint = Type.Object({ siteId: Type.String(), rttMs: Type.Number(), source: RttSource });

export const AuditEvent = Type.Object({
  kind: Type.String(), actor: Type.String(), message: Type.String(), data: Type.Optional(Type.Unknown()),
});

const Move = Type.Object({
  vm: Type.String(), from: Type.String(), to: Type.String(), kind: Type.Enum(['closer-to-users', 'make-room']),
  benefit: Type.Number(), savingMs: Type.Number(), costS: Type.Number(), bytes: Type.Number(),
  postCopy: Type.Boolean(), after: Type.Array(Type.String()),
});

const PlanParams = Type.Object({
  minSavingMs: Type.Number(), minSensitivity: Type.Number(), evictableMaxSensitivity: Type.Number(),
  maxMovesPerRound: Type.Integer(), maxMovesPerLink: Type.Integer(), baseCooldownMs: Type.Number(),
  maxCooldownMs: Type.Number(), postCopy: Type.Enum(['allow', 'reject']), maxDowntimeMs: Type.Number(),
  maxPrecopyRounds: Type.Integer(), maxCostS: Type.Number(), minBenefitPerCostS: Type.Number(),
  evictionPenalty: Type.Number(), evictionRttWeight: Type.Number(),
  pinned: Type.Array(Type.String()), excluded: Type.Array(Type.String()),
});

export const Plan = Type.Object({
  id: Type.String(), roundId: Type.String(), atMs: Type.Number(), mode: Type.Enum([...MODES]),
  status: Type.Enum([...PLAN_STATUSES]), planner: Type.Enum(['greedy', 'ilp', 'nearest']),
  moves: Type.Array(Move),
  rejected: Type.Array(Type.Object({ vm: Type.String(), reason: Type.String(), detail: Type.String() })),
  totalBenefit: Type.Number(),
  inputs: Type.Object({
    vms: Type.Array(Type.Object({
      vm: Type.String(), siteId: Type.String(), sensitivity: Type.Number(), activity: Activity,
      usersRttMs: Type.Record(Type.String(), Nullable(Type.Number())),
    })),
    links: Type.Array(Type.Object({ id: Type.String(), rttMs: Type.Number(), bandwidthMbps: Type.Number(), spareMbps: Type.Number() })),
    params: PlanParams,
  }),
  jobs: Type.Array(Type.Object({ jobId: Type.String(), vm: Type.String(), state: Type.String() })),
  decidedBy: Nullable(Type.String()), decidedAtMs: Nullable(Type.Number()), note: Nullable(Type.String()),
});

export const Round = Type.Object({
  id: Type.String(), seq: Type.Integer(), startedAtMs: Type.Number(), finishedAtMs: Nullable(Type.Number()),
  durationMs: Nullable(Type.Number()), mode: Type.Enum([...MODES]), leader: Type.String(),
  vmsObserved: Type.Integer(), usersProbed: Type.Integer(), planId: Nullable(Type.String()),
  moves: Type.Integer(), rejections: Type.Integer(),
  stageMs: Type.Record(Type.String(), Type.Number(), { description: 'telemetry, fingerprint, latency, placement, migration' }),
  error: Nullable(Type.String()),
});

const Placement = Type.Object({ siteId: Type.String(), hostId: Nullable(Type.String()) });
const StallAction = Type.Enum(['raise-downtime', 'post-copy', 'abort']);

const MigrationOutcome = Type.Object({
  jobId: Type.String(), status: Type.Enum(['completed', 'aborted', 'failed']), runningAt: Placement,
  durationMs: Type.Number(), downtimeMs: Nullable(Type.Number()), transferredBytes: Type.Number(),
  settings: Type.Array(Type.Object({
    name: Type.String(), value: Type.Union([Type.String(), Type.Number(), Type.Boolean()]), reason: Type.String(),
  })),
  stallActions: Type.Array(StallAction), reason: Nullable(Type.String()),
});

const Phase = Type.Enum(['preparing', 'mirroring-disk', 'precopy', 'postcopy', 'switching-over', 'completed', 'aborting', 'aborted', 'failed']);

export const MigrationView = Type.Object({
  id: Type.String(), vm: Type.String(), planId: Type.String(), from: Type.String(), to: Type.String(),
  state: Type.String({ description: "The job's state label: queued, starting, running:precopy, aborting, completed, aborted, rolled-back, cancelled, failed, …" }),
  phase: Nullable(Phase), percent: Type.Number({ minimum: 0, maximum: 100 }),
  transferredBytes: Type.Number(), totalBytes: Type.Number(), remainingBytes: Type.Number(),
  throughputMbps: Type.Number(), etaS: Nullable(Type.Number()), downtimeMs: Nullable(Type.Number()),
  createdAtMs: Type.Number(), updatedAtMs: Type.Number(), finishedAtMs: Nullable(Type.Number()),
  ended: Type.Boolean(), outcome: Nullable(MigrationOutcome), reason: Nullable(Type.String()),
  history: Type.Array(Type.Object({
    atMs: Type.Number(), event: Type.String(), from: Type.String(), to: Type.String(), note: Type.Optional(Type.String()),
  })),
});

export const Settings = Type.Object({
  mode: Type.Enum([...MODES]), roundIntervalS: Type.Number(), planner: Type.Enum(['greedy', 'ilp']), params: PlanParams,
});

export const Health = Type.Object({
  ok: Type.Boolean(), replica: Type.String(), leader: Type.Boolean(), store: Type.Enum(['sqlite', 'postgres']),
  schemaVersion: Type.Integer(),
});

export const Items = <T extends TSchema>(item: T) => Type.Object({ items: Type.Array(item) });
export const Page = <T extends TSchema>(item: T) => Type.Object({
  items: Type.Array(item), next: Nullable(Type.String({ description: 'Pass as `after` for the next page; null on the last' })),
});

/** The error answers a route may give, for the document. */
export function errorResponses(...statuses: number[]): Record<number, TSchema> {
  const out: Record<number, TSchema> = {};
  for (const s of statuses) out[s] = ErrorResponse;
  return out;
}

/**
 * Response schemas for the document only: typed loosely so handlers return the store's records (branded ids,
 * readonly arrays) without casts; JSON.stringify serializes them whole.
 */
export function responses(byStatus: Record<number, TSchema | { description: string; content: Record<string, { schema: TSchema }> }>): Record<number, unknown> {
  return byStatus;
}
