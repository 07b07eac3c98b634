/**
 * Generated Vonage answers for the body fuzz, and the independent oracles that judge them.
 *
 * The oracles restate the wire contract (Vonage's OpenAPI description + research note S4) in
 * their own code; they never call src/vonage/account-parse.ts.
 *  - A balance is a reading only when the status is 2xx and the body is a well-formed
 *    `accountBalance` document (JSON object, or flat XML when the Content-Type says XML or the body
 *    starts with `<`), with no error-code, a `value` that is a finite number (JSON number; XML plain
 *    decimal text) within [-1e6, 1e7], and an autoReload flag (true/false; "true"/"false" as text).
 *  - A top-up succeeded only when the status is 2xx and the body is a readable `response` document
 *    whose error-code is "200" (as text, surrounding blanks ignored, or the JSON number 200).
 *  - Anything larger than the client's 64 KiB cap is never read.
 */
import fc from 'fast-check';
import type { Canned } from './fuzz-server.js';

export const BODY_CAP_BYTES = 64 * 1024;
export const STATUSES = [200, 201, 204, 301, 302, 400, 401, 403, 404, 420, 429, 500, 502, 503] as const;

const CONTENT_TYPES = [
  undefined,
  '',
  'application/json',
  'application/json; charset=utf-8',
  'APPLICATION/JSON',
  'text/json',
  'application/problem+json',
  'application/xml',
  'text/xml; charset=UTF-8',
  'application/soap+xml',
  'Application/XML',
  'text/html; charset=utf-8',
  'text/plain',
  'application/octet-stream',
  'application/x-www-form-urlencoded',
  'multipart/form-data; boundary=x',
  '*/*',
  'xml',
  'application/json, application/xml',
] as const;

const statusArb = fc.oneof({ weight: 3, arbitrary: fc.constantFrom(200, 201) }, { weight: 2, arbitrary: fc.constantFrom(...STATUSES) });
const randomContentType = fc.constantFrom(...CONTENT_TYPES);
const retryAfterArb = fc.option(fc.constantFrom('0', '1', '5', '10', '11', '3600', '3601', '99999', '-1', '1.5', 'soon', 'Wed, 21 Oct 2015 07:28:00 GMT', 'Fri, 01 Jan 2100 00:00:00 GMT'), { nil: undefined });

// ---- fragments -------------------------------------------------------------------------------

/** JSON text for a `value`: numbers at every edge, texts that are not JSON, and non-numbers. */
const jsonNumberText = fc.oneof(
  fc.constantFrom(
    '0', '-0', '0.0', '5', '-5', '999.99', '1000', '1e3', '1E2', '-1e-7', '5e-324', '1e308', '-1e308', '1e309', '-1e309', '1e400',
    '9999999', '10000000', '10000000.000001', '10000001', '-1000000', '-1000000.0001', '-1000001', '1000000', '123456789012345678901234567890',
    '0.1', '12.345678901234567890123', '10.17127500', '00', '01', '.5', '5.', '+5', 'NaN', 'Infinity', '-Infinity', '0x10', '1_000', '- 5',
  ),
  fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => JSON.stringify(d)),
  fc.double({ min: -2e6, max: 2e7, noNaN: true }).map((d) => JSON.stringify(d)),
  fc.integer().map(String),
);
const jsonValueText = fc.oneof(
  { weight: 4, arbitrary: jsonNumberText },
  { weight: 1, arbitrary: fc.constantFrom('"5"', '"NaN"', '"1e309"', '"-0"', 'null', 'true', 'false', '[]', '[5]', '{}', '{"value":5}', '""', '" 5 "', '"Infinity"') },
  { weight: 1, arbitrary: fc.json({ maxDepth: 2 }) },
  { weight: 1, arbitrary: fc.string({ maxLength: 8 }).map((s) => JSON.stringify(s)) },
);
const jsonBoolText = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('true', 'false') },
  { weight: 2, arbitrary: fc.constantFrom('"true"', '"false"', '"yes"', '"TRUE"', '" true"', '"true "', '1', '0', 'null', '[]', '{}', '"1"', '[true]', 'True', 'tru') },
);

