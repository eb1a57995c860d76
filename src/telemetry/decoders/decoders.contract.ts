// The contract every FlowDecoder keeps, as one suite each decoder's test file runs with its own
// fixtures (hono-style: one suite over all implementations).

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createRng, type Rng } from '../../core/random.js';
import type { Fixture } from '../../testing/flow-fixtures.js';
import { MapTemplateStore } from '../../testing/flow-templates.js';
import type { DecodeContext, DecodeErrorKind, DecodeResult, FlowDecoder, FlowRecord, TemplateStore } from '../flow.js';

export interface Hostile {
  readonly datagram: Uint8Array;
  /** The error it must produce (others may come with it). */
  readonly kind: DecodeErrorKind;
}

export interface DecoderFixtures {
  readonly exporter: string;
  readonly nowMs: number;
  /** Datagram sequences decoded in order with one store, and every record each sequence yields. */
  readonly valid: readonly { readonly name: string; readonly datagrams: readonly Uint8Array[]; readonly records: readonly FlowRecord[] }[];
  /** Exports recorded from real exporters, with what a reference decoder (nfdump, tshark) made of them. */
  readonly recorded: readonly Fixture[];
  /** The fewest datagram bytes one emitted record can take: bounds the output of any datagram. */
  readonly minRecordBytes: number;
  readonly wrongVersion: Uint8Array;
  /** The header's length (or record count) says more than the datagram holds. */
  readonly lengthTooLarge: Hostile;
  /** The header's length (or record count) says less than the datagram holds. */
  readonly lengthTooSmall: Hostile;
  /** A set, flowset, record or sample of length zero. */
  readonly zeroLength: Hostile;
  /** A field or record count far beyond what the datagram holds (65535 fields in a template). */
  readonly hugeCount: Hostile;
  /** Template-based formats only. */
  readonly templates?: {
    /** Data for a template that never arrived. */
    readonly orphanData: Uint8Array;
    /** Template id T with one layout, then data in that layout. */
    readonly first: { readonly template: Uint8Array; readonly data: Uint8Array; readonly records: readonly FlowRecord[] };
    /** The same id T with another layout, then data in the new one. */
    readonly second: { readonly template: Uint8Array; readonly data: Uint8Array; readonly records: readonly FlowRecord[] };
  };
  /**
   * Cuts of a valid datagram the format cannot tell from a whole datagram (NetFlow v9: at a flowset
   * boundary, since exporters count records in the header differently). Every other cut must give an error.
   */
  undetectableCut?(datagram: Uint8Array, length: number): boolean;
  /** Offsets and sizes of the length and count fields of a datagram, for the fuzzer to corrupt. */
  lengthFields(datagram: Uint8Array): [offset: number, bytes: 2 | 4][];
  readonly fuzz: { readonly seed: number; readonly chunks: number; readonly perChunk: number };
}

const ERROR_KINDS: ReadonlySet<string> = new Set<DecodeErrorKind>([
  'truncated', 'bad-version', 'bad-length', 'bad-field-count', 'unknown-template', 'template-changed', 'bad-template', 'unsupported',
]);

/** Every promise a DecodeResult makes, whatever the input. Returns a reason, or null when it is sound. */
export function unsoundness(r: DecodeResult, ctx: DecodeContext, datagramLength: number, minRecordBytes: number): string | null {
  for (const e of r.errors) {
    if (!ERROR_KINDS.has(e.kind)) return `unknown error kind ${e.kind}`;
    if (e.detail.includes('decoder failed')) return `the decoder threw: ${e.detail}`;
  }
  if (r.errors.length > 16) return `${r.errors.length} errors for one datagram`;
  if (r.records.length > Math.floor(datagramLength / minRecordBytes)) return `${r.records.length} records from ${datagramLength} bytes`;
  if (r.sequence !== null && !(Number.isInteger(r.sequence) && r.sequence >= 0 && r.sequence < 2 ** 32)) return `sequence ${r.sequence}`;
  if (!(Number.isInteger(r.recordsInDatagram) && r.recordsInDatagram >= 0)) return `recordsInDatagram ${r.recordsInDatagram}`;
  for (const f of r.records) {
    const bad = unsoundRecord(f, ctx);
    if (bad !== null) return `${bad} in ${JSON.stringify(f)}`;
  }
  for (const c of r.counters) {
    for (const v of [c.inOctets, c.outOctets, c.inPackets, c.outPackets, c.ifIndex]) {
      if (!(Number.isSafeInteger(v) && v >= 0)) return `counter ${v} in ${JSON.stringify(c)}`;
    }
  }
  return null;
}

