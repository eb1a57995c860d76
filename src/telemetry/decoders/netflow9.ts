// NetFlow version 9 (RFC 3954) export packet decoder.

import type { DecodeContext, DecodeSummary, FlowDecoder, Template, TemplateField } from '../flow.js';
import type { FlowRows } from '../flow-rows.js';
import {
  type DataContext, decodeDataSet, learnTemplate, MAX_TEMPLATE_FIELDS, optionsStoreOf, sameTemplateAt, templateRecordLength,
} from './template-records.js';
import { emptyParts, finish, makeDecoder, type ResultParts, u16, u32 } from './wire.js';

const HEADER = 20;
const TEMPLATE_FLOWSET = 0;
const OPTIONS_TEMPLATE_FLOWSET = 1;
const MIN_DATA_FLOWSET = 256;

export const netflow9Decoder: FlowDecoder = makeDecoder('netflow9', (d) => d.length >= 2 && u16(d, 0) === 9, decodeNetflow9);

interface Progress {
  /** Template and data records seen, to compare with the header's count. */
  records: number;
  /** Whether some records could not be counted (unknown template, broken set). */
  uncounted: boolean;
}

function decodeNetflow9(b: Uint8Array, ctx: DecodeContext, rows: FlowRows): DecodeSummary {
  const p = emptyParts('datagram', rows);
  if (b.length < HEADER) {
    p.errors.add('truncated', `${b.length} bytes is shorter than the 20-byte NetFlow v9 header`);
    return finish(p);
  }
  const version = u16(b, 0);
  if (version !== 9) {
    p.errors.add('bad-version', `version ${version} is not NetFlow v9`);
    return finish(p);
  }
  const count = u16(b, 2);
  const uptimeMs = u32(b, 4);
  const unixS = u32(b, 8);
  p.sequence = u32(b, 12);
  const domain = u32(b, 16);
  p.domain = domain;
  p.recordsInDatagram = count;

  const store = optionsStoreOf(ctx.templates);
  const dc: DataContext = {
    ctx,
    domain,
    time: { exportMs: unixS * 1000, uptimeMs },
    variableLength: false,
    rows,
    errors: p.errors,
    options: store?.getOptions(ctx.exporter, domain) ?? {},
    optionsStore: store,
  };
  const progress: Progress = { records: 0, uncounted: false };

  let o = HEADER;
  const end = b.length;
  while (o < end) {
    if (end - o < 4) {
      p.errors.add('truncated', `${end - o} bytes after the last flowset are too few for a flowset header`);
      progress.uncounted = true;
      break;
    }
    const setId = u16(b, o);
    const setLength = u16(b, o + 2);
    if (setLength < 4) {
      p.errors.add('bad-length', `flowset ${setId} has length ${setLength}`);
      progress.uncounted = true;
      break;
    }
    let setEnd = o + setLength;
    if (setEnd > end) {
      p.errors.add('truncated', `flowset ${setId} of ${setLength} bytes runs past the end of the datagram`);
      progress.uncounted = true;
      setEnd = end;
    }
    const body = o + 4;
    if (setId === TEMPLATE_FLOWSET) {
      decodeTemplates(b, body, setEnd, dc, p, progress);
    } else if (setId === OPTIONS_TEMPLATE_FLOWSET) {
      decodeOptionsTemplates(b, body, setEnd, dc, p, progress);
    } else if (setId >= MIN_DATA_FLOWSET) {
      const t = ctx.templates.get(ctx.exporter, domain, setId);
      if (t === undefined) {
        p.errors.add('unknown-template', `data flowset for template ${setId} of source id ${domain}, which has not arrived`);
        progress.uncounted = true;
      } else {
        const before = p.errors.length;
        progress.records += decodeDataSet(b, body, setEnd, t, dc);
        if (p.errors.length > before) progress.uncounted = true;
      }
    } else {
      p.errors.add('unsupported', `flowset id ${setId} is reserved`);
      progress.uncounted = true;
    }
    o = setEnd;
  }
  // The header counts every record; fewer found means the datagram was cut short at a flowset boundary.
  if (!progress.uncounted && progress.records < count) {
    p.errors.add('truncated', `header counts ${count} records, the datagram holds ${progress.records}`);
  }
  return finish(p);
}

