import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { probeRtt } from './prober.js';

describe('probeRtt()', () => {
  let server: net.Server;
  let port = 0;
  let closedPort = 0;
  before(async () => {
    server = net.createServer((c) => c.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as net.AddressInfo).port;
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    closedPort = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  it('times a TCP connect to an open port as one round trip', async () => {
    const r = await probeRtt('127.0.0.1', port);
    assert.equal(r.how, 'connected');
    assert.ok(r.rttMs >= 0 && r.rttMs < 1000, `${r.rttMs}`);
  });

  it('measures a refused connect too (the RST is the answer)', async () => {
    const r = await probeRtt('127.0.0.1', closedPort);
    assert.equal(r.how, 'refused');
    assert.ok(r.rttMs >= 0 && r.rttMs < 1000);
  });

  it('names the target when the probe cannot be sent', async () => {
    await assert.rejects(probeRtt('127.0.0.1', port, { localAddress: '192.0.2.1' }), /RTT probe to 127\.0\.0\.1:\d+ failed: EADDRNOTAVAIL/);
  });
});
