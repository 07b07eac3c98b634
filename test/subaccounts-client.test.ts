/**
 * The Subaccounts API client against the simulator over real loopback HTTP (and, for bodies the
 * simulator would never send, a raw HTTP server). No axios mock anywhere.
 */
import { AxiosError } from 'axios';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { VonageError, type Endpoint } from '../src/vonage/errors.js';
import { startSimulator, type SimFault, type Simulator, type SimulatorOptions } from '../src/simulator/simulator.js';
import { MAX_LIST_BODY_BYTES, createSubaccountsClient, type SubaccountsClient } from '../src/vonage/subaccounts-client.js';
import { MAX_SUBACCOUNTS, MAX_UNREADABLE, parseProblem, parseSubaccountList, parseTransferList, parseTransferReceipt } from '../src/vonage/subaccounts-parse.js';
import { selectWatched } from '../src/accounts/subaccount-selection.js';
import { API_KEY, CANARY_SECRET, expectNoSecret } from './helpers/account.js';
import { freePort } from './helpers/daemon.js';

const OWN = 'sub-own';
const SHARED = 'sub-shared';
const SUSPENDED = 'sub-suspended';

let sim: Simulator | undefined;
let raw: Server | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
  if (raw) await new Promise<void>((r) => raw!.close(() => r()));
  raw = undefined;
});

async function start(opts: SimulatorOptions = {}): Promise<Simulator> {
  sim = await startSimulator({
    apiKey: API_KEY,
    apiSecret: CANARY_SECRET,
    balance: 100,
    subaccounts: [
      { apiKey: OWN, name: 'Own balance', balance: 4.25, creditLimit: -5, createdAt: '2026-01-02T03:04:05Z' },
      { apiKey: SHARED, name: 'Shared', balance: null },
      { apiKey: SUSPENDED, balance: 1, suspended: true },
    ],
    ...opts,
  });
  return sim;
}

const observed: [Endpoint, number][] = [];
function client(overrides: Partial<Parameters<typeof createSubaccountsClient>[0]> = {}): SubaccountsClient {
  return createSubaccountsClient({
    primaryApiKey: API_KEY,
    apiSecret: CANARY_SECRET,
    baseUrl: overrides.baseUrl ?? sim!.url,
    timeoutMs: 800,
    now: () => 1_700_000_000_000,
    monoNow: () => 42,
    observe: (endpoint, seconds) => observed.push([endpoint, seconds]),
    ...overrides,
  });
}

const transferTo = (to = OWN, amount = 10, reference = 'attempt-1') => ({ from: API_KEY, to, amount, reference });

async function failure(p: Promise<unknown>): Promise<VonageError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VonageError);
  expect(err).not.toBeInstanceOf(AxiosError);
  expectNoSecret(JSON.stringify(err), 'serialized error');
  expectNoSecret((err as Error).message, 'error message');
  expectNoSecret(String((err as Error).stack), 'error stack');
  return err as VonageError;
}

