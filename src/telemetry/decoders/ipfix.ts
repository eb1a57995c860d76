// IPFIX (RFC 7011) message decoder.

import type { DecodeContext, DecodeSummary, FlowDecoder, Template, TemplateField } from '../flow.js';
import type { FlowRows } from '../flow-rows.js';
import {
  type DataContext, decodeDataSet, learnTemplate, MAX_TEMPLATE_FIELDS, optionsStoreOf, sameTemplateAt, templateRecordLength,
} from './template-records.js';
import { emptyParts, finish, makeDecoder, type ResultParts, u16, u32 } from './wire.js';

const HEADER = 16;
const SET_HEADER = 4;
const TEMPLATE_SET = 2;
const OPTIONS_TEMPLATE_SET = 3;
const MIN_DATA_SET = 256;

export const ipfixDecoder: FlowDecoder = makeDecoder('ipfix', (d) => d.length >= 2 && u16(d, 0) === 10, decodeIpfix);

function decodeIpfix(b: Uint8Array, ctx: DecodeContext, rows: FlowRows): DecodeSummary {
  const p = emptyParts('record', rows);
  if (b.length < HEADER) {
    p.errors.add('truncated', `${b.length} bytes is shorter than the 16-byte IPFIX message header`);
    return finish(p);
  }
  const version = u16(b, 0);
  if (version !== 10) {
    p.errors.add('bad-version', `version ${version} is not IPFIX (10)`);
    return finish(p);
  }
  const length = u16(b, 2);
  const exportS = u32(b, 4);
  p.sequence = u32(b, 8);
  const domain = u32(b, 12);
  p.domain = domain;
  if (length < HEADER) {
    p.errors.add('bad-length', `message length ${length} is shorter than its header`);
    return finish(p);
  }
  let end = length;
  if (length > b.length) {
    // Decode what arrived; the rest of the message is lost.
    p.errors.add('truncated', `message length ${length} but the datagram has ${b.length} bytes`);
    end = b.length;
  } else if (length < b.length) {
    p.errors.add('bad-length', `message length ${length} but the datagram has ${b.length} bytes; the rest is ignored`);
  }

  const store = optionsStoreOf(ctx.templates);
  const dc: DataContext = {
    ctx,
    domain,
    time: { exportMs: exportS * 1000, uptimeMs: null },
    variableLength: true,
    rows,
    errors: p.errors,
    options: store?.getOptions(ctx.exporter, domain) ?? {},
    optionsStore: store,
  };

  let o = HEADER;
  while (o < end) {
    if (end - o < SET_HEADER) {
      p.errors.add('truncated', `${end - o} bytes after the last set are too few for a set header`);
      break;
    }
    const setId = u16(b, o);
    const setLength = u16(b, o + 2);
    if (setLength < SET_HEADER) {
      // Without a usable length the next set cannot be found.
      p.errors.add('bad-length', `set ${setId} has length ${setLength}`);
      break;
    }
    let setEnd = o + setLength;
    if (setEnd > end) {
      p.errors.add('truncated', `set ${setId} of ${setLength} bytes runs past the end of the message`);
      setEnd = end;
    }
    const body = o + SET_HEADER;
    if (setId === TEMPLATE_SET || setId === OPTIONS_TEMPLATE_SET) {
      decodeTemplateSet(b, body, setEnd, setId === OPTIONS_TEMPLATE_SET, dc, p);
    } else if (setId >= MIN_DATA_SET) {
      const t = ctx.templates.get(ctx.exporter, domain, setId);
      if (t === undefined) {
        p.errors.add('unknown-template', `data set for template ${setId} of domain ${domain}, which has not arrived`);
      } else {
        const n = decodeDataSet(b, body, setEnd, t, dc);
        p.recordsInDatagram += n;
        if (t.isOptions) p.optionRecordsInDatagram += n;
      }
    } else {
      p.errors.add('unsupported', `set id ${setId} is reserved`);
    }
    o = setEnd;
  }
  return finish(p);
}

