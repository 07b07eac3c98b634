/**
 * Simulator fidelity: is the built-in simulator a faithful stand-in for rest.nexmo.com?
 *
 * Two independent judges, neither of them written by this project:
 *  1. Vonage's official Node client (`@vonage/accounts` 1.20.x) talks to the simulator over real
 *     loopback HTTP. It must read the balance, top up, and see the documented failures the way it
 *     expects them (it throws on non-2xx; on 2xx it returns the body as is).
 *  2. Vonage's OpenAPI description (test/fixtures/vonage/account.yml, vendored unchanged). Every
 *     simulator answer (success and each documented error, JSON and XML, both endpoints) is
 *     validated against its schemas with a small JSON-schema subset validator
 *     (test/helpers/openapi-schema.ts), and every request OUR client sends (captured by the
 *     simulator) is checked against the spec too.
 *
 * If the official client and the spec accept it, the rest of the suite tests the real thing.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Accounts } from '@vonage/accounts';
import { parse as parseYaml } from 'yaml';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CONFIG_VARIABLES } from '../../src/config/config.js';
import { VonageError } from '../../src/vonage/errors.js';
import { startSimulator, type SimFault, type Simulator, type SimRequestRecord } from '../../src/simulator/simulator.js';
import { createVonageClient, type VonageClient } from '../../src/vonage/account-client.js';
import { findSecret, secretForms } from './helpers/fuzz-canary.js';
import { schemaValidator, type MediaType, type Schema, type SchemaValidator, type ValidateOptions } from '../helpers/openapi-schema.js';

// ---------------------------------------------------------------------------------------------
// The spec. Its validator (test/helpers/openapi-schema.ts) covers the keywords account.yml uses for
// these paths: $ref, type object|string|number|integer|boolean|array, properties, required, enum,
// items, oneOf; OpenAPI's `xml.name` for the XML root element is read by xmlAsJson below.
// ---------------------------------------------------------------------------------------------

interface Operation {
  parameters?: Schema[];
  requestBody?: { required?: boolean; content: Record<string, MediaType> };
  responses: Record<string, { description?: string; content?: Record<string, MediaType> }>;
}
interface Parameter {
  name: string;
  in: 'query' | 'path' | 'header';
  required?: boolean;
  schema?: Schema;
}
interface Spec {
  servers?: { url: string }[];
  paths: Record<string, { servers?: { url: string }[]; get?: Operation; post?: Operation }>;
  components: {
    schemas: Record<string, Schema>;
    parameters: Record<string, Parameter>;
    securitySchemes: Record<string, { type: string; scheme?: string; description?: string }>;
  };
}

const SPEC_PATH = resolve(__dirname, '../fixtures/vonage/account.yml');
let spec: Spec;
// Set with the spec in beforeAll (plain JSON Schema by default: undeclared properties allowed).
let deref: SchemaValidator['deref'];
let validate: SchemaValidator['validate'];

// ---------------------------------------------------------------------------------------------
// A small, strict XML reader for the flat documents the spec describes: an optional declaration,
// one root element, text-only children. Entities are decoded; attributes, comments, CDATA and
// nesting below the children are rejected (nothing in the spec uses them).
// ---------------------------------------------------------------------------------------------

interface XmlDoc {
  root: string;
  children: [string, string][];
}

function decodeEntities(text: string): string {
  if (/&(?!(?:lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);)/.test(text)) throw new Error('bare & in text');
  return text.replace(/&(lt|gt|amp|quot|apos|#\d+|#x[0-9a-fA-F]+);/g, (_m, e: string) => {
    const named: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
    if (named[e] !== undefined) return named[e]!;
    return String.fromCodePoint(e.startsWith('#x') ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10));
  });
}

function readXml(text: string): XmlDoc {
  let rest = text;
  const decl = /^<\?xml\s+version="1\.[0-9]"(?:\s+encoding="[A-Za-z0-9._-]+")?(?:\s+standalone="(?:yes|no)")?\s*\?>/.exec(rest);
  if (decl) rest = rest.slice(decl[0].length);
  rest = rest.trim();
  const open = /^<([A-Za-z_][\w.-]*)>/.exec(rest);
  if (!open) throw new Error('no root element');
  const root = open[1]!;
  const close = `</${root}>`;
  if (!rest.endsWith(close)) throw new Error(`root <${root}> is not closed at the end`);
  let inner = rest.slice(open[0].length, rest.length - close.length);
  const children: [string, string][] = [];
  for (;;) {
    inner = inner.replace(/^\s+/, '');
    if (inner === '') break;
    const child = /^<([A-Za-z_][\w.-]*)>([^<]*)<\/\1>/.exec(inner);
    if (!child) throw new Error(`unexpected content in <${root}>: ${JSON.stringify(inner.slice(0, 40))}`);
    children.push([child[1]!, decodeEntities(child[2]!)]);
    inner = inner.slice(child[0].length);
  }
  return { root, children };
}

/** XML → the JSON value the schema describes: text converted by each property's declared type. */
function xmlAsJson(schemaOrRef: Schema, doc: XmlDoc): { value: Record<string, unknown>; problems: string[] } {
  const schema = deref(schemaOrRef);
  const problems: string[] = [];
  const expectedRoot = schema.xml?.name;
  if (expectedRoot !== undefined && doc.root !== expectedRoot) problems.push(`root is <${doc.root}>, the schema says <${expectedRoot}>`);
  const value: Record<string, unknown> = {};
  for (const [name, text] of doc.children) {
    if (Object.hasOwn(value, name)) problems.push(`<${name}> repeated`);
    const type = schema.properties?.[name] ? deref(schema.properties[name]!).type : undefined;
    if (type === 'number') {
      // xsd:decimal / xsd:double lexical space.
      if (/^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$/.test(text.trim())) value[name] = Number(text.trim());
      else problems.push(`<${name}> ${JSON.stringify(text)} is not a number`);
    } else if (type === 'integer') {
      if (/^[+-]?\d+$/.test(text.trim())) value[name] = Number(text.trim());
      else problems.push(`<${name}> ${JSON.stringify(text)} is not an integer`);
    } else if (type === 'boolean') {
      const t = text.trim();
      if (t === 'true' || t === 'false') value[name] = t === 'true';
      else problems.push(`<${name}> ${JSON.stringify(text)} is not a boolean`);
    } else {
      value[name] = text;
    }
  }
  return { value, problems };
}

