// What the manager announces as it works: the API's SSE stream and the dashboard listen here.
import type { JobRecord } from '../migration/job.js';
import type { MigrationProgress } from '../migration/driver.js';
import type { VmId } from '../core/ids.js';
import type { AuditEvent, FingerprintPoint, PlanRecord, RoundRecord, Settings, UserRecord, VmRecord } from '../store/records.js';
import type { LogEntry } from '../store/store.js';

export type ManagerEvent =
  | { readonly type: 'round'; readonly round: RoundRecord }
  | { readonly type: 'plan'; readonly plan: PlanRecord }
  | { readonly type: 'migration'; readonly job: JobRecord }
  | { readonly type: 'progress'; readonly jobId: string; readonly vm: VmId; readonly progress: MigrationProgress }
  | { readonly type: 'fingerprint'; readonly vm: VmId; readonly atMs: number; readonly point: FingerprintPoint }
  | { readonly type: 'vm'; readonly vm: VmRecord }
  | { readonly type: 'user'; readonly user: UserRecord }
  | { readonly type: 'audit'; readonly entry: LogEntry<AuditEvent> }
  | { readonly type: 'settings'; readonly settings: Settings };

export type ManagerEventType = ManagerEvent['type'];

export interface EventBus {
  publish(e: ManagerEvent): void;
  /** Returns the unsubscribe function. A listener that throws is logged by the caller's wrapper, never breaks others. */
  subscribe(listener: (e: ManagerEvent) => void): () => void;
  readonly listeners: number;
}

export function createEventBus(onListenerError: (e: unknown) => void = () => undefined): EventBus {
  const listeners = new Set<(e: ManagerEvent) => void>();
  return {
    publish(e) {
      for (const l of [...listeners]) {
        try {
          l(e);
        } catch (err) {
          onListenerError(err);
        }
      }
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    get listeners() {
      return listeners.size;
    },
  };
}