function unsoundRecord(f: FlowRecord, ctx: DecodeContext): string | null {
  if (f.exporter !== ctx.exporter) return 'another exporter';
  if (f.srcAddr === '' || f.dstAddr === '') return 'an empty address';
  for (const [k, v] of [['srcPort', f.srcPort], ['dstPort', f.dstPort]] as const) {
    if (!(Number.isInteger(v) && v >= 0 && v <= 65535)) return `${k} ${v}`;
  }
  if (!(Number.isInteger(f.protocol) && f.protocol >= 0 && f.protocol <= 255)) return `protocol ${f.protocol}`;
  if (!(Number.isInteger(f.tcpFlags) && f.tcpFlags >= 0 && f.tcpFlags <= 255)) return `tcpFlags ${f.tcpFlags}`;
  for (const [k, v] of [['bytes', f.bytes], ['packets', f.packets]] as const) {
    if (!(Number.isSafeInteger(v) && v >= 0)) return `${k} ${v}`;
  }
  if (!(Number.isFinite(f.samplingRate) && f.samplingRate >= 1)) return `samplingRate ${f.samplingRate}`;
  if (!Number.isFinite(f.firstMs) || !Number.isFinite(f.lastMs)) return 'a time that is not a number';
  if (!(Number.isInteger(f.domain) && f.domain >= 0)) return `domain ${f.domain}`;
  return null;
}

function hex(d: Uint8Array): string {
  return Array.from(d, (x) => x.toString(16).padStart(2, '0')).join('');
}