// ---------------------------------------------------------------------------------------------
// Judging one answer against the spec
// ---------------------------------------------------------------------------------------------

interface Answer {
  status: number;
  contentType: string;
  text: string;
}

async function answerOf(res: Response): Promise<Answer> {
  return { status: res.status, contentType: res.headers.get('content-type') ?? '', text: await res.text() };
}

function operation(path: string, method: 'get' | 'post'): Operation {
  const op = spec.paths[path]?.[method];
  if (!op) throw new Error(`spec has no ${method.toUpperCase()} ${path}`);
  return op;
}

/**
 * Problems with `answer` as a response of `method path`: a documented status, a documented media
 * type, and a body valid against that media type's schema (XML read via the schema's xml.name).
 */
const counted = { answers: 0, requests: 0 };

function specProblems(path: string, method: 'get' | 'post', answer: Answer, opts: ValidateOptions = {}): string[] {
  counted.answers += 1;
  const response = operation(path, method).responses[String(answer.status)];
  if (!response) return [`HTTP ${answer.status} is not a documented response of ${method.toUpperCase()} ${path}`];
  const media = answer.contentType.split(';')[0]!.trim().toLowerCase();
  const content = response.content?.[media];
  if (!content?.schema) return [`media type ${JSON.stringify(media)} is not documented for HTTP ${answer.status}`];
  if (media === 'application/json') {
    let body: unknown;
    try {
      body = JSON.parse(answer.text);
    } catch {
      return ['body is not JSON'];
    }
    return validate(content.schema, body, opts);
  }
  let doc: XmlDoc;
  try {
    doc = readXml(answer.text);
  } catch (err) {
    return [`body is not the flat XML the spec describes: ${(err as Error).message}`];
  }
  const schema = deref(content.schema);
  // For oneOf, the XML must fit one alternative (its own root name and types).
  const candidates = schema.oneOf ?? [schema];
  const perCandidate = candidates.map((alt) => {
    const { value, problems } = xmlAsJson(alt, doc);
    return [...problems, ...validate(alt, value, opts)];
  });
  const fitting = perCandidate.filter((p) => p.length === 0).length;
  if (schema.oneOf) return fitting === 1 ? [] : [`XML fits ${fitting} of the oneOf alternatives: ${JSON.stringify(perCandidate)}`];
  return perCandidate[0]!;
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const API_KEY = 'fidelity-key';
const SECRET = 'CANARY-fidelity/+=%&s3cr3t';
const TRX = 'ffe0c0a1b2c3d4e5f60718293a4b5c6d';
const BALANCE_PATH = '/account/get-balance';
const TOPUP_PATH = '/account/top-up';
const BASIC = `Basic ${Buffer.from(`${API_KEY}:${SECRET}`).toString('base64')}`;

let sim: Simulator | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

async function simulator(opts: Parameters<typeof startSimulator>[0] = {}): Promise<Simulator> {
  sim = await startSimulator({ apiKey: API_KEY, apiSecret: SECRET, trx: TRX, balance: 10.171275, autoReload: true, topUpAmount: 20, ...opts });
  return sim;
}

const sdk = (s: Simulator, secret = SECRET) => new Accounts({ apiKey: API_KEY, apiSecret: secret }, { restHost: s.url });
const ours = (s: Simulator, auth: 'basic' | 'query' = 'basic', secret = SECRET): VonageClient =>
  createVonageClient({ account: { apiKey: API_KEY, apiSecret: secret, baseUrl: s.url, auth }, timeoutMs: 5000 });

/** What the SDK throws: VetchError with the node-fetch Response, body unread. */
async function sdkFailure(p: Promise<unknown>): Promise<{ name: string; status: number; body: unknown }> {
  const err = await p.then(
    (v) => {
      throw new Error(`expected the SDK to throw, it returned ${JSON.stringify(v)}`);
    },
    (e: unknown) => e as { name?: string; constructor?: { name?: string }; response?: { status: number; text(): Promise<string> } },
  );
  const name = err.constructor?.name ?? err.name ?? '';
  if (!err.response) throw new Error(`SDK threw without a response: ${String(err)}`);
  const text = await err.response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Left as text.
  }
  return { name, status: err.response.status, body };
}