/** Text inside an XML `<value>`. */
const xmlNumberText = fc.oneof(
  fc.constantFrom(
    '5', '-0', '0', '10.17127500', ' 5 ', '\n  5\n', '5.', '.5', '+5', '1e3', '1E3', 'NaN', 'Infinity', '', '１０', '1,5', '&#53;', '5&amp;',
    '<![CDATA[5]]>', '99999999', '10000000', '10000001', '-1000000', '-1000001', '123456789012345678901234567890', '0x10', '-', '--5', '5 5', '\u00a05',
  ),
  fc.double({ min: -2e6, max: 2e7, noNaN: true }).map((d) => d.toFixed(8)),
  fc.integer({ min: -2_000_000, max: 20_000_000 }).map(String),
  fc.double({ noNaN: true }).map(String),
);
const xmlBoolText = fc.oneof({ weight: 4, arbitrary: fc.constantFrom('true', 'false') }, { weight: 2, arbitrary: fc.constantFrom('TRUE', 'True', '1', '0', 'yes', '', ' true ', 'true\n', 'false ', '&#116;rue') });

const ws = fc.constantFrom('', '', ' ', '\n', '\t', '\r\n  ');
const junkPrefix = fc.constantFrom('', '', '', '', '\uFEFF', ' ', '\n', 'x', '[', ")]}'\n", '\u0000');
const junkSuffix = fc.constantFrom('', '', '', '', ' ', '\n', 'x', ',', '}', '\u0000', ']');

// ---- documents -------------------------------------------------------------------------------

function jsonObject(pairs: [string, string][], w: string): string {
  return `{${w}${pairs.map(([k, v]) => `${JSON.stringify(k)}${w}:${w}${v}`).join(`,${w}`)}${w}}`;
}

const EXTRA_KEYS = ['currency', 'error-code', 'error-code-label', 'value', 'autoReload', '__proto__', 'constructor', 'toString', 'Value', 'autoreload', 'balance'];

/** `{"value": <weird>, "autoReload": <weird>}` and its relatives. */
const balanceJsonNearMiss = fc
  .record({
    value: fc.option(jsonValueText, { freq: 6, nil: undefined }),
    autoReload: fc.option(jsonBoolText, { freq: 6, nil: undefined }),
    extras: fc.array(fc.tuple(fc.constantFrom(...EXTRA_KEYS), jsonValueText), { maxLength: 2 }),
    extrasFirst: fc.boolean(),
    swap: fc.boolean(),
    w: ws,
    prefix: junkPrefix,
    suffix: junkSuffix,
    cut: fc.option(fc.nat(30), { freq: 8, nil: undefined }),
  })
  .map((r) => {
    const main: [string, string][] = [];
    if (r.value !== undefined) main.push(['value', r.value]);
    if (r.autoReload !== undefined) main.push(['autoReload', r.autoReload]);
    if (r.swap) main.reverse();
    const pairs = r.extrasFirst ? [...r.extras, ...main] : [...main, ...r.extras];
    const text = `${r.prefix}${jsonObject(pairs, r.w)}${r.suffix}`;
    return r.cut === undefined ? text : text.slice(0, Math.max(0, text.length - 1 - r.cut));
  });

const DECLS = [
  '',
  '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n',
  '<?xml version="1.0"?>',
  '<?xml version="1.0" encoding="UTF-8"?>\n\n',
  '<?xml?>',
  '<?XML version="1.0"?>',
  '<!DOCTYPE accountBalance>',
  '<!-- comment -->',
  '<?xml version="1.0" encoding="?"?>',
  '  <?xml version="1.0"?>  ',
];

