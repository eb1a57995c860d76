// The manager's persistence: one interface, two implementations (SQLite by default, PostgreSQL for several
// replicas). Deliberately a small document store with append-only logs and leases, so that both backends
// implement the same dozen calls and one contract suite (store.contract.ts) checks them; the typed views the
// manager uses (repos.ts) are written once on top.

/** Documents: the latest value of each thing, by id. */
export type Collection =
  | 'sites' | 'hosts' | 'links' | 'vms' | 'users' | 'plans' | 'rounds' | 'jobs' | 'settings' | 'tokens';

/** Append-only logs: history, read back in order. */
export type LogName = 'audit' | 'fingerprints' | 'rtts';

export interface Doc<T> {
  readonly id: string;
  /** Starts at 1 and grows by one with every put: optimistic concurrency (`expectRev`). */
  readonly rev: number;
  readonly updatedAtMs: number;
  /** Two optional indexed strings a list can filter on (jobs: group = VM id, status = 'active' | 'ended'). */
  readonly group: string | null;
  readonly status: string | null;
  readonly value: T;
}

export interface PutOptions {
  /** The revision the caller read: the put fails with STORE_CONFLICT if the stored one differs; null = must not exist. */
  readonly expectRev?: number | null;
  readonly group?: string | null;
  readonly status?: string | null;
}

export interface ListQuery {
  readonly group?: string;
  readonly status?: string;
  /** Ids strictly after this one (pages, ordered by id). */
  readonly afterId?: string;
  /** Default 1000, at most 100 000. */
  readonly limit?: number;
  /** 'asc' (default) by id; 'desc' from the greatest id (the newest, for time-ordered ids), afterId then pages down. */
  readonly order?: 'asc' | 'desc';
}

export interface LogEntry<T> {
  /** Increases with every entry of a log, across keys and across replicas. */
  readonly seq: number;
  readonly key: string;
  readonly atMs: number;
  readonly value: T;
}

export interface LogQuery {
  readonly key?: string;
  readonly afterSeq?: number;
  readonly sinceMs?: number;
  /** Required: logs grow without end. At most 100 000. */
  readonly limit: number;
  /** 'asc' (default) from the oldest matching, 'desc' from the newest. */
  readonly order?: 'asc' | 'desc';
}

export interface Lease {
  readonly name: string;
  readonly holder: string;
  readonly expiresAtMs: number;
}

export interface Store {
  readonly kind: 'sqlite' | 'postgres';
  /** Where it is, without secrets ("sqlite:/var/lib/vmshadow/vmshadow.db", "postgres://db1:5432/vmshadow"). */
  readonly location: string;
  /** The schema version after the migrations ran at open. */
  readonly schemaVersion: number;

  get<T>(col: Collection, id: string): Promise<Doc<T> | null>;
  list<T>(col: Collection, q?: ListQuery): Promise<Doc<T>[]>;
  count(col: Collection, q?: Pick<ListQuery, 'group' | 'status'>): Promise<number>;
  /** Inserts or replaces; returns the stored document (with its new rev). Conflicts throw AppError STORE_CONFLICT. */
  put<T>(col: Collection, id: string, value: T, opts?: PutOptions): Promise<Doc<T>>;
  /** Many puts in one transaction (no expectRev): all or nothing. */
  putMany<T>(col: Collection, entries: readonly { id: string; value: T; group?: string | null; status?: string | null }[]): Promise<void>;
  delete(col: Collection, id: string): Promise<boolean>;

  /** Appends in one transaction; returns the new entries' seqs in order. */
  append<T>(log: LogName, entries: readonly { key: string; atMs: number; value: T }[]): Promise<number[]>;
  read<T>(log: LogName, q: LogQuery): Promise<LogEntry<T>[]>;
  /** Removes entries older than `beforeMs`; returns how many. */
  trim(log: LogName, beforeMs: number): Promise<number>;

  /**
   * Takes or renews the named lease for `holder` if it is free, expired, or already held by `holder`, using
   * the database's clock so replicas with skewed clocks agree. Returns the lease as it stands afterwards
   * (held by someone else if it was not free).
   */
  acquireLease(name: string, holder: string, ttlMs: number): Promise<Lease>;
  /** Gives the lease up if `holder` holds it (a clean shutdown hands over at once). */
  releaseLease(name: string, holder: string): Promise<void>;
  getLease(name: string): Promise<Lease | null>;

  close(): Promise<void>;
}
