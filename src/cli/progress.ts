/** A one-line progress bar on a terminal; nothing at all when stderr is not one (CI, pipes). */
export function progressBar(stream: NodeJS.WriteStream, label: string): { update(fraction: number): void; done(): void } {
  if (!stream.isTTY) return { update: () => undefined, done: () => undefined };
  let last = -1;
  const width = 30;
  return {
    update(fraction: number): void {
      const pct = Math.floor(Math.max(0, Math.min(1, fraction)) * 100);
      if (pct === last) return;
      last = pct;
      const fill = Math.round((pct / 100) * width);
      stream.write(`\r${label.padEnd(10)} [${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${String(pct).padStart(3)}%`);
    },
    done(): void {
      stream.write('\r' + ' '.repeat(width + 20 + label.length) + '\r');
    },
  };
}