describe('listSubaccounts', () => {
  it('reads the primary and own, shared and suspended subaccounts, with Basic auth', async () => {
    await start();
    observed.length = 0;
    const list = await client().listSubaccounts();
    expect(list.primary).toEqual({ apiKey: API_KEY, name: 'Primary account', balance: 100, creditLimit: 0 });
    expect(list.subaccounts).toEqual([
      { apiKey: OWN, name: 'Own balance', balance: 4.25, creditLimit: -5, usePrimaryBalance: false, suspended: false, createdAt: '2026-01-02T03:04:05Z' },
      expect.objectContaining({ apiKey: SHARED, balance: null, creditLimit: null, usePrimaryBalance: true, suspended: false }),
      expect.objectContaining({ apiKey: SUSPENDED, balance: 1, suspended: true }),
    ]);
    expect([list.at, list.mono]).toEqual([1_700_000_000_000, 42]);
    expect(list.requestId).toMatch(/^[0-9a-f-]{36}$/);
    const [req] = sim!.requests();
    expect(req!.path).toBe(`/accounts/${API_KEY}/subaccounts`);
    expect(req!.query).toEqual({});
    expect(req!.headers.authorization).toBe(`Basic ${Buffer.from(`${API_KEY}:${CANARY_SECRET}`).toString('base64')}`);
    expect(observed.map(([e]) => e)).toEqual(['list_subaccounts']);
  });

  it('the primary balance is the one get-balance reports, and follows a drain', async () => {
    await start({ balance: 33.5 });
    expect((await client().listSubaccounts()).primary.balance).toBe(33.5);
    const balance = (await (await fetch(`${sim!.url}/account/get-balance?api_key=${API_KEY}&api_secret=${encodeURIComponent(CANARY_SECRET)}`)).json()) as { value: number };
    expect(balance.value).toBe(33.5);
    sim!.drainSubaccount(OWN, 4);
    expect((await client().listSubaccounts()).subaccounts[0]!.balance).toBe(0.25);
  });

  it('reads a list of 1,000 subaccounts (well over the 64 KiB cap of a single answer)', async () => {
    await start({ subaccounts: Array.from({ length: 1000 }, (_, i) => ({ apiKey: `s${String(i).padStart(7, '0')}`, name: `Subaccount number ${i} of the fleet`, balance: i })) });
    const list = await client().listSubaccounts();
    expect(list.subaccounts).toHaveLength(1000);
    expect(list.subaccounts[999]!.balance).toBe(999);
  });

  it('403 unprovisioned, 401, 5xx, 429, redirect', async () => {
    await start({ subaccountsProvisioned: false });
    expect(await failure(client().listSubaccounts())).toMatchObject({ endpoint: 'list_subaccounts', reason: 'unprovisioned', status: 403, delivery: 'yes' });
    sim!.setSubaccountsProvisioned(true);
    expect(await failure(client({ apiSecret: 'wrong-secret' }).listSubaccounts())).toMatchObject({ reason: 'auth_failed', status: 401 });
    sim!.setFault({ kind: 'server_error', status: 503, endpoint: 'list_subaccounts', count: 1 });
    expect(await failure(client().listSubaccounts())).toMatchObject({ reason: 'server_error', status: 503, delivery: 'yes' });
    sim!.setFault({ kind: 'rate_limit', retryAfterSeconds: 9, endpoint: 'list_subaccounts', count: 1 });
    expect(await failure(client().listSubaccounts())).toMatchObject({ reason: 'rate_limited', retryAfterSeconds: 9 });
    sim!.setFault({ kind: 'redirect', location: 'http://127.0.0.1:9/elsewhere', endpoint: 'list_subaccounts', count: 1 });
    expect(await failure(client().listSubaccounts())).toMatchObject({ reason: 'redirect' });
    expect(sim!.requests().filter((r) => r.path === '/elsewhere')).toEqual([]);
  });

  it('hang and slow drip time out within the deadline; reset is a network failure', async () => {
    await start();
    for (const [fault, reason] of [[{ kind: 'hang' }, 'timeout'], [{ kind: 'slow_drip', delayMs: 200 }, 'timeout'], [{ kind: 'reset' }, 'network']] as [SimFault, string][]) {
      sim!.clearFaults();
      sim!.setFault({ ...fault, endpoint: 'list_subaccounts' });
      const started = Date.now();
      const e = await failure(client().listSubaccounts());
      expect([fault.kind, e.reason]).toEqual([fault.kind, reason]);
      expect(Date.now() - started).toBeLessThan(2000);
    }
  });

  it('malformed answers are bad_response, never a balance', async () => {
    await start();
    for (const kind of ['garbage', 'html', 'truncated', 'huge'] as const) {
      sim!.clearFaults();
      sim!.setFault({ kind, endpoint: 'list_subaccounts' });
      const e = await failure(client().listSubaccounts());
      expect([kind, e.reason]).toEqual([kind, 'bad_response']);
      if (kind === 'huge') expect(e.message).toBe(`answer larger than ${MAX_LIST_BODY_BYTES} bytes`);
    }
  });

  it('a refused connection never left', async () => {
    const port = await freePort();
    sim = await startSimulator();
    const e = await failure(client({ baseUrl: `http://127.0.0.1:${port}` }).listSubaccounts());
    expect(e).toMatchObject({ reason: 'connection_refused', delivery: 'no' });
  });
});

