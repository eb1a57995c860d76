// Newline-delimited JSON from a stream of text chunks: one object per line, partial lines kept until complete.
// PURE (no I/O): the caller feeds chunks and decides what a bad line means.

export interface JsonLineHandlers {
  readonly onMessage: (msg: Record<string, unknown>) => void;
  /** A line that is not a JSON object, or longer than maxLineChars (then the rest of it is skipped). */
  readonly onBadLine: (line: string, problem: string) => void;
  /** Default 1 MiB of characters. */
  readonly maxLineChars?: number;
}

/** Returns the function to feed each chunk to. */
export function jsonLineReader(h: JsonLineHandlers): (chunk: string) => void {
  const max = h.maxLineChars ?? 1 << 20;
  let buf = '';
  let skipping = false;
  return (chunk) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (skipping) {
        skipping = false;
        continue;
      }
      if (line.trim() === '') continue;
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch (e) {
        h.onBadLine(line.slice(0, 200), `not JSON: ${(e as Error).message}`);
        continue;
      }
      if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) {
        h.onBadLine(line.slice(0, 200), 'not a JSON object');
        continue;
      }
      h.onMessage(msg as Record<string, unknown>);
    }
    if (buf.length > max) {
      h.onBadLine(buf.slice(0, 200), `a line longer than ${max} characters`);
      buf = '';
      skipping = true;
    }
  };
}
