// A manager API over a seeded in-memory SQLite store, a recording fake ManagerControl and a real event bus:
// what API, CLI and dashboard tests start (app.inject(), or listen() for a real socket).
import { buildApi, type ApiOptions } from '../manager/api/server.js';
import type { Api } from '../manager/api/context.js';
import { ensureTokens } from '../manager/auth.js';
import { createEventBus, type EventBus } from '../manager/events.js';
import { createMetrics, type Metrics } from '../manager/metrics.js';
import { createManagerLogger } from '../manager/logging.js';
import { openStore } from '../store/open.js';
import type { Store } from '../store/store.js';
import { seedStore, type Seeded } from './api-fixtures.js';
import { createFakeControl, type FakeControl } from './fake-control.js';

export interface TestApi {
  readonly app: Api;
  readonly store: Store;
  readonly control: FakeControl;
  readonly bus: EventBus;
  readonly metrics: Metrics;
  readonly seeded: Seeded;
  readonly adminToken: string;
  readonly readToken: string;
  /** Authorization headers. */
  readonly admin: { authorization: string };
  readonly reader: { authorization: string };
  close(): Promise<void>;
}

export async function startTestApi(opts: Partial<Omit<ApiOptions, 'store' | 'control' | 'events' | 'metrics' | 'log'>> & { seed?: boolean } = {}): Promise<TestApi> {
  const store = await openStore(':memory:');
  try {
    const seeded = opts.seed === false ? emptySeed() : await seedStore(store);
    const adminToken = 'test-admin-token-0123456789';
    const readToken = 'test-read-token-0123456789';
    await ensureTokens(store, { adminToken, readToken });
    const control = createFakeControl(store);
    const bus = createEventBus();
    const metrics = createMetrics();
    const { seed: _seed, ...apiOpts } = opts;
    const app = await buildApi({
      ...apiOpts, store, control, events: bus, metrics, log: createManagerLogger({ level: 'silent' }),
    });
    return {
      app, store, control, bus, metrics, seeded, adminToken, readToken,
      admin: { authorization: `Bearer ${adminToken}` },
      reader: { authorization: `Bearer ${readToken}` },
      async close() {
        await app.close();
        await store.close();
      },
    };
  } catch (e) {
    await store.close();
    throw e;
  }
}

function emptySeed(): Seeded {
  return {
    sites: [], vms: { sensitive: '', plain: '', other: '' }, users: [],
    plans: { recommended: '', rejected: '', older: '' }, jobs: { queued: '', running: '', completed: '' },
  };
}