export function runDecoderContract(decoder: FlowDecoder, fx: DecoderFixtures): void {
  const ctxOf = (templates: TemplateStore, nowMs = fx.nowMs): DecodeContext => ({ exporter: fx.exporter, nowMs, templates });

  /** Decodes, failing the test on a throw or an unsound result. */
  const decode = (d: Uint8Array, ctx: DecodeContext): DecodeResult => {
    const r = decoder.decode(d, ctx);
    const bad = unsoundness(r, ctx, d.length, fx.minRecordBytes);
    if (bad !== null) assert.fail(`${bad}, decoding ${hex(d)}`);
    return r;
  };

  const decodeAll = (ds: readonly Uint8Array[], store: TemplateStore): { records: FlowRecord[]; errors: DecodeResult['errors'][number][] } => {
    const records: FlowRecord[] = [];
    const errors: DecodeResult['errors'][number][] = [];
    for (const d of ds) {
      const r = decode(d, ctxOf(store));
      records.push(...r.records);
      errors.push(...r.errors);
    }
    return { records, errors };
  };

  const kinds = (r: DecodeResult): DecodeErrorKind[] => r.errors.map((e) => e.kind);

  const expectHostile = (h: Hostile): void => {
    const r = decode(h.datagram, ctxOf(new MapTemplateStore()));
    assert.ok(kinds(r).includes(h.kind), `expected ${h.kind}, got ${JSON.stringify(r.errors)}`);
  };

  // Every datagram the contract knows is valid, in order, with the store state it expects.
  const corpus: { datagram: Uint8Array; before: readonly Uint8Array[]; nowMs: number }[] = [];
  for (const v of fx.valid) v.datagrams.forEach((d, i) => corpus.push({ datagram: d, before: v.datagrams.slice(0, i), nowMs: fx.nowMs }));
  for (const f of fx.recorded) {
    f.datagrams.forEach((d, i) => corpus.push({ datagram: d.payload, before: f.datagrams.slice(0, i).map((x) => x.payload), nowMs: d.atMs }));
  }

  describe(`${decoder.name} decoder contract`, () => {
    it('accepts its own datagrams and not a wrong version', () => {
      for (const c of corpus) assert.ok(decoder.accepts(c.datagram));
      assert.equal(decoder.accepts(fx.wrongVersion), false);
      assert.equal(decoder.accepts(new Uint8Array(0)), false);
    });

    for (const v of fx.valid) {
      it(`decodes ${v.name} to the expected records, without errors`, () => {
        const { records, errors } = decodeAll(v.datagrams, new MapTemplateStore());
        assert.deepEqual(errors, []);
        assert.deepEqual(records, v.records);
      });
    }

    for (const f of fx.recorded) {
      it(`decodes the ${f.name} export as the reference decoder does (${f.reference.reference.split(' ')[0]!})`, () => {
        const store = new MapTemplateStore();
        const ours: FlowRecord[] = [];
        for (const d of f.datagrams) {
          const r = decode(d.payload, { exporter: fx.exporter, nowMs: d.atMs, templates: store });
          assert.deepEqual(r.errors, []);
          ours.push(...r.records);
        }
        // nfdump reports the sampling rate but leaves counts unscaled; FlowRecords are scaled.
        const rate = f.reference.format === 'sflow5' ? 1 : f.reference.samplingRate;
        const timed = f.reference.records.every((x) => x.firstMs !== undefined);
        const key = (x: { src: string; dst: string; srcPort: number; dstPort: number; proto: number; bytes: number; packets: number; firstMs?: number; lastMs?: number }): string =>
          `${x.src}:${x.srcPort} > ${x.dst}:${x.dstPort} proto ${x.proto}, ${x.bytes} B, ${x.packets} pkts${timed ? `, ${x.firstMs}..${x.lastMs}` : ''}`;
        const got = ours.map((r) => key({ src: r.srcAddr, dst: r.dstAddr, srcPort: r.srcPort, dstPort: r.dstPort, proto: r.protocol, bytes: r.bytes, packets: r.packets, firstMs: r.firstMs, lastMs: r.lastMs }));
        const want = f.reference.records.map((x) => key({ ...x, bytes: x.bytes * rate, packets: x.packets * rate }));
        assert.ok(want.length > 0);
        assert.deepEqual(got, want);
        for (const r of ours) assert.equal(r.samplingRate, f.reference.samplingRate);
      });
    }

    it('returns an error, and never throws, for an empty datagram', () => {
      const r = decode(new Uint8Array(0), ctxOf(new MapTemplateStore()));
      assert.ok(r.errors.length > 0);
      assert.deepEqual(r.records, []);
    });

    it('returns errors for every truncation of every valid datagram, keeping the records before the cut', () => {
      for (const c of corpus) {
        const store = new MapTemplateStore();
        for (const d of c.before) decoder.decode(d, ctxOf(store, c.nowMs));
        const full = decode(c.datagram, ctxOf(store, c.nowMs)).records;
        for (let n = 0; n < c.datagram.length; n++) {
          const r = decode(c.datagram.subarray(0, n), ctxOf(store, c.nowMs));
          if (fx.undetectableCut?.(c.datagram, n) !== true) {
            assert.ok(r.errors.length > 0, `no error for the first ${n} of ${c.datagram.length} bytes of ${hex(c.datagram)}`);
          }
          assert.deepEqual(r.records, full.slice(0, r.records.length), `records from the first ${n} bytes are not the first of the full datagram's`);
        }
      }
    });

    it('reports a wrong version as bad-version, without records', () => {
      const r = decode(fx.wrongVersion, ctxOf(new MapTemplateStore()));
      assert.deepEqual(kinds(r), ['bad-version']);
      assert.deepEqual(r.records, []);
    });

    it('reports a header length (or count) larger than the datagram', () => expectHostile(fx.lengthTooLarge));
    it('reports a header length (or count) smaller than the datagram', () => expectHostile(fx.lengthTooSmall));
    it('reports a zero-length set or record', () => expectHostile(fx.zeroLength));
    it('reports a huge field or record count', () => expectHostile(fx.hugeCount));

    const t = fx.templates;
    if (t !== undefined) {
      it('counts data for a template that never arrived as unknown-template, with no records', () => {
        const r = decode(t.orphanData, ctxOf(new MapTemplateStore()));
        assert.ok(kinds(r).includes('unknown-template'));
        assert.deepEqual(r.records, []);
      });

      it('decodes data with the new layout after a template id is reused (template-changed)', () => {
        const store = new MapTemplateStore();
        assert.deepEqual(decodeAll([t.first.template, t.first.data], store), { records: t.first.records, errors: [] });
        const changed = decode(t.second.template, ctxOf(store));
        assert.deepEqual(kinds(changed), ['template-changed']);
        assert.equal(changed.templatesLearned, 1);
        assert.deepEqual(decodeAll([t.second.data], store), { records: t.second.records, errors: [] });
      });
    }

    it('still decodes good datagrams after bad ones', () => {
      const bad = [fx.wrongVersion, fx.lengthTooLarge.datagram, fx.lengthTooSmall.datagram, fx.zeroLength.datagram, fx.hugeCount.datagram, new Uint8Array(0)];
      if (t !== undefined) bad.push(t.orphanData);
      for (const v of fx.valid) {
        const store = new MapTemplateStore();
        decodeAll(bad, store);
        const { records, errors } = decodeAll(v.datagrams, store);
        assert.deepEqual(errors.filter((e) => e.kind !== 'template-changed'), []);
        assert.deepEqual(records, v.records);
      }
    });

    const { seed, chunks, perChunk } = fx.fuzz;
    for (let chunk = 0; chunk < chunks; chunk++) {
      it(`never throws, and returns sound bounded results, for ${perChunk} mutated datagrams (seed ${seed}, chunk ${chunk + 1}/${chunks})`, () => {
        fuzzChunk(decoder, fx, corpus, seed * 1000 + chunk, perChunk, decode);
      });
    }
  });
}

