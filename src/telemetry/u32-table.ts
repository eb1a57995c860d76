// PURE. A hash table from unsigned 32-bit keys (IPv4 addresses) to small non-negative integers (VM
// indexes): open addressing in one typed array, so a lookup allocates nothing, hashes no string and
// touches one cache line; a bitmap of the keys' upper 16 bits answers most misses without the table.

const EMPTY = -1;
const TWO_31 = 2 ** 31;
const TWO_32 = 2 ** 32;

export class U32Table {
  /** Slot i: key (as int32) at 2i, value at 2i + 1 (EMPTY when the slot is free). */
  private slots: Int32Array;
  private mask: number;
  /** Bit k is set when some key's upper 16 bits are k: addresses cluster in few /16s, lookups do not. */
  private readonly prefixes = new Uint8Array(65536 / 8);
  private n = 0;

  constructor(expected = 8) {
    let cap = 16;
    while (cap * 0.6 < expected) cap *= 2;
    this.slots = new Int32Array(cap * 2).fill(EMPTY);
    this.mask = cap - 1;
  }

  get size(): number {
    return this.n;
  }

  /** The value for `key` (an unsigned 32-bit integer), or -1. */
  get(key: number): number {
    const hi = key >>> 16;
    if ((this.prefixes[hi >>> 3]! & (1 << (hi & 7))) === 0) return EMPTY;
    // The key as an int32, in range, so the arithmetic below stays on 32-bit integers.
    const k = key >= TWO_31 ? key - TWO_32 : key;
    const slots = this.slots;
    const mask = this.mask;
    for (let i = Math.imul(k, 0x9e3779b1) >>> 0 & mask; ; i = (i + 1) & mask) {
      const v = slots[2 * i + 1]!;
      if (v === EMPTY || slots[2 * i] === k) return v;
    }
  }

  /** Sets `key` (an unsigned 32-bit integer) to `value` (a non-negative int32). */
  set(key: number, value: number): void {
    if (!(Number.isInteger(key) && key >= 0 && key < TWO_32)) throw new RangeError(`U32Table keys are unsigned 32-bit integers, not ${key}`);
    if (!(Number.isInteger(value) && value >= 0 && value < TWO_31)) throw new RangeError(`U32Table values are non-negative int32s, not ${value}`);
    if ((this.n + 1) > (this.mask + 1) * 0.6) this.grow();
    const hi = key >>> 16;
    this.prefixes[hi >>> 3]! |= 1 << (hi & 7);
    const k = key >= TWO_31 ? key - TWO_32 : key;
    const slots = this.slots;
    const mask = this.mask;
    for (let i = Math.imul(k, 0x9e3779b1) >>> 0 & mask; ; i = (i + 1) & mask) {
      if (slots[2 * i + 1] === EMPTY) {
        slots[2 * i] = k;
        slots[2 * i + 1] = value;
        this.n++;
        return;
      }
      if (slots[2 * i] === k) {
        slots[2 * i + 1] = value;
        return;
      }
    }
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Int32Array(old.length * 2).fill(EMPTY);
    this.mask = old.length - 1;
    this.n = 0;
    for (let i = 0; i < old.length; i += 2) if (old[i + 1] !== EMPTY) this.set(old[i]! >>> 0, old[i + 1]!);
  }
}
