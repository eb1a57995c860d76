// Assembles the dashboard's static folder (dist/web) that the API serves at '/': the page and its style from
// src/web/static, the browser modules tsc compiled from src/web/app, d3-geo and d3-array as ES modules (the
// page's import map names them), and the world's countries as GeoJSON converted from world-atlas's 110m
// TopoJSON. No bundler, no CDN: everything the page loads comes from this folder.
//
//   npm run build                    (tsc: dist/src/web/app/*.js)
//   node dist/src/web/build.js       (this file: dist/web/)
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Feature, FeatureCollection, Geometry, Position } from 'geojson';
import type { GeometryCollection, Topology } from 'topojson-specification';
import { AppError } from '../core/errors.js';

const here = dirname(fileURLToPath(import.meta.url));

/** The built folder the API serves: dist/web next to dist/src. */
export function dashboardDir(): string {
  return fileURLToPath(new URL('../../web', import.meta.url));
}

/** dashboardDir() if it has been built (holds index.html), else null: the API then serves no dashboard. */
export function builtDashboardDir(): string | null {
  const dir = dashboardDir();
  return existsSync(join(dir, 'index.html')) ? dir : null;
}

export interface BuildOptions {
  /** Where to write; default dashboardDir(). Replaced whole. */
  readonly outDir?: string;
  /** Where the compiled browser modules are; default dist/src/web/app beside this file. */
  readonly appDir?: string;
  /** index.html, style.css, favicon.svg; default src/web/static in the checkout. */
  readonly staticDir?: string;
}

export interface BuildResult {
  readonly outDir: string;
  readonly files: readonly string[];
  readonly bytes: number;
}

/** Names the page's import map resolves to files in vendor/. */
const VENDOR: readonly { readonly name: string; readonly from: string }[] = [
  { name: 'd3-geo', from: 'd3-geo' },
  { name: 'd3-array', from: 'd3-array' },
];

/** Bare import specifiers a vendored file may use: exactly those the import map resolves. */
const MAPPED = new Set(VENDOR.map((v) => v.name));