const INTERESTING16 = [0, 1, 3, 4, 5, 8, 255, 256, 0x7fff, 0x8000, 0xfffe, 0xffff];
const INTERESTING32 = [0, 1, 4, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff];

/** Applies one to three random mutations: bit flips, insertions, deletions, truncation, length corruption. */
export function mutate(rng: Rng, d: Uint8Array, lengthFields: (d: Uint8Array) => [number, 2 | 4][]): Uint8Array {
  // A copy whatever d is (Buffer#slice would be a view, and mutations would leak into the corpus).
  let out = new Uint8Array(d);
  const n = rng.int(1, 3);
  for (let m = 0; m < n; m++) {
    const op = rng.int(0, 5);
    if (op === 0 && out.length > 0) {
      for (let k = rng.int(1, 4); k > 0; k--) {
        const i = rng.int(0, out.length - 1);
        out[i] = out[i]! ^ (1 << rng.int(0, 7));
      }
    } else if (op === 1) {
      const at = rng.int(0, out.length);
      const ins = Uint8Array.from({ length: rng.int(1, 8) }, () => rng.int(0, 255));
      const next = new Uint8Array(out.length + ins.length);
      next.set(out.subarray(0, at));
      next.set(ins, at);
      next.set(out.subarray(at), at + ins.length);
      out = next;
    } else if (op === 2 && out.length > 0) {
      const at = rng.int(0, out.length - 1);
      const del = Math.min(rng.int(1, 8), out.length - at);
      const next = new Uint8Array(out.length - del);
      next.set(out.subarray(0, at));
      next.set(out.subarray(at + del), at);
      out = next;
    } else if (op === 3) {
      out = new Uint8Array(out.subarray(0, rng.int(0, out.length)));
    } else {
      // Length and count fields: boundary values, off-by-a-few, or random.
      const fields = lengthFields(out).filter(([o, size]) => o + size <= out.length);
      if (fields.length === 0) continue;
      const [o, size] = rng.pick(fields);
      const old = size === 2 ? (out[o]! << 8) | out[o + 1]! : ((out[o]! << 24) | (out[o + 1]! << 16) | (out[o + 2]! << 8) | out[o + 3]!) >>> 0;
      const r = rng.int(0, 2);
      let v = r === 0 ? rng.pick(size === 2 ? INTERESTING16 : INTERESTING32) : r === 1 ? old + rng.int(-8, 8) : rng.int(0, size === 2 ? 0xffff : 0xffffffff);
      v = size === 2 ? v & 0xffff : v >>> 0;
      for (let i = size - 1; i >= 0; i--) {
        out[o + i] = v & 0xff;
        v = Math.floor(v / 256);
      }
    }
  }
  return out;
}

function fuzzChunk(
  decoder: FlowDecoder,
  fx: DecoderFixtures,
  corpus: readonly { datagram: Uint8Array; before: readonly Uint8Array[]; nowMs: number }[],
  seed: number,
  count: number,
  decode: (d: Uint8Array, ctx: DecodeContext) => DecodeResult,
): void {
  const rng = createRng(seed);
  const store = new MapTemplateStore();
  // Learn every valid template, so mutated data sets reach the record decoding.
  const prime = (): void => {
    store.clear();
    for (const c of corpus) decoder.decode(c.datagram, { exporter: fx.exporter, nowMs: c.nowMs, templates: store });
  };
  prime();
  for (let i = 0; i < count; i++) {
    // Mutated templates pollute the store, which is the point; start clean now and then.
    if (i % 5000 === 4999) prime();
    const base = rng.pick(corpus);
    const d = mutate(rng, base.datagram, (x) => fx.lengthFields(x));
    try {
      decode(d, { exporter: fx.exporter, nowMs: base.nowMs, templates: store });
    } catch (e) {
      assert.fail(`seed ${seed}, mutation ${i}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
}
