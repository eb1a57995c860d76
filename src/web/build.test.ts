import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile, mkdir, copyFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { FeatureCollection } from 'geojson';
import { isAppError } from '../core/errors.js';
import { buildDashboard, dashboardDir, type BuildResult } from './build.js';

describe('buildDashboard()', () => {
  let dir: string;
  let built: BuildResult;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vmshadow-web-build-'));
    built = await buildDashboard({ outDir: join(dir, 'web') });
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes the page, its modules, d3-geo and d3-array with their licences, and the world as GeoJSON', async () => {
    const files = new Set(built.files);
    for (const f of ['index.html', 'style.css', 'favicon.svg', 'app.js', 'state.js', 'format.js', 'map.js', 'api.js', 'dom.js',
      'vendor/d3-geo.js', 'vendor/d3-array.js', 'vendor/d3-geo.LICENSE.txt', 'world.json']) {
      assert.ok(files.has(f), `${f} is built`);
    }
    assert.ok(![...files].some((f) => f.endsWith('.test.js') || f.endsWith('.map')), 'no tests or source maps are served');
    const world = JSON.parse(await readFile(join(built.outDir, 'world.json'), 'utf8')) as FeatureCollection;
    assert.equal(world.type, 'FeatureCollection');
    assert.ok(world.features.length > 150, `${world.features.length} countries`);
    assert.ok(world.features.some((f) => (f.properties as { name: string }).name === 'Ireland'));
  });

  it('leaves no reference to another origin in the page, its style or its own modules', async () => {
    for (const f of built.files.filter((x) => /^[a-z]+\.(html|css|js)$/.test(x))) {
      const text = await readFile(join(built.outDir, f), 'utf8');
      // The SVG namespace is a name, never fetched.
      const urls = (text.match(/(https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}[^\s'"`)]*/gi) ?? []).filter((u) => !u.endsWith('//www.w3.org/2000/svg'));
      assert.deepEqual(urls, [], `${f}`);
    }
    const html = await readFile(join(built.outDir, 'index.html'), 'utf8');
    assert.match(html, /<script type="importmap">\{"imports": \{"d3-geo": "\.\/vendor\/d3-geo\.js", "d3-array": "\.\/vendor\/d3-array\.js"\}\}<\/script>/);
  });

  it('refuses a browser module importing something the served folder cannot resolve, and keeps the old folder', async () => {
    const app = join(dir, 'app');
    await mkdir(app);
    for (const f of await readdir(join(built.outDir))) if (f.endsWith('.js')) await copyFile(join(built.outDir, f), join(app, f === 'app.js' ? 'main.js' : f));
    await writeFile(join(app, 'state.js'), "import { x } from '../../store/records.js';\nexport const y = x;\n");
    await assert.rejects(buildDashboard({ outDir: built.outDir, appDir: app }), (e: unknown) =>
      isAppError(e) && e.code === 'DASHBOARD_BUILD' && /state\.js imports '\.\.\/\.\.\/store\/records\.js'/.test(e.message));
    assert.ok((await readdir(built.outDir)).includes('app.js'), 'the previous build is still served');
    assert.deepEqual((await readdir(dir)).filter((f) => f.includes('.tmp-')), [], 'no half-built folder is left');
  });

  it('serves from dist/web beside the compiled sources', () => {
    assert.match(dashboardDir(), /[/\\]dist[/\\]web$/);
  });
});