export async function buildDashboard(opts: BuildOptions = {}): Promise<BuildResult> {
  const outDir = opts.outDir ?? dashboardDir();
  const appDir = opts.appDir ?? join(here, 'app');
  const staticDir = opts.staticDir ?? fileURLToPath(new URL('../../../src/web/static', import.meta.url));
  for (const [what, dir] of [['compiled browser modules', appDir], ['static files', staticDir]] as const) {
    if (!existsSync(dir)) {
      throw new AppError('DASHBOARD_BUILD', `Cannot build the dashboard: the ${what} folder ${dir} does not exist (run tsc first)`);
    }
  }

  // Build beside the target and swap, so a server reading the folder never sees half of it.
  const tmp = `${outDir}.tmp-${process.pid}`;
  await rm(tmp, { recursive: true, force: true });
  await mkdir(join(tmp, 'vendor'), { recursive: true });
  const files: string[] = [];
  try {
    for (const f of ['index.html', 'style.css', 'favicon.svg']) {
      await copyFile(join(staticDir, f), join(tmp, f));
      files.push(f);
    }

    const modules = (await readdir(appDir)).filter((f) => f.endsWith('.js') && !f.endsWith('.test.js')).sort();
    if (!modules.includes('main.js')) {
      throw new AppError('DASHBOARD_BUILD', `Cannot build the dashboard: ${appDir} has no main.js (found ${modules.join(', ') || 'nothing'})`);
    }
    for (const f of modules) {
      const src = (await readFile(join(appDir, f), 'utf8')).replace(/^\/\/# sourceMappingURL=.*$/m, '');
      checkImports(f, src, new Set(modules));
      // index.html loads app.js: the entry keeps its role-name in the served folder.
      const name = f === 'main.js' ? 'app.js' : f;
      await writeFile(join(tmp, name), src);
      files.push(name);
    }

    const require = createRequire(import.meta.url);
    for (const v of VENDOR) {
      const entry = require.resolve(v.from);
      if (!entry.endsWith('.mjs')) {
        throw new AppError('DASHBOARD_BUILD', `Cannot vendor ${v.from}: it resolves to ${entry}, not an ES module (.mjs)`);
      }
      const src = await readFile(entry, 'utf8');
      checkImports(`vendor/${v.name}.js`, src, new Set());
      await writeFile(join(tmp, 'vendor', `${v.name}.js`), src);
      files.push(`vendor/${v.name}.js`);
      // ISC: the copyright notice travels with the copy.
      const license = join(dirname(entry), '..', 'LICENSE');
      if (existsSync(license)) {
        await copyFile(license, join(tmp, 'vendor', `${v.name}.LICENSE.txt`));
        files.push(`vendor/${v.name}.LICENSE.txt`);
      }
    }

    const topology = JSON.parse(await readFile(require.resolve('world-atlas/countries-110m.json'), 'utf8')) as Topology;
    await writeFile(join(tmp, 'world.json'), JSON.stringify(worldGeoJson(topology)));
    files.push('world.json');

    await rm(outDir, { recursive: true, force: true });
    await mkdir(dirname(outDir), { recursive: true });
    await rename(tmp, outDir);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  let bytes = 0;
  for (const f of files) bytes += (await stat(join(outDir, f))).size;
  return { outDir, files, bytes };
}

/**
 * Every import in a served module must resolve inside the folder: a relative './x.js' to a module built
 * beside it, or a name the import map maps. Anything else would 404 in the browser (or reach off the origin).
 */
function checkImports(file: string, src: string, siblings: ReadonlySet<string>): void {
  const re = /(?:^|[;\n}])\s*(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|(?:^|[;\n])\s*import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (const m of src.matchAll(re)) {
    const spec = m[1] ?? m[2] ?? m[3] ?? '';
    if (MAPPED.has(spec)) continue;
    const rel = /^\.\/([\w.-]+\.js)$/.exec(spec);
    if (rel !== null && siblings.has(rel[1]!)) continue;
    throw new AppError('DASHBOARD_BUILD',
      `Cannot build the dashboard: ${file} imports '${spec}', which the served folder cannot resolve (only ./<module>.js beside it and ${[...MAPPED].join(', ')})`);
  }
}

/** world-atlas countries as a GeoJSON FeatureCollection, coordinates rounded to 0.01° (the 110m data is coarser). */
export function worldGeoJson(topology: Topology): FeatureCollection {
  const require = createRequire(import.meta.url);
  const topojson = require('topojson-client') as typeof import('topojson-client');
  const countries = topology.objects.countries as GeometryCollection | undefined;
  if (countries === undefined) {
    throw new AppError('DASHBOARD_BUILD', `world-atlas topology has no 'countries' object (has ${Object.keys(topology.objects).join(', ')})`);
  }
  const fc = topojson.feature(topology, countries) as FeatureCollection;
  const round = (p: Position): Position => [Math.round(p[0]! * 100) / 100, Math.round(p[1]! * 100) / 100];
  const roundGeom = (g: Geometry): Geometry => {
    switch (g.type) {
      case 'Polygon': return { type: 'Polygon', coordinates: g.coordinates.map((r) => r.map(round)) };
      case 'MultiPolygon': return { type: 'MultiPolygon', coordinates: g.coordinates.map((p) => p.map((r) => r.map(round))) };
      default: return g;
    }
  };
  return {
    type: 'FeatureCollection',
    features: fc.features.map((f): Feature => ({
      type: 'Feature',
      id: f.id,
      properties: { name: (f.properties as { name?: string } | null)?.name ?? null },
      geometry: f.geometry === null ? f.geometry : roundGeom(f.geometry),
    })),
  };
}

if (process.argv[1] !== undefined && basename(process.argv[1]) === 'build.js' && fileURLToPath(import.meta.url) === process.argv[1]) {
  buildDashboard().then(
    (r) => console.log(`dashboard built in ${r.outDir}: ${r.files.length} files, ${Math.round(r.bytes / 1024)} KiB`),
    (e: unknown) => {
      console.error(e instanceof Error ? e.message : e);
      process.exitCode = 1;
    },
  );
}
