// The fixed tune / held-out split of the labelled captures, decided before any tuning.
//
// Rule (written down before the engine saw a single feature of the captures):
//   1. group the captures by their labelled activity class;
//   2. within a class, order them by FNV-1a-32 of `${SPLIT_SEED}/${file}` (ties by file name);
//   3. positions 0, 2, 4, … go to `tune`, positions 1, 3, 5, … to `held-out`.
// So each class is split as evenly as it can be, with the odd capture on the tune side, and which
// file lands where depends only on its name and the seed, never on its traffic. Thresholds in
// signatures.ts were tuned on the tune half only; the held-out half is the headline.

export type SplitSide = 'tune' | 'held-out';

export const SPLIT_SEED = 'vmshadow-fingerprint-split-v1';

/** The nDPI 4.2 set's seed (fixtures/ndpi42/): the same rule, a seed of its own, chosen before its labels were made. */
export const NDPI42_SPLIT_SEED = 'vmshadow-fingerprint-split-ndpi42-v1';

/** FNV-1a, 32 bits, over the UTF-16 code units (the file names here are ASCII). */
export function fnv1a32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** Applies the rule to any labelled set; returns each file's side. */
export function splitCaptures(
  captures: readonly { readonly file: string; readonly activity: string }[],
  seed: string = SPLIT_SEED,
): Map<string, SplitSide> {
  const byClass = new Map<string, string[]>();
  for (const c of captures) {
    const files = byClass.get(c.activity) ?? [];
    files.push(c.file);
    byClass.set(c.activity, files);
  }
  const side = new Map<string, SplitSide>();
  for (const files of byClass.values()) {
    const ordered = files
      .map((file) => ({ file, h: fnv1a32(`${seed}/${file}`) }))
      .sort((a, b) => a.h - b.h || (a.file < b.file ? -1 : a.file > b.file ? 1 : 0));
    ordered.forEach(({ file }, i) => side.set(file, i % 2 === 0 ? 'tune' : 'held-out'));
  }
  return side;
}
