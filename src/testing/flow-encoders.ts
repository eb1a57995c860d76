// Writes IPFIX, NetFlow v9/v5 and sFlow v5 datagrams from a description, for decoder tests. Every
// length and count is computed unless the description overrides it (to build hostile datagrams).

export type Value = number | bigint | string | Uint8Array;

export interface FieldSpec {
  readonly id: number;
  readonly length: number;
  readonly enterprise?: number;
}

export interface TemplateSpec {
  readonly id: number;
  readonly fields: readonly FieldSpec[];
  /** Options templates: how many of the fields are scope fields. */
  readonly scopeCount?: number;
}

class Writer {
  private buf = new Uint8Array(256);
  length = 0;

  private room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }

  u8(v: number): this {
    return this.uint(v, 1);
  }

  u16(v: number): this {
    return this.uint(v, 2);
  }

  u32(v: number): this {
    return this.uint(v, 4);
  }

  /** An unsigned big-endian integer in len bytes (the low bytes of v). */
  uint(v: number | bigint, len: number): this {
    this.room(len);
    let x = BigInt(v);
    for (let i = len - 1; i >= 0; i--) {
      this.buf[this.length + i] = Number(x & 0xffn);
      x >>= 8n;
    }
    this.length += len;
    return this;
  }

  bytes(b: Uint8Array): this {
    this.room(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
    return this;
  }

  zeros(n: number): this {
    return this.bytes(new Uint8Array(n));
  }

  /** Writes a 16-bit value at an earlier offset (a length known only at the end). */
  patch16(at: number, v: number): void {
    this.buf[at] = (v >> 8) & 0xff;
    this.buf[at + 1] = v & 0xff;
  }

  patch32(at: number, v: number): void {
    this.buf[at] = (v >>> 24) & 0xff;
    this.buf[at + 1] = (v >>> 16) & 0xff;
    this.buf[at + 2] = (v >>> 8) & 0xff;
    this.buf[at + 3] = v & 0xff;
  }

  done(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

/** "192.0.2.1" → 4 bytes; "2001:db8::1" → 16 bytes. */
export function addressBytes(text: string): Uint8Array {
  if (!text.includes(':')) {
    const parts = text.split('.').map(Number);
    if (parts.length !== 4 || parts.some((p) => !(p >= 0 && p <= 255))) throw new RangeError(`not an IPv4 address: ${text}`);
    return Uint8Array.from(parts);
  }
  let t = text;
  const dotted = /^(.*:)(\d+\.\d+\.\d+\.\d+)$/.exec(t);
  if (dotted) {
    const v4 = addressBytes(dotted[2]!);
    t = `${dotted[1]!}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  }
  const [head, rest] = t.split('::') as [string, string | undefined];
  const h = head === '' ? [] : head.split(':').map((x) => parseInt(x, 16));
  const r = rest === undefined || rest === '' ? [] : rest.split(':').map((x) => parseInt(x, 16));
  const groups = rest === undefined ? h : [...h, ...new Array<number>(Math.max(0, 8 - h.length - r.length)).fill(0), ...r];
  if (groups.length !== 8 || groups.some((g) => !(g >= 0 && g <= 0xffff))) throw new RangeError(`not an IPv6 address: ${text}`);
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
}

function writeValue(w: Writer, f: FieldSpec, v: Value, variableLength: boolean): void {
  if (variableLength && f.length === 65535) {
    const b = typeof v === 'string' ? new TextEncoder().encode(v) : v instanceof Uint8Array ? v : new Uint8Array(0);
    if (b.length < 255) w.u8(b.length);
    else w.u8(255).u16(b.length);
    w.bytes(b);
    return;
  }
  if (typeof v === 'string') {
    const b = addressBytes(v);
    if (b.length !== f.length) throw new RangeError(`address ${v} does not fit field ${f.id} of ${f.length} bytes`);
    w.bytes(b);
  } else if (v instanceof Uint8Array) {
    if (v.length !== f.length) throw new RangeError(`${v.length} bytes do not fit field ${f.id} of ${f.length} bytes`);
    w.bytes(v);
  } else {
    w.uint(v, f.length);
  }
}

function writeRecords(w: Writer, t: TemplateSpec, records: readonly (readonly Value[])[], variableLength: boolean): void {
  for (const r of records) {
    if (r.length !== t.fields.length) throw new RangeError(`record has ${r.length} values for ${t.fields.length} fields of template ${t.id}`);
    t.fields.forEach((f, i) => writeValue(w, f, r[i]!, variableLength));
  }
}

// ---------------------------------------------------------------- IPFIX (RFC 7011)

export type IpfixSet =
  | { readonly templates: readonly TemplateSpec[]; readonly padding?: number }
  | { readonly optionsTemplates: readonly TemplateSpec[]; readonly padding?: number }
  /** Template withdrawals (field count 0) in a template set. */
  | { readonly withdraw: readonly number[] }
  | { readonly data: TemplateSpec; readonly records: readonly (readonly Value[])[]; readonly padding?: number }
  /** A set written as given; length defaults to 4 + body length. */
  | { readonly raw: number; readonly body: Uint8Array; readonly length?: number };

export interface IpfixMessage {
  readonly exportS: number;
  readonly sequence: number;
  readonly domain: number;
  readonly sets: readonly IpfixSet[];
  readonly version?: number;
  /** Overrides the header's message length. */
  readonly length?: number;
}

export function encodeIpfix(m: IpfixMessage): Uint8Array {
  const w = new Writer();
  w.u16(m.version ?? 10).u16(0).u32(m.exportS).u32(m.sequence).u32(m.domain);
  for (const s of m.sets) {
    const at = w.length;
    if ('raw' in s) {
      w.u16(s.raw).u16(s.length ?? 4 + s.body.length).bytes(s.body);
      continue;
    }
    if ('templates' in s || 'optionsTemplates' in s) {
      const options = 'optionsTemplates' in s;
      const list = 'optionsTemplates' in s ? s.optionsTemplates : s.templates;
      w.u16(options ? 3 : 2).u16(0);
      for (const t of list) {
        w.u16(t.id).u16(t.fields.length);
        if (options) w.u16(t.scopeCount ?? 1);
        for (const f of t.fields) {
          const e = f.enterprise ?? 0;
          w.u16(e !== 0 ? f.id | 0x8000 : f.id).u16(f.length);
          if (e !== 0) w.u32(e);
        }
      }
      w.zeros(s.padding ?? 0);
    } else if ('withdraw' in s) {
      w.u16(2).u16(0);
      for (const id of s.withdraw) w.u16(id).u16(0);
    } else {
      w.u16(s.data.id).u16(0);
      writeRecords(w, s.data, s.records, true);
      w.zeros(s.padding ?? 0);
    }
    w.patch16(at + 2, w.length - at);
  }
  w.patch16(2, m.length ?? w.length);
  return w.done();
}

// ---------------------------------------------------------------- NetFlow v9 (RFC 3954)

export type V9Set =
  | { readonly templates: readonly TemplateSpec[] }
  /** Options templates: the first scopeCount fields are the scope. Padded to 4 bytes. */
  | { readonly optionsTemplates: readonly TemplateSpec[] }
  | { readonly data: TemplateSpec; readonly records: readonly (readonly Value[])[]; readonly padding?: number }
  | { readonly raw: number; readonly body: Uint8Array; readonly length?: number };

export interface V9Packet {
  readonly uptimeMs: number;
  readonly unixS: number;
  readonly sequence: number;
  readonly sourceId: number;
  readonly sets: readonly V9Set[];
  readonly version?: number;
  /** Overrides the header's record count (templates + data records). */
  readonly count?: number;
}

export function encodeNetflow9(m: V9Packet): Uint8Array {
  const w = new Writer();
  let count = 0;
  w.u16(m.version ?? 9).u16(0).u32(m.uptimeMs).u32(m.unixS).u32(m.sequence).u32(m.sourceId);
  for (const s of m.sets) {
    const at = w.length;
    if ('raw' in s) {
      w.u16(s.raw).u16(s.length ?? 4 + s.body.length).bytes(s.body);
      continue;
    }
    if ('templates' in s) {
      w.u16(0).u16(0);
      for (const t of s.templates) {
        w.u16(t.id).u16(t.fields.length);
        for (const f of t.fields) w.u16(f.id).u16(f.length);
        count++;
      }
    } else if ('optionsTemplates' in s) {
      w.u16(1).u16(0);
      for (const t of s.optionsTemplates) {
        const scope = t.scopeCount ?? 1;
        w.u16(t.id).u16(scope * 4).u16((t.fields.length - scope) * 4);
        for (const f of t.fields) w.u16(f.id).u16(f.length);
        count++;
      }
      w.zeros((4 - ((w.length - at) % 4)) % 4);
    } else {
      w.u16(s.data.id).u16(0);
      writeRecords(w, s.data, s.records, false);
      w.zeros(s.padding ?? 0);
      count += s.records.length;
    }
    w.patch16(at + 2, w.length - at);
  }
  w.patch16(2, m.count ?? count);
  return w.done();
}

// ---------------------------------------------------------------- NetFlow v5

export interface V5Record {
  readonly src: string;
  readonly dst: string;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly protocol: number;
  readonly packets: number;
  readonly bytes: number;
  /** Router uptimes (ms) of the first and last packet. */
  readonly firstUptimeMs: number;
  readonly lastUptimeMs: number;
  readonly tcpFlags?: number;
  readonly nextHop?: string;
  readonly input?: number;
  readonly output?: number;
  readonly tos?: number;
}

export interface V5Packet {
  readonly uptimeMs: number;
  readonly unixS: number;
  readonly unixNs?: number;
  readonly sequence: number;
  readonly engineType?: number;
  readonly engineId?: number;
  /** Low 14 bits of the sampling field: 1 in N. */
  readonly samplingInterval?: number;
  readonly samplingMode?: number;
  readonly records: readonly V5Record[];
  readonly version?: number;
  readonly count?: number;
}

export function encodeNetflow5(m: V5Packet): Uint8Array {
  const w = new Writer();
  w.u16(m.version ?? 5).u16(m.count ?? m.records.length).u32(m.uptimeMs).u32(m.unixS).u32(m.unixNs ?? 0).u32(m.sequence)
    .u8(m.engineType ?? 0).u8(m.engineId ?? 0).u16(((m.samplingMode ?? 0) << 14) | ((m.samplingInterval ?? 0) & 0x3fff));
  for (const r of m.records) {
    w.bytes(addressBytes(r.src)).bytes(addressBytes(r.dst)).bytes(addressBytes(r.nextHop ?? '0.0.0.0'))
      .u16(r.input ?? 0).u16(r.output ?? 0).u32(r.packets).u32(r.bytes).u32(r.firstUptimeMs).u32(r.lastUptimeMs)
      .u16(r.srcPort).u16(r.dstPort).u8(0).u8(r.tcpFlags ?? 0).u8(r.protocol).u8(r.tos ?? 0)
      .u16(0).u16(0).u8(0).u8(0).u16(0);
  }
  return w.done();
}

// ---------------------------------------------------------------- sFlow v5

export interface PacketSpec {
  readonly src: string;
  readonly dst: string;
  readonly protocol: number;
  readonly srcPort?: number;
  readonly dstPort?: number;
  readonly tcpFlags?: number;
  /** An 802.1Q tag with this VLAN id. */
  readonly vlan?: number;
  /** IP total / payload length written in the IP header. */
  readonly ipLength?: number;
}

/** The first bytes of an Ethernet frame: Ethernet (+802.1Q), IPv4 or IPv6, TCP or UDP header. */
export function ethernetHeader(p: PacketSpec): Uint8Array {
  const w = new Writer();
  w.bytes(Uint8Array.from([2, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 2]));
  if (p.vlan !== undefined) w.u16(0x8100).u16(p.vlan & 0xfff);
  const src = addressBytes(p.src);
  const dst = addressBytes(p.dst);
  if (src.length === 4) {
    w.u16(0x0800).u8(0x45).u8(0).u16(p.ipLength ?? 40).u16(1).u16(0x4000).u8(64).u8(p.protocol).u16(0).bytes(src).bytes(dst);
  } else {
    w.u16(0x86dd).u32(0x60000000).u16(p.ipLength ?? 20).u8(p.protocol).u8(64).bytes(src).bytes(dst);
  }
  if (p.protocol === 6) {
    w.u16(p.srcPort ?? 0).u16(p.dstPort ?? 0).u32(1).u32(0).u8(0x50).u8(p.tcpFlags ?? 0).u16(65535).u16(0).u16(0);
  } else if (p.protocol === 17) {
    w.u16(p.srcPort ?? 0).u16(p.dstPort ?? 0).u16(8).u16(0);
  }
  return w.done();
}

export type SflowFlowRecord =
  | { readonly header: Uint8Array; readonly frameLength: number; readonly headerProtocol?: number; readonly stripped?: number }
  | { readonly raw: number; readonly body: Uint8Array; readonly length?: number };

export interface GenericCounters {
  readonly ifIndex: number;
  readonly inOctets: number | bigint;
  readonly inUcast: number;
  readonly inMulticast?: number;
  readonly inBroadcast?: number;
  readonly outOctets: number | bigint;
  readonly outUcast: number;
  readonly outMulticast?: number;
  readonly outBroadcast?: number;
  readonly speedBps?: number;
}

export type SflowCounterRecord =
  | { readonly generic: GenericCounters }
  | { readonly raw: number; readonly body: Uint8Array; readonly length?: number };

export type SflowSample =
  | {
    readonly flow: {
      readonly rate: number;
      readonly expanded?: boolean;
      readonly sequence?: number;
      readonly sourceIndex?: number;
      readonly pool?: number;
      readonly input?: number;
      readonly output?: number;
      readonly records: readonly SflowFlowRecord[];
      readonly recordCount?: number;
    };
  }
  | { readonly counters: { readonly expanded?: boolean; readonly sequence?: number; readonly sourceIndex?: number; readonly records: readonly SflowCounterRecord[] } }
  | { readonly raw: number; readonly body: Uint8Array; readonly length?: number };

export interface SflowDatagram {
  readonly agent: string;
  readonly subAgentId: number;
  readonly sequence: number;
  readonly uptimeMs: number;
  readonly samples: readonly SflowSample[];
  readonly version?: number;
  readonly sampleCount?: number;
}

function pad4(w: Writer, n: number): void {
  w.zeros((4 - (n % 4)) % 4);
}

function opaque(w: Writer, format: number, body: (w: Writer) => void, length?: number): void {
  const at = w.length;
  w.u32(format).u32(0);
  body(w);
  w.patch32(at + 4, length ?? w.length - at - 8);
}

export function encodeSflow(d: SflowDatagram): Uint8Array {
  const w = new Writer();
  const agent = addressBytes(d.agent);
  w.u32(d.version ?? 5).u32(agent.length === 4 ? 1 : 2).bytes(agent).u32(d.subAgentId).u32(d.sequence).u32(d.uptimeMs)
    .u32(d.sampleCount ?? d.samples.length);
  for (const s of d.samples) {
    if ('raw' in s) {
      w.u32(s.raw).u32(s.length ?? s.body.length).bytes(s.body);
      pad4(w, s.body.length);
    } else if ('flow' in s) {
      const f = s.flow;
      opaque(w, f.expanded ? 3 : 1, () => {
        w.u32(f.sequence ?? 1);
        if (f.expanded) w.u32(0).u32(f.sourceIndex ?? 1);
        else w.u32(f.sourceIndex ?? 1);
        w.u32(f.rate).u32(f.pool ?? f.rate).u32(0);
        if (f.expanded) w.u32(0).u32(f.input ?? 1).u32(0).u32(f.output ?? 2);
        else w.u32(f.input ?? 1).u32(f.output ?? 2);
        w.u32(f.recordCount ?? f.records.length);
        for (const r of f.records) {
          if ('raw' in r) {
            w.u32(r.raw).u32(r.length ?? r.body.length).bytes(r.body);
            pad4(w, r.body.length);
          } else {
            opaque(w, 1, () => {
              w.u32(r.headerProtocol ?? 1).u32(r.frameLength).u32(r.stripped ?? 4).u32(r.header.length).bytes(r.header);
              pad4(w, r.header.length);
            });
          }
        }
      });
    } else {
      const c = s.counters;
      opaque(w, c.expanded ? 4 : 2, () => {
        w.u32(c.sequence ?? 1);
        if (c.expanded) w.u32(0).u32(c.sourceIndex ?? 1);
        else w.u32(c.sourceIndex ?? 1);
        w.u32(c.records.length);
        for (const r of c.records) {
          if ('raw' in r) {
            w.u32(r.raw).u32(r.length ?? r.body.length).bytes(r.body);
            pad4(w, r.body.length);
          } else {
            const g = r.generic;
            opaque(w, 1, () => {
              w.u32(g.ifIndex).u32(6).uint(g.speedBps ?? 1e9, 8).u32(1).u32(3)
                .uint(g.inOctets, 8).u32(g.inUcast).u32(g.inMulticast ?? 0).u32(g.inBroadcast ?? 0).u32(0).u32(0).u32(0)
                .uint(g.outOctets, 8).u32(g.outUcast).u32(g.outMulticast ?? 0).u32(g.outBroadcast ?? 0).u32(0).u32(0).u32(0);
            });
          }
        }
      });
    }
  }
  return w.done();
}
