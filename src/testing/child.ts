// Waiting on a child process's output, for tests that kill it at a chosen moment.
import type { ChildProcess } from 'node:child_process';
import { AppError } from '../core/errors.js';

/** Resolves once the child's stdout has matched `re`; rejects if it exits first or `timeoutMs` passes. */
export function untilOutput(child: ChildProcess, re: RegExp, timeoutMs: number, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new AppError('CHILD_TIMEOUT', `${what}: no output matching ${re} within ${timeoutMs} ms; it printed: ${out.slice(-400)}`)), timeoutMs);
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (d: string) => {
      out = (out + d).slice(-65_536);
      if (re.test(out)) {
        clearTimeout(timer);
        resolve(out);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new AppError('CHILD_EXITED', `${what} exited (${code ?? signal}) before printing ${re}: ${out.slice(-400)}`));
    });
  });
}