function xmlChild(name: string, text: string, style: string): string {
  switch (style) {
    case 'self':
      return `<${name}/>`;
    case 'attr':
      return `<${name} a="1">${text}</${name}>`;
    case 'unclosed':
      return `<${name}>${text}`;
    case 'mismatch':
      return `<${name}>${text}</${name}x>`;
    case 'nested':
      return `<${name}><x>${text}</x></${name}>`;
    case 'spaced':
      return `<${name} >${text}</${name} >`;
    default:
      return `<${name}>${text}</${name}>`;
  }
}
const childStyle = fc.oneof({ weight: 12, arbitrary: fc.constant('plain') }, { weight: 1, arbitrary: fc.constantFrom('self', 'attr', 'unclosed', 'mismatch', 'nested', 'spaced') });

function xmlNearMiss(rootNames: string[], fields: [string, fc.Arbitrary<string>][], extraNames: string[]) {
  return fc
    .record({
      decl: fc.constantFrom(...DECLS),
      root: fc.oneof({ weight: 6, arbitrary: fc.constant(rootNames[0]!) }, { weight: 1, arbitrary: fc.constantFrom(...rootNames) }),
      closeRoot: fc.oneof({ weight: 12, arbitrary: fc.constant('same') }, { weight: 1, arbitrary: fc.constantFrom('none', 'other', 'twice') }),
      present: fc.array(fc.boolean(), { minLength: fields.length, maxLength: fields.length }),
      texts: fc.tuple(...fields.map(([, arb]) => arb)),
      styles: fc.array(childStyle, { minLength: fields.length, maxLength: fields.length }),
      extras: fc.array(fc.tuple(fc.constantFrom(...extraNames), fc.oneof(fc.constantFrom('EUR', '', 'x', '5', 'a&b', '&lt;'), fc.string({ maxLength: 6 }).filter((s) => !s.includes('<')))), { maxLength: 2 }),
      order: fc.nat(),
      w: ws,
      prefix: junkPrefix,
      suffix: junkSuffix,
    })
    .map((r) => {
      const children: string[] = [];
      fields.forEach(([name], i) => {
        // Mostly present: a document with the fields is the interesting near miss.
        if (r.present[i] || i % 2 === r.order % 2) children.push(xmlChild(name, String(r.texts[i]), r.styles[i]!));
      });
      for (const [name, text] of r.extras) children.push(`<${name}>${text}</${name}>`);
      // A cheap deterministic shuffle.
      const k = children.length === 0 ? 0 : r.order % children.length;
      const ordered = [...children.slice(k), ...children.slice(0, k)];
      const open = `<${r.root}>`;
      const rootName = r.root.split(' ')[0]!;
      const close = r.closeRoot === 'same' ? `</${rootName}>` : r.closeRoot === 'none' ? '' : r.closeRoot === 'other' ? '</other>' : `</${rootName}></${rootName}>`;
      return `${r.prefix}${r.decl}${open}${r.w}${ordered.join(r.w)}${r.w}${close}${r.suffix}`;
    });
}

const balanceXmlNearMiss = xmlNearMiss(
  ['accountBalance', 'response', 'AccountBalance', 'account-balance', 'accountBalance xmlns="urn:x"', 'ns:accountBalance', 'accountbalance'],
  [
    ['value', xmlNumberText],
    ['autoReload', xmlBoolText],
  ],
  ['currency', 'error-code', 'value', 'autoReload', 'constructor', 'toString', '__proto__', 'Value', 'extra'],
);

/** Exactly the documented shape with an arbitrary value: the part that should be accepted. */
const balanceWellFormed = fc
  .record({
    value: fc.oneof(fc.double({ min: -2e6, max: 2e7, noNaN: true }), fc.double({ min: 0, max: 2000, noNaN: true }), fc.integer({ min: -10, max: 5000 })),
    autoReload: fc.boolean(),
    xml: fc.boolean(),
    w: ws,
  })
  .map((r) =>
    r.xml
      ? `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<accountBalance>${r.w}<value>${r.value.toFixed(8)}</value>${r.w}<autoReload>${r.autoReload}</autoReload>${r.w}</accountBalance>\n`
      : jsonObject([['value', JSON.stringify(r.value)], ['autoReload', String(r.autoReload)]], r.w),
  );

