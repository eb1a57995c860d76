// PURE: splits a byte stream into newline-terminated lines, with a cap on a line's length so a
// garbled or hostile peer cannot grow memory without bound.

export type FrameResult =
  | { readonly ok: true; readonly lines: string[] }
  | { readonly ok: false; readonly lines: string[]; readonly overLimitBytes: number };

const NEWLINE = 0x0a;

/**
 * Feeds chunks, returns the complete lines they finish (without the line ending, CRLF or LF).
 * A chunk may hold a part of a line, one line or several. Once a line exceeds `maxLineBytes`
 * the framer refuses further input: the stream cannot be trusted past that point.
 */
export class LineFramer {
  private parts: Uint8Array[] = [];
  private partsBytes = 0;
  private failed = false;
  private readonly decoder = new TextDecoder('utf-8');

  constructor(readonly maxLineBytes: number) {
    if (!Number.isInteger(maxLineBytes) || maxLineBytes < 1) {
      throw new RangeError(`maxLineBytes must be a positive integer, got ${maxLineBytes}`);
    }
  }

  /** Bytes held for a line not yet terminated. */
  get bufferedBytes(): number {
    return this.partsBytes;
  }

  push(chunk: Uint8Array): FrameResult {
    const lines: string[] = [];
    if (this.failed) return { ok: false, lines, overLimitBytes: this.partsBytes };
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(NEWLINE, start);
      if (nl < 0) break;
      const lineBytes = this.partsBytes + (nl - start);
      if (lineBytes > this.maxLineBytes) return this.fail(lines, lineBytes);
      lines.push(this.take(chunk.subarray(start, nl)));
      start = nl + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      if (this.partsBytes + rest.length > this.maxLineBytes) return this.fail(lines, this.partsBytes + rest.length);
      // Copy: the caller may reuse its buffer.
      this.parts.push(rest.slice());
      this.partsBytes += rest.length;
    }
    return { ok: true, lines };
  }

  private take(tail: Uint8Array): string {
    let bytes = tail;
    if (this.parts.length > 0) {
      bytes = new Uint8Array(this.partsBytes + tail.length);
      let at = 0;
      for (const p of this.parts) {
        bytes.set(p, at);
        at += p.length;
      }
      bytes.set(tail, at);
      this.parts = [];
      this.partsBytes = 0;
    }
    const end = bytes.length > 0 && bytes[bytes.length - 1] === 0x0d ? bytes.length - 1 : bytes.length;
    return this.decoder.decode(bytes.subarray(0, end));
  }

  private fail(lines: string[], overLimitBytes: number): FrameResult {
    this.failed = true;
    this.parts = [];
    this.partsBytes = 0;
    return { ok: false, lines, overLimitBytes };
  }
}