describe('transfer', () => {
  it('moves money from the primary to the subaccount and returns the receipt', async () => {
    await start();
    observed.length = 0;
    const receipt = await client().transfer(transferTo(OWN, 10, 'attempt-7'));
    expect(receipt).toMatchObject({ amount: 10, from: API_KEY, to: OWN, reference: 'attempt-7' });
    expect(receipt.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(receipt.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    expect(sim!.balance()).toBe(90);
    expect(sim!.subaccount(OWN)!.balance).toBe(14.25);
    expect(sim!.appliedTransfers()).toEqual([expect.objectContaining({ id: receipt.id, amount: 10, reference: 'attempt-7', primaryBalanceAfter: 90, subaccountBalanceAfter: 14.25 })]);
    const post = sim!.requests().find((r) => r.endpoint === 'transfer')!;
    expect(post.method).toBe('POST');
    expect(post.headers['content-type']).toBe('application/json');
    expect(JSON.parse(post.body)).toEqual({ from: API_KEY, to: OWN, amount: 10, reference: 'attempt-7' });
    expect(observed.map(([e]) => e)).toEqual(['balance_transfer']);
  });

  it('422 insufficient funds when the primary is short: refused, nothing moved', async () => {
    await start({ balance: 5 });
    const e = await failure(client().transfer(transferTo(OWN, 10)));
    expect(e).toMatchObject({ endpoint: 'balance_transfer', reason: 'insufficient_funds', status: 422, delivery: 'yes' });
    expect(e.message).toMatch(/insufficient balance/);
    expect(sim!.appliedTransfers()).toEqual([]);
    expect(sim!.balance()).toBe(5);
  });

  it('other refusals are bad_request: validation, a shared or unknown subaccount', async () => {
    await start();
    sim!.setFault({ kind: 'bad_request', endpoint: 'transfer', count: 1 });
    expect(await failure(client().transfer(transferTo()))).toMatchObject({ reason: 'bad_request', status: 422, delivery: 'yes' });
    expect(await failure(client().transfer(transferTo(SHARED)))).toMatchObject({ reason: 'bad_request', status: 422 });
    expect(await failure(client().transfer(transferTo('nobody')))).toMatchObject({ reason: 'bad_request', status: 422 });
    // Credentials of another account: Vonage does not know them.
    expect(await failure(client({ primaryApiKey: 'other-primary' }).transfer({ ...transferTo(), from: 'other-primary' }))).toMatchObject({ reason: 'auth_failed' });
    expect(sim!.appliedTransfers()).toEqual([]);
  });

  it('401, 403 unprovisioned', async () => {
    await start();
    expect(await failure(client({ apiSecret: 'wrong-secret' }).transfer(transferTo()))).toMatchObject({ reason: 'auth_failed', delivery: 'yes' });
    sim!.setSubaccountsProvisioned(false);
    expect(await failure(client().transfer(transferTo()))).toMatchObject({ reason: 'unprovisioned', delivery: 'yes' });
    expect(sim!.appliedTransfers()).toEqual([]);
  });

  it('a 5xx may have been applied: delivery unknown', async () => {
    await start();
    sim!.setFault({ kind: 'server_error', endpoint: 'transfer', count: 1 });
    expect(await failure(client().transfer(transferTo()))).toMatchObject({ reason: 'server_error', status: 500, delivery: 'unknown' });
  });

  it('hang times out as unknown; a refused connection is no', async () => {
    await start();
    sim!.setFault({ kind: 'hang', endpoint: 'transfer', count: 1 });
    expect(await failure(client().transfer(transferTo()))).toMatchObject({ reason: 'timeout', delivery: 'unknown' });
    const port = await freePort();
    expect(await failure(client({ baseUrl: `http://127.0.0.1:${port}` }).transfer(transferTo()))).toMatchObject({ reason: 'connection_refused', delivery: 'no' });
    expect(sim!.appliedTransfers()).toEqual([]);
  });

  it('a lost answer after the transfer was applied is unknown, and the history finds it by reference', async () => {
    await start();
    const modes = ['reset', 'hang', 'truncated'] as const;
    for (const lostMode of modes) {
      sim!.setFault({ kind: 'lost_answer', endpoint: 'transfer', lostMode, count: 1 });
      const e = await failure(client().transfer(transferTo(OWN, 1, `lost-${lostMode}`)));
      expect([lostMode, e.delivery]).toEqual([lostMode, 'unknown']);
    }
    expect(sim!.appliedTransfers().map((t) => t.reference)).toEqual(['lost-reset', 'lost-hang', 'lost-truncated']);
    const history = await client().listTransfers({ startDate: '2000-01-01T00:00:00Z', subaccount: OWN });
    const found = history.find((t) => t.reference === 'lost-hang');
    expect(found).toMatchObject({ amount: 1, from: API_KEY, to: OWN });
    expect(found!.id).toBe(sim!.appliedTransfers()[1]!.id);
    // A lost_answer on the top-up endpoint does not touch transfers.
    sim!.setFault({ kind: 'lost_answer' });
    expect((await client().transfer(transferTo(OWN, 1, 'after'))).reference).toBe('after');
  });

  it('a 2xx that cannot be read is bad_response with delivery unknown', async () => {
    await start();
    for (const kind of ['garbage', 'html'] as const) {
      sim!.setFault({ kind, endpoint: 'transfer', count: 1 });
      expect(await failure(client().transfer(transferTo()))).toMatchObject({ reason: 'bad_response', delivery: 'unknown' });
    }
  });

  it('a request it would not send on purpose never leaves', async () => {
    await start();
    for (const bad of [transferTo(OWN, 0), transferTo(OWN, Number.NaN), transferTo(OWN, 1, ''), { ...transferTo(), to: API_KEY }]) {
      expect(await failure(client().transfer(bad))).toMatchObject({ reason: 'bad_request', delivery: 'no' });
    }
    expect(sim!.requests()).toEqual([]);
  });
});

describe('listTransfers', () => {
  it('sends the dates and the subaccount, and reads the history', async () => {
    await start();
    await client().transfer(transferTo(OWN, 2, 'a'));
    await client().transfer(transferTo(SUSPENDED, 3, 'b'));
    const all = await client().listTransfers({ startDate: '2000-01-01T00:00:00Z', endDate: '2100-01-01T00:00:00Z' });
    expect(all.map((t) => [t.to, t.amount, t.reference])).toEqual([[OWN, 2, 'a'], [SUSPENDED, 3, 'b']]);
    const req = sim!.requests().at(-1)!;
    expect(req.query).toEqual({ start_date: '2000-01-01T00:00:00Z', end_date: '2100-01-01T00:00:00Z' });
    expect((await client().listTransfers({ startDate: '2000-01-01T00:00:00Z', subaccount: SUSPENDED })).map((t) => t.reference)).toEqual(['b']);
    expect(await client().listTransfers({ startDate: '2099-01-01T00:00:00Z' })).toEqual([]);
  });

  it('errors: 401, 403, 5xx are read failures', async () => {
    await start();
    expect(await failure(client({ apiSecret: 'nope' }).listTransfers({ startDate: '2000-01-01T00:00:00Z' }))).toMatchObject({ endpoint: 'list_balance_transfers', reason: 'auth_failed' });
    sim!.setFault({ kind: 'server_error', endpoint: 'list_transfers', count: 1 });
    expect(await failure(client().listTransfers({ startDate: '2000-01-01T00:00:00Z' }))).toMatchObject({ reason: 'server_error', delivery: 'yes' });
    sim!.setSubaccountsProvisioned(false);
    expect(await failure(client().listTransfers({ startDate: '2000-01-01T00:00:00Z' }))).toMatchObject({ reason: 'unprovisioned' });
    sim!.setSubaccountsProvisioned(true);
    expect(await failure(client().listTransfers({ startDate: 'not a date' }))).toMatchObject({ reason: 'http_error', status: 422 });
  });
});

describe('answers the simulator would never give (a raw server)', () => {
  async function serve(status: number, body: string, contentType = 'application/json'): Promise<string> {
    raw = createServer((_req, res) => {
      res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    });
    await new Promise<void>((r) => raw!.listen(0, '127.0.0.1', r));
    return `http://127.0.0.1:${(raw.address() as AddressInfo).port}`;
  }
  const primary = { api_key: API_KEY, name: 'P', balance: 10, credit_limit: 0 };
  const sub = { api_key: 'a1', name: 'A', balance: 1, credit_limit: 0, use_primary_account_balance: false, suspended: false, created_at: '2026-01-01T00:00:00Z' };
  const list = (subs: unknown[], p: unknown = primary) => JSON.stringify({ _embedded: { primary_account: p, subaccounts: subs } });

  it('a list for another primary is bad_response; a bad entry (null own balance, string balance, repeated key) fails alone, the others are read', async () => {
    const url = await serve(200, list([sub], { ...primary, api_key: 'someone-else' }));
    expect(await failure(client({ baseUrl: url }).listSubaccounts())).toMatchObject({ reason: 'bad_response', status: 200 });
    await new Promise<void>((r) => raw!.close(() => r()));
    raw = undefined;
    const good = { ...sub, api_key: 'b2', name: 'B' };
    for (const entries of [[{ ...sub, balance: null }, good], [good, { ...sub, balance: '1' }], [sub, good, sub]]) {
      const url = await serve(200, list(entries));
      const answer = await client({ baseUrl: url }).listSubaccounts();
      expect(answer.subaccounts.map((s) => s.apiKey)).toEqual(['b2']);
      expect(answer.unreadable.map((u) => u.apiKey)).toEqual(['a1']);
      await new Promise<void>((r) => raw!.close(() => r()));
      raw = undefined;
    }
  });

  it('a receipt that does not match the request is bad_response, unknown', async () => {
    const url = await serve(200, JSON.stringify({ balance_transfer_id: 'x', amount: 99, from: API_KEY, to: OWN, reference: 'attempt-1', created_at: '2026-01-01T00:00:00Z' }));
    expect(await failure(client({ baseUrl: url }).transfer(transferTo()))).toMatchObject({ reason: 'bad_response', delivery: 'unknown' });
  });

  it('an error body that echoes the secret does not carry it into the error', async () => {
    const url = await serve(422, JSON.stringify({ type: 'https://developer.nexmo.com/api-errors/subaccounts#validation', title: 'Bad Request', detail: `secret ${CANARY_SECRET} rejected`, instance: 'i', invalid_parameters: [] }));
    const e = await failure(client({ baseUrl: url }).transfer(transferTo()));
    expect(e.reason).toBe('bad_request');
    expect(e.message).toContain('***');
  });

  it('a 404 HTML page on the list is http_error naming the likely cause', async () => {
    const url = await serve(404, '<!doctype html><title>Not Found</title>', 'text/html');
    expect((await failure(client({ baseUrl: url }).listSubaccounts())).message).toMatch(/HTML page/);
  });
});

describe('parsers', () => {
  const ok = { api_key: 'a1', name: 'A', balance: 1, credit_limit: null, use_primary_account_balance: false, suspended: false, created_at: 't' };
  const body = (subs: unknown) => ({ _embedded: { primary_account: { api_key: 'p', name: 'P', balance: 1, credit_limit: 0 }, subaccounts: subs } });
  const bad = (b: unknown) => {
    try {
      parseSubaccountList(b, 0, 0);
    } catch (e) {
      return (e as VonageError).reason;
    }
    return 'parsed';
  };

  it.each([
    ['not an object', [1]],
    ['no _embedded', {}],
    ['subaccounts not an array', body({})],
    ['primary balance null', { _embedded: { primary_account: { api_key: 'p', name: 'P', balance: null }, subaccounts: [] } }],
    ['primary api_key with a space', { _embedded: { primary_account: { api_key: 'p q', name: 'P', balance: 1 }, subaccounts: [] } }],
  ])('%s → bad_response: the whole answer is a failed poll', (_name, b) => {
    expect(bad(b)).toBe('bad_response');
  });

  const good = { ...ok, api_key: 'z9', name: 'Z' };
  it.each([
    ['missing api_key', { ...ok, api_key: undefined }, undefined],
    ['empty api_key', { ...ok, api_key: '' }, undefined],
    ['api_key with a space', { ...ok, api_key: 'a b' }, undefined],
    ['not an object', 'a1', undefined],
    ['a subaccount with the primary key', { ...ok, api_key: 'p' }, undefined],
    ['over-long name', { ...ok, name: 'n'.repeat(257) }, 'a1'],
    ['balance Infinity-like', { ...ok, balance: 1e308 }, 'a1'],
    ['balance missing', { ...ok, balance: undefined }, 'a1'],
    ['balance null on an own balance', { ...ok, balance: null }, 'a1'],
    ['suspended not a boolean', { ...ok, suspended: 'false' }, 'a1'],
  ])('an entry with %s is unreadable, alone; the entries around it are read', (_name, entry, key) => {
    const list = parseSubaccountList(body([good, entry, { ...good, api_key: 'y8' }]), 0, 0);
    expect(list.subaccounts.map((s) => s.apiKey)).toEqual(['z9', 'y8']);
    expect(list.unreadable).toHaveLength(1);
    expect(list.unreadable[0]).toMatchObject({ index: 1, ...(key === undefined ? {} : { apiKey: key }) });
    if (key === undefined) expect(list.unreadable[0]!.apiKey === undefined || list.unreadable[0]!.apiKey === 'p').toBe(true);
    expect(list.unreadable[0]!.problem).toMatch(/^subaccounts\[1\]/);
  });

  it('a repeated api key makes every entry of that key unreadable: neither can be trusted over the other', () => {
    const list = parseSubaccountList(body([ok, good, { ...ok, balance: 99 }, { ...ok, balance: 7 }]), 0, 0);
    expect(list.subaccounts.map((s) => s.apiKey)).toEqual(['z9']);
    expect(list.unreadable.map((u) => u.apiKey)).toEqual(['a1']);
  });

  it('a repeated key is unreadable whichever of its entries comes first and whichever is malformed', () => {
    for (const entries of [
      [ok, { ...ok, balance: 400, created_at: 17 }],
      [{ ...ok, balance: 400, created_at: 17 }, ok],
      [ok, { ...ok, balance: 2 }],
    ]) {
      const list = parseSubaccountList(body([...entries, good]), 0, 0);
      expect(list.subaccounts.map((s) => s.apiKey)).toEqual(['z9']);
      expect(list.unreadable.map((u) => u.apiKey)).toEqual(['a1']);
      expect(selectWatched(list.subaccounts, 'all', list.unreadable).watched.map((s) => s.apiKey)).toEqual(['z9']);
      expect(selectWatched(list.subaccounts, ['a1', 'z9'], list.unreadable)).toMatchObject({ missing: [], unreadable: [{ apiKey: 'a1' }] });
    }
  });

  it('an entry with the primary\'s own key stands for no subaccount: not unreadable under a key, not keyless', () => {
    const list = parseSubaccountList(body([{ ...ok, api_key: 'p' }, good]), 0, 0);
    expect(list.unreadable).toEqual([{ index: 0, problem: expect.stringMatching(/primary's own/) as unknown as string, primaryKey: true }]);
    // Not keyless: a watched key absent from the list is still plainly missing.
    expect(selectWatched(list.subaccounts, ['z9', 'gone'], list.unreadable)).toMatchObject({ watched: [{ apiKey: 'z9' }], missing: ['gone'], unreadable: [] });
  });

  it(`up to ${MAX_UNREADABLE} bad entries fail alone; more, and the whole answer is a failed poll`, () => {
    const badEntries = (n: number) => Array.from({ length: n }, (_, i) => ({ ...ok, api_key: `k${i}`, balance: 'x' }));
    expect(parseSubaccountList(body([good, ...badEntries(MAX_UNREADABLE)]), 0, 0).unreadable).toHaveLength(MAX_UNREADABLE);
    expect(bad(body([good, ...badEntries(MAX_UNREADABLE + 1)]))).toBe('bad_response');
  });

  it('a shared subaccount may have a null balance and credit limit', () => {
    const list = parseSubaccountList(body([{ ...ok, balance: null, credit_limit: null, use_primary_account_balance: true }]), 1, 2);
    expect(list.subaccounts[0]).toMatchObject({ balance: null, creditLimit: null, usePrimaryBalance: true });
  });

  it('caps the number of entries', () => {
    expect(bad(body(Array.from({ length: MAX_SUBACCOUNTS + 1 }, () => ok)))).toBe('bad_response');
  });

  it('receipts: balance_transfer_id or id; a missing reference is empty; a bad amount is refused', () => {
    const t = { amount: 1.5, from: 'p', to: 'a1', created_at: '2026-01-01T00:00:00Z' };
    expect(parseTransferReceipt({ ...t, balance_transfer_id: 'x', reference: 'r' })).toEqual({ id: 'x', amount: 1.5, from: 'p', to: 'a1', reference: 'r', createdAt: t.created_at });
    expect(parseTransferReceipt({ ...t, id: 'y' })).toMatchObject({ id: 'y', reference: '' });
    expect(() => parseTransferReceipt({ ...t, id: 'y', amount: '1.5' })).toThrow(VonageError);
    expect(() => parseTransferReceipt({ ...t, id: 'y', amount: 0 })).toThrow(VonageError);
    expect(() => parseTransferList({ _embedded: { balance_transfers: {} } })).toThrow(VonageError);
    expect(parseTransferList({ _embedded: { balance_transfers: [] } })).toEqual([]);
  });

  it('problems', () => {
    expect(parseProblem({ type: 'https://x#unprovisioned', title: 'T', detail: 'D', instance: 'I' })).toEqual({ type: 'https://x#unprovisioned', title: 'T', detail: 'D', instance: 'I' });
    expect(parseProblem({ title: 'no type' })).toBeUndefined();
    expect(parseProblem('text')).toBeUndefined();
    expect(parseProblem({ type: 't', invalid_parameters: [{ name: 'amount', reason: 'r' }, 3] })).toEqual({ type: 't', invalidParameters: [{ name: 'amount', reason: 'r' }] });
  });
});
