// NetFlow version 5 decoder: a fixed 24-byte header and up to 30 fixed 48-byte IPv4 records.

import type { DecodeContext, DecodeSummary, FlowDecoder } from '../flow.js';
import type { FlowRows } from '../flow-rows.js';
import { uptimeAgoMs } from './template-records.js';
import { emptyParts, finish, makeDecoder, scaled, u16, u32 } from './wire.js';

const HEADER = 24;
const RECORD = 48;
const MAX_COUNT = 30;

export const netflow5Decoder: FlowDecoder = makeDecoder('netflow5', (d) => d.length >= 2 && u16(d, 0) === 5, decodeNetflow5);

function decodeNetflow5(b: Uint8Array, ctx: DecodeContext, rows: FlowRows): DecodeSummary {
  const p = emptyParts('record', rows);
  if (b.length < HEADER) {
    p.errors.add('truncated', `${b.length} bytes is shorter than the 24-byte NetFlow v5 header`);
    return finish(p);
  }
  const version = u16(b, 0);
  if (version !== 5) {
    p.errors.add('bad-version', `version ${version} is not NetFlow v5`);
    return finish(p);
  }
  const count = u16(b, 2);
  const uptimeMs = u32(b, 4);
  const unixS = u32(b, 8);
  const unixNs = u32(b, 12);
  p.sequence = u32(b, 16);
  const domain = (b[20]! << 8) | b[21]!;
  p.domain = domain;
  // Top two bits: sampling mode; the low 14: 1 in N packets.
  const interval = u16(b, 22) & 0x3fff;
  const samplingRate = interval > 0 ? interval : 1;
  p.recordsInDatagram = count;

  if (count === 0 || count > MAX_COUNT) {
    p.errors.add('bad-field-count', `header counts ${count} records; NetFlow v5 carries 1 to 30`);
  }
  const expected = HEADER + count * RECORD;
  if (b.length < expected) {
    p.errors.add('truncated', `${count} records need ${expected} bytes, the datagram has ${b.length}`);
  } else if (b.length > expected) {
    p.errors.add('bad-length', `${count} records need ${expected} bytes, the datagram has ${b.length}; the rest is ignored`);
  }
  const n = Math.min(count, MAX_COUNT, Math.floor((b.length - HEADER) / RECORD));
  // First and Last are router uptimes (ms): the export time less how long before the header they were.
  const exportMs = unixS * 1000 + Math.floor(unixNs / 1e6);
  for (let i = 0; i < n; i++) {
    const o = HEADER + i * RECORD;
    const protocol = b[o + 38]!;
    rows.push(ctx.exporter, domain, u32(b, o), u32(b, o + 4), '', '', u16(b, o + 32), u16(b, o + 34), protocol,
      protocol === 6 ? b[o + 37]! : 0, scaled(u32(b, o + 20), samplingRate), scaled(u32(b, o + 16), samplingRate),
      exportMs - uptimeAgoMs(uptimeMs, u32(b, o + 24)), exportMs - uptimeAgoMs(uptimeMs, u32(b, o + 28)), samplingRate);
  }
  return finish(p);
}
