// docs/configuration.md must name every setting the manager reads, with its flag and environment variable on
// the setting's own row, and every planner setting: a key added to config.ts or params.ts without a line in
// the reference fails here.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_PLAN_PARAMS } from '../placement/params.js';
import { CONFIG_TABLE, loadManagerConfig, MANAGER_USAGE } from './config.js';

const DOC = readFileSync(fileURLToPath(new URL('../../../docs/configuration.md', import.meta.url)), 'utf8');
const rows = DOC.split('\n').filter((l) => l.startsWith('| `'));
const rowOf = (key: string): string | undefined => rows.find((l) => l.startsWith(`| \`${key}\` |`));

describe('docs/configuration.md', () => {
  it('has a row for every manager setting, naming its file key, flag and environment variable', () => {
    assert.ok(CONFIG_TABLE.length >= 20, `config.ts has its settings (${CONFIG_TABLE.length})`);
    for (const { key, flag, env } of CONFIG_TABLE) {
      const row = rowOf(key);
      assert.ok(row !== undefined, `configuration.md has no row for ${key} (${flag}, ${env}): add one to the Settings table`);
      assert.ok(row.includes(`\`${flag}\``) || row.includes(`\`${flag} `), `the row of ${key} names its flag ${flag}: ${row}`);
      assert.ok(row.includes(`\`${env}\``), `the row of ${key} names its environment variable ${env}: ${row}`);
    }
  });

  it('gives each setting the default loadManagerConfig() really uses', () => {
    const cfg = loadManagerConfig({ argv: [], env: {}, hostname: 'h' });
    const shown = (v: unknown): string => (typeof v === 'object' && v !== null && 'host' in v && 'port' in v ? `${String(v.host)}:${String(v.port)}` : String(v));
    for (const key of ['dataDir', 'listen', 'roundIntervalS', 'mode', 'planner', 'leaseTtlS', 'logLevel', 'probePort', 'probeTimeoutMs', 'probeIntervalS', 'driver', 'windowS'] as const) {
      const cells = rowOf(key)?.split(' | ') ?? [];
      assert.equal(cells[3], `\`${shown(cfg[key])}\``, `the default of ${key} in configuration.md`);
    }
    assert.equal(cfg.collector, null);
    assert.match(rowOf('collector') ?? '', /\| off \|/);
    assert.equal(cfg.probe, true);
    assert.match(rowOf('probe') ?? '', /\| on \|/);
    assert.equal(cfg.openReads, false);
    assert.match(rowOf('openReads') ?? '', /\| `false` \|/);
  });

  it('names every flag of `vmshadow manager --help` and both token variables', () => {
    for (const flag of MANAGER_USAGE.match(/--[a-z-]+/g) ?? []) {
      assert.ok(DOC.includes(`\`${flag}`), `configuration.md mentions ${flag}`);
    }
    for (const v of ['VMSHADOW_ADMIN_TOKEN', 'VMSHADOW_READ_TOKEN', 'VMSHADOW_CONFIG', 'VMSHADOW_API', 'VMSHADOW_TOKEN', 'VMSHADOW_CLI_CONFIG']) {
      assert.ok(DOC.includes(`\`${v}\``), `configuration.md mentions ${v}`);
    }
  });

  it('has a row for every planner setting with its default', () => {
    for (const [key, value] of Object.entries(DEFAULT_PLAN_PARAMS)) {
      const row = rows.find((l) => (l.split(' | ')[0] ?? '').includes(`\`${key}\``));
      assert.ok(row !== undefined, `configuration.md has no row for params.${key}`);
      const cells = row.split(' | ');
      const want = Array.isArray(value) ? '`[]`' : typeof value === 'string' ? `\`"${value}"\`` : String(value);
      assert.ok((cells[1] ?? '').startsWith(want), `the default of params.${key} is ${want}: ${row}`);
    }
  });

  it('its example config file loads', () => {
    const m = /## Example `\/etc\/vmshadow\/manager\.json`\n\n```json\n([\s\S]*?)\n```/.exec(DOC);
    assert.ok(m !== null, 'the example is there');
    const dir = mkdtempSync(join(tmpdir(), 'vms-config-doc-'));
    try {
      const file = join(dir, 'manager.json');
      writeFileSync(file, m[1]!);
      const cfg = loadManagerConfig({ argv: ['--config', file], env: {}, hostname: 'h' });
      assert.equal(cfg.store.kind, 'postgres');
      assert.equal(cfg.driver, 'sim');
      assert.equal(cfg.collector?.port, 4739);
      assert.equal(cfg.sources.mode, 'default', 'the example leaves the stored settings alone');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to dashes. */
function slug(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N} _-]/gu, '').replace(/ /g, '-');
}

describe('the operator docs link to what exists', () => {
  const docsDir = fileURLToPath(new URL('../../../docs/', import.meta.url));
  const pages = ['operator-guide.md', 'configuration.md', 'dashboard.md', 'api.md'];
  const anchorsOf = (page: string): Set<string> => {
    const text = readFileSync(join(docsDir, page), 'utf8').replace(/```[\s\S]*?```/g, '');
    const out = new Set<string>();
    for (const m of text.matchAll(/^#{1,6} (.+)$/gm)) out.add(slug(m[1]!));
    for (const m of text.matchAll(/<a id="([^"]+)"><\/a>/g)) out.add(m[1]!);
    return out;
  };

  it('every relative link names a file in docs/ (or the repository) and, with #, a heading of it', () => {
    let links = 0;
    for (const page of pages) {
      const text = readFileSync(join(docsDir, page), 'utf8').replace(/```[\s\S]*?```/g, '');
      for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
        const target = m[1]!;
        if (/^[a-z]+:/.test(target)) continue;
        links++;
        const [file, anchor] = target.split('#') as [string, string | undefined];
        const to = file === '' ? page : file;
        const path = join(docsDir, to);
        assert.doesNotThrow(() => readFileSync(path), `${page} links to ${target}: ${to} does not exist`);
        if (anchor !== undefined && to.endsWith('.md') && pages.includes(to)) {
          assert.ok(anchorsOf(to).has(anchor), `${page} links to ${target}: ${to} has no heading with the anchor #${anchor}`);
        }
      }
    }
    assert.ok(links > 20, `the docs link to each other (${links} links)`);
  });
});
