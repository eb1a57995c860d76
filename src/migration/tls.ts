// Certificates for encrypted migration and NBD streams between sites: one CA, and per site a server and a
// client certificate, laid out as QEMU's tls-creds-x509 object expects its `dir`.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AppError } from '../core/errors.js';

const run = promisify(execFile);

/** The name a site's server certificate is issued to; sources pass it to QEMU as `tls-hostname`. */
export function siteTlsName(site: string): string {
  return `${site}.sites.vmshadow`;
}

export interface SiteCredentials {
  /** Directory with ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem, client-key.pem. */
  readonly dir: string;
  readonly hostname: string;
}

const SITE_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
const VALID_DAYS = 825;

async function openssl(args: string[], cwd: string): Promise<void> {
  try {
    await run('openssl', args, { cwd, timeout: 30_000 });
  } catch (e) {
    const err = e as { stderr?: string; code?: unknown };
    throw new AppError('TLS_SETUP_FAILED', `openssl ${args[0] ?? ''} failed in ${cwd}: ${String(err.stderr ?? err.code ?? e).trim()}`, { cause: e });
  }
}

/**
 * Creates (once) a CA under `root/ca` and, for each site, `root/<site>/` holding the CA certificate and the
 * site's server and client pairs. Existing files are kept, so every site keeps trusting the same CA.
 */
export async function ensureSiteCredentials(root: string, sites: readonly string[]): Promise<Map<string, SiteCredentials>> {
  for (const s of sites) {
    if (!SITE_NAME.test(s)) throw new AppError('TLS_SETUP_FAILED', `site name ${JSON.stringify(s)} cannot name a certificate: use lower-case letters, digits and dashes`);
  }
  const caDir = join(root, 'ca');
  mkdirSync(caDir, { recursive: true, mode: 0o700 });
  const caKey = join(caDir, 'ca-key.pem');
  const caCert = join(caDir, 'ca-cert.pem');
  if (!existsSync(caCert) || !existsSync(caKey)) {
    await openssl(['genrsa', '-out', caKey, '2048'], caDir);
    writeFileSync(join(caDir, 'ca.cnf'), [
      '[req]', 'distinguished_name = dn', 'prompt = no', 'x509_extensions = v3_ca', '[dn]', 'CN = VMShadow migration CA',
      '[v3_ca]', 'basicConstraints = critical, CA:TRUE', 'keyUsage = critical, keyCertSign, cRLSign', 'subjectKeyIdentifier = hash', '',
    ].join('\n'));
    await openssl(['req', '-new', '-x509', '-key', caKey, '-out', caCert, '-days', String(VALID_DAYS), '-config', 'ca.cnf'], caDir);
  }
  const out = new Map<string, SiteCredentials>();
  for (const site of sites) {
    const dir = join(root, site);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const hostname = siteTlsName(site);
    writeFileSync(join(dir, 'ca-cert.pem'), readFileSync(caCert));
    for (const role of ['server', 'client'] as const) {
      const cert = join(dir, `${role}-cert.pem`);
      const key = join(dir, `${role}-key.pem`);
      if (existsSync(cert) && existsSync(key)) continue;
      const cnf = join(dir, `${role}.cnf`);
      writeFileSync(cnf, [
        '[req]', 'distinguished_name = dn', 'prompt = no', '[dn]', `CN = ${role === 'server' ? hostname : `client.${hostname}`}`,
        '[ext]', 'basicConstraints = critical, CA:FALSE', 'keyUsage = critical, digitalSignature, keyEncipherment',
        `extendedKeyUsage = ${role === 'server' ? 'serverAuth' : 'clientAuth'}`,
        `subjectAltName = DNS:${role === 'server' ? hostname : `client.${hostname}`}`, '',
      ].join('\n'));
      await openssl(['genrsa', '-out', key, '2048'], dir);
      await openssl(['req', '-new', '-key', key, '-out', `${role}.csr`, '-config', cnf], dir);
      await openssl(['x509', '-req', '-in', `${role}.csr`, '-CA', caCert, '-CAkey', caKey, '-CAcreateserial',
        '-out', cert, '-days', String(VALID_DAYS), '-extfile', cnf, '-extensions', 'ext'], dir);
      rmSync(join(dir, `${role}.csr`), { force: true });
    }
    out.set(site, { dir, hostname });
  }
  return out;
}
