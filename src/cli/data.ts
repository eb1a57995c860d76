// The latency tables the CLI commands read: the bundled copy in data/, or --data-dir.
import { fileURLToPath } from 'node:url';
import { AppError, InputError } from '../core/errors.js';
import { loadLatencyData, type LatencyData } from '../sim/latency-data.js';

export const DEFAULT_DATA_DIR = fileURLToPath(new URL('../../../data/', import.meta.url));

/** The latency tables, from --data-dir if given (a bad one is the user's input error) or the bundled copy. */
export function latencyData(dir: unknown): LatencyData {
  if (typeof dir !== 'string') return loadLatencyData(DEFAULT_DATA_DIR);
  try {
    return loadLatencyData(dir);
  } catch (e) {
    if (e instanceof AppError) throw new InputError('--data-dir', dir, `cannot be used: ${e.message}`);
    throw e;
  }
}
