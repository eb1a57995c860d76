import { InputError } from './errors.js';

// Small readers for untrusted JSON: each names the JSON path of what it rejects.

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
export type Obj = Record<string, unknown>;

export function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

export function obj(v: unknown, path: string): Obj {
  if (!isObj(v)) throw new InputError(path, v, 'must be an object');
  return v;
}

export function arr(v: unknown, path: string): unknown[] {
  if (!Array.isArray(v)) throw new InputError(path, v, 'must be an array');
  return v;
}

export function str(o: Obj, key: string, path: string): string {
  const v = o[key];
  if (typeof v !== 'string' || v.length === 0) throw new InputError(`${path}.${key}`, v, 'must be a non-empty string');
  return v;
}

export function optStr(o: Obj, key: string, path: string): string | undefined {
  if (o[key] === undefined) return undefined;
  return str(o, key, path);
}

export interface NumOpts {
  min?: number;
  max?: number;
  integer?: boolean;
  /** the lower bound is exclusive */
  above?: number;
}

export function checkNum(v: unknown, path: string, opts: NumOpts = {}): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new InputError(path, v, 'must be a finite number');
  if (opts.integer === true && !Number.isInteger(v)) throw new InputError(path, v, 'must be a whole number');
  if (opts.min !== undefined && v < opts.min) throw new InputError(path, v, `must be at least ${opts.min}`);
  if (opts.above !== undefined && v <= opts.above) throw new InputError(path, v, `must be greater than ${opts.above}`);
  if (opts.max !== undefined && v > opts.max) throw new InputError(path, v, `must be at most ${opts.max}`);
  return v;
}

export function num(o: Obj, key: string, path: string, opts: NumOpts = {}): number {
  return checkNum(o[key], `${path}.${key}`, opts);
}

export function optNum(o: Obj, key: string, path: string, dflt: number, opts: NumOpts = {}): number {
  if (o[key] === undefined) return dflt;
  return num(o, key, path, opts);
}

export function optBool(o: Obj, key: string, path: string, dflt: boolean): boolean {
  const v = o[key];
  if (v === undefined) return dflt;
  if (typeof v !== 'boolean') throw new InputError(`${path}.${key}`, v, 'must be true or false');
  return v;
}

export function oneOf<T extends string>(o: Obj, key: string, path: string, allowed: readonly T[]): T {
  const v = o[key];
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw new InputError(`${path}.${key}`, v, `must be one of ${allowed.join(', ')}`);
  }
  return v as T;
}

/** Rejects keys the schema does not know, so a typo is an error instead of a silently ignored setting. */
export function onlyKeys(o: Obj, path: string, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) {
    if (!allowed.includes(k)) throw new InputError(`${path}.${k}`, o[k], `is not a known field (known: ${allowed.join(', ')})`);
  }
}
