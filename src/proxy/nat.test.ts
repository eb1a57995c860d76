import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { InputError } from '../core/errors.js';
import { createNftPathRewriter, proxyTableScript, siteFloatingIpScript } from './nat.js';

describe('nft path rewriting (scripts)', () => {
  it('re-points with one transaction per move: the VIP swapped, every site address it used still mapped back', async () => {
    const scripts: string[] = [];
    const pr = await createNftPathRewriter({ table: 't1', nft: (s) => { scripts.push(s); return Promise.resolve(); } });
    assert.equal(scripts[0], proxyTableScript('t1'));
    await pr.repoint({ host: '172.30.0.50', via: '10.1.1.50' });
    await pr.repoint({ host: '172.30.0.50', via: '10.1.1.50' });
    await pr.repoint({ host: '172.30.0.50', via: '10.2.1.50' });
    assert.equal(scripts.length, 3, 'a re-point to where it already points runs nothing');
    assert.deepEqual(scripts[1]!.trim().split('\n'), [
      'add element ip t1 from_site { 10.1.1.50 : 172.30.0.50 }',
      'add element ip t1 to_site { 172.30.0.50 : 10.1.1.50 }',
    ]);
    assert.deepEqual(scripts[2]!.trim().split('\n'), [
      'add element ip t1 from_site { 10.2.1.50 : 172.30.0.50 }',
      'delete element ip t1 to_site { 172.30.0.50 }',
      'add element ip t1 to_site { 172.30.0.50 : 10.2.1.50 }',
    ]);
    assert.deepEqual([...pr.current()], [['172.30.0.50', '10.2.1.50']]);
    await pr.close();
    assert.match(scripts.at(-1)!, /delete table ip t1/);
    await assert.rejects(pr.repoint({ host: '172.30.0.50', via: '10.1.1.50' }), /closed/);
  });

  it('keeps its record of the kernel right when nft fails, so the next re-point still applies', async () => {
    let fail = true;
    const scripts: string[] = [];
    const pr = await createNftPathRewriter({ table: 't2', nft: (s) => {
      scripts.push(s);
      if (s.includes('to_site {') && fail && !s.startsWith('add table')) {
        fail = false;
        return Promise.reject(new Error('nft: busy'));
      }
      return Promise.resolve();
    } });
    await assert.rejects(pr.repoint({ host: '172.30.0.50', via: '10.1.1.50' }), /busy/);
    await pr.repoint({ host: '172.30.0.50', via: '10.1.1.50' });
    assert.ok(!scripts.at(-1)!.includes('delete element'), 'the failed transaction changed nothing, so nothing is deleted');
    assert.deepEqual([...pr.current()], [['172.30.0.50', '10.1.1.50']]);
  });

  it('refuses what is not an address or a table name before running nft', async () => {
    const pr = await createNftPathRewriter({ nft: () => Promise.resolve() });
    await assert.rejects(pr.repoint({ host: '172.30.0.50; flush ruleset', via: '10.1.1.50' }), InputError);
    assert.throws(() => proxyTableScript('Bad-Name'), InputError);
    assert.throws(() => siteFloatingIpScript({ lanIf: 'br0', mappings: [{ vip: '172.30.0.50', siteAddress: 'x' }] }), InputError);
    const site = siteFloatingIpScript({ lanIf: 'br0', mappings: [{ vip: '172.30.0.50', siteAddress: '10.1.1.50' }] });
    assert.match(site, /map to_vip \{ type ipv4_addr : ipv4_addr; elements = \{ 10\.1\.1\.50 : 172\.30\.0\.50 \}; \}/);
    assert.match(site, /iifname "br0" ip saddr set ip saddr map @to_site/);
  });
});
