// What every flow decoder produces and everything downstream consumes: one unidirectional flow record.

import type { FlowRows } from './flow-rows.js';

export interface FlowRecord {
  /** The exporter that sent it: "address:port" of the datagram's source. */
  readonly exporter: string;
  /** IPFIX observation domain, NetFlow v9 source id, NetFlow v5 engine (type << 8 | id), sFlow agent sub-id. */
  readonly domain: number;
  /** Textual IPv4 ("192.0.2.1") or IPv6 (RFC 5952 compressed) address. */
  readonly srcAddr: string;
  readonly dstAddr: string;
  readonly srcPort: number;
  readonly dstPort: number;
  /** IP protocol number (6 TCP, 17 UDP, 1 ICMP …). */
  readonly protocol: number;
  readonly bytes: number;
  readonly packets: number;
  /** First and last packet of the flow, Unix epoch milliseconds. */
  readonly firstMs: number;
  readonly lastMs: number;
  /** Cumulative OR of TCP flags, 0 when unknown or not TCP. */
  readonly tcpFlags: number;
  /** Sampling applied by the exporter (1 = every packet); bytes and packets are already scaled by it. */
  readonly samplingRate: number;
}

/** Why a datagram, or part of one, could not be decoded. Counted by kind; never thrown. */
export type DecodeErrorKind =
  | 'truncated' | 'bad-version' | 'bad-length' | 'bad-field-count' | 'unknown-template'
  | 'template-changed' | 'bad-template' | 'unsupported';

export interface DecodeError {
  readonly kind: DecodeErrorKind;
  readonly detail: string;
}

/** What a decoder reports for one datagram besides its records. */
export interface DecodeSummary {
  readonly errors: DecodeError[];
  /** The header's observation domain (IPFIX), source id (v9), engine (v5) or sub-agent (sFlow); 0 without a header. */
  readonly domain: number;
  /** Export sequence number from the header, when the format has one (for loss accounting). */
  readonly sequence: number | null;
  /** How the sequence advances: per datagram (NetFlow v9, sFlow), or per record (IPFIX, v5). */
  readonly sequenceUnit: 'datagram' | 'record' | null;
  /** Records the header says the datagram carries (for IPFIX/v5 sequence accounting). */
  readonly recordsInDatagram: number;
  /**
   * Of those, options data records (IPFIX). RFC 7011 counts them in the sequence number; some exporters
   * (softflowd) count flow records only, so the collector learns which an exporter does.
   */
  readonly optionRecordsInDatagram: number;
  /** Templates learned or withdrawn in this datagram. */
  readonly templatesLearned: number;
  /** sFlow counter samples, per interface (the hosts' per-VM interface counters). */
  readonly counters: InterfaceCounters[];
}

/** A datagram's records and summary. */
export interface DecodeResult extends DecodeSummary {
  readonly records: FlowRecord[];
}

export interface InterfaceCounters {
  readonly exporter: string;
  readonly ifIndex: number;
  readonly inOctets: number;
  readonly outOctets: number;
  readonly inPackets: number;
  readonly outPackets: number;
  readonly atMs: number;
}

/**
 * Template state the decoders share with the collector, kept per exporter and observation domain,
 * so a template learned from one exporter never decodes another's data.
 */
export interface TemplateStore {
  get(exporter: string, domain: number, templateId: number): Template | undefined;
  /** Returns 'new', 'same' or 'changed' (a template id reused with a different layout). */
  set(exporter: string, domain: number, template: Template, nowMs: number): 'new' | 'same' | 'changed';
  delete(exporter: string, domain: number, templateId: number): void;
}

export interface TemplateField {
  readonly id: number;
  /** 65535 = variable length (IPFIX). */
  readonly length: number;
  /** IPFIX enterprise number; 0 for IANA fields. */
  readonly enterprise: number;
}

export interface Template {
  readonly id: number;
  readonly fields: readonly TemplateField[];
  /** Options templates: the first scopeCount fields are scope fields. */
  readonly scopeCount: number;
  readonly isOptions: boolean;
}

export interface DecodeContext {
  readonly exporter: string;
  readonly nowMs: number;
  readonly templates: TemplateStore;
}

/** A decoder for one wire format. Pure: it never throws on any input, and does no I/O. */
export interface FlowDecoder {
  readonly name: 'ipfix' | 'netflow9' | 'netflow5' | 'sflow5';
  /** Whether this datagram looks like this format (version field). */
  accepts(datagram: Uint8Array): boolean;
  decode(datagram: Uint8Array, ctx: DecodeContext): DecodeResult;
  /**
   * The same decode, appending the records to `rows` instead of making objects: the collector's path.
   * On a decoder bug, the rows this datagram appended are taken back and the bug is reported as an error.
   */
  decodeInto(datagram: Uint8Array, ctx: DecodeContext, rows: FlowRows): DecodeSummary;
}