function readFields(b: Uint8Array, o: number, n: number): TemplateField[] {
  const fields: TemplateField[] = [];
  for (let i = 0; i < n; i++) fields.push({ id: u16(b, o + 4 * i), length: u16(b, o + 4 * i + 2), enterprise: 0 });
  return fields;
}

function accept(t: Template, dc: DataContext, p: ResultParts, progress: Progress): void {
  progress.records++;
  if (t.id < MIN_DATA_FLOWSET) {
    p.errors.add('bad-template', `template id ${t.id} is below 256`);
  } else if (templateRecordLength(t.fields, false) === 0) {
    p.errors.add('bad-template', `template ${t.id} describes zero-length records`);
  } else {
    p.templatesLearned += learnTemplate(dc, t);
  }
}

/**
 * Where a template record sent again unchanged ends, after refreshing the template kept for it; -1 when
 * it is new or changed (then it is parsed and learned). Most template records are such repeats.
 */
function refreshed(b: Uint8Array, fieldsAt: number, end: number, id: number, fieldCount: number, scopeCount: number, isOptions: boolean,
  dc: DataContext, p: ResultParts, progress: Progress): number {
  if (fieldCount === 0 || id < MIN_DATA_FLOWSET) return -1;
  const held = dc.ctx.templates.get(dc.ctx.exporter, dc.domain, id);
  if (held === undefined) return -1;
  const next = sameTemplateAt(b, fieldsAt, end, held, fieldCount, scopeCount, isOptions, false);
  if (next < 0) return -1;
  progress.records++;
  dc.ctx.templates.set(dc.ctx.exporter, dc.domain, held, dc.ctx.nowMs);
  p.templatesLearned++;
  return next;
}

function decodeTemplates(b: Uint8Array, start: number, end: number, dc: DataContext, p: ResultParts, progress: Progress): void {
  let o = start;
  while (end - o >= 4) {
    const id = u16(b, o);
    const fieldCount = u16(b, o + 2);
    if (id === 0 && fieldCount === 0) return; // padding
    const next = refreshed(b, o + 4, end, id, fieldCount, 0, false, dc, p, progress);
    if (next >= 0) {
      o = next;
      continue;
    }
    if (fieldCount === 0 || fieldCount > MAX_TEMPLATE_FIELDS || fieldCount * 4 > end - o - 4) {
      p.errors.add('bad-field-count', `template ${id} claims ${fieldCount} fields in ${end - o - 4} bytes`);
      progress.uncounted = true;
      return;
    }
    const fields = readFields(b, o + 4, fieldCount);
    o += 4 + fieldCount * 4;
    accept({ id, fields, scopeCount: 0, isOptions: false }, dc, p, progress);
  }
}

function decodeOptionsTemplates(b: Uint8Array, start: number, end: number, dc: DataContext, p: ResultParts, progress: Progress): void {
  let o = start;
  // Each options template is 6 bytes and its fields; the flowset is padded to 4 bytes after the last.
  while (end - o >= 6) {
    const id = u16(b, o);
    const scopeBytes = u16(b, o + 2);
    const optionBytes = u16(b, o + 4);
    if (id === 0 && scopeBytes === 0 && optionBytes === 0) return; // padding
    const total = scopeBytes + optionBytes;
    const next = scopeBytes % 4 === 0 && optionBytes % 4 === 0 ? refreshed(b, o + 6, end, id, total / 4, scopeBytes / 4, true, dc, p, progress) : -1;
    if (next >= 0) {
      o = next;
      continue;
    }
    if (scopeBytes % 4 !== 0 || optionBytes % 4 !== 0 || total === 0 || total / 4 > MAX_TEMPLATE_FIELDS || total > end - o - 6) {
      p.errors.add('bad-field-count', `options template ${id} claims ${scopeBytes} scope and ${optionBytes} option bytes in ${end - o - 6}`);
      progress.uncounted = true;
      return;
    }
    const fields = readFields(b, o + 6, total / 4);
    o += 6 + total;
    accept({ id, fields, scopeCount: scopeBytes / 4, isOptions: true }, dc, p, progress);
  }
}
