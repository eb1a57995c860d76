// The contract every Store keeps (SQLite and PostgreSQL): each backend's test calls runStoreContract with a
// factory that opens an EMPTY store. The suite closes every store it opens.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { AppError, InputError } from '../core/errors.js';
import { SCHEMA_VERSION } from './schema.js';
import { hostId, siteId, userId, vmId } from '../core/ids.js';
import type { VmRecord } from './records.js';
import type { Doc, Store } from './store.js';

const isCode = (code: string) => (e: unknown): boolean => {
  assert.ok(e instanceof AppError, `expected an AppError ${code}, got ${String(e)}`);
  assert.equal(e.code, code, e.message);
  return true;
};

/** Fails unless the promise rejects with an InputError naming `field`. */
async function rejectsInput(p: Promise<unknown>, field: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof InputError, `expected an InputError on ${field}, got ${String(e)}`);
    assert.equal(e.field, field, e.message);
    assert.ok(e.message.startsWith(`${field}: `), e.message);
    return true;
  });
}

const ids = (docs: readonly Doc<unknown>[]): string[] => docs.map((d) => d.id);

/** What a value reads back as: itself, as JSON. */
const asJson = (v: unknown): unknown => JSON.parse(JSON.stringify(v)) as unknown;

export function runStoreContract(name: string, open: () => Promise<Store>): void {
  describe(`${name}: the Store contract`, () => {
    const withStore = async (fn: (s: Store) => Promise<void>): Promise<void> => {
      const s = await open();
      try {
        await fn(s);
      } finally {
        await s.close();
      }
    };

    it('opens at the current schema version, with a location and no secret in it', () => withStore((s) => {
      assert.equal(s.schemaVersion, SCHEMA_VERSION);
      assert.ok(s.location.startsWith(`${s.kind === 'sqlite' ? 'sqlite' : 'postgres'}:`), s.location);
      assert.doesNotMatch(s.location, /:[^:@/]+@/);
      return Promise.resolve();
    }));

    describe('documents', () => {
      it('gives back what was put at rev 1, then rev 2 after another put; an unknown id is null', () => withStore(async (s) => {
        const a = await s.put('vms', 'vm-1', { name: 'a' });
        assert.equal(a.id, 'vm-1');
        assert.equal(a.rev, 1);
        assert.deepEqual(a.value, { name: 'a' });
        const b = await s.put('vms', 'vm-1', { name: 'b' });
        assert.equal(b.rev, 2);
        assert.ok(b.updatedAtMs >= a.updatedAtMs);
        assert.deepEqual(await s.get('vms', 'vm-1'), b);
        assert.equal(await s.get('vms', 'vm-2'), null);
      }));

      it('keeps collections apart: one id in two collections is two documents', () => withStore(async (s) => {
        await s.put('vms', 'x', 1);
        await s.put('hosts', 'x', 2);
        assert.equal((await s.get('vms', 'x'))?.value, 1);
        assert.equal((await s.get('hosts', 'x'))?.value, 2);
        assert.equal(await s.count('vms'), 1);
        assert.equal(await s.delete('hosts', 'x'), true);
        assert.equal((await s.get('vms', 'x'))?.value, 1);
      }));

      it('accepts a put whose expectRev is the stored rev; a stale one fails with STORE_CONFLICT naming both and changes nothing', () => withStore(async (s) => {
        await s.put('plans', 'p1', { v: 1 });
        const two = await s.put('plans', 'p1', { v: 2 }, { expectRev: 1 });
        assert.equal(two.rev, 2);
        await assert.rejects(s.put('plans', 'p1', { v: 3 }, { expectRev: 1 }), (e: unknown) => {
          isCode('STORE_CONFLICT')(e);
          assert.match((e as Error).message, /revision 1.*revision 2/);
          assert.equal((e as AppError).retryable, true);
          return true;
        });
        assert.deepEqual(await s.get('plans', 'p1'), two);
      }));

      it('expectRev null creates only: a second create fails with STORE_CONFLICT; expectRev on a missing id fails too', () => withStore(async (s) => {
        assert.equal((await s.put('plans', 'p1', 'first', { expectRev: null })).rev, 1);
        await assert.rejects(s.put('plans', 'p1', 'second', { expectRev: null }), isCode('STORE_CONFLICT'));
        assert.equal((await s.get('plans', 'p1'))?.value, 'first');
        await assert.rejects(s.put('plans', 'p2', 'x', { expectRev: 1 }), isCode('STORE_CONFLICT'));
        assert.equal(await s.get('plans', 'p2'), null);
      }));

      it('lets exactly one of several concurrent puts with the same expectRev win (and one of several creates)', () => withStore(async (s) => {
        await s.put('vms', 'vm-1', { by: 'nobody' });
        const results = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => s.put('vms', 'vm-1', { by: i }, { expectRev: 1 })));
        const won = results.filter((r) => r.status === 'fulfilled');
        assert.equal(won.length, 1);
        for (const r of results) if (r.status === 'rejected') isCode('STORE_CONFLICT')(r.reason);
        const stored = await s.get('vms', 'vm-1');
        assert.equal(stored?.rev, 2);
        assert.deepEqual(stored?.value, (won[0] as PromiseFulfilledResult<Doc<unknown>>).value.value);

        const creates = await Promise.allSettled(Array.from({ length: 8 }, (_, i) => s.put('vms', 'vm-new', i, { expectRev: null })));
        assert.equal(creates.filter((r) => r.status === 'fulfilled').length, 1);
        assert.equal((await s.get('vms', 'vm-new'))?.rev, 1);
      }));

      it('a put replaces group and status too (left out means null)', () => withStore(async (s) => {
        const a = await s.put('jobs', 'j1', {}, { group: 'vm-1', status: 'active' });
        assert.equal(a.group, 'vm-1');
        assert.equal(a.status, 'active');
        const b = await s.put('jobs', 'j1', {});
        assert.equal(b.group, null);
        assert.equal(b.status, null);
        assert.deepEqual(await s.list('jobs', { group: 'vm-1' }), []);
      }));

      it('lists by group, by status and by both, ordered by id, and counts the same', () => withStore(async (s) => {
        await s.put('jobs', 'j3', 3, { group: 'vm-1', status: 'ended' });
        await s.put('jobs', 'j1', 1, { group: 'vm-1', status: 'active' });
        await s.put('jobs', 'j2', 2, { group: 'vm-2', status: 'active' });
        await s.put('jobs', 'j4', 4);
        await s.put('vms', 'j0', 0, { group: 'vm-1', status: 'active' });
        assert.deepEqual(ids(await s.list('jobs')), ['j1', 'j2', 'j3', 'j4']);
        assert.deepEqual(ids(await s.list('jobs', { group: 'vm-1' })), ['j1', 'j3']);
        assert.deepEqual(ids(await s.list('jobs', { status: 'active' })), ['j1', 'j2']);
        assert.deepEqual(ids(await s.list('jobs', { group: 'vm-1', status: 'active' })), ['j1']);
        assert.deepEqual(ids(await s.list('jobs', { group: 'vm-9' })), []);
        assert.equal(await s.count('jobs'), 4);
        assert.equal(await s.count('jobs', { group: 'vm-1' }), 2);
        assert.equal(await s.count('jobs', { status: 'active' }), 2);
        assert.equal(await s.count('jobs', { group: 'vm-1', status: 'ended' }), 1);
        const [first] = await s.list('jobs', { group: 'vm-2' });
        assert.deepEqual(first, await s.get('jobs', 'j2'));
      }));

      it('pages by afterId: every document once, in byte order of ids, at any page size, both ways', () => withStore(async (s) => {
        const all = ['a', 'B', 'a-1', 'a.2', 'a_3', 'b', 'vm-10', 'vm-2', 'vm-9', 'z', 'Z', '~', '0', 'é', '日本'];
        await s.putMany('vms', all.map((id) => ({ id, value: id, group: 'g' })));
        const byBytes = [...all].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
        for (const limit of [1, 2, 4, 100]) {
          for (const order of ['asc', 'desc'] as const) {
            const seen: string[] = [];
            let afterId: string | undefined;
            for (let page = 0; page < 100; page++) {
              const docs = await s.list('vms', { limit, order, group: 'g', ...(afterId === undefined ? {} : { afterId }) });
              assert.ok(docs.length <= limit);
              seen.push(...ids(docs));
              if (docs.length < limit) break;
              afterId = docs[docs.length - 1]?.id;
            }
            assert.deepEqual(seen, order === 'asc' ? byBytes : [...byBytes].reverse(), `limit ${limit} ${order}`);
          }
        }
        assert.deepEqual(ids(await s.list('vms', { afterId: 'vm-2' })), ['vm-9', 'z', '~', 'é', '日本']);
      }));

      it('delete removes a document and says whether there was one', () => withStore(async (s) => {
        await s.put('tokens', 't1', { role: 'admin' });
        assert.equal(await s.delete('tokens', 't1'), true);
        assert.equal(await s.delete('tokens', 't1'), false);
        assert.equal(await s.get('tokens', 't1'), null);
        const again = await s.put('tokens', 't1', { role: 'read' });
        assert.equal(again.rev, 1);
      }));

      it('putMany writes every entry in one go and bumps the revs of those that existed', () => withStore(async (s) => {
        await s.put('vms', 'vm-2', { old: true });
        await s.putMany('vms', [
          { id: 'vm-1', value: { n: 1 }, group: 'eu', status: 's' },
          { id: 'vm-2', value: { n: 2 } },
          { id: 'vm-3', value: { n: 3 }, group: 'us' },
        ]);
        const docs = await s.list<{ n: number }>('vms');
        assert.deepEqual(docs.map((d) => [d.id, d.rev, d.value.n, d.group, d.status]),
          [['vm-1', 1, 1, 'eu', 's'], ['vm-2', 2, 2, null, null], ['vm-3', 1, 3, 'us', null]]);
        await s.putMany('vms', []);
        assert.equal(await s.count('vms'), 3);
      }));

      it('putMany with one bad entry (odd id, unstorable value, an id twice) writes nothing', () => withStore(async (s) => {
        await s.put('vms', 'vm-1', 'before');
        const good: { id: string; value: unknown; group?: string }[] = Array.from({ length: 50 }, (_, i) => ({ id: `vm-${i}`, value: 'after' }));
        await rejectsInput(s.putMany('vms', [...good, { id: 'bad id', value: 1 }]), 'entries[50].id');
        await rejectsInput(s.putMany('vms', [...good, { id: 'vm-x', value: undefined }]), 'entries[50].value');
        await rejectsInput(s.putMany('vms', [...good, { id: 'vm-3', value: 1 }]), 'entries[50].id');
        await rejectsInput(s.putMany('vms', [...good, { id: 'vm-x', value: 1, group: '' }]), 'entries[50].group');
        assert.equal(await s.count('vms'), 1);
        assert.deepEqual(await s.get('vms', 'vm-1').then((d) => [d?.rev, d?.value]), [1, 'before']);
      }));

      it('gives values back exactly: nested JSON, unicode, numbers large and small', () => withStore(async (s) => {
        const odd = {
          nested: { a: [1, [2, [3, { deep: null }]]], empty: {}, none: [] },
          text: 'héllo 世界 🎉 "quoted" \\ back\nslash \t tab \u0000 nul \u2028 \ud83d alone',
          numbers: [0, -1, 1.5, 0.1 + 0.2, 1e300, -1e-300, 5e-324, Number.MAX_SAFE_INTEGER, 2 ** 53 + 2, -123456789.5, 1234.5678],
          flags: [true, false, null],
          keys: { z: 1, a: 2, 'with space': 3, 'ünï': 4, '': 5 },
        };
        for (const v of [odd, 'plain', 42, -0.5, true, null, [], {}]) {
          await s.put('settings', 'v', v);
          assert.deepEqual((await s.get('settings', 'v'))?.value, v);
        }
        await s.putMany('settings', [{ id: 'many', value: odd }]);
        assert.deepEqual((await s.get('settings', 'many'))?.value, odd);
        const [seq] = await s.append('audit', [{ key: 'k', atMs: 1, value: odd }]);
        assert.deepEqual((await s.read('audit', { limit: 1 }))[0], { seq, key: 'k', atMs: 1, value: odd });
        await fc.assert(fc.asyncProperty(fc.jsonValue(), async (v) => {
          const doc = await s.put('settings', 'p', v);
          assert.deepEqual(doc.value, asJson(v));
          assert.deepEqual((await s.get('settings', 'p'))?.value, asJson(v));
        }), { numRuns: 40 });
      }));

      it('returns copies: changing a value that was put or read changes nothing stored', () => withStore(async (s) => {
        const v = { list: [1, 2] };
        const put = await s.put('users', 'u1', v);
        v.list.push(3);
        put.value.list.push(4);
        const got = await s.get<{ list: number[] }>('users', 'u1');
        assert.deepEqual(got?.value, { list: [1, 2] });
        got?.value.list.push(5);
        assert.deepEqual((await s.get('users', 'u1'))?.value, { list: [1, 2] });
      }));

      it('refuses values that are not JSON (undefined, a function, a bigint) with an InputError naming value', () => withStore(async (s) => {
        await rejectsInput(s.put('vms', 'vm-1', undefined), 'value');
        await rejectsInput(s.put('vms', 'vm-1', () => 1), 'value');
        await rejectsInput(s.put('vms', 'vm-1', { n: 1n }), 'value');
        assert.equal(await s.get('vms', 'vm-1'), null);
      }));
    });

    describe('checks what it is given', () => {
      it('refuses huge and odd ids with an InputError naming the field, in every call', () => withStore(async (s) => {
        const bad = ['', 'x'.repeat(257), 'has space', 'tab\t', 'nul\u0000', 'line\n', 'lone\ud800', '\u200b', 7 as unknown as string];
        for (const id of bad) {
          await rejectsInput(s.get('vms', id), 'id');
          await rejectsInput(s.put('vms', id, 1), 'id');
          await rejectsInput(s.delete('vms', id), 'id');
          await rejectsInput(s.append('audit', [{ key: id, atMs: 0, value: 1 }]), 'entries[0].key');
          await rejectsInput(s.acquireLease(id, 'me', 1000), 'name');
          await rejectsInput(s.acquireLease('lead', id, 1000), 'holder');
          await rejectsInput(s.list('vms', { group: id }), 'group');
          await rejectsInput(s.put('vms', 'ok', 1, { status: id }), 'status');
        }
        assert.equal(await s.count('vms'), 0);
        const longest = 'x'.repeat(256);
        assert.equal((await s.put('vms', longest, 1)).id, longest);
        assert.equal((await s.put('vms', 'site:eu-west~us-east/vm_1.2@h', 1)).rev, 1);
      }));

      it('validates limits and other numbers with an InputError naming the field', () => withStore(async (s) => {
        for (const limit of [0, -1, 1.5, 100_001, Number.NaN, '10' as unknown as number]) {
          await rejectsInput(s.list('vms', { limit }), 'limit');
          await rejectsInput(s.read('audit', { limit }), 'limit');
        }
        await rejectsInput(s.read('audit', {} as { limit: number }), 'limit');
        await rejectsInput(s.read('audit', { limit: 10, afterSeq: -1 }), 'afterSeq');
        await rejectsInput(s.read('audit', { limit: 10, sinceMs: Number.POSITIVE_INFINITY }), 'sinceMs');
        await rejectsInput(s.read('audit', { limit: 10, order: 'up' as 'asc' }), 'order');
        await rejectsInput(s.put('vms', 'vm-1', 1, { expectRev: 0 }), 'expectRev');
        await rejectsInput(s.append('audit', [{ key: 'k', atMs: 1.5, value: 1 }]), 'entries[0].atMs');
        await rejectsInput(s.trim('audit', Number.NaN), 'beforeMs');
        await rejectsInput(s.acquireLease('lead', 'me', 0), 'ttlMs');
        await rejectsInput(s.acquireLease('lead', 'me', 1e12), 'ttlMs');
        assert.equal((await s.list('vms', { limit: 100_000 })).length, 0);
      }));

      it('refuses an unknown collection or log with an InputError', () => withStore(async (s) => {
        await rejectsInput(s.get('nope' as 'vms', 'x'), 'collection');
        await rejectsInput(s.read('nope' as 'audit', { limit: 1 }), 'log');
      }));

      it('refuses calls after close with STORE_CLOSED', async () => {
        const s = await open();
        await s.close();
        await assert.rejects(s.get('vms', 'x'), isCode('STORE_CLOSED'));
        await s.close();
      });
    });

    describe('logs', () => {
      it('gives increasing seqs across keys and appends, and reads them back in order', () => withStore(async (s) => {
        const a = await s.append('audit', [{ key: 'vm-1', atMs: 10, value: 'a' }, { key: 'vm-2', atMs: 11, value: 'b' }]);
        const b = await s.append('audit', [{ key: 'vm-1', atMs: 12, value: 'c' }]);
        const c = await s.append('rtts', [{ key: 'vm-1', atMs: 12, value: 'other log' }]);
        const seqs = [...a, ...b];
        assert.equal(seqs.length, 3);
        for (let i = 1; i < seqs.length; i++) assert.ok((seqs[i] ?? 0) > (seqs[i - 1] ?? 0), `${seqs.join(',')}`);
        assert.equal(c.length, 1);
        assert.deepEqual(await s.read('audit', { limit: 10 }), [
          { seq: a[0], key: 'vm-1', atMs: 10, value: 'a' },
          { seq: a[1], key: 'vm-2', atMs: 11, value: 'b' },
          { seq: b[0], key: 'vm-1', atMs: 12, value: 'c' },
        ]);
        assert.deepEqual(await s.append('audit', []), []);
      }));

      it('keeps seqs increasing under concurrent appends', () => withStore(async (s) => {
        const got = await Promise.all(Array.from({ length: 10 }, (_, i) => s.append('fingerprints', [{ key: `k${i}`, atMs: i, value: i }, { key: `k${i}`, atMs: i, value: i }])));
        for (const seqs of got) assert.ok((seqs[1] ?? 0) > (seqs[0] ?? 0));
        const read = await s.read<number>('fingerprints', { limit: 100 });
        assert.equal(read.length, 20);
        assert.deepEqual(read.map((e) => e.seq), got.flat().sort((x, y) => x - y));
      }));

      it('reads by key, after a seq, since a time, newest first, and at most limit entries', () => withStore(async (s) => {
        const entries = Array.from({ length: 20 }, (_, i) => ({ key: i % 2 === 0 ? 'even' : 'odd', atMs: 1000 + i * 10, value: i }));
        const seqs = await s.append('rtts', entries);
        const vals = async (q: Parameters<Store['read']>[1]): Promise<number[]> => (await s.read<number>('rtts', q)).map((e) => e.value);
        assert.deepEqual(await vals({ key: 'odd', limit: 3 }), [1, 3, 5]);
        assert.deepEqual(await vals({ afterSeq: seqs[16], limit: 100 }), [17, 18, 19]);
        assert.deepEqual(await vals({ sinceMs: 1170, limit: 100 }), [17, 18, 19]);
        assert.deepEqual(await vals({ limit: 3, order: 'desc' }), [19, 18, 17]);
        assert.deepEqual(await vals({ key: 'even', sinceMs: 1100, order: 'desc', limit: 2 }), [18, 16]);
        assert.deepEqual(await vals({ key: 'even', afterSeq: seqs[14], sinceMs: 1000, limit: 100 }), [16, 18]);
        assert.deepEqual(await vals({ key: 'none', limit: 5 }), []);
        assert.deepEqual(await vals({ afterSeq: (seqs[19] ?? 0) + 100, limit: 5 }), []);
      }));

      it('trims entries older than beforeMs, in that log only, and says how many', () => withStore(async (s) => {
        await s.append('audit', [1, 2, 3, 4, 5].map((t) => ({ key: 'k', atMs: t, value: t })));
        await s.append('rtts', [{ key: 'k', atMs: 1, value: 0 }]);
        assert.equal(await s.trim('audit', 3), 2);
        assert.deepEqual((await s.read<number>('audit', { limit: 10 })).map((e) => e.value), [3, 4, 5]);
        assert.equal(await s.trim('audit', 3), 0);
        assert.equal((await s.read('rtts', { limit: 10 })).length, 1);
      }));

      it('append with one bad entry writes nothing', () => withStore(async (s) => {
        await rejectsInput(s.append('audit', [{ key: 'a', atMs: 1, value: 1 }, { key: 'b', atMs: 2, value: undefined }]), 'entries[1].value');
        assert.deepEqual(await s.read('audit', { limit: 10 }), []);
      }));
    });

    describe('leases', () => {
      it('gives a free lease; its holder renews it later; another holder is refused while it is valid', () => withStore(async (s) => {
        assert.equal(await s.getLease('leader'), null);
        const a = await s.acquireLease('leader', 'replica-a', 10_000);
        assert.equal(a.holder, 'replica-a');
        assert.equal(a.name, 'leader');
        await sleep(5);
        const renewed = await s.acquireLease('leader', 'replica-a', 10_000);
        assert.equal(renewed.holder, 'replica-a');
        assert.ok(renewed.expiresAtMs > a.expiresAtMs, `${renewed.expiresAtMs} > ${a.expiresAtMs}`);
        const refused = await s.acquireLease('leader', 'replica-b', 10_000);
        assert.deepEqual(refused, renewed);
        assert.deepEqual(await s.getLease('leader'), renewed);
        assert.equal((await s.acquireLease('other', 'replica-b', 10_000)).holder, 'replica-b');
      }));

      it('lets another holder take over once the lease expired', () => withStore(async (s) => {
        await s.acquireLease('leader', 'replica-a', 200);
        assert.equal((await s.acquireLease('leader', 'replica-b', 200)).holder, 'replica-a');
        await sleep(300);
        assert.equal(await s.getLease('leader'), null);
        assert.equal((await s.acquireLease('leader', 'replica-b', 10_000)).holder, 'replica-b');
        assert.equal((await s.acquireLease('leader', 'replica-a', 10_000)).holder, 'replica-b');
      }));

      it('release by the holder frees it at once; release by anyone else changes nothing', () => withStore(async (s) => {
        await s.acquireLease('leader', 'replica-a', 60_000);
        await s.releaseLease('leader', 'replica-b');
        assert.equal((await s.getLease('leader'))?.holder, 'replica-a');
        await s.releaseLease('leader', 'replica-a');
        assert.equal(await s.getLease('leader'), null);
        assert.equal((await s.acquireLease('leader', 'replica-b', 60_000)).holder, 'replica-b');
        await s.releaseLease('unknown', 'replica-b');
      }));

      it('gives a lease to exactly one of several holders asking at once', () => withStore(async (s) => {
        const got = await Promise.all(['a', 'b', 'c', 'd', 'e'].map((h) => s.acquireLease('leader', h, 60_000)));
        const holder = (await s.getLease('leader'))?.holder;
        assert.ok(holder !== undefined);
        for (const l of got) assert.equal(l.holder, holder);
      }));
    });
  });
}