const generic = fc.oneof(
  fc.json(),
  fc.anything().map((v) => {
    try {
      return JSON.stringify(v) ?? String(v);
    } catch {
      return String(v);
    }
  }),
  fc.string(),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.constantFrom('', ' ', 'null', '[]', '{}', '"x"', '<', '<html><body>502 Bad Gateway</body></html>', '}{ not json <<< \u2603', '\u0000\u0001'),
);

/** Answers at and around the client's 64 KiB cap (a valid balance padded to size). */
const oversized = fc.integer({ min: -3, max: 3 }).map((delta) => {
  const head = '{"value":5,"autoReload":true,"pad":"';
  const tail = '"}';
  return `${head}${'x'.repeat(BODY_CAP_BYTES + delta - head.length - tail.length)}${tail}`;
});

function withFraming(body: fc.Arbitrary<string>, kind: string, preferred: 'json' | 'xml' | 'any'): fc.Arbitrary<Canned> {
  const matching = preferred === 'xml' ? fc.constantFrom('application/xml', 'text/xml; charset=UTF-8') : fc.constantFrom('application/json', 'application/json; charset=utf-8');
  return fc
    .record({
      body,
      status: statusArb,
      contentType: preferred === 'any' ? randomContentType : fc.oneof({ weight: 3, arbitrary: matching }, { weight: 2, arbitrary: randomContentType }),
      retryAfter: retryAfterArb,
      redirect: fc.boolean(),
    })
    .map(({ body, status, contentType, retryAfter, redirect }) => {
      const headers: Record<string, string> = {};
      if (retryAfter !== undefined && (status === 429 || status === 503)) headers['Retry-After'] = retryAfter;
      if (redirect && status >= 300 && status < 400) headers.Location = '@@TRAP@@';
      return { status, ...(contentType === undefined ? {} : { contentType }), body, headers, kind };
    });
}

export const balanceAnswers: fc.Arbitrary<Canned> = fc.oneof(
  { weight: 6, arbitrary: withFraming(balanceJsonNearMiss, 'json-near-miss', 'json') },
  { weight: 5, arbitrary: withFraming(balanceXmlNearMiss, 'xml-near-miss', 'xml') },
  { weight: 4, arbitrary: withFraming(balanceWellFormed, 'well-formed', 'any') },
  { weight: 4, arbitrary: withFraming(generic, 'generic', 'any') },
  { weight: 1, arbitrary: withFraming(oversized, 'oversized', 'json') },
);

// ---- top-up answers --------------------------------------------------------------------------

const codeJson = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('"200"', '200') },
  {
    weight: 5,
    arbitrary: fc.constantFrom(
      '" 200 "', '"200 "', '"2OO"', '"0200"', '"200.0"', '200.0', '2e2', '"2e2"', 'null', '"401"', '"420"', '401', '420', '"500"', '"503"', '"429"',
      '"400"', '"403"', '"302"', '"404"', '"999"', '"1"', '""', '[200]', '["200"]', '{"x":200}', 'true', '"20"', '"2000"', '-200', '"+200"', '"200\\n"', '199.99999999999999999',
    ),
  },
  { weight: 1, arbitrary: fc.json({ maxDepth: 1 }) },
);
const labelJson = fc.constantFrom('"success"', '"authentication failed"', '"not auto-reload enabled"', '"topup failed"', '"Topup Failed"', '" NOT AUTO-RELOAD ENABLED "', 'null', '5', '""');

