// PURE. A table from unsigned 32-bit keys (IPv4 addresses) to small non-negative integers (VM indexes),
// for the collector's lookup of every record's two addresses: a lookup allocates nothing and hashes no
// string.
//
// Where the keys are is what decides its speed. A /16 that holds no key answers from a small table of
// /16s, without touching anything else (most lookups: users' addresses). A /16 that holds many keys
// (a cloud's VM subnets) gets a direct table of its 65,536 addresses: 4 bytes an address, at most 64 bytes
// a key, and neighbouring addresses sit side by side, so a run of records from one subnet stays in the
// cache (a hash spreads them over the whole table, one cache miss each, and a collector writing rows at
// full speed keeps evicting it). Other keys go to a hash table with linear probing.

const EMPTY = -1;
const TWO_31 = 2 ** 31;
const TWO_32 = 2 ** 32;
/** Keys in one /16 from which it gets a direct table. */
const DIRECT_FROM = 4096;
/** In `prefixes`: no key in this /16. Above it: its direct table's index + 1; HASHED: keys in the hash table. */
const NONE = 0;
const HASHED = -1;

export class U32Table {
  /** Per /16 (the key's upper 16 bits): NONE, HASHED, or 1 + the index of its direct table. */
  private readonly prefixes = new Int16Array(65536);
  /** Keys per /16 in the hash table, to know when one deserves a direct table. */
  private readonly hashedPer16 = new Map<number, number>();
  /** Direct tables: value by the key's lower 16 bits, EMPTY for none. */
  private readonly direct: Int32Array[] = [];
  /** Hash slot i: key (as int32) at 2i, value at 2i + 1 (EMPTY when the slot is free). */
  private slots: Int32Array;
  private mask: number;
  /** 32 − log2(slot count): the hash takes the top bits of the product (Fibonacci hashing). */
  private shift: number;
  private hashed = 0;
  private n = 0;

  constructor(expected = 8) {
    let cap = 16;
    while (cap * 0.6 < expected) cap *= 2;
    this.slots = new Int32Array(cap * 2).fill(EMPTY);
    this.mask = cap - 1;
    this.shift = 32 - Math.log2(cap);
  }

  get size(): number {
    return this.n;
  }

  /** The value for `key` (an unsigned 32-bit integer), or -1. */
  get(key: number): number {
    const p = this.prefixes[key >>> 16]!;
    if (p === NONE) return EMPTY;
    if (p !== HASHED) return this.direct[p - 1]![key & 0xffff]!;
    return this.slots[2 * this.slotOf(key) + 1]!;
  }

  /** How many slots a lookup of `key` reads in the hash table (0 when it needs none): for tests and diagnostics. */
  probes(key: number): number {
    if (this.prefixes[key >>> 16] !== HASHED) return 0;
    const k = key | 0;
    let n = 1;
    for (let i = Math.imul(k, 0x9e3779b1) >>> this.shift; ; i = (i + 1) & this.mask, n++) {
      if (this.slots[2 * i + 1] === EMPTY || this.slots[2 * i] === k) return n;
    }
  }

  /** The hash slot holding `key`, or the free slot where it would go. */
  private slotOf(key: number): number {
    // The key as an int32, so the arithmetic below stays on 32-bit integers.
    const k = key | 0;
    const slots = this.slots;
    const mask = this.mask;
    let i = Math.imul(k, 0x9e3779b1) >>> this.shift;
    while (slots[2 * i + 1] !== EMPTY && slots[2 * i] !== k) i = (i + 1) & mask;
    return i;
  }

  /** Sets `key` (an unsigned 32-bit integer) to `value` (a non-negative int32). */
  set(key: number, value: number): void {
    if (!(Number.isInteger(key) && key >= 0 && key < TWO_32)) throw new RangeError(`U32Table keys are unsigned 32-bit integers, not ${key}`);
    if (!(Number.isInteger(value) && value >= 0 && value < TWO_31)) throw new RangeError(`U32Table values are non-negative int32s, not ${value}`);
    const hi = key >>> 16;
    const p = this.prefixes[hi]!;
    if (p !== NONE && p !== HASHED) {
      const d = this.direct[p - 1]!;
      if (d[key & 0xffff] === EMPTY) this.n++;
      d[key & 0xffff] = value;
      return;
    }
    if (!this.setHashed(key, value)) return;
    this.n++;
    this.prefixes[hi] = HASHED;
    const inHash = (this.hashedPer16.get(hi) ?? 0) + 1;
    this.hashedPer16.set(hi, inHash);
    if (inHash >= DIRECT_FROM && this.direct.length < 32767) this.makeDirect(hi);
  }

  /** Sets a key in the hash table; true when it was not there. */
  private setHashed(key: number, value: number): boolean {
    if (this.hashed + 1 > (this.mask + 1) * 0.6) this.grow();
    const i = this.slotOf(key);
    const isNew = this.slots[2 * i + 1] === EMPTY;
    this.slots[2 * i] = key | 0;
    this.slots[2 * i + 1] = value;
    if (isNew) this.hashed++;
    return isNew;
  }

  /** Moves the keys of a /16 from the hash table to a direct table of its own. */
  private makeDirect(hi: number): void {
    const d = new Int32Array(65536).fill(EMPTY);
    const old = this.slots;
    this.slots = new Int32Array(old.length).fill(EMPTY);
    this.hashed = 0;
    for (let i = 0; i < old.length; i += 2) {
      if (old[i + 1] === EMPTY) continue;
      const key = old[i]! >>> 0;
      if (key >>> 16 === hi) d[key & 0xffff] = old[i + 1]!;
      else this.setHashed(key, old[i + 1]!);
    }
    this.direct.push(d);
    this.prefixes[hi] = this.direct.length;
    this.hashedPer16.delete(hi);
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Int32Array(old.length * 2).fill(EMPTY);
    this.mask = old.length - 1;
    this.shift--;
    this.hashed = 0;
    for (let i = 0; i < old.length; i += 2) if (old[i + 1] !== EMPTY) this.setHashed(old[i]! >>> 0, old[i + 1]!);
  }
}
