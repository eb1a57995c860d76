import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { InputError } from './errors.js';
import { createSnapshot, toSnapshotInput, type SnapshotInput } from './model.js';
import { arbCloud, buildCloud, type CloudSpec } from '../testing/snapshots.js';

const FC = { numRuns: 200, seed: 20251125 };

const spec: CloudSpec = {
  sites: [{ id: 'fra', vcpu: 8, memoryMiB: 16384 }, { id: 'iad', vcpu: 4, memoryMiB: 8192 }],
  users: { alice: [10, 90], bob: [95, 12] },
  vms: [
    { id: 'desk-1', site: 'fra', users: ['alice'] },
    { id: 'desk-2', site: 'iad', users: { bob: 0.75, alice: 0.25 } },
  ],
};

/** A fresh, valid input to spoil one field of. */
function input(): SnapshotInput & { sites: Record<string, unknown>[]; vms: Record<string, unknown>[]; users: Record<string, unknown>[] } {
  return buildCloud(spec) as ReturnType<typeof input>;
}

/** The InputError createSnapshot throws for this input. */
function rejection(bad: SnapshotInput): InputError {
  try {
    createSnapshot(bad);
  } catch (e) {
    assert.ok(e instanceof InputError, `expected an InputError, got ${String(e)}`);
    return e;
  }
  assert.fail('createSnapshot accepted an invalid snapshot');
}

describe('createSnapshot()', () => {
  it('accepts the builders\' compact cloud and indexes it by id', () => {
    const s = createSnapshot(input());
    assert.equal(s.sites.length, 2);
    assert.equal(s.vmIndex.get(s.vms[1]!.id), 1);
    assert.equal(s.links.length, 1);
    assert.ok(Object.isFrozen(s.vms[0]));
  });

  it('names vms[0].siteId and its value when a VM stands at an unknown site', () => {
    const bad = input();
    bad.vms[0]!.siteId = 'nowhere';
    const e = rejection(bad);
    assert.equal(e.field, 'vms[0].siteId');
    assert.equal(e.value, 'nowhere');
    assert.match(e.message, /"nowhere"/);
  });

  it('names vms[1].memoryMiB and its value when a VM has negative memory', () => {
    const bad = input();
    bad.vms[1]!.memoryMiB = -2048;
    const e = rejection(bad);
    assert.equal(e.field, 'vms[1].memoryMiB');
    assert.equal(e.value, -2048);
    assert.match(e.message, /-2048/);
  });

  it('names sites[i].capacity.memoryMiB when the placement already exceeds a site\'s memory', () => {
    const bad = input();
    bad.sites[1]!.capacity = { vcpu: 4, memoryMiB: 2048 }; // desk-2 alone needs 4096 MiB
    const e = rejection(bad);
    assert.equal(e.field, 'sites[1].capacity.memoryMiB');
    assert.equal(e.value, 2048);
    assert.match(e.message, /2048/);
    assert.match(e.message, /4096 MiB/, 'the message also says how much is in use');
  });

  it('names sites[i].capacity.vcpu when the placement already exceeds a site\'s vCPUs', () => {
    const bad = input();
    bad.sites[0]!.capacity = { vcpu: 1, memoryMiB: 16384 };
    const e = rejection(bad);
    assert.equal(e.field, 'sites[0].capacity.vcpu');
    assert.equal(e.value, 1);
    assert.match(e.message, /got 1\)/);
  });

  it('names users[i].rttMs when a user\'s RTT list does not have one entry per site', () => {
    const bad = input();
    bad.users[1]!.rttMs = [12];
    const e = rejection(bad);
    assert.equal(e.field, 'users[1].rttMs');
    assert.deepEqual(e.value, [12]);
    assert.match(e.message, /an array of 1/);
    assert.match(e.message, /one entry per site \(2\)/);
  });

  it('names vms[i].users and the total when a VM\'s user shares do not sum to 1', () => {
    const bad = input();
    bad.vms[1]!.users = [{ userId: 'bob', share: 0.5 }, { userId: 'alice', share: 0.4 }];
    const e = rejection(bad);
    assert.equal(e.field, 'vms[1].users');
    assert.equal(e.value, 0.9);
    assert.match(e.message, /0\.9/);
  });

  it('names the second id when two VMs share an id', () => {
    const bad = input();
    bad.vms[1]!.id = 'desk-1';
    const e = rejection(bad);
    assert.equal(e.field, 'vms[1].id');
    assert.equal(e.value, 'desk-1');
    assert.match(e.message, /"desk-1"/);
  });

  it('names the second id when two sites share an id', () => {
    const bad = input();
    bad.sites[1]!.id = 'fra';
    const e = rejection(bad);
    assert.equal(e.field, 'sites[1].id');
    assert.match(e.message, /"fra"/);
  });

  it('names the second id when two users share an id', () => {
    const bad = input();
    bad.users[1]!.id = 'alice';
    const e = rejection(bad);
    assert.equal(e.field, 'users[1].id');
    assert.match(e.message, /"alice"/);
  });

  it('accepts every generated cloud, and toSnapshotInput gives back an equal snapshot (property)', () => {
    fc.assert(fc.property(arbCloud(), (raw) => {
      const s = createSnapshot(raw);
      assert.deepEqual(createSnapshot(toSnapshotInput(s)), s);
    }), FC);
  });
});
