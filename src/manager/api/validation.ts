// Request validation with TypeBox. Query strings and path parameters arrive as strings: only a plain decimal
// becomes a number and only "true"/"false" a boolean, so `limit=2.5`, `limit=0x10` or `sensitive=1` are
// refused instead of silently read as something else. Bodies are JSON and are checked as they are.
import type { FastifySchemaCompiler, FastifySchemaValidationError } from 'fastify';
import type { TSchema } from 'typebox';
import { Compile } from 'typebox/compile';

const DECIMAL = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?$/;

interface PropSchema {
  readonly type?: unknown;
}

function typeOf(s: unknown): string | null {
  const t = (s as PropSchema | undefined)?.type;
  return typeof t === 'string' ? t : null;
}

/** Converts the string values of an object of scalars by the types its schema gives them. */
function convertStrings(schema: TSchema, value: unknown): unknown {
  const props = (schema as { properties?: Record<string, unknown> }).properties;
  if (props === undefined || typeof value !== 'object' || value === null || Array.isArray(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const t = typeOf(props[k]);
    if (typeof v === 'string' && (t === 'integer' || t === 'number') && DECIMAL.test(v)) out[k] = Number(v);
    else if (typeof v === 'string' && t === 'boolean' && (v === 'true' || v === 'false')) out[k] = v === 'true';
    else out[k] = v;
  }
  return out;
}

export const strictValidatorCompiler: FastifySchemaCompiler<TSchema> = ({ schema, httpPart }) => {
  const check = Compile(schema);
  const fromStrings = httpPart === 'querystring' || httpPart === 'params';
  return (value: unknown) => {
    const v = fromStrings ? convertStrings(schema, value) : value;
    if (check.Check(v)) return { value: v };
    return { error: [...check.Errors(v)] as unknown as FastifySchemaValidationError[] };
  };
};
