/**
 * A surprise: something failed that the caller did not expect as an outcome.
 * Its message says what failed, then the current state.
 */
export class AppError extends Error {
  readonly code: string;
  readonly retryable: boolean;

  constructor(code: string, message: string, opts: { retryable?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'AppError';
    this.code = code;
    this.retryable = opts.retryable ?? false;
  }
}

/** Bad input from a user or a file: names the field (a JSON path) and the value it had. */
export class InputError extends AppError {
  readonly field: string;
  readonly value: unknown;
  readonly problem: string;

  constructor(field: string, value: unknown, problem: string, opts: { cause?: unknown } = {}) {
    super('INPUT_INVALID', `${field}: ${problem} (got ${describeValue(value)})`, opts);
    this.name = 'InputError';
    this.field = field;
    this.value = value;
    this.problem = problem;
  }

  /** The same problem, named by where the checked part sits in a larger document. */
  withField(field: string): InputError {
    return new InputError(field, this.value, this.problem, { cause: this });
  }
}

export function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 77)}...` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null) return String(v);
  if (Array.isArray(v)) return `an array of ${v.length}`;
  return 'an object';
}

export function isAppError(e: unknown): e is AppError {
  return e instanceof AppError;
}
