// Waiting on a child process's output: a ready line from a daemon, or a state a test kills it at.
import type { ChildProcess } from 'node:child_process';
import { AppError } from './errors.js';

/**
 * Resolves once the child's stdout has matched `re`; rejects, with the tail of its stdout and stderr, if it exits
 * first or `timeoutMs` passes.
 */
export function untilOutput(child: ChildProcess, re: RegExp, timeoutMs: number, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const tails = (): string => `stdout: ${out.slice(-400) || '(none)'}; stderr: ${err.trim().slice(-400) || '(none)'}`;
    const timer = setTimeout(() => reject(new AppError('CHILD_TIMEOUT', `${what}: no output matching ${re} within ${timeoutMs} ms; ${tails()}`)), timeoutMs);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      err = (err + d).slice(-4096);
    });
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
      reject(new AppError('CHILD_EXITED', `${what} exited (${code ?? signal}) before printing ${re}; ${tails()}`));
    });
  });
}
