// Where migration jobs are kept, so that a restarted manager finds what was in flight.
import { mkdir, open, readFile, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { AppError, InputError } from '../core/errors.js';
import { createKeyedSerial } from '../core/serial.js';
import type { VmId } from '../core/ids.js';
import { isTerminal, type JobRecord } from './job.js';

/**
 * The executor's persistence. Small on purpose: the SQLite and PostgreSQL stores implement the same four
 * calls, and `runJobStoreContract` (store.contract.ts) checks any implementation.
 *
 * - A record is saved whole (state, history, request, progress): `save` inserts or replaces by `id`, and is
 *   durable once its promise resolves — the executor acts on a phase only after that.
 * - Saves of one job are applied in the order they were called.
 * - Reads return copies: changing a returned record changes nothing stored.
 */
export interface JobStore {
  save(record: JobRecord): Promise<void>;
  get(id: string): Promise<JobRecord | null>;
  /** Every job not in a terminal state (what a restart must reconcile), oldest first. */
  loadActive(): Promise<JobRecord[]>;
  /** Every job of one VM, whatever its state, oldest first. */
  listByVm(vm: VmId): Promise<JobRecord[]>;
}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$/;

/** Job ids become file names and keys: letters, digits, '.', '_' and '-', at most 200. */
export function checkJobId(id: string): void {
  if (!ID_RE.test(id)) throw new InputError('id', id, 'must be 1-200 letters, digits, ".", "_" or "-", starting with a letter or digit');
}

const byAge = (a: JobRecord, b: JobRecord): number => a.createdAtMs - b.createdAtMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
const copy = (r: JobRecord): JobRecord => structuredClone(r);

/** Keeps jobs in memory: tests, the simulator, a dry run. */
export function createMemoryJobStore(): JobStore {
  const jobs = new Map<string, JobRecord>();
  return {
    async save(record) {
      checkJobId(record.id);
      jobs.set(record.id, copy(record));
      return Promise.resolve();
    },
    get(id) {
      const r = jobs.get(id);
      return Promise.resolve(r === undefined ? null : copy(r));
    },
    loadActive() {
      return Promise.resolve([...jobs.values()].filter((r) => !isTerminal(r.state)).sort(byAge).map(copy));
    },
    listByVm(vm) {
      return Promise.resolve([...jobs.values()].filter((r) => r.vm === vm).sort(byAge).map(copy));
    },
  };
}

/**
 * One JSON file per job in `dir` (`<id>.json`), each written to a temporary file, fsync'ed, renamed over the
 * old one and the directory fsync'ed: a crash leaves either the old record or the new one, never half of
 * one. Temporary files a crash left behind are removed when the store opens. A file that cannot be read is
 * an error, not skipped: reconciling without it could leave a VM running twice.
 */
export async function openFileJobStore(dir: string): Promise<JobStore> {
  await mkdir(dir, { recursive: true });
  for (const name of await readdir(dir)) {
    if (name.startsWith('.') && name.endsWith('.tmp')) await rm(join(dir, name), { force: true });
  }
  let tmpSeq = 0;
  const serial = createKeyedSerial();

  const fsyncDir = async (): Promise<void> => {
    const h = await open(dir, 'r');
    try {
      await h.sync();
    } finally {
      await h.close();
    }
  };

  const write = async (record: JobRecord): Promise<void> => {
    const file = join(dir, `${record.id}.json`);
    const tmp = join(dir, `.${record.id}.${process.pid}.${++tmpSeq}.tmp`);
    const h = await open(tmp, 'w', 0o600);
    try {
      await h.writeFile(JSON.stringify(record) + '\n');
      await h.sync();
    } finally {
      await h.close();
    }
    try {
      await rename(tmp, file);
    } catch (e) {
      await rm(tmp, { force: true });
      throw e;
    }
    await fsyncDir();
  };

  const readOne = async (name: string): Promise<JobRecord | null> => {
    const path = join(dir, name);
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new AppError('JOB_STORE_READ', `Cannot read job file ${path}: ${(e as Error).message}`, { retryable: true, cause: e });
    }
    let r: unknown;
    try {
      r = JSON.parse(text);
    } catch (e) {
      throw corrupt(path, `is not JSON (${(e as Error).message})`, e);
    }
    const o = r as Partial<JobRecord> | null;
    if (typeof o !== 'object' || o === null || typeof o.id !== 'string' || typeof o.vm !== 'string'
      || typeof o.state !== 'object' || o.state === null || typeof o.state.kind !== 'string'
      || !Array.isArray(o.history) || typeof o.createdAtMs !== 'number') {
      throw corrupt(path, 'is not a job record (needs id, vm, state.kind, history, createdAtMs)');
    }
    if (`${o.id}.json` !== name) throw corrupt(path, `holds job ${o.id}`);
    return o as JobRecord;
  };

  const readAll = async (): Promise<JobRecord[]> => {
    const names = (await readdir(dir)).filter((n) => n.endsWith('.json') && !n.startsWith('.'));
    const out: JobRecord[] = [];
    for (const n of names) {
      const r = await readOne(n);
      if (r !== null) out.push(r);
    }
    return out.sort(byAge);
  };

  return {
    async save(record) {
      checkJobId(record.id);
      const data = copy(record);
      return serial(record.id, () => write(data)).catch((e: unknown) => {
        throw new AppError('JOB_STORE_WRITE', `Cannot save job ${record.id} in ${dir}: ${(e as Error).message}; the job stays ${record.state.kind} in memory only`, { retryable: true, cause: e });
      });
    },
    async get(id) {
      checkJobId(id);
      return readOne(`${id}.json`);
    },
    async loadActive() {
      return (await readAll()).filter((r) => !isTerminal(r.state));
    },
    async listByVm(vm) {
      return (await readAll()).filter((r) => r.vm === vm);
    },
  };
}

function corrupt(path: string, what: string, cause?: unknown): AppError {
  return new AppError('JOB_STORE_CORRUPT', `Job file ${path} ${what}; move it aside and reconcile that VM by hand`, { cause });
}
