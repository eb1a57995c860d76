import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { openStore } from '../store/open.js';
import type { TokenRecord } from '../store/records.js';
import type { Store } from '../store/store.js';
import { dumpStore } from '../testing/api-fixtures.js';
import { createTokenVerifier, ensureTokens, sha256Hex } from './auth.js';

describe('ensureTokens()', () => {
  let store: Store;
  before(async () => {
    store = await openStore(':memory:');
  });
  after(async () => {
    await store.close();
  });

  it('generates an admin token at first start, stores only its SHA-256, and generates none the next time', async () => {
    const first = await ensureTokens(store);
    assert.ok(first.admin !== undefined && first.admin.length >= 40, 'an admin token is returned to print');
    assert.equal(first.read, undefined, 'no read-only token unless asked');
    const dump = await dumpStore(store);
    assert.ok(!dump.includes(first.admin), 'the token itself is not stored');
    const doc = await store.get<TokenRecord>('tokens', 'admin');
    assert.equal(doc?.value.sha256, sha256Hex(first.admin));
    assert.deepEqual([doc?.group, doc?.status], [sha256Hex(first.admin), 'admin'], 'indexed by hash and role, as store/repos.ts reads tokens');
    assert.deepEqual(await ensureTokens(store), {});
    assert.equal((await store.get<TokenRecord>('tokens', 'admin'))?.value.sha256, sha256Hex(first.admin), 'the stored hash is kept');
  });

  it('generates a read-only token on request, different from the admin token', async () => {
    const t = await ensureTokens(store, { generateRead: true });
    assert.equal(t.admin, undefined);
    assert.ok(t.read !== undefined);
    assert.ok(t.read.startsWith('vsr_'));
    assert.equal((await store.get<TokenRecord>('tokens', 'read'))?.value.role, 'read');
  });

  it('takes the admin token from the environment, replacing a generated one, and returns nothing to print', async () => {
    const env = 'env-admin-token-0123456789';
    assert.deepEqual(await ensureTokens(store, { adminToken: env }), {});
    assert.equal((await store.get<TokenRecord>('tokens', 'admin'))?.value.sha256, sha256Hex(env));
    const v = createTokenVerifier(store);
    assert.equal((await v.verify(env))?.role, 'admin');
  });

  it('refuses a token from the environment that is too short, naming the variable', async () => {
    await assert.rejects(ensureTokens(store, { adminToken: 'short' }), /VMSHADOW_ADMIN_TOKEN must be at least 16 characters/);
    await assert.rejects(ensureTokens(store, { adminToken: 'same-token-0123456789', readToken: 'same-token-0123456789' }), /must differ/);
  });

  it('lets exactly one of two replicas starting at once generate the admin token', async () => {
    const fresh = await openStore(':memory:');
    try {
      const [a, b] = await Promise.all([ensureTokens(fresh), ensureTokens(fresh)]);
      const printed = [a.admin, b.admin].filter((t) => t !== undefined);
      assert.equal(printed.length, 1, 'one token printed');
      assert.equal((await createTokenVerifier(fresh).verify(printed[0] ?? ''))?.role, 'admin', 'and it is the stored one');
    } finally {
      await fresh.close();
    }
  });
});

describe('createTokenVerifier()', () => {
  it('tells the admin token from the read-only one and refuses anything else', async () => {
    const store = await openStore(':memory:');
    try {
      const t = await ensureTokens(store, { generateRead: true });
      const v = createTokenVerifier(store);
      assert.deepEqual(await v.verify(t.admin ?? ''), { role: 'admin', actor: 'api:admin' });
      assert.deepEqual(await v.verify(t.read ?? ''), { role: 'read', actor: 'api:read' });
      assert.equal(await v.verify(`${t.admin ?? ''}x`), null);
      assert.equal(await v.verify(''), null);
      assert.equal(await v.verify('x'.repeat(10_000)), null);
      assert.equal(await v.verify(sha256Hex(t.admin ?? '')), null, 'the stored hash is not itself a token');
    } finally {
      await store.close();
    }
  });

  it('picks up a token stored after it loaded, without reloading on every wrong token', async () => {
    const store = await openStore(':memory:');
    try {
      let now = 1_000_000;
      let lists = 0;
      const counting = new Proxy(store, {
        get(target, prop) {
          if (prop === 'list') {
            return (...args: Parameters<Store['list']>) => {
              lists++;
              return target.list(...args);
            };
          }
          const v: unknown = Reflect.get(target, prop, target);
          return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
        },
      });
      const v = createTokenVerifier(counting, { cacheMs: 60_000, missReloadMs: 1_000, nowMs: () => now });
      assert.equal(await v.verify('not-a-token-at-all'), null);
      const loadsAfterFirst = lists;
      for (let i = 0; i < 20; i++) assert.equal(await v.verify(`wrong-${i}`), null);
      assert.equal(lists, loadsAfterFirst, 'wrong tokens within a second do not reload');
      const t = await ensureTokens(store);
      now += 1_500;
      assert.equal((await v.verify(t.admin ?? ''))?.role, 'admin', 'a miss after the reload interval reloads');
    } finally {
      await store.close();
    }
  });
});
