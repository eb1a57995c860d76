import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { Template, TemplateField } from '../flow.js';
import { FlowRows } from '../flow-rows.js';
import { MapTemplateStore } from '../../testing/flow-templates.js';
import { decodeDataSetBy, type DataContext, type ExporterOptions, uptimeAgoMs } from './template-records.js';
import { ErrorList } from './wire.js';

// IANA elements the decoders give meaning to, with the lengths each may have; and some they skip.
const MEANINGFUL: readonly [id: number, lengths: readonly number[]][] = [
  [8, [4]], [12, [4]], [27, [16]], [28, [16]], [7, [1, 2]], [11, [1, 2]], [4, [1]], [6, [1, 2]],
  [1, [1, 2, 3, 4, 5, 8]], [2, [1, 2, 4, 8]], [85, [4, 8]], [86, [4, 8]], [23, [4, 8]], [24, [4, 8]],
  [150, [4]], [151, [4]], [152, [8]], [153, [8]], [154, [8]], [155, [8]], [156, [8]], [157, [8]],
  [22, [4, 8]], [21, [4, 8]], [158, [4]], [159, [4]], [32, [2]], [139, [2]],
  // Options and sampling fields: layouts with them keep to the general path.
  [160, [8]], [34, [4]], [305, [4]], [306, [4]],
];
const field: fc.Arbitrary<TemplateField> = fc.oneof(
  fc.constantFrom(...MEANINGFUL).chain(([id, lengths]) => fc.constantFrom(...lengths).map((length) => ({ id, length, enterprise: 0 }))),
  fc.record({ id: fc.constantFrom(10, 14, 61, 136, 5, 60, 999), length: fc.integer({ min: 1, max: 6 }), enterprise: fc.constant(0) }),
  fc.record({ id: fc.constantFrom(8, 1, 152), length: fc.constantFrom(4, 8), enterprise: fc.constant(29305) }),
);
const addresses = fc.constantFrom<TemplateField[]>(
  [{ id: 8, length: 4, enterprise: 0 }, { id: 12, length: 4, enterprise: 0 }],
  [{ id: 27, length: 16, enterprise: 0 }, { id: 28, length: 16, enterprise: 0 }],
  [{ id: 8, length: 4, enterprise: 0 }, { id: 12, length: 4, enterprise: 0 }, { id: 27, length: 16, enterprise: 0 }, { id: 28, length: 16, enterprise: 0 }],
);
const template: fc.Arbitrary<Template> = fc.tuple(addresses, fc.array(field, { maxLength: 14 }), fc.nat())
  .map(([addr, rest, seed]) => {
    const fields = [...rest];
    for (const [k, f] of addr.entries()) fields.splice((seed >> k) % (fields.length + 1), 0, f);
    return { id: 256, fields, scopeCount: 0, isOptions: false };
  });

function context(variableLength: boolean, uptimeMs: number | null, options: ExporterOptions): DataContext {
  return {
    ctx: { exporter: '192.0.2.9:2055', nowMs: 1_700_000_000_000, templates: new MapTemplateStore() },
    domain: 7,
    time: { exportMs: 1_700_000_000_000, uptimeMs },
    variableLength,
    rows: new FlowRows(3),
    errors: new ErrorList(),
    options,
    optionsStore: null,
  };
}

describe('data sets: the generated reader and the general path', () => {
  it('decode every qualifying layout to the same records', () => {
    let compared = 0;
    fc.assert(fc.property(
      template, fc.integer({ min: 0, max: 12 }), fc.nat(), fc.boolean(), fc.option(fc.nat(2 ** 32 - 1)),
      fc.record({ samplingRate: fc.option(fc.constantFrom(1, 10, 512), { nil: undefined }), systemInitMs: fc.option(fc.constant(1_690_000_000_000), { nil: undefined }) }, { requiredKeys: [] }),
      (t, records, seed, ipfix, uptime, options) => {
        const length = t.fields.reduce((n, f) => n + f.length, 0);
        // Bytes from a seed: cheap, and every record different.
        const b = Uint8Array.from({ length: 4 + records * length + (seed % 3) }, (_, i) => (Math.imul(i + 1, 2654435761 + seed) >>> 13) & 255);
        const opts = Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as ExporterOptions;
        const general = context(ipfix, ipfix ? null : (uptime ?? 0), opts);
        const generated = context(ipfix, ipfix ? null : (uptime ?? 0), opts);
        const n = decodeDataSetBy('generated', b, 4, b.length, t, generated);
        if (n === null) return;
        compared++;
        assert.equal(decodeDataSetBy('general', b, 4, b.length, t, general), n);
        assert.deepEqual(generated.rows.records(), general.rows.records());
        assert.deepEqual(generated.errors.items, general.errors.items);
      },
    ), { numRuns: 400 });
    assert.ok(compared > 100, `only ${compared} layouts qualified for a reader`);
  });

  it('leave options templates, and templates with sampling or system-init fields, to the general path', () => {
    const dc = context(true, null, {});
    const b = new Uint8Array(64);
    const withSampling: Template = { id: 256, fields: [{ id: 8, length: 4, enterprise: 0 }, { id: 12, length: 4, enterprise: 0 }, { id: 34, length: 4, enterprise: 0 }], scopeCount: 0, isOptions: false };
    assert.equal(decodeDataSetBy('generated', b, 0, b.length, withSampling, dc), null);
    assert.equal(decodeDataSetBy('generated', b, 0, b.length, { ...withSampling, fields: withSampling.fields.slice(0, 2), isOptions: true, scopeCount: 1 }, dc), null);
    assert.equal(decodeDataSetBy('generated', b, 0, b.length, { ...withSampling, fields: [{ id: 8, length: 4, enterprise: 0 }, { id: 1, length: 4, enterprise: 0 }] }, dc), null);
  });
});

describe('uptimeAgoMs()', () => {
  it('is the 32-bit counter difference, with up to an hour ahead read as skew', () => {
    const W = 2 ** 32;
    fc.assert(fc.property(fc.nat(W - 1), fc.nat(W - 1), (header, up) => {
      const d = (((header - up) % W) + W) % W;
      assert.equal(uptimeAgoMs(header, up), d > W - 3_600_000 ? d - W : d);
    }));
    assert.equal(uptimeAgoMs(1000, 2000), -1000);
    assert.equal(uptimeAgoMs(1000, W - 1000), 2000);
  });
});