/** A realistic VM record (about 700 bytes of JSON) for size and speed checks. */
export function sampleVm(i: number): VmRecord {
  const id = `vm-${String(i).padStart(5, '0')}`;
  return {
    id: vmId(id), name: `desktop ${i}`, siteId: siteId(['eu-west', 'us-east', 'ap-south'][i % 3] ?? 'eu-west'),
    hostId: hostId(`host-${i % 50}`), vcpu: 2, memoryMiB: 4096, diskGiB: 40, dirtyRateMiBps: 3.5, workingSetMiB: 900,
    addresses: [`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`, `fd00::${i.toString(16)}`, `52:54:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`],
    pinned: false, excluded: i % 97 === 0, lastMovedAtMs: i % 5 === 0 ? 1_700_000_000_000 + i : null, recentMoves: i % 3,
    diskDeltaGiB: { 'eu-west': 1.25, 'us-east': 0 }, sensitivity: (i % 100) / 100, sensitive: i % 100 >= 50,
    activity: 'remote-desktop', reasons: ['interactive share 62 %', 'RDP-like packet sizes'],
    users: [{ userId: userId(`user-${i % 700}`), share: 0.8 }, { userId: userId(`user-${(i + 1) % 700}`), share: 0.2 }],
    fingerprintAtMs: 1_700_000_000_000, migratingJobId: null,
  };
}

/** Times putMany of `n` sample VMs into an empty 'vms', then again replacing them all. */
export async function timePutMany(s: Store, n: number): Promise<{ insertMs: number; replaceMs: number }> {
  const vms = Array.from({ length: n }, (_, i) => sampleVm(i));
  const entries = vms.map((v) => ({ id: v.id, value: v }));
  const t0 = performance.now();
  await s.putMany('vms', entries);
  const t1 = performance.now();
  await s.putMany('vms', entries.map((e) => ({ ...e, value: { ...e.value, recentMoves: e.value.recentMoves + 1 } })));
  const t2 = performance.now();
  return { insertMs: t1 - t0, replaceMs: t2 - t1 };
}