const topUpJsonNearMiss = fc
  .record({
    code: fc.option(codeJson, { freq: 8, nil: undefined }),
    label: fc.option(labelJson, { freq: 4, nil: undefined }),
    extras: fc.array(fc.tuple(fc.constantFrom('error-code', 'error-code-label', 'value', 'autoReload', 'type', 'error_title', '__proto__'), codeJson), { maxLength: 2 }),
    w: ws,
    prefix: junkPrefix,
    suffix: junkSuffix,
    cut: fc.option(fc.nat(20), { freq: 8, nil: undefined }),
  })
  .map((r) => {
    const pairs: [string, string][] = [];
    if (r.code !== undefined) pairs.push(['error-code', r.code]);
    if (r.label !== undefined) pairs.push(['error-code-label', r.label]);
    const text = `${r.prefix}${jsonObject([...pairs, ...r.extras], r.w)}${r.suffix}`;
    return r.cut === undefined ? text : text.slice(0, Math.max(0, text.length - 1 - r.cut));
  });

const codeXml = fc.oneof(
  { weight: 3, arbitrary: fc.constant('200') },
  { weight: 4, arbitrary: fc.constantFrom(' 200 ', '\n200\n', '2OO', '0200', '200.0', '2e2', '401', '420', '500', '429', '400', '403', '302', '404', '999', '1', '', '&#50;00', '<![CDATA[200]]>', '20', '+200') },
);
const labelXml = fc.constantFrom('success', 'authentication failed', 'not auto-reload enabled', 'topup failed', 'Topup Failed', '');

const topUpXmlNearMiss = xmlNearMiss(
  ['response', 'accountBalance', 'Response', 'response xmlns="urn:x"', 'ns:response'],
  [
    ['error-code', codeXml],
    ['error-code-label', labelXml],
  ],
  ['error-code', 'error-code-label', 'constructor', 'x', 'value'],
);

/** The documented bodies (success and each documented error), JSON or XML. */
const topUpWellFormed = fc
  .record({
    pair: fc.constantFrom<[string, string]>(['200', 'success'], ['200', 'success'], ['401', 'authentication failed'], ['401', 'not auto-reload enabled'], ['420', 'topup failed']),
    xml: fc.boolean(),
    w: ws,
  })
  .map(({ pair: [code, label], xml, w }) =>
    xml
      ? `<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<response>${w}<error-code>${code}</error-code>${w}<error-code-label>${label}</error-code-label>${w}</response>\n`
      : jsonObject([['error-code', JSON.stringify(code)], ['error-code-label', JSON.stringify(label)]], w),
  );

export const topUpAnswers: fc.Arbitrary<Canned> = fc.oneof(
  { weight: 4, arbitrary: withFraming(topUpWellFormed, 'documented', 'any') },
  { weight: 7, arbitrary: withFraming(topUpJsonNearMiss, 'json-near-miss', 'json') },
  { weight: 5, arbitrary: withFraming(topUpXmlNearMiss, 'xml-near-miss', 'xml') },
  { weight: 4, arbitrary: withFraming(generic, 'generic', 'any') },
  { weight: 1, arbitrary: withFraming(oversized, 'oversized', 'json') },
);

// ---- oracles ---------------------------------------------------------------------------------

const isXml = (contentType: string | undefined, text: string): boolean => /xml/i.test(contentType ?? '') || text.trimStart().startsWith('<');

/**
 * The documented flat XML: optional `<?xml …?>` declaration (no `?` inside), one root element with
 * no attributes, text-only children with simple names, each at most once. Child texts trimmed.
 */
