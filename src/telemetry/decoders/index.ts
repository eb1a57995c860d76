// The flow decoders, and the choice among them by a datagram's version field.

import type { FlowDecoder } from '../flow.js';
import { ipfixDecoder } from './ipfix.js';
import { netflow5Decoder } from './netflow5.js';
import { netflow9Decoder } from './netflow9.js';
import { sflowDecoder } from './sflow.js';

export { ipfixDecoder } from './ipfix.js';
export { netflow5Decoder } from './netflow5.js';
export { netflow9Decoder } from './netflow9.js';
export { sflowDecoder } from './sflow.js';
export type { ExporterOptions, ExporterOptionsStore } from './template-records.js';

export const decoders: readonly FlowDecoder[] = [ipfixDecoder, netflow9Decoder, netflow5Decoder, sflowDecoder];

/**
 * The decoder for a datagram: NetFlow and IPFIX start with a 16-bit version (5, 9, 10); sFlow with a
 * 32-bit one (5), whose first two bytes are zero. Undefined when none matches.
 */
export function pickDecoder(datagram: Uint8Array): FlowDecoder | undefined {
  if (datagram.length < 2) return undefined;
  const v16 = (datagram[0]! << 8) | datagram[1]!;
  switch (v16) {
    case 10: return ipfixDecoder;
    case 9: return netflow9Decoder;
    case 5: return netflow5Decoder;
    case 0: return sflowDecoder.accepts(datagram) ? sflowDecoder : undefined;
    default: return undefined;
  }
}
