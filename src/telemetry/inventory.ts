import { InputError } from '../core/errors.js';
import type { VmId } from '../core/ids.js';
import { arr, obj, onlyKeys, str } from '../core/validate.js';
import { ipv6 } from './decoders/wire.js';
import { ipv4Number } from './flow-rows.js';
import { U32Table } from './u32-table.js';

/** Which VM an address belongs to. */
export interface Inventory {
  vmOfIp(ip: string): VmId | undefined;
  vmOfMac(mac: string): VmId | undefined;
  readonly size: number;
  /** Every VM once; the collector keys its state by index in this list. */
  readonly vms: readonly VmId[];
  /** The index in `vms` of the VM with this IPv4 address (an unsigned 32-bit number), or -1: no string, no allocation. */
  indexOfIpv4(addr: number): number;
  /** The index in `vms` of the VM with this address as the decoders print it, or -1. */
  indexOfIp(ip: string): number;
}

const MAC = /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/;
const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Normalises an IPv6 text to the compressed lower-case form the decoders print, or returns null. */
export function normaliseIp(ip: string): string | null {
  if (IPV4.test(ip)) return ip;
  if (!ip.includes(':') || !/^[0-9a-fA-F:.]+$/.test(ip)) return null;
  const halves = ip.toLowerCase().split('::');
  if (halves.length > 2) return null;
  const parse = (s: string): number[] | null => {
    if (s === '') return [];
    const parts = s.split(':');
    const out: number[] = [];
    for (const p of parts) {
      if (!/^[0-9a-f]{1,4}$/.test(p)) return null;
      out.push(parseInt(p, 16));
    }
    return out;
  };
  const head = parse(halves[0]!);
  const tail = halves.length === 2 ? parse(halves[1]!) : [];
  if (head === null || tail === null) return null;
  const fill = 8 - head.length - tail.length;
  if ((halves.length === 1 && fill !== 0) || (halves.length === 2 && fill < 1)) return null;
  const groups = [...head, ...Array<number>(halves.length === 2 ? fill : 0).fill(0), ...tail];
  // Printed by the decoders' own formatter, so an inventory address and a decoded one compare equal.
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[2 * i] = g >> 8;
    bytes[2 * i + 1] = g & 0xff;
  });
  return ipv6(bytes, 0);
}

export function createInventory(entries: readonly { vm: VmId; ips?: readonly string[]; macs?: readonly string[] }[]): Inventory {
  const vms: VmId[] = [];
  const indexOf = new Map<VmId, number>();
  const byIp = new Map<string, number>();
  const byIpv4 = new U32Table(entries.length);
  const byMac = new Map<string, VmId>();
  for (const e of entries) {
    let i = indexOf.get(e.vm);
    if (i === undefined) {
      i = vms.length;
      vms.push(e.vm);
      indexOf.set(e.vm, i);
    }
    for (const ip of e.ips ?? []) {
      const text = normaliseIp(ip) ?? ip;
      byIp.set(text, i);
      const n = ipv4Number(text);
      if (n >= 0) byIpv4.set(n, i);
    }
    for (const mac of e.macs ?? []) byMac.set(mac.toLowerCase(), e.vm);
  }
  const indexOfIp = (ip: string): number => byIp.get(ip) ?? -1;
  return {
    vmOfIp: (ip) => vms[indexOfIp(ip)],
    vmOfMac: (mac) => byMac.get(mac),
    size: entries.length,
    vms,
    indexOfIpv4: (addr) => byIpv4.get(addr),
    indexOfIp,
  };
}

/** Reads an inventory file: `{"vms": [{"id": "vm-1", "ips": ["10.0.0.5"], "macs": ["52:54:00:12:34:56"]}]}`. */
export function parseInventory(raw: unknown): Inventory {
  const o = obj(raw, 'inventory');
  onlyKeys(o, 'inventory', ['vms']);
  const seenIp = new Map<string, string>();
  const entries = arr(o.vms, 'inventory.vms').map((r, i) => {
    const p = `inventory.vms[${i}]`;
    const v = obj(r, p);
    onlyKeys(v, p, ['id', 'ips', 'macs']);
    const id = str(v, 'id', p);
    const ips = (v.ips === undefined ? [] : arr(v.ips, `${p}.ips`)).map((ip, j) => {
      const n = typeof ip === 'string' ? normaliseIp(ip) : null;
      if (n === null) throw new InputError(`${p}.ips[${j}]`, ip, 'must be an IPv4 or IPv6 address');
      const other = seenIp.get(n);
      if (other !== undefined && other !== id) throw new InputError(`${p}.ips[${j}]`, ip, `is already the address of ${other}`);
      seenIp.set(n, id);
      return n;
    });
    const macs = (v.macs === undefined ? [] : arr(v.macs, `${p}.macs`)).map((m, j) => {
      if (typeof m !== 'string' || !MAC.test(m.toLowerCase())) throw new InputError(`${p}.macs[${j}]`, m, 'must be a MAC address such as 52:54:00:12:34:56');
      return m.toLowerCase();
    });
    if (ips.length === 0 && macs.length === 0) throw new InputError(p, id, 'needs at least one IP or MAC address');
    return { vm: id as VmId, ips, macs };
  });
  return createInventory(entries);
}
