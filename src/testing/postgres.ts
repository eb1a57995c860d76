// A private, throwaway PostgreSQL server for tests: initdb into a fresh temporary directory, one postgres
// process listening on 127.0.0.1 at a free port (and a socket in that directory), trust authentication,
// fsync off. Nothing outside the directory is touched; stop() ends the server by its pid and removes it.
// With VMSHADOW_TEST_PG_URL set (a server CI or a developer already runs), that server is used instead and
// every call gets fresh databases, dropped again by stop().
import { freePort } from './ports.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { chown, mkdtemp, rm, stat } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { AppError } from '../core/errors.js';

export interface TestPostgres {
  /** A fresh, empty database on the server. */
  readonly url: string;
  /** Another fresh, empty database; its URL. */
  createDatabase(): Promise<string>;
  /**
   * A fresh, empty schema in `url`'s database, as a URL whose connections put it first on the search_path:
   * as good as a new database for a store, and ten times cheaper to make.
   */
  createSchema(): Promise<string>;
  /** Stops the server (or drops the databases made on a given one) and removes what it created. */
  stop(): Promise<void>;
}

export interface TestPostgresOptions {
  /** Bound on initdb and on waiting for the server to accept connections (default 60 000 ms). */
  readonly timeoutMs?: number;
}

const BIN_CANDIDATES = ['17', '16', '15', '14', '13'].map((v) => `/usr/lib/postgresql/${v}/bin`);

/** Where postgres and initdb are: $VMSHADOW_PG_BIN or Debian's /usr/lib/postgresql/<version>/bin. */
export function findPostgresBin(): string | null {
  const fromEnv = process.env.VMSHADOW_PG_BIN;
  const dirs = fromEnv !== undefined && fromEnv !== '' ? [fromEnv] : BIN_CANDIDATES;
  return dirs.find((d) => existsSync(join(d, 'postgres')) && existsSync(join(d, 'initdb'))) ?? null;
}

let dbSeq = 0;
const newDbName = (): string => `vmshadow_test_${process.pid}_${++dbSeq}_${Math.random().toString(36).slice(2, 8)}`;

function withDatabase(url: string, db: string): string {
  const u = new URL(url);
  u.pathname = `/${db}`;
  return u.toString();
}

function schemaMaker(url: string): () => Promise<string> {
  return async () => {
    const name = newDbName();
    await adminQuery(url, `CREATE SCHEMA ${name}`);
    const u = new URL(url);
    u.searchParams.set('options', `-c search_path=${name}`);
    return u.toString();
  };
}

async function adminQuery(url: string, sql: string): Promise<void> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  await c.connect();
  try {
    await c.query(sql);
  } finally {
    await c.end();
  }
}

export async function startTestPostgres(opts: TestPostgresOptions = {}): Promise<TestPostgres> {
  const given = process.env.VMSHADOW_TEST_PG_URL;
  if (given !== undefined && given !== '') return useGivenServer(given);
  return startPrivateServer(opts.timeoutMs ?? 60_000);
}

async function useGivenServer(adminUrl: string): Promise<TestPostgres> {
  const made: string[] = [];
  const createDatabase = async (): Promise<string> => {
    const name = newDbName();
    await adminQuery(adminUrl, `CREATE DATABASE ${name}`);
    made.push(name);
    return withDatabase(adminUrl, name);
  };
  const url = await createDatabase();
  return {
    url,
    createDatabase,
    createSchema: schemaMaker(url),
    async stop() {
      for (const name of made.splice(0)) await adminQuery(adminUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    },
  };
}

/** The postgres OS user's uid and gid when we are root (postgres refuses to run as root); null otherwise. */
function postgresUser(): { uid: number; gid: number } | null {
  if (process.getuid?.() !== 0) return null;
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  const f = line?.split(':');
  if (f === undefined || f.length < 4) {
    throw new AppError('TEST_PG_NO_USER', 'Cannot start a test PostgreSQL server as root: there is no "postgres" user in /etc/passwd (apt-get install postgresql creates it)');
  }
  return { uid: Number(f[2]), gid: Number(f[3]) };
}

/** Keeps the last `max` characters a process wrote, for error messages. */
function tail(child: ChildProcess, max = 4000): () => string {
  let text = '';
  const add = (b: Buffer): void => {
    text = (text + b.toString('utf8')).slice(-max);
  };
  child.stdout?.on('data', add);
  child.stderr?.on('data', add);
  return () => text.trim();
}

function waitExit(child: ChildProcess, ms: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    child.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

async function run(cmd: string, args: string[], o: { user: { uid: number; gid: number } | null; timeoutMs: number }): Promise<void> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: pgEnv(), ...(o.user ?? {}) });
  const out = tail(child);
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));
  const exited = await Promise.race([waitExit(child, o.timeoutMs), spawnError]);
  if (exited instanceof Error) throw new AppError('TEST_PG_START', `Cannot run ${cmd}: ${exited.message}`, { cause: exited });
  if (!exited) {
    child.kill('SIGKILL');
    await waitExit(child, 5000);
    throw new AppError('TEST_PG_START', `${cmd} ${args.join(' ')} did not finish within ${o.timeoutMs} ms; its output: ${out()}`);
  }
  if (child.exitCode !== 0) throw new AppError('TEST_PG_START', `${cmd} ${args.join(' ')} failed (exit ${child.exitCode ?? child.signalCode}): ${out()}`);
}

