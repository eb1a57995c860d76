import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureSiteCredentials, siteTlsName } from './tls.js';

describe('ensureSiteCredentials()', () => {
  const root = mkdtempSync(join(tmpdir(), 'vmshadow-tls-'));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('issues per-site server and client certificates that the shared CA verifies, named for the site', async () => {
    const creds = await ensureSiteCredentials(root, ['us-east-1', 'eu-west-1']);
    for (const site of ['us-east-1', 'eu-west-1']) {
      const c = creds.get(site);
      assert.ok(c);
      assert.equal(c.hostname, siteTlsName(site));
      for (const role of ['server', 'client']) {
        const out = execFileSync('openssl', ['verify', '-CAfile', join(c.dir, 'ca-cert.pem'), '-purpose', role === 'server' ? 'sslserver' : 'sslclient', join(c.dir, `${role}-cert.pem`)]).toString();
        assert.match(out, /OK/);
      }
      const text = execFileSync('openssl', ['x509', '-noout', '-text', '-in', join(c.dir, 'server-cert.pem')]).toString();
      assert.match(text, new RegExp(`DNS:${c.hostname.replace(/\./g, '\\.')}`));
    }
  });

  it('keeps the CA and existing certificates on a second call, and adds new sites under the same CA', async () => {
    const before = readFileSync(join(root, 'us-east-1', 'server-cert.pem'), 'utf8');
    const mtime = statSync(join(root, 'ca', 'ca-cert.pem')).mtimeMs;
    const creds = await ensureSiteCredentials(root, ['us-east-1', 'ap-south-1']);
    assert.equal(readFileSync(join(root, 'us-east-1', 'server-cert.pem'), 'utf8'), before);
    assert.equal(statSync(join(root, 'ca', 'ca-cert.pem')).mtimeMs, mtime);
    const dir = creds.get('ap-south-1')?.dir ?? '';
    assert.match(execFileSync('openssl', ['verify', '-CAfile', join(root, 'us-east-1', 'ca-cert.pem'), join(dir, 'server-cert.pem')]).toString(), /OK/);
  });

  it('refuses a site name that cannot name a certificate', async () => {
    await assert.rejects(ensureSiteCredentials(root, ['Bad Site/1']), /site name "Bad Site\/1" cannot name a certificate/);
  });
});
