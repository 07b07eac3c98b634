/**
 * A small JSON-schema subset validator for the vendored Vonage OpenAPI descriptions
 * (test/fixtures/vonage/*.yml), shared by test/safety/fidelity.test.ts (account.yml) and
 * test/subaccounts-contract.test.ts (subaccounts.yml). It judges simulator answers and the request
 * bodies our clients send against the documented schemas.
 *
 * Supported: local `$ref` (JSON Pointer into the document, `~0`/`~1` escapes), `type`
 * object|string|number|integer|boolean|array (integer counts as number; numbers must be finite),
 * `properties`, `required`, `enum`, `items`, `oneOf` (exactly one alternative), `allOf`,
 * `maxLength`, OpenAPI's `nullable`, and, opt-in, `example` as a constant (see ValidateOptions).
 * `xml` is typed for the callers that read XML (its root name) but not checked here. Every other
 * keyword is ignored, so a schema using one is checked less than it says, not wrongly rejected.
 *
 * The document is a parameter (`schemaValidator(spec)`), not module state: each test loads its own.
 */

export interface Schema {
  $ref?: string;
  type?: 'object' | 'string' | 'number' | 'integer' | 'boolean' | 'array';
  nullable?: boolean;
  properties?: Record<string, Schema>;
  required?: string[];
  enum?: unknown[];
  items?: Schema;
  oneOf?: Schema[];
  allOf?: Schema[];
  maxLength?: number;
  xml?: { name?: string };
  example?: unknown;
  description?: string;
}

export interface MediaType {
  schema?: Schema;
  example?: unknown;
}

export interface ValidateOptions {
  /**
   * The error-code/error-code-label properties have no `type`, only an `example`; the spec tells
   * its error bodies apart by those values alone. With this on, an untyped property must equal its
   * example ("documented values"); off, only structure is checked (plain JSON Schema).
   */
  examplesAsConst?: boolean;
  /**
   * Reject properties the schema does not declare (the spec itself allows them). Declared means
   * through allOf too.
   */
  noUndeclared?: boolean;
}

export interface SchemaValidator {
  /** Follows local `$ref`s (also chains of them) to the node they name in the document. */
  deref: <T>(node: T | { $ref: string }) => T;
  /** Declared properties of a schema, through allOf. */
  declared: (schema: Schema) => Record<string, Schema>;
  /**
   * Problems with `value` against `schema`, as `$.path: what` strings; [] when it conforms.
   * `opts` override the defaults given to schemaValidator.
   */
  validate: (schema: Schema, value: unknown, opts?: ValidateOptions) => string[];
}

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

/** A validator over `document` (the whole parsed spec: `$ref`s like `#/components/...` resolve from its root). */
export function schemaValidator(document: object, defaults: ValidateOptions = {}): SchemaValidator {
  function deref<T>(node: T | { $ref: string }): T {
    let current: unknown = node;
    for (let hops = 0; hops < 20; hops++) {
      const ref = (current as { $ref?: unknown }).$ref;
      if (typeof ref !== 'string') return current as T;
      if (!ref.startsWith('#/')) throw new Error(`only local $ref is supported: ${ref}`);
      current = ref
        .slice(2)
        .split('/')
        .reduce<unknown>((at, key) => {
          const next = (at as Record<string, unknown> | undefined)?.[key.replace(/~1/g, '/').replace(/~0/g, '~')];
          if (next === undefined) throw new Error(`unresolvable $ref ${ref}`);
          return next;
        }, document);
    }
    throw new Error('$ref chain too long');
  }

  function declared(schema: Schema): Record<string, Schema> {
    const s = deref(schema);
    return Object.assign({}, ...(s.allOf ?? []).map(declared), s.properties ?? {}) as Record<string, Schema>;
  }

  function check(schemaOrRef: Schema, value: unknown, opts: ValidateOptions, at: string): string[] {
    const schema = deref(schemaOrRef);
    const errors: string[] = [];
    if (value === null && schema.nullable) return [];
    if (schema.oneOf) {
      const matching = schema.oneOf.filter((alt) => check(alt, value, opts, at).length === 0).length;
      if (matching !== 1) errors.push(`${at}: matches ${matching} of the ${schema.oneOf.length} oneOf alternatives (must be exactly 1)`);
    }
    // Each allOf part declares only some of the properties: undeclared ones are judged below,
    // against all the parts together, not by each part alone.
    for (const part of schema.allOf ?? []) errors.push(...check(part, value, { ...opts, noUndeclared: false }, at));
    if (schema.type !== undefined) {
      const actual = typeOf(value);
      const ok = schema.type === actual || (schema.type === 'number' && actual === 'integer');
      if (!ok) return [...errors, `${at}: is ${actual}, not ${schema.type}`];
      if (schema.type === 'number' && !Number.isFinite(value as number)) errors.push(`${at}: not a finite number`);
    }
    if (schema.enum && !schema.enum.includes(value)) errors.push(`${at}: ${JSON.stringify(value)} not in enum`);
    if (schema.maxLength !== undefined && typeof value === 'string' && value.length > schema.maxLength) errors.push(`${at}: longer than ${schema.maxLength}`);
    if (schema.type === undefined && opts.examplesAsConst && schema.example !== undefined && schema.properties === undefined) {
      if (value !== schema.example) errors.push(`${at}: ${JSON.stringify(value)} is not the documented ${JSON.stringify(schema.example)}`);
    }
    if (schema.properties || schema.required || schema.allOf) {
      if (typeOf(value) !== 'object') return [...errors, `${at}: not an object`];
      const record = value as Record<string, unknown>;
      for (const name of schema.required ?? []) if (!Object.hasOwn(record, name)) errors.push(`${at}: missing required ${name}`);
      for (const [name, sub] of Object.entries(schema.properties ?? {})) {
        if (Object.hasOwn(record, name)) errors.push(...check(sub, record[name], opts, `${at}.${name}`));
        else if (opts.examplesAsConst && deref(sub).type === undefined) errors.push(`${at}: missing documented ${name}`);
      }
      if (opts.noUndeclared) {
        const names = declared(schema);
        for (const name of Object.keys(record)) if (!Object.hasOwn(names, name)) errors.push(`${at}: undeclared ${name}`);
      }
    }
    if (schema.type === 'array' && schema.items) {
      (value as unknown[]).forEach((item, i) => errors.push(...check(schema.items!, item, opts, `${at}[${i}]`)));
    }
    return errors;
  }

  return {
    deref,
    declared,
    validate: (schema, value, opts = {}) => check(schema, value, { ...defaults, ...opts }, '$'),
  };
}
