// The web dashboard's files, served from one folder: '/' is its index.html, other files by name. Only
// regular files inside the folder, with a known type; no listing, no way out of the folder.
import { readFile, realpath, stat } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';
import { type Api } from './context.js';
import { ApiError } from './errors.js';

export const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.geojson': 'application/geo+json',
  '.map': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.ico': 'image/x-icon',
  '.txt': 'text/plain; charset=utf-8',
  '.woff2': 'font/woff2',
};

const MAX_FILE_BYTES = 32 * 1024 * 1024;

const noFile = (path: string): ApiError => new ApiError('NOT_FOUND', `no such file or route: ${JSON.stringify(path.slice(0, 200))}`);

/** The file a URL path names inside `root`, or an error: never a path outside it. */
export async function resolveStatic(root: string, urlPath: string): Promise<{ file: string; type: string }> {
  let rel: string;
  try {
    rel = decodeURIComponent(urlPath.split('?')[0] ?? '');
  } catch {
    throw noFile(urlPath);
  }
  if (rel === '/' || rel === '') rel = '/index.html';
  const parts = rel.split('/').filter((p) => p !== '');
  if (rel.includes('\0') || rel.includes('\\') || parts.some((p) => p === '..' || p === '.' || p.startsWith('.'))) throw noFile(urlPath);
  const type = CONTENT_TYPES[extname(rel).toLowerCase()];
  if (type === undefined) throw noFile(urlPath);
  let base: string;
  try {
    base = await realpath(resolve(root));
  } catch {
    throw new ApiError('NOT_FOUND', `the dashboard is not built: its folder ${root} does not exist (the API is under /v1, its document at /docs)`);
  }
  try {
    // Real paths: a symbolic link inside the folder pointing out of it is refused like '..'.
    const file = await realpath(join(base, ...parts));
    if (!file.startsWith(base + sep)) throw noFile(urlPath);
    const st = await stat(file);
    if (!st.isFile() || st.size > MAX_FILE_BYTES) throw noFile(urlPath);
    return { file, type };
  } catch {
    throw noFile(urlPath);
  }
}

export function registerDashboard(app: Api, dir: string | null): void {
  if (dir === null) {
    app.get('/', { schema: { hide: true } }, () => ({
      name: 'vmshadow manager', api: '/v1', docs: '/docs', metrics: '/metrics', health: '/healthz',
      dashboard: 'not served (start the manager with the dashboard folder)',
    }));
    return;
  }
  const serve = async (path: string, reply: import('fastify').FastifyReply): Promise<unknown> => {
    if (path === '/v1' || path.startsWith('/v1/') || path.startsWith('/docs')) throw noFile(path);
    const { file, type } = await resolveStatic(dir, path);
    // The folder is rebuilt by swapping it whole: a file gone between stat and read is simply not there.
    const body = await readFile(file).catch(() => {
      throw noFile(path);
    });
    return reply.type(type).header('x-content-type-options', 'nosniff').header('cache-control', 'no-cache').send(body);
  };
  app.get('/', { schema: { hide: true } }, (req, reply) => serve('/', reply));
  app.get('/*', { schema: { hide: true } }, (req, reply) => serve(req.url, reply));
}