function decodeTemplateSet(b: Uint8Array, start: number, end: number, options: boolean, dc: DataContext, p: ResultParts): void {
  let o = start;
  // A template record takes at least 4 bytes; fewer left over are padding (RFC 7011 §3.3.1).
  while (end - o >= 4) {
    const id = u16(b, o);
    const fieldCount = u16(b, o + 2);
    if (id === 0 && fieldCount === 0) break; // zero padding, however long
    // The usual case first: a template sent again unchanged is only refreshed.
    const held = fieldCount > 0 && id >= MIN_DATA_SET && (!options || end - o >= 6) ? dc.ctx.templates.get(dc.ctx.exporter, dc.domain, id) : undefined;
    if (held !== undefined) {
      const fo = options ? o + 6 : o + 4;
      const next = sameTemplateAt(b, fo, end, held, fieldCount, options ? u16(b, o + 4) : 0, options, true);
      if (next >= 0) {
        dc.ctx.templates.set(dc.ctx.exporter, dc.domain, held, dc.ctx.nowMs);
        p.templatesLearned++;
        o = next;
        continue;
      }
    }
    o = decodeTemplateRecord(b, o, end, options, dc, p);
    if (o < 0) return;
  }
}

/** One template record at o, learned or withdrawn: where it ends, or -1 when the rest of the set cannot be framed. */
function decodeTemplateRecord(b: Uint8Array, o: number, end: number, options: boolean, dc: DataContext, p: ResultParts): number {
  const kind = options ? 'options template' : 'template';
  const id = u16(b, o);
  const fieldCount = u16(b, o + 2);
  if (fieldCount === 0) {
    // Withdrawal (RFC 7011 §8.1).
    if (id === TEMPLATE_SET || id === OPTIONS_TEMPLATE_SET) {
      p.errors.add('unsupported', `withdrawal of all ${kind}s is not supported; they expire instead`);
    } else if (id < MIN_DATA_SET) {
      p.errors.add('bad-template', `withdrawal of ${kind} id ${id}, below 256`);
    } else {
      dc.ctx.templates.delete(dc.ctx.exporter, dc.domain, id);
      p.templatesLearned++;
    }
    return o + 4;
  }
  let scopeCount = 0;
  let fo = o + 4;
  if (options) {
    if (end - o < 6) {
      p.errors.add('truncated', `${kind} ${id} ends before its scope field count`);
      return -1;
    }
    scopeCount = u16(b, o + 4);
    fo = o + 6;
  }
  if (fieldCount > MAX_TEMPLATE_FIELDS || fieldCount * 4 > end - fo) {
    // The set's remaining records cannot be framed past this one.
    p.errors.add('bad-field-count', `${kind} ${id} claims ${fieldCount} fields in ${end - fo} bytes`);
    return -1;
  }
  const fields: TemplateField[] = [];
  for (let i = 0; i < fieldCount; i++) {
    if (end - fo < 4) {
      p.errors.add('truncated', `${kind} ${id} ends in field ${i} of ${fieldCount}`);
      return -1;
    }
    const raw = u16(b, fo);
    const length = u16(b, fo + 2);
    fo += 4;
    let enterprise = 0;
    if (raw & 0x8000) {
      if (end - fo < 4) {
        p.errors.add('truncated', `${kind} ${id} ends in the enterprise number of field ${i}`);
        return -1;
      }
      enterprise = u32(b, fo);
      fo += 4;
    }
    fields.push({ id: raw & 0x7fff, length, enterprise });
  }
  if (id < MIN_DATA_SET) {
    p.errors.add('bad-template', `${kind} id ${id} is below 256`);
    return fo;
  }
  if (options && (scopeCount === 0 || scopeCount > fieldCount)) {
    p.errors.add('bad-template', `options template ${id} has scope field count ${scopeCount} of ${fieldCount} fields`);
    return fo;
  }
  if (templateRecordLength(fields, true) === 0) {
    p.errors.add('bad-template', `${kind} ${id} describes zero-length records`);
    return fo;
  }
  const t: Template = { id, fields, scopeCount, isOptions: options };
  p.templatesLearned += learnTemplate(dc, t);
  return fo;
}
