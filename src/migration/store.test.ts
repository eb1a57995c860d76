import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createMemoryJobStore, openFileJobStore } from './store.js';
import { runJobStoreContract, sampleJob } from './store.contract.js';

runJobStoreContract('memory store', () => Promise.resolve({ store: createMemoryJobStore(), cleanup: () => Promise.resolve() }));

runJobStoreContract('file store', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'vmshadow-jobs-'));
  return {
    store: await openFileJobStore(dir),
    reopen: () => openFileJobStore(dir),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

describe('openFileJobStore()', () => {
  const withDir = async (fn: (dir: string) => Promise<void>): Promise<void> => {
    const dir = await mkdtemp(join(tmpdir(), 'vmshadow-jobs-'));
    try {
      await fn(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  };

  it('writes one JSON file per job and leaves no temporary file behind', () => withDir(async (dir) => {
    const store = await openFileJobStore(dir);
    await Promise.all([store.save(sampleJob('a')), store.save(sampleJob('b')), store.save(sampleJob('a'))]);
    assert.deepEqual((await readdir(dir)).sort(), ['a.json', 'b.json']);
  }));

  it('removes the temporary files a crash left behind when it opens, and keeps the records', () => withDir(async (dir) => {
    const store = await openFileJobStore(dir);
    await store.save(sampleJob('a'));
    await writeFile(join(dir, '.a.123.1.tmp'), '{"half');
    const again = await openFileJobStore(dir);
    assert.deepEqual(await readdir(dir), ['a.json']);
    assert.equal((await again.get('a'))?.id, 'a');
  }));

  it('refuses to load past a corrupt job file, naming it', () => withDir(async (dir) => {
    const store = await openFileJobStore(dir);
    await store.save(sampleJob('a'));
    await writeFile(join(dir, 'b.json'), '{"id": "b"');
    await assert.rejects(store.loadActive(), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'JOB_STORE_CORRUPT');
      assert.match(e.message, /b\.json is not JSON .*move it aside/);
      return true;
    });
  }));

  it('refuses a file whose record names another job', () => withDir(async (dir) => {
    await writeFile(join(dir, 'x.json'), JSON.stringify(sampleJob('y')));
    const store = await openFileJobStore(dir);
    await assert.rejects(store.get('x'), /x\.json holds job y/);
  }));
});