async function ourFailure(p: Promise<unknown>): Promise<VonageError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VonageError);
  return err as VonageError;
}

/** Direct HTTP, for the XML answers (neither client asks for XML). */
function raw(s: Simulator, path: string, init: { method?: string; accept?: string; auth?: string; body?: string } = {}): Promise<Response> {
  const headers: Record<string, string> = { accept: init.accept ?? 'application/json', authorization: init.auth ?? BASIC };
  if (init.body !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
  return fetch(`${s.url}${path}`, { method: init.method ?? 'GET', headers, ...(init.body === undefined ? {} : { body: init.body }) });
}
const rawTopUp = (s: Simulator, accept: string, auth = BASIC, trx = TRX) =>
  raw(s, TOPUP_PATH, { method: 'POST', accept, auth, body: new URLSearchParams({ trx }).toString() });
const WRONG = `Basic ${Buffer.from(`${API_KEY}:wrong-secret`).toString('base64')}`;

beforeAll(() => {
  spec = parseYaml(readFileSync(SPEC_PATH, 'utf8')) as Spec;
  ({ deref, validate } = schemaValidator(spec));
});
afterAll(() => {
  console.log(`[figure] simulator answers checked against the OpenAPI file (all documented ones valid; the 2 top-up 400s are undocumented): ${counted.answers}`);
  console.log(`[figure] client requests checked against the OpenAPI file: ${counted.requests}`);
});

// ---------------------------------------------------------------------------------------------
// 0. The validator itself
// ---------------------------------------------------------------------------------------------

describe('the schema validator and XML reader (checked first, so a pass below means something)', () => {
  it('accepts the spec examples and rejects near misses', () => {
    const balance = spec.components.schemas.accountBalance!;
    expect(validate(balance, { value: 10.1712751, autoReload: false })).toEqual([]);
    expect(validate(balance, { value: '10.17', autoReload: false })).toEqual(['$.value: is string, not number']);
    expect(validate(balance, { value: 1, autoReload: 'false' })).toEqual(['$.autoReload: is string, not boolean']);
    expect(validate(balance, [1])).toEqual(['$: is array, not object']);
    expect(validate(balance, { value: 1, autoReload: true, extra: 1 }, { noUndeclared: true })).toEqual(['$: undeclared extra']);
    expect(validate({ $ref: '#/components/schemas/topupRequest' }, {})).toEqual(['$: missing required trx']);
    expect(validate({ $ref: '#/components/schemas/topupRequest' }, { trx: 5 })).toEqual(['$.trx: is integer, not string']);
    // Documented values: the two 401 alternatives differ only in their example labels.
    const r401 = operation(TOPUP_PATH, 'post').responses['401']!.content!['application/json']!.schema!;
    expect(validate(r401, { 'error-code': '401', 'error-code-label': 'authentication failed' }, { examplesAsConst: true })).toEqual([]);
    expect(validate(r401, { 'error-code': '401', 'error-code-label': 'not auto-reload enabled' }, { examplesAsConst: true })).toEqual([]);
    expect(validate(r401, { 'error-code': '401', 'error-code-label': 'nope' }, { examplesAsConst: true })).toHaveLength(1);
    // ...and under plain JSON Schema any object fits both, so `oneOf` rejects every 401 body.
    expect(validate(r401, { 'error-code': '401', 'error-code-label': 'authentication failed' })[0]).toMatch(/matches 2 of the 2/);
    expect(() => deref({ $ref: '#/components/schemas/nope' })).toThrow(/unresolvable/);
  });

  it('reads the spec XML example, and refuses what it does not understand', () => {
    const example = String(operation(BALANCE_PATH, 'get').responses['200']!.content!['application/xml']!.example);
    const schema = spec.components.schemas.accountBalance!;
    const { value, problems } = xmlAsJson(schema, readXml(example));
    expect(problems).toEqual([]);
    expect(value).toEqual({ value: 10.171275, autoReload: false });
    expect(validate(schema, value)).toEqual([]);
    expect(() => readXml('<accountBalance><value a="1">1</value></accountBalance>')).toThrow();
    expect(() => readXml('<accountBalance><value><x/></value></accountBalance>')).toThrow();
    expect(() => readXml('<accountBalance><value>1</value>')).toThrow();
    expect(xmlAsJson(schema, readXml('<response><value>x</value></response>')).problems).toEqual([
      'root is <response>, the schema says <accountBalance>',
      '<value> "x" is not a number',
    ]);
  });
});

// ---------------------------------------------------------------------------------------------
// 1. The official SDK against the simulator
// ---------------------------------------------------------------------------------------------

describe("Vonage's official client (@vonage/accounts) against the simulator", () => {
  it('reads the balance, tops up once, and sees the new balance', async () => {
    const s = await simulator();
    const client = sdk(s);
    expect(await client.getBalance()).toEqual({ value: 10.171275, autoReload: true });
    expect(await client.topUpBalance(TRX)).toEqual({ 'error-code': '200', 'error-code-label': 'success' });
    expect(s.appliedTopUps()).toEqual([expect.objectContaining({ amount: 20, balanceAfter: 30.171275 })]);
    expect(await client.getBalance()).toEqual({ value: 30.171275, autoReload: true });
    // Sent the way Vonage documents: Basic auth, form body, the two paths.
    const requests = s.requests();
    expect(requests.map((r) => `${r.method} ${r.path}`)).toEqual([`GET ${BALANCE_PATH}`, `POST ${TOPUP_PATH}`, `GET ${BALANCE_PATH}`]);
    expect(requests.every((r) => r.headers.authorization === BASIC)).toBe(true);
    expect(new URLSearchParams(requests[1]!.body).get('trx')).toBe(TRX);
  });

  it('wrong secret: both calls throw with HTTP 401 and the documented authentication-failed body; nothing is applied', async () => {
    const s = await simulator();
    const client = sdk(s, 'wrong-secret');
    expect(await sdkFailure(client.getBalance())).toEqual({
      name: 'VetchError',
      status: 401,
      body: { 'error-code': '401', 'error-code-label': 'authentication failed' },
    });
    expect(await sdkFailure(client.topUpBalance(TRX))).toEqual({
      name: 'VetchError',
      status: 401,
      body: { 'error-code': '401', 'error-code-label': 'authentication failed' },
    });
    expect(s.appliedTopUps()).toEqual([]);
  });

  it('auto_reload_off fault: the balance says autoReload=false (a 2xx the SDK returns), the top-up throws 401 "not auto-reload enabled"', async () => {
    const s = await simulator();
    s.setFault({ kind: 'auto_reload_off' });
    const client = sdk(s);
    expect(await client.getBalance()).toEqual({ value: 10.171275, autoReload: false });
    expect(await sdkFailure(client.topUpBalance(TRX))).toEqual({
      name: 'VetchError',
      status: 401,
      body: { 'error-code': '401', 'error-code-label': 'not auto-reload enabled' },
    });
    // The account switch behaves the same as the fault.
    s.clearFaults();
    s.setAutoReload(false);
    expect(await client.getBalance()).toEqual({ value: 10.171275, autoReload: false });
    expect((await sdkFailure(client.topUpBalance(TRX))).body).toEqual({ 'error-code': '401', 'error-code-label': 'not auto-reload enabled' });
    expect(s.appliedTopUps()).toEqual([]);
  });

  it('topup_failed fault: the top-up throws with HTTP 401 carrying error-code 420; the balance is unchanged', async () => {
    const s = await simulator();
    s.setFault({ kind: 'topup_failed', count: 1 });
    const client = sdk(s);
    expect(await sdkFailure(client.topUpBalance(TRX))).toEqual({
      name: 'VetchError',
      status: 401,
      body: { 'error-code': '420', 'error-code-label': 'topup failed' },
    });
    expect(s.appliedTopUps()).toEqual([]);
    expect(await client.getBalance()).toEqual({ value: 10.171275, autoReload: true });
    // The fault was one-shot: the next top-up goes through.
    expect(await client.topUpBalance(TRX)).toEqual({ 'error-code': '200', 'error-code-label': 'success' });
  });

  it('wrong trx: the top-up throws with HTTP 400 and the SDK-fixture BAD_REQUEST body', async () => {
    const s = await simulator();
    expect(await sdkFailure(sdk(s).topUpBalance('not-the-trx'))).toEqual({
      name: 'VetchError',
      status: 400,
      body: { type: 'BAD_REQUEST', error_title: 'Bad Request', invalid_parameters: { trx: 'Is required.' } },
    });
    expect(s.appliedTopUps()).toEqual([]);
  });

  it('on a 2xx the SDK returns whatever error-code body comes back (so callers must check it), and so does the simulator only for success', async () => {
    // Every simulator top-up answer that the SDK does NOT throw on is the success body: the
    // simulator never hides a failure in a 2xx, which is the case the SDK leaves to its caller.
    const s = await simulator();
    const client = sdk(s);
    const faults: (SimFault | undefined)[] = [undefined, { kind: 'topup_failed' }, { kind: 'auto_reload_off' }, { kind: 'bad_request' }, { kind: 'auth_failure' }];
    const seen: string[] = [];
    for (const fault of faults) {
      s.clearFaults();
      if (fault) s.setFault(fault);
      const r = await client.topUpBalance(TRX).then(
        (body) => `2xx ${JSON.stringify(body)}`,
        (e: { response?: { status: number } }) => `threw ${e.response?.status}`,
      );
      seen.push(r);
    }
    expect(seen).toEqual([
      '2xx {"error-code":"200","error-code-label":"success"}',
      'threw 401',
      'threw 401',
      'threw 400',
      'threw 401',
    ]);
    expect(s.appliedTopUps()).toHaveLength(1);
  });

  it('the SDK and our client agree on every scenario: same success, same failure class, same money moved', async () => {
    type Verdict = { balance: string; topUp: string; applied: number };
    const scenarios: { label: string; setup: (s: Simulator) => void; secret?: string; trx?: string; sdk: Verdict; ours: Verdict }[] = [
      { label: 'healthy', setup: () => {}, sdk: { balance: 'ok 10.171275 true', topUp: 'ok', applied: 1 }, ours: { balance: 'ok 10.171275 true', topUp: 'ok', applied: 1 } },
      { label: 'wrong secret', setup: () => {}, secret: 'wrong-secret', sdk: { balance: 'fail 401', topUp: 'fail 401', applied: 0 }, ours: { balance: 'fail auth_failed', topUp: 'fail auth_failed', applied: 0 } },
      { label: 'auto-reload off', setup: (s) => s.setFault({ kind: 'auto_reload_off' }), sdk: { balance: 'ok 10.171275 false', topUp: 'fail 401', applied: 0 }, ours: { balance: 'ok 10.171275 false', topUp: 'fail auto_reload_disabled', applied: 0 } },
      { label: 'topup failed', setup: (s) => s.setFault({ kind: 'topup_failed' }), sdk: { balance: 'ok 10.171275 true', topUp: 'fail 401', applied: 0 }, ours: { balance: 'ok 10.171275 true', topUp: 'fail topup_failed', applied: 0 } },
      { label: 'wrong trx', setup: () => {}, trx: 'not-the-trx', sdk: { balance: 'ok 10.171275 true', topUp: 'fail 400', applied: 0 }, ours: { balance: 'ok 10.171275 true', topUp: 'fail bad_request', applied: 0 } },
    ];
    for (const sc of scenarios) {
      const verdicts: Verdict[] = [];
      for (const who of ['sdk', 'ours'] as const) {
        const s = await simulator();
        sc.setup(s);
        const secret = sc.secret ?? SECRET;
        const trx = sc.trx ?? TRX;
        let balance: string;
        let topUp: string;
        if (who === 'sdk') {
          const c = sdk(s, secret);
          balance = await c.getBalance().then(
            (b) => `ok ${b.value} ${b.autoReload}`,
            (e: { response?: { status: number } }) => `fail ${e.response?.status}`,
          );
          topUp = await c.topUpBalance(trx).then(
            (b) => (b['error-code'] === '200' ? 'ok' : `2xx ${b['error-code']}`),
            (e: { response?: { status: number } }) => `fail ${e.response?.status}`,
          );
        } else {
          const c = ours(s, 'basic', secret);
          balance = await c.getBalance().then(
            (b) => `ok ${b.value} ${b.autoReload}`,
            (e: VonageError) => `fail ${e.reason}`,
          );
          topUp = await c.topUp(trx).then(
            () => 'ok',
            (e: VonageError) => `fail ${e.reason}`,
          );
        }
        verdicts.push({ balance, topUp, applied: s.appliedTopUps().length });
        await s.close();
      }
      expect({ label: sc.label, sdk: verdicts[0], ours: verdicts[1] }).toEqual({ label: sc.label, sdk: sc.sdk, ours: sc.ours });
      // Same success/failure on both, and the same money moved.
      expect(verdicts[0]!.topUp === 'ok').toBe(verdicts[1]!.topUp === 'ok');
      expect(verdicts[0]!.applied).toBe(verdicts[1]!.applied);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// 2. Every simulator answer against the OpenAPI schemas
// ---------------------------------------------------------------------------------------------

describe("every simulator answer validates against Vonage's OpenAPI schemas (JSON and XML, both endpoints)", () => {
  const FORMATS = [
    ['JSON', 'application/json'],
    ['XML', 'application/xml'],
  ] as const;

  // Documented values on: each error body must be the one its schema's examples describe, and
  // no undeclared properties. That is stricter than the spec (which allows anything untyped).
  const STRICT: ValidateOptions = { examplesAsConst: true, noUndeclared: true };

  for (const [label, accept] of FORMATS) {
    it(`${label}: balance 200 (accountBalance), incl. autoReload=false and a drained, fractional value`, async () => {
      const s = await simulator({ balance: 10.171275 });
      const answers = [await answerOf(await raw(s, BALANCE_PATH, { accept }))];
      s.setFault({ kind: 'auto_reload_off', endpoint: 'balance' });
      s.setBalance(0.0000123);
      answers.push(await answerOf(await raw(s, BALANCE_PATH, { accept })));
      s.clearFaults();
      s.setBalance(0);
      answers.push(await answerOf(await raw(s, BALANCE_PATH, { accept })));
      for (const a of answers) {
        expect(a.status).toBe(200);
        expect(a.contentType.split(';')[0]).toBe(accept);
        expect(specProblems(BALANCE_PATH, 'get', a, STRICT), a.text).toEqual([]);
      }
    });

    it(`${label}: balance 401 (ErrorAuthenticationFailedAccountBalance), from a wrong secret and from the auth_failure fault`, async () => {
      const s = await simulator();
      const answers = [await answerOf(await raw(s, BALANCE_PATH, { accept, auth: WRONG }))];
      answers.push(await answerOf(await raw(s, BALANCE_PATH, { accept, auth: 'Basic' })));
      s.setFault({ kind: 'auth_failure', endpoint: 'balance' });
      answers.push(await answerOf(await raw(s, BALANCE_PATH, { accept })));
      for (const a of answers) {
        expect(a.status).toBe(401);
        expect(specProblems(BALANCE_PATH, 'get', a, STRICT), a.text).toEqual([]);
        if (accept === 'application/xml') expect(readXml(a.text).root).toBe('accountBalance');
      }
    });

    it(`${label}: top-up 200 (success)`, async () => {
      const s = await simulator();
      const a = await answerOf(await rawTopUp(s, accept));
      expect(a.status).toBe(200);
      expect(specProblems(TOPUP_PATH, 'post', a, STRICT), a.text).toEqual([]);
      expect(s.appliedTopUps()).toHaveLength(1);
    });

    it(`${label}: top-up 401 (oneOf ErrorAuthenticationFailed | ErrorAutoReloadNotEnabled), each alternative reached`, async () => {
      const s = await simulator();
      const auth = await answerOf(await rawTopUp(s, accept, WRONG));
      s.setFault({ kind: 'auth_failure', endpoint: 'topup' });
      const authFault = await answerOf(await rawTopUp(s, accept));
      s.clearFaults();
      s.setFault({ kind: 'auto_reload_off', endpoint: 'topup' });
      const off = await answerOf(await rawTopUp(s, accept));
      s.clearFaults();
      s.setAutoReload(false);
      const offAccount = await answerOf(await rawTopUp(s, accept));
      for (const a of [auth, authFault, off, offAccount]) {
        expect(a.status).toBe(401);
        expect(specProblems(TOPUP_PATH, 'post', a, STRICT), a.text).toEqual([]);
      }
      // Each answer fits exactly the alternative it should.
      const schemaOf = (a: Answer) => {
        const body = accept === 'application/json' ? (JSON.parse(a.text) as unknown) : xmlAsJson(spec.components.schemas.ErrorAuthenticationFailed!, readXml(a.text)).value;
        return ['ErrorAuthenticationFailed', 'ErrorAutoReloadNotEnabled'].filter((n) => validate(spec.components.schemas[n]!, body, STRICT).length === 0);
      };
      expect([auth, authFault, off, offAccount].map(schemaOf)).toEqual([
        ['ErrorAuthenticationFailed'],
        ['ErrorAuthenticationFailed'],
        ['ErrorAutoReloadNotEnabled'],
        ['ErrorAutoReloadNotEnabled'],
      ]);
      expect(s.appliedTopUps()).toEqual([]);
    });

    it(`${label}: top-up "topup failed" (420) is structurally valid for the documented 401, but its values are not in the spec`, async () => {
      // The spec documents no 420; the simulator takes it from the official SDKs' fixtures and sends
      // it with HTTP 401 and the same two fields. Structure: valid for each 401 alternative.
      // Documented values: neither (this is the one place where the simulator goes beyond the spec).
      const s = await simulator();
      s.setFault({ kind: 'topup_failed' });
      const a = await answerOf(await rawTopUp(s, accept));
      expect(a.status).toBe(401);
      const body = accept === 'application/json' ? (JSON.parse(a.text) as unknown) : xmlAsJson(spec.components.schemas.ErrorAuthenticationFailed!, readXml(a.text)).value;
      expect(body).toEqual({ 'error-code': '420', 'error-code-label': 'topup failed' });
      for (const name of ['ErrorAuthenticationFailed', 'ErrorAutoReloadNotEnabled']) {
        expect(validate(spec.components.schemas[name]!, body, { noUndeclared: true })).toEqual([]);
        expect(validate(spec.components.schemas[name]!, body, STRICT)).not.toEqual([]);
      }
      if (accept === 'application/xml') expect(readXml(a.text).root).toBe('response');
      expect(s.appliedTopUps()).toEqual([]);
    });
  }

  it('the top-up 400 (wrong trx / bad_request fault) is JSON only and has no response in the spec; it matches the SDK fixture shape', async () => {
    const s = await simulator();
    const wrongTrx = await answerOf(await rawTopUp(s, 'application/xml', BASIC, 'nope'));
    s.setFault({ kind: 'bad_request' });
    const fault = await answerOf(await rawTopUp(s, 'application/json'));
    for (const a of [wrongTrx, fault]) {
      expect(a.status).toBe(400);
      expect(a.contentType.split(';')[0]).toBe('application/json');
      expect(specProblems(TOPUP_PATH, 'post', a)).toEqual(['HTTP 400 is not a documented response of POST /account/top-up']);
      expect(JSON.parse(a.text)).toEqual({ type: 'BAD_REQUEST', error_title: 'Bad Request', invalid_parameters: { trx: 'Is required.' } });
    }
    expect(s.appliedTopUps()).toEqual([]);
  });

  it('the XML the simulator sends round-trips through the spec example format byte for byte (after whitespace)', async () => {
    const s = await simulator({ balance: 10.171275, autoReload: false });
    const xml = (await answerOf(await raw(s, BALANCE_PATH, { accept: 'application/xml' }))).text;
    const squash = (t: string) => t.trim().replace(/>\s+</g, '><');
    expect(squash(xml)).toBe(squash(String(operation(BALANCE_PATH, 'get').responses['200']!.content!['application/xml']!.example)));
  });
});

// ---------------------------------------------------------------------------------------------
// 3. What OUR client sends, against the spec (and against what the SDK sends)
// ---------------------------------------------------------------------------------------------

describe('what our client sends matches the spec', () => {
  function checkRequest(r: SimRequestRecord, auth: 'basic' | 'query', key: string, secret: string): string[] {
    counted.requests += 1;
    const problems: string[] = [];
    const method = r.method.toLowerCase() as 'get' | 'post';
    const op = spec.paths[r.path]?.[method];
    if (!op) return [`${r.method} ${r.path} is not in the spec`];
    // Authentication: the securityScheme's Basic header, or the query parameters the path declares.
    const queryParams = (op.parameters ?? []).map((p) => deref<Parameter>(p as unknown as Parameter)).filter((p) => p.in === 'query');
    if (auth === 'basic') {
      const expected = `Basic ${Buffer.from(`${key}:${secret}`).toString('base64')}`;
      if (r.headers.authorization !== expected) problems.push(`Authorization is ${JSON.stringify(r.headers.authorization)}`);
      for (const p of queryParams) if (p.name in r.query) problems.push(`the secret-bearing query parameter ${p.name} was sent along with Basic auth`);
    } else {
      const values: Record<string, string> = { api_key: key, api_secret: secret };
      for (const p of queryParams) {
        if (p.required && !(p.name in r.query)) problems.push(`required query parameter ${p.name} missing`);
        if (r.query[p.name] !== values[p.name]) problems.push(`query ${p.name} has the wrong value`);
      }
      if (r.headers.authorization !== undefined) problems.push('Authorization header sent in query mode');
    }
    // Body: only where the spec has a requestBody, in its media type, valid against its schema.
    if (op.requestBody) {
      const [media, content] = Object.entries(op.requestBody.content)[0]!;
      if ((r.headers['content-type'] ?? '').split(';')[0]!.trim() !== media) problems.push(`Content-Type ${r.headers['content-type']} is not ${media}`);
      const form = Object.fromEntries(new URLSearchParams(r.body));
      problems.push(...validate(content.schema!, form, { noUndeclared: true }));
      if (new URLSearchParams(r.body).getAll('trx').length !== 1) problems.push('trx not sent exactly once');
    } else if (r.body !== '') {
      problems.push('a body on a request the spec gives none');
    }
    // Accept: a media type the spec documents for this operation's responses.
    const documented = new Set(Object.values(op.responses).flatMap((res) => Object.keys(res.content ?? {})));
    const accept = (r.headers.accept ?? '').split(',').map((t) => t.split(';')[0]!.trim());
    if (!accept.some((t) => documented.has(t))) problems.push(`Accept ${r.headers.accept} names no documented media type`);
    return problems;
  }

  it('basic auth: GET /account/get-balance and POST /account/top-up with form field trx, exactly as specified', async () => {
    const s = await simulator();
    const c = ours(s);
    await c.getBalance();
    await c.topUp(TRX);
    const requests = s.requests();
    expect(requests.map((r) => `${r.method} ${r.path}`)).toEqual([`GET ${BALANCE_PATH}`, `POST ${TOPUP_PATH}`]);
    for (const r of requests) expect(checkRequest(r, 'basic', API_KEY, SECRET), `${r.method} ${r.path}`).toEqual([]);
    expect(new URLSearchParams(requests[1]!.body).get('trx')).toBe(TRX);
    expect(s.appliedTopUps()).toHaveLength(1);
  });

  it('query auth: api_key and api_secret as the required query parameters the spec declares', async () => {
    const s = await simulator();
    const c = ours(s, 'query');
    await c.getBalance();
    await c.topUp(TRX);
    for (const r of s.requests()) expect(checkRequest(r, 'query', API_KEY, SECRET), `${r.method} ${r.path}`).toEqual([]);
    expect(s.appliedTopUps()).toHaveLength(1);
  });

  it("the Basic header is byte-identical to the spec's worked example", async () => {
    const description = spec.components.securitySchemes.basicAuth!.description ?? '';
    const m = /API key were (\w+) and your API secret were (\w+) then your HTTP header would be: `Authorization: (Basic [A-Za-z0-9+/=]+)`/.exec(description);
    expect(m, 'the worked example in securitySchemes.basicAuth').not.toBeNull();
    const [, key, secret, header] = m!;
    const s = await simulator({ apiKey: key!, apiSecret: secret! });
    await createVonageClient({ account: { apiKey: key!, apiSecret: secret!, baseUrl: s.url, auth: 'basic' }, timeoutMs: 5000 }).getBalance();
    expect(s.requests()[0]!.headers.authorization).toBe(header);
  });

  it('sends what the official SDK sends: same method, path, Authorization, form media type and fields', async () => {
    const s = await simulator();
    await sdk(s).getBalance();
    await sdk(s).topUpBalance(TRX);
    await ours(s).getBalance();
    await ours(s).topUp(TRX);
    const [sdkGet, sdkPost, ourGet, ourPost] = s.requests();
    const shape = (r: SimRequestRecord) => ({
      method: r.method,
      path: r.path,
      query: r.query,
      authorization: r.headers.authorization,
      contentType: r.headers['content-type']?.split(';')[0],
      form: r.body === '' ? {} : Object.fromEntries(new URLSearchParams(r.body)),
    });
    expect(shape(ourGet!)).toEqual(shape(sdkGet!));
    expect(shape(ourPost!)).toEqual(shape(sdkPost!));
    expect(s.appliedTopUps()).toHaveLength(2);
  });

  it('the default VONAGE_BASE_URL is the server the spec gives for both paths', () => {
    const def = CONFIG_VARIABLES.find((v) => v.name === 'VONAGE_BASE_URL')!.default;
    expect(spec.paths[BALANCE_PATH]!.servers!.map((x) => x.url)).toEqual([def]);
    expect(spec.paths[TOPUP_PATH]!.servers!.map((x) => x.url)).toEqual([def]);
  });

  it('our failures carry nothing of the credential (canary over error JSON, message and stack)', async () => {
    const forms = secretForms(SECRET, API_KEY);
    // The canary is the secret we send; this simulator expects another, so both calls fail on it.
    const other = await startSimulator({ apiKey: API_KEY, apiSecret: 'the-real-secret', trx: TRX });
    const errors = [await ourFailure(ours(other, 'basic').getBalance()), await ourFailure(ours(other, 'query').topUp(TRX))];
    await other.close();
    const s = await simulator();
    s.setFault({ kind: 'topup_failed' });
    errors.push(await ourFailure(ours(s).topUp(TRX)));
    s.setFault({ kind: 'redirect', location: `${s.url}/?api_secret=${encodeURIComponent(SECRET)}` });
    errors.push(await ourFailure(ours(s, 'query').getBalance()));
    expect(errors.map((e) => e.reason)).toEqual(['auth_failed', 'auth_failed', 'topup_failed', 'redirect']);
    for (const e of errors) {
      expect(findSecret(`${JSON.stringify(e)}\n${e.message}\n${e.stack ?? ''}`, forms)).toBeUndefined();
    }
  });
});