export function flatXml(text: string, root: string): Map<string, string> | undefined {
  let s = text.trimStart();
  if (s.startsWith('<?xml')) {
    const end = s.indexOf('?>');
    if (end < 0 || s.slice(5, end).includes('?')) return undefined;
    s = s.slice(end + 2);
  }
  s = s.trim();
  const open = `<${root}>`;
  const close = `</${root}>`;
  if (!s.startsWith(open) || !s.endsWith(close) || s.length < open.length + close.length) return undefined;
  const inner = s.slice(open.length, s.length - close.length);
  const fields = new Map<string, string>();
  let i = 0;
  const isWs = (ch: string) => ch.trim() === '';
  while (i < inner.length) {
    if (isWs(inner[i]!)) {
      i += 1;
      continue;
    }
    if (inner[i] !== '<') return undefined;
    const gt = inner.indexOf('>', i);
    if (gt < 0) return undefined;
    const name = inner.slice(i + 1, gt);
    if (!/^[A-Za-z][A-Za-z0-9_-]*$/.test(name)) return undefined;
    const lt = inner.indexOf('<', gt + 1);
    if (lt < 0) return undefined;
    const endTag = `</${name}>`;
    if (!inner.startsWith(endTag, lt)) return undefined;
    if (fields.has(name)) return undefined;
    fields.set(name, inner.slice(gt + 1, lt).trim());
    i = lt + endTag.length;
  }
  return fields;
}

function jsonObjectOf(text: string): Record<string, unknown> | undefined {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return undefined;
  }
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

export type BalanceVerdict = { ok: true; value: number; autoReload: boolean } | { ok: false; why: string };

export function balanceOracle(status: number, contentType: string | undefined, text: string, bytes: number): BalanceVerdict {
  if (bytes > BODY_CAP_BYTES) return { ok: false, why: 'over the size cap' };
  if (status < 200 || status > 299) return { ok: false, why: 'not 2xx' };
  let rawValue: unknown;
  let rawFlag: unknown;
  let value: number;
  let flag: boolean | undefined;
  if (isXml(contentType, text)) {
    const fields = flatXml(text, 'accountBalance');
    if (!fields) return { ok: false, why: 'not the flat accountBalance XML' };
    if (fields.has('error-code')) return { ok: false, why: 'error-code present' };
    rawValue = fields.get('value');
    rawFlag = fields.get('autoReload');
    value = typeof rawValue === 'string' && /^-?[0-9]+(\.[0-9]+)?$/.test(rawValue) ? Number(rawValue) : Number.NaN;
    flag = rawFlag === 'true' ? true : rawFlag === 'false' ? false : undefined;
  } else {
    const obj = jsonObjectOf(text);
    if (!obj) return { ok: false, why: 'not a JSON object' };
    if (Object.hasOwn(obj, 'error-code')) return { ok: false, why: 'error-code present' };
    rawValue = Object.hasOwn(obj, 'value') ? obj.value : undefined;
    rawFlag = Object.hasOwn(obj, 'autoReload') ? obj.autoReload : undefined;
    value = typeof rawValue === 'number' ? rawValue : Number.NaN;
    flag = rawFlag === true || rawFlag === 'true' ? true : rawFlag === false || rawFlag === 'false' ? false : undefined;
  }
  if (!Number.isFinite(value)) return { ok: false, why: 'value is not a finite number' };
  if (value < -1_000_000 || value > 10_000_000) return { ok: false, why: 'value outside [-1e6, 1e7]' };
  if (flag === undefined) return { ok: false, why: 'no autoReload flag' };
  return { ok: true, value, autoReload: flag };
}

export type TopUpVerdict = { success: true } | { success: false; readable: boolean; code: string | undefined };

export function topUpOracle(status: number, contentType: string | undefined, text: string, bytes: number): TopUpVerdict {
  if (bytes > BODY_CAP_BYTES) return { success: false, readable: false, code: undefined };
  let code: string | undefined;
  let readable: boolean;
  if (isXml(contentType, text)) {
    const fields = flatXml(text, 'response');
    readable = fields !== undefined;
    code = fields?.get('error-code');
  } else {
    const obj = jsonObjectOf(text);
    readable = obj !== undefined;
    const c = obj && Object.hasOwn(obj, 'error-code') ? obj['error-code'] : undefined;
    code = typeof c === 'string' ? c.trim() : typeof c === 'number' && Number.isFinite(c) ? String(c) : undefined;
  }
  if (status >= 200 && status <= 299 && readable && code === '200') return { success: true };
  return { success: false, readable, code };
}