const pgEnv = (): NodeJS.ProcessEnv => ({ PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', LC_ALL: 'C', TZ: 'UTC' });

async function startPrivateServer(timeoutMs: number): Promise<TestPostgres> {
  const bin = findPostgresBin();
  if (bin === null) {
    throw new AppError('TEST_PG_NOT_INSTALLED', `Cannot start a test PostgreSQL server: no postgres and initdb in ${BIN_CANDIDATES.join(', ')}; apt-get install postgresql, set VMSHADOW_PG_BIN, or point VMSHADOW_TEST_PG_URL at a server`);
  }
  const user = postgresUser();
  // As root the server runs as postgres, which must reach the directory: /tmp, not a TMPDIR under /root.
  const dir = await mkdtemp(join(user !== null && existsSync('/tmp') ? '/tmp' : tmpdir(), 'vmshadow-pg-'));
  let server: ChildProcess | null = null;
  const stopServer = async (): Promise<void> => {
    const s = server;
    server = null;
    if (s !== null && s.pid !== undefined) {
      // SIGINT: PostgreSQL's fast shutdown (sessions ended, no waiting for clients); SIGKILL if it hangs.
      s.kill('SIGINT');
      if (!(await waitExit(s, 10_000))) {
        s.kill('SIGKILL');
        await waitExit(s, 5000);
      }
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    if (user !== null) await chown(dir, user.uid, user.gid);
    const data = join(dir, 'data');
    await run(join(bin, 'initdb'), ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--locale=C', '--no-sync'], { user, timeoutMs });

    let lastError = '';
    for (let attempt = 1; attempt <= 3 && server === null; attempt++) {
      const port = await freePort();
      const child = spawn(join(bin, 'postgres'), [
        '-D', data, '-p', String(port), '-h', '127.0.0.1', '-k', dir,
        '-c', 'fsync=off', '-c', 'synchronous_commit=off', '-c', 'full_page_writes=off',
        '-c', 'max_connections=200', '-c', 'shared_buffers=32MB', '-c', 'log_min_messages=warning',
      ], { stdio: ['ignore', 'pipe', 'pipe'], env: pgEnv(), ...(user ?? {}) });
      const out = tail(child);
      child.on('error', () => undefined);
      const adminUrl = `postgres://postgres@127.0.0.1:${port}/postgres`;
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
          lastError = `postgres exited (${child.exitCode ?? child.signalCode ?? 'could not start'}): ${out()}`;
          break;
        }
        try {
          await adminQuery(adminUrl, 'SELECT 1');
          server = child;
          break;
        } catch (e) {
          lastError = (e as Error).message;
        }
        if (Date.now() > deadline) {
          child.kill('SIGKILL');
          await waitExit(child, 5000);
          throw new AppError('TEST_PG_START', `The test PostgreSQL server on port ${port} did not accept connections within ${timeoutMs} ms (last: ${lastError}); its log: ${out()}`);
        }
        await sleep(100);
      }
      if (server !== null) {
        const admin = adminUrl;
        const createDatabase = async (): Promise<string> => {
          const name = newDbName();
          await adminQuery(admin, `CREATE DATABASE ${name}`);
          return withDatabase(admin, name);
        };
        const url = await createDatabase();
        return { url, createDatabase, createSchema: schemaMaker(url), stop: stopServer };
      }
    }
    throw new AppError('TEST_PG_START', `Cannot start a test PostgreSQL server in ${dir} after 3 attempts: ${lastError}`);
  } catch (e) {
    await stopServer();
    throw e;
  }
}

/** True when a test PostgreSQL server can be had here (binaries installed, or VMSHADOW_TEST_PG_URL set). */
export async function testPostgresAvailable(): Promise<boolean> {
  const given = process.env.VMSHADOW_TEST_PG_URL;
  if (given !== undefined && given !== '') return true;
  const bin = findPostgresBin();
  return bin !== null && (await stat(join(bin, 'postgres')).then(() => true, () => false));
}
