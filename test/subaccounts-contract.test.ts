/**
 * The simulator's Subaccounts API against Vonage's OpenAPI description
 * (test/fixtures/vonage/subaccounts.yml, vendored with `balance`/`credit_limit` made nullable; see
 * the README there). Every answer the simulator gives on the three endpoints the watchdog uses
 * (success and each error) is validated against the documented schema for its path, method and
 * status, with the small JSON-schema subset validator shared with test/safety/fidelity.test.ts
 * (test/helpers/openapi-schema.ts; this file relies on its `nullable`, `allOf` and `maxLength`).
 * The request bodies our client sends are checked against the spec too.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator, type SimFault, type Simulator, type SimulatorOptions } from '../src/simulator/simulator.js';
import { createSubaccountsClient } from '../src/vonage/subaccounts-client.js';
import { schemaValidator, type MediaType, type Schema, type SchemaValidator } from './helpers/openapi-schema.js';

interface Response {
  $ref?: string;
  content?: Record<string, MediaType>;
}
interface Operation {
  requestBody?: { content: Record<string, MediaType> };
  responses: Record<string, Response>;
}
interface Spec {
  paths: Record<string, Record<string, Operation>>;
  components: { schemas: Record<string, Schema>; responses: Record<string, Response> };
}

const SPEC_PATH = resolve(__dirname, 'fixtures/vonage/subaccounts.yml');
let spec: Spec;
// Set with the spec in beforeAll. Undeclared properties are rejected unless a call says otherwise.
let deref: SchemaValidator['deref'];
let validate: SchemaValidator['validate'];

type Op = 'list' | 'transfer' | 'history';
const OPS: Record<Op, { path: string; method: 'get' | 'post' }> = {
  list: { path: '/{api_key}/subaccounts', method: 'get' },
  transfer: { path: '/{api_key}/balance-transfers', method: 'post' },
  history: { path: '/{api_key}/balance-transfers', method: 'get' },
};

function responseSchema(op: Op, status: number): Schema {
  const { path, method } = OPS[op];
  const operation = spec.paths[path]?.[method];
  if (!operation) throw new Error(`no operation ${method} ${path}`);
  const response = operation.responses[String(status)];
  if (!response) throw new Error(`${method.toUpperCase()} ${path} documents no ${status}`);
  const schema = deref(response).content?.['application/json']?.schema;
  if (!schema) throw new Error(`${method.toUpperCase()} ${path} ${status} has no JSON schema`);
  return schema;
}

function componentResponseSchema(name: string): Schema {
  const schema = deref(spec.components.responses[name]!).content?.['application/json']?.schema;
  if (!schema) throw new Error(`no response component ${name}`);
  return schema;
}

const KEY = 'acc6111f';
const SECRET = 'contract-secret';
const BASIC = `Basic ${Buffer.from(`${KEY}:${SECRET}`).toString('base64')}`;
const WRONG = `Basic ${Buffer.from(`${KEY}:nope`).toString('base64')}`;

const running: Simulator[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((sim) => sim.close()));
});

async function start(opts: SimulatorOptions = {}): Promise<Simulator> {
  const sim = await startSimulator({
    apiKey: KEY,
    apiSecret: SECRET,
    balance: 50,
    subaccounts: [
      { apiKey: 'bbe6222f', name: 'Department A', balance: 3.5, creditLimit: -10 },
      { apiKey: 'ccf7333a', balance: null },
      { apiKey: 'dd08444b', balance: 0, suspended: true },
    ],
    ...opts,
  });
  running.push(sim);
  return sim;
}

interface Answer {
  status: number;
  contentType: string | null;
  body: unknown;
}

async function call(sim: Simulator, op: Op, opts: { auth?: string; body?: unknown; query?: string; key?: string } = {}): Promise<Answer> {
  const key = opts.key ?? KEY;
  const path = op === 'list' ? `/accounts/${key}/subaccounts` : `/accounts/${key}/balance-transfers`;
  const query = op === 'history' ? `?${opts.query ?? 'start_date=2000-01-01T00:00:00Z'}` : '';
  const r = await fetch(`${sim.url}${path}${query}`, {
    method: op === 'transfer' ? 'POST' : 'GET',
    headers: { authorization: opts.auth ?? BASIC, accept: 'application/json', ...(op === 'transfer' ? { 'content-type': 'application/json' } : {}) },
    ...(op === 'transfer' ? { body: JSON.stringify(opts.body ?? { from: KEY, to: 'bbe6222f', amount: 5, reference: 'attempt-1' }) } : {}),
  });
  return { status: r.status, contentType: r.headers.get('content-type'), body: JSON.parse(await r.text()) as unknown };
}

function conforms(op: Op, a: Answer): string[] {
  expect(a.contentType).toMatch(/^application\/json/);
  return validate(responseSchema(op, a.status), a.body);
}

beforeAll(() => {
  spec = parseYaml(readFileSync(SPEC_PATH, 'utf8')) as Spec;
  ({ deref, validate } = schemaValidator(spec, { noUndeclared: true }));
});

describe('the vendored spec', () => {
  it('marks balance and credit_limit of a subaccount nullable, as its descriptions say', () => {
    const props = spec.components.schemas['SubaccountResponse']!.properties!;
    expect([props['balance']!.nullable, props['credit_limit']!.nullable]).toEqual([true, true]);
    expect(readFileSync(SPEC_PATH, 'utf8').match(/nullable: true/g)).toHaveLength(2);
  });

  it('the validator catches wrong bodies', () => {
    const sub = spec.components.schemas['SubaccountResponse']!;
    expect(validate(sub, { api_key: 'x', balance: '1' })).toEqual(['$.balance: is string, not number']);
    expect(validate(sub, { api_key: 'x', balance: null, extra: 1 })).toEqual(['$: undeclared extra']);
    expect(validate(responseSchema('transfer', 422), { type: 't', title: 't', detail: 'd', instance: 'i' })).toEqual(['$: missing required invalid_parameters']);
  });
});

describe('GET /accounts/{api_key}/subaccounts', () => {
  it('200 with own, shared and suspended subaccounts', async () => {
    const sim = await start();
    const a = await call(sim, 'list');
    expect(a.status).toBe(200);
    expect(conforms('list', a)).toEqual([]);
    const subs = (a.body as { _embedded: { subaccounts: { balance: unknown; suspended: boolean }[] } })._embedded.subaccounts;
    expect(subs.map((s) => [s.balance, s.suspended])).toEqual([[3.5, false], [null, false], [0, true]]);
  });

  it('200 with no subaccounts', async () => {
    const sim = await start({ subaccounts: [] });
    const a = await call(sim, 'list');
    expect(conforms('list', a)).toEqual([]);
  });

  it('401, 403 unprovisioned, 404 another primary', async () => {
    const sim = await start();
    const unauthorized = await call(sim, 'list', { auth: WRONG });
    expect(unauthorized.status).toBe(401);
    expect(conforms('list', unauthorized)).toEqual([]);
    const other = await call(sim, 'list', { key: 'ffff0000' });
    expect(other.status).toBe(404);
    expect(conforms('list', other)).toEqual([]);
    sim.setSubaccountsProvisioned(false);
    const forbidden = await call(sim, 'list');
    expect(forbidden.status).toBe(403);
    expect(conforms('list', forbidden)).toEqual([]);
    expect((forbidden.body as { type: string }).type).toMatch(/#unprovisioned$/);
  });
});

describe('POST /accounts/{api_key}/balance-transfers', () => {
  it('200 receipt', async () => {
    const sim = await start();
    const a = await call(sim, 'transfer');
    expect(a.status).toBe(200);
    expect(conforms('transfer', a)).toEqual([]);
    expect(a.body).toMatchObject({ amount: 5, from: KEY, to: 'bbe6222f', reference: 'attempt-1' });
  });

  it('401, 403, 404', async () => {
    const sim = await start();
    expect(conforms('transfer', await call(sim, 'transfer', { auth: WRONG }))).toEqual([]);
    const other = await call(sim, 'transfer', { key: 'ffff0000' });
    expect(other.status).toBe(404);
    expect(conforms('transfer', other)).toEqual([]);
    sim.setSubaccountsProvisioned(false);
    const forbidden = await call(sim, 'transfer');
    expect(forbidden.status).toBe(403);
    expect(conforms('transfer', forbidden)).toEqual([]);
  });

  it('422: insufficient funds, validation, a shared or unknown subaccount, a bad_request fault', async () => {
    const sim = await start({ balance: 2 });
    const cases: [unknown, RegExp][] = [
      [{ from: KEY, to: 'bbe6222f', amount: 5, reference: 'r' }, /#valid-transfers$/],
      [{ from: KEY, to: 'bbe6222f', amount: -1 }, /#validation$/],
      [{ to: 'bbe6222f', amount: 1 }, /#validation$/],
      [{ from: KEY, to: 'ccf7333a', amount: 1 }, /#validation$/],
      [{ from: KEY, to: 'nobody', amount: 1 }, /#validation$/],
    ];
    for (const [body, type] of cases) {
      const a = await call(sim, 'transfer', { body });
      expect(a.status, JSON.stringify(body)).toBe(422);
      expect(conforms('transfer', a)).toEqual([]);
      expect((a.body as { type: string }).type).toMatch(type);
    }
    sim.setFault({ kind: 'bad_request', endpoint: 'transfer', count: 1 });
    const faulted = await call(sim, 'transfer', { body: { from: KEY, to: 'bbe6222f', amount: 1 } });
    expect(faulted.status).toBe(422);
    expect(conforms('transfer', faulted)).toEqual([]);
    expect(sim.appliedTransfers()).toEqual([]);
  });
});

describe('GET /accounts/{api_key}/balance-transfers', () => {
  it('200 empty and with transfers, filtered by subaccount', async () => {
    const sim = await start();
    const empty = await call(sim, 'history');
    expect(conforms('history', empty)).toEqual([]);
    expect(empty.body).toEqual({ _embedded: { balance_transfers: [] } });
    await call(sim, 'transfer');
    await call(sim, 'transfer', { body: { from: KEY, to: 'dd08444b', amount: 1, reference: 'attempt-2' } });
    const all = await call(sim, 'history');
    expect(conforms('history', all)).toEqual([]);
    const only = await call(sim, 'history', { query: 'start_date=2000-01-01T00:00:00Z&subaccount=dd08444b' });
    expect(conforms('history', only)).toEqual([]);
    expect((only.body as { _embedded: { balance_transfers: { reference: string }[] } })._embedded.balance_transfers.map((t) => t.reference)).toEqual(['attempt-2']);
  });

  it('401, 403, 404', async () => {
    const sim = await start();
    expect(conforms('history', await call(sim, 'history', { auth: WRONG }))).toEqual([]);
    expect(conforms('history', await call(sim, 'history', { key: 'ffff0000' }))).toEqual([]);
    sim.setSubaccountsProvisioned(false);
    expect(conforms('history', await call(sim, 'history'))).toEqual([]);
  });

  it('a missing start_date is a 422 shaped like the API\'s validation error (the spec lists no 422 for this GET)', async () => {
    const sim = await start();
    const a = await call(sim, 'history', { query: '' });
    expect(a.status).toBe(422);
    expect(validate(componentResponseSchema('UnprocessableEntityError'), a.body)).toEqual([]);
  });
});

describe('faults on the new endpoints', () => {
  it('server_error answers the documented InternalError body; auth_failure the 401', async () => {
    const sim = await start();
    for (const op of ['list', 'transfer', 'history'] as const) {
      const endpoint: SimFault['endpoint'] = op === 'list' ? 'list_subaccounts' : op === 'transfer' ? 'transfer' : 'list_transfers';
      sim.setFault({ kind: 'server_error', endpoint, count: 1 });
      const a = await call(sim, op);
      expect(a.status).toBe(500);
      expect(validate(componentResponseSchema('InternalError'), a.body)).toEqual([]);
      sim.setFault({ kind: 'auth_failure', endpoint, count: 1 });
      const u = await call(sim, op);
      expect(u.status).toBe(401);
      expect(conforms(op, u)).toEqual([]);
    }
    expect(sim.appliedTransfers()).toEqual([]);
  });
});

describe('what our client sends', () => {
  it('a transfer body that matches TransferBalanceOrCreditRequest, Basic auth, and the documented query', async () => {
    const sim = await start();
    const client = createSubaccountsClient({ primaryApiKey: KEY, apiSecret: SECRET, baseUrl: sim.url, timeoutMs: 2000 });
    await client.listSubaccounts();
    await client.transfer({ from: KEY, to: 'bbe6222f', amount: 2.5, reference: 'attempt-9' });
    await client.listTransfers({ startDate: '2026-01-01T00:00:00Z', endDate: '2036-01-01T00:00:00Z', subaccount: 'bbe6222f' });
    const [list, transfer, history] = sim.requests();
    for (const r of [list!, transfer!, history!]) expect(r.headers['authorization']).toBe(BASIC);
    expect(list!.path).toBe(`/accounts/${KEY}/subaccounts`);
    expect(transfer!.headers['content-type']).toMatch(/^application\/json/);
    const schema = deref(spec.paths['/{api_key}/balance-transfers']!['post']!.requestBody!).content['application/json']!.schema!;
    expect(validate(schema, JSON.parse(transfer!.body))).toEqual([]);
    expect(history!.query).toEqual({ start_date: '2026-01-01T00:00:00Z', end_date: '2036-01-01T00:00:00Z', subaccount: 'bbe6222f' });
  });
});
