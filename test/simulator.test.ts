import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import ts from 'typescript';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { SIM_FAULT_KINDS, startSimulator, type SimFault, type Simulator, type SimulatorOptions } from '../src/simulator/simulator.js';

const KEY = 'demo-key';
const SECRET = 'demo-secret';
const TRX = '8ef2447e69604f642ae59363aa5f781b';
const BASIC = `Basic ${Buffer.from(`${KEY}:${SECRET}`).toString('base64')}`;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const AUTH_FAILED = { 'error-code': '401', 'error-code-label': 'authentication failed' };
const TOPUP_OK = { 'error-code': '200', 'error-code-label': 'success' };
const BAD_REQUEST = { type: 'BAD_REQUEST', error_title: 'Bad Request', invalid_parameters: { trx: 'Is required.' } };
const XML_DECL = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>';

const running: Simulator[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((sim) => sim.close()));
});

async function start(opts: SimulatorOptions = {}): Promise<Simulator> {
  const sim = await startSimulator(opts);
  running.push(sim);
  return sim;
}

function getBalance(sim: Simulator, init: RequestInit = {}): Promise<Response> {
  return fetch(`${sim.url}/account/get-balance`, { ...init, headers: { authorization: BASIC, ...init.headers } });
}

function topUp(sim: Simulator, init: RequestInit = {}): Promise<Response> {
  return fetch(`${sim.url}/account/top-up`, {
    method: 'POST',
    body: new URLSearchParams({ trx: TRX }),
    ...init,
    headers: { authorization: BASIC, ...init.headers },
  });
}

function control(sim: Simulator, method: string, path: string, body?: unknown): Promise<Response> {
  return fetch(`${sim.url}/_sim/${path}`, {
    method,
    ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }),
  });
}

async function until(condition: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

describe('authentication', () => {
  it('accepts the Basic header', async () => {
    const sim = await start();
    const res = await getBalance(sim);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(await res.json()).toEqual({ value: 12.5, autoReload: true });
  });

  it('accepts api_key and api_secret in the query string', async () => {
    const sim = await start();
    const res = await fetch(`${sim.url}/account/get-balance?api_key=${KEY}&api_secret=${SECRET}`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ value: 12.5, autoReload: true });
  });

  it('answers a wrong secret with the documented 401 body, on both endpoints', async () => {
    const sim = await start();
    const wrong = `Basic ${Buffer.from(`${KEY}:not-the-secret`).toString('base64')}`;
    const balance = await getBalance(sim, { headers: { authorization: wrong } });
    expect(balance.status).toBe(401);
    expect(await balance.text()).toBe('{"error-code":"401","error-code-label":"authentication failed"}');
    const topup = await topUp(sim, { headers: { authorization: wrong } });
    expect(topup.status).toBe(401);
    expect(await topup.json()).toEqual(AUTH_FAILED);
    const query = await fetch(`${sim.url}/account/get-balance?api_key=${KEY}&api_secret=nope`);
    expect(query.status).toBe(401);
    expect(sim.appliedTopUps()).toEqual([]);
  });

  it('rejects a request without credentials', async () => {
    const sim = await start();
    const res = await fetch(`${sim.url}/account/get-balance`);
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual(AUTH_FAILED);
  });

  it('uses the configured key and secret', async () => {
    const sim = await start({ apiKey: 'abcd', apiSecret: '1234' });
    expect((await getBalance(sim)).status).toBe(401);
    const res = await getBalance(sim, { headers: { authorization: 'Basic YWJjZDoxMjM0' } });
    expect(res.status).toBe(200);
  });
});

describe('get-balance', () => {
  it('answers XML when asked for application/xml or text/xml', async () => {
    const sim = await start({ balance: 10.171275, autoReload: false });
    for (const accept of ['application/xml', 'text/xml']) {
      const res = await getBalance(sim, { headers: { accept } });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/xml');
      expect(await res.text()).toBe(
        `${XML_DECL}\n<accountBalance>\n  <value>10.17127500</value>\n  <autoReload>false</autoReload>\n</accountBalance>\n`,
      );
    }
  });

  it('answers the XML 401 with the accountBalance root', async () => {
    const sim = await start();
    const res = await fetch(`${sim.url}/account/get-balance`, { headers: { accept: 'application/xml' } });
    expect(res.status).toBe(401);
    const body = await res.text();
    expect(body.startsWith(XML_DECL)).toBe(true);
    expect(body).toContain('<accountBalance>\n  <error-code>401</error-code>\n  <error-code-label>authentication failed</error-code-label>\n</accountBalance>');
  });

  it('rounds the value to 8 decimals', async () => {
    const sim = await start({ balance: 10.123456789123 });
    expect(await (await getBalance(sim)).json()).toEqual({ value: 10.12345679, autoReload: true });
    expect(await (await getBalance(sim, { headers: { accept: 'application/xml' } })).text()).toContain(
      '<value>10.12345679</value>',
    );
  });

  it('drains with the injected clock, never below zero, and setBalance rebases', async () => {
    let now = 1_000_000;
    const sim = await start({ balance: 10, drainPerSecond: 0.5, now: () => now });
    now += 4000;
    expect(sim.balance()).toBe(8);
    expect(await (await getBalance(sim)).json()).toEqual({ value: 8, autoReload: true });
    now += 100_000;
    expect(sim.balance()).toBe(0);
    sim.setBalance(5);
    now += 2000;
    expect(sim.balance()).toBe(4);
    sim.setDrainPerSecond(0);
    now += 60_000;
    expect(sim.balance()).toBe(4);
  });

  it('answers every response with an X-Request-Id uuid', async () => {
    const sim = await start();
    const responses = [
      await getBalance(sim),
      await fetch(`${sim.url}/account/get-balance`),
      await topUp(sim),
      await fetch(`${sim.url}/nope`),
      await control(sim, 'GET', 'state'),
    ];
    const ids = responses.map((res) => res.headers.get('x-request-id') ?? '');
    for (const id of ids) expect(id).toMatch(UUID);
    expect(new Set(ids).size).toBe(ids.length);
    expect(sim.requests().map((r) => r.requestId)).toEqual(ids.slice(0, 4));
  });
});

describe('top-up', () => {
  it('adds the top-up amount, records it, and appends it to the applied log', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'sim-test-'));
    try {
      const appliedLogPath = join(dir, 'applied.jsonl');
      let now = 5_000;
      const sim = await start({ balance: 3, topUpAmount: 25, appliedLogPath, now: () => now });
      now = 6_000;
      const res = await topUp(sim);
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('{"error-code":"200","error-code-label":"success"}');
      expect(sim.balance()).toBe(28);
      const requestId = res.headers.get('x-request-id');
      expect(sim.appliedTopUps()).toEqual([{ at: 6_000, amount: 25, balanceAfter: 28, requestId }]);
      const lines = readFileSync(appliedLogPath, 'utf8').trim().split('\n');
      expect(lines.map((line) => JSON.parse(line) as unknown)).toEqual(sim.appliedTopUps());
      expect(await (await getBalance(sim)).json()).toEqual({ value: 28, autoReload: true });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('answers XML with the response root', async () => {
    const sim = await start();
    const res = await topUp(sim, { headers: { accept: 'application/xml' } });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(
      `${XML_DECL}\n<response>\n  <error-code>200</error-code>\n  <error-code-label>success</error-code-label>\n</response>\n`,
    );
  });

  it('accepts trx in the query string', async () => {
    const sim = await start();
    const res = await fetch(`${sim.url}/account/top-up?trx=${TRX}`, { method: 'POST', headers: { authorization: BASIC } });
    expect(res.status).toBe(200);
    expect(sim.appliedTopUps()).toHaveLength(1);
  });

  it('answers a missing or wrong trx with 400 and applies nothing', async () => {
    const sim = await start();
    const missing = await topUp(sim, { body: '' });
    expect(missing.status).toBe(400);
    expect(await missing.json()).toEqual(BAD_REQUEST);
    const wrong = await topUp(sim, { body: new URLSearchParams({ trx: 'ffff' }) });
    expect(wrong.status).toBe(400);
    // The official curl snippet sends JSON; the server must not mistake it for a form.
    const json = await topUp(sim, { body: JSON.stringify({ trx: TRX }) });
    expect(json.status).toBe(400);
    expect(sim.appliedTopUps()).toEqual([]);
    expect(sim.balance()).toBe(12.5);
  });

  it('refuses with "not auto-reload enabled" when auto-reload is off', async () => {
    const sim = await start({ autoReload: false });
    expect(await (await getBalance(sim)).json()).toEqual({ value: 12.5, autoReload: false });
    const res = await topUp(sim);
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ 'error-code': '401', 'error-code-label': 'not auto-reload enabled' });
    expect(sim.appliedTopUps()).toEqual([]);
    sim.setAutoReload(true);
    expect((await topUp(sim)).status).toBe(200);
  });
});

describe('routing and records', () => {
  it('answers unknown paths with 404 JSON and wrong methods with 405', async () => {
    const sim = await start();
    const missing = await fetch(`${sim.url}/account/settings`, { headers: { authorization: BASIC } });
    expect(missing.status).toBe(404);
    expect(await missing.json()).toEqual({ 'error-code': '404', 'error-code-label': 'not found' });
    const getTopUp = await fetch(`${sim.url}/account/top-up?trx=${TRX}`, { headers: { authorization: BASIC } });
    expect(getTopUp.status).toBe(405);
    expect(getTopUp.headers.get('allow')).toBe('POST');
    expect(sim.appliedTopUps()).toEqual([]);
    expect(sim.requests().map((r) => [r.endpoint, r.status])).toEqual([
      ['unknown', 404],
      ['topup', 405],
    ]);
  });

  it('records requests as received, so tests can see where the secret went', async () => {
    let now = 42;
    const sim = await start({ now: () => now });
    await topUp(sim, { headers: { 'X-Custom': 'yes' } });
    now = 43;
    await fetch(`${sim.url}/account/get-balance?api_key=${KEY}&api_secret=${SECRET}`);
    const [basic, query] = sim.requests();
    expect(basic).toMatchObject({
      at: 42,
      method: 'POST',
      path: '/account/top-up',
      query: {},
      body: `trx=${TRX}`,
      endpoint: 'topup',
      status: 200,
    });
    expect(basic?.headers.authorization).toBe(BASIC);
    expect(basic?.headers['x-custom']).toBe('yes');
    expect(basic?.headers['content-type']).toBe('application/x-www-form-urlencoded;charset=UTF-8');
    const elsewhere = JSON.stringify({ ...basic, headers: { ...basic?.headers, authorization: '' } });
    expect(elsewhere).not.toContain(SECRET);
    expect(query).toMatchObject({ at: 43, path: '/account/get-balance', query: { api_key: KEY, api_secret: SECRET } });
    expect(query?.headers.authorization).toBeUndefined();
  });

  it('survives clients that vanish mid-request and mid-response', async () => {
    const sim = await start();
    const socket = connect(sim.port, '127.0.0.1');
    await once(socket, 'connect');
    socket.write(`POST /account/top-up HTTP/1.1\r\nHost: x\r\nAuthorization: ${BASIC}\r\nContent-Length: 100\r\n\r\ntrx=8ef`);
    await new Promise((resolve) => setTimeout(resolve, 20));
    socket.destroy();

    sim.setFault({ kind: 'huge', count: 1 });
    const controller = new AbortController();
    const res = await getBalance(sim, { signal: controller.signal });
    const reader = res.body?.getReader();
    await reader?.read();
    controller.abort();

    expect((await getBalance(sim)).status).toBe(200);
    expect(sim.appliedTopUps()).toEqual([]);
  });
});

describe('faults', () => {
  it('server_error: 500 by default, other statuses on request, never a JSON body', async () => {
    const sim = await start();
    sim.setFault({ kind: 'server_error', count: 1 });
    const plain = await getBalance(sim);
    expect(plain.status).toBe(500);
    expect(isJson(await plain.text())).toBe(false);
    sim.setFault({ kind: 'server_error', status: 503, endpoint: 'topup' });
    const topup = await topUp(sim);
    expect(topup.status).toBe(503);
    expect(topup.headers.get('content-type')).not.toContain('json');
    expect(sim.appliedTopUps()).toEqual([]);
    expect((await getBalance(sim)).status).toBe(200);
  });

  it('rate_limit: 429 with an empty body and Retry-After when configured', async () => {
    const sim = await start();
    sim.setFault({ kind: 'rate_limit', count: 1 });
    const bare = await getBalance(sim);
    expect(bare.status).toBe(429);
    expect(bare.headers.get('retry-after')).toBeNull();
    expect(await bare.text()).toBe('');
    sim.setFault({ kind: 'rate_limit', retryAfterSeconds: 7 });
    const withHint = await getBalance(sim);
    expect(withHint.status).toBe(429);
    expect(withHint.headers.get('retry-after')).toBe('7');
  });

  it('slow: answers normally after the delay', async () => {
    const sim = await start();
    sim.setFault({ kind: 'slow', delayMs: 200, endpoint: 'topup' });
    const started = Date.now();
    const res = await topUp(sim);
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
    expect(await res.json()).toEqual(TOPUP_OK);
    expect(sim.appliedTopUps()).toHaveLength(1);
  });

  it('hang: never answers, so the client times out', async () => {
    const sim = await start();
    sim.setFault({ kind: 'hang' });
    await expect(getBalance(sim, { signal: AbortSignal.timeout(300) })).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(sim.requests()[0]?.status).toBeNull();
  });

  it('reset: the connection dies and nothing is applied', async () => {
    const sim = await start();
    sim.setFault({ kind: 'reset', endpoint: 'topup' });
    await expect(topUp(sim)).rejects.toThrow();
    expect(sim.appliedTopUps()).toEqual([]);
    expect(sim.requests()[0]).toMatchObject({ endpoint: 'topup', status: null });
  });

  it('garbage: 200 with a body that is not JSON', async () => {
    const sim = await start();
    sim.setFault({ kind: 'garbage' });
    const res = await getBalance(sim);
    expect(res.status).toBe(200);
    expect(isJson(await res.text())).toBe(false);
  });

  it('html: 200 with an HTML error page', async () => {
    const sim = await start();
    sim.setFault({ kind: 'html' });
    const res = await topUp(sim);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/html');
    expect(await res.text()).toContain('<html>');
    expect(sim.appliedTopUps()).toEqual([]);
  });

  it('huge: 200 with a 10 MiB chunked body', async () => {
    const sim = await start();
    sim.setFault({ kind: 'huge' });
    const res = await getBalance(sim);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBeNull();
    expect((await res.arrayBuffer()).byteLength).toBe(10 * 1024 * 1024);
  });

  it('truncated: an honest Content-Length for half a JSON body', async () => {
    const sim = await start();
    sim.setFault({ kind: 'truncated' });
    const res = await getBalance(sim);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/json');
    const text = await res.text();
    expect(Number(res.headers.get('content-length'))).toBe(Buffer.byteLength(text));
    expect(isJson(text)).toBe(false);
    expect('{"value":12.5,"autoReload":true}'.startsWith(text)).toBe(true);
  });

  it('slow_drip: headers at once, then the body one byte at a time', async () => {
    const sim = await start();
    sim.setFault({ kind: 'slow_drip', delayMs: 10 });
    const started = Date.now();
    const res = await getBalance(sim);
    expect(res.status).toBe(200);
    const headersAfter = Date.now() - started;
    const text = await res.text();
    expect(text).toBe('{"value":12.5,"autoReload":true}');
    expect(headersAfter).toBeLessThan(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual((text.length - 1) * 10);
  });

  it('redirect: 302 to the configured location', async () => {
    const other = await start();
    const sim = await start();
    const location = `${other.url}/account/get-balance`;
    sim.setFault({ kind: 'redirect', location });
    const res = await getBalance(sim, { redirect: 'manual' });
    expect(res.status).toBe(302);
    expect(res.headers.get('location')).toBe(location);
    expect(other.requests()).toEqual([]);
  });

  it('auth_failure: the documented 401 despite good credentials, in JSON and XML', async () => {
    const sim = await start();
    sim.setFault({ kind: 'auth_failure' });
    const json = await getBalance(sim);
    expect(json.status).toBe(401);
    expect(await json.json()).toEqual(AUTH_FAILED);
    const xml = await topUp(sim, { headers: { accept: 'application/xml' } });
    expect(await xml.text()).toContain('<response>\n  <error-code>401</error-code>');
    expect(sim.appliedTopUps()).toEqual([]);
  });

  it('auto_reload_off: balance says false and top-up is refused', async () => {
    const sim = await start();
    sim.setFault({ kind: 'auto_reload_off' });
    expect(await (await getBalance(sim)).json()).toEqual({ value: 12.5, autoReload: false });
    const res = await topUp(sim);
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ 'error-code': '401', 'error-code-label': 'not auto-reload enabled' });
    expect(sim.appliedTopUps()).toEqual([]);
  });

  it('topup_failed: 401 with error-code 420 and nothing applied', async () => {
    const sim = await start();
    sim.setFault({ kind: 'topup_failed' });
    const res = await topUp(sim);
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ 'error-code': '420', 'error-code-label': 'topup failed' });
    expect(sim.appliedTopUps()).toEqual([]);
  });

  it('bad_request: the 400 fixture body even with a good trx', async () => {
    const sim = await start();
    sim.setFault({ kind: 'bad_request' });
    const res = await topUp(sim);
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual(BAD_REQUEST);
    expect(sim.appliedTopUps()).toEqual([]);
  });

  it('lost_answer (reset, the default): applied, but the client sees a connection error', async () => {
    const sim = await start();
    sim.setFault({ kind: 'lost_answer' });
    await expect(topUp(sim)).rejects.toThrow();
    expect(sim.appliedTopUps()).toHaveLength(1);
    expect(sim.balance()).toBe(32.5);
    expect(sim.requests()[0]?.status).toBeNull();
  });

  it('lost_answer (hang): applied, the client times out', async () => {
    const sim = await start();
    sim.setFault({ kind: 'lost_answer', lostMode: 'hang' });
    await expect(topUp(sim, { signal: AbortSignal.timeout(300) })).rejects.toMatchObject({ name: 'TimeoutError' });
    expect(sim.appliedTopUps()).toHaveLength(1);
  });

  it('lost_answer (truncated): applied, the client gets half a JSON body', async () => {
    const sim = await start();
    sim.setFault({ kind: 'lost_answer', lostMode: 'truncated' });
    const res = await topUp(sim);
    expect(res.status).toBe(200);
    expect(isJson(await res.text())).toBe(false);
    expect(sim.appliedTopUps()).toHaveLength(1);
  });

  it('lag: the top-up is applied, but the next balance reads show the old value', async () => {
    const sim = await start();
    sim.setFault({ kind: 'lag', lagPolls: 2 });
    expect(await (await topUp(sim)).json()).toEqual(TOPUP_OK);
    expect(sim.balance()).toBe(32.5);
    expect(sim.appliedTopUps()).toHaveLength(1);
    const reads: unknown[] = [];
    for (let i = 0; i < 3; i += 1) reads.push(await (await getBalance(sim)).json());
    expect(reads).toEqual([
      { value: 12.5, autoReload: true },
      { value: 12.5, autoReload: true },
      { value: 32.5, autoReload: true },
    ]);
  });

  it('count: the fault clears itself after N matching requests', async () => {
    const sim = await start();
    sim.setFault({ kind: 'server_error', endpoint: 'balance', count: 2 });
    expect((await topUp(sim)).status).toBe(200);
    expect((await getBalance(sim)).status).toBe(500);
    expect((await getBalance(sim)).status).toBe(500);
    expect((await getBalance(sim)).status).toBe(200);
  });

  it('keeps one fault per endpoint: a newer one replaces or shadows an older one', async () => {
    const sim = await start();
    sim.setFault({ kind: 'server_error' });
    sim.setFault({ kind: 'rate_limit', endpoint: 'topup', count: 1 });
    expect((await getBalance(sim)).status).toBe(500);
    expect((await topUp(sim)).status).toBe(429);
    expect((await topUp(sim)).status).toBe(500);
    sim.setFault({ kind: 'garbage' });
    expect((await getBalance(sim)).status).toBe(200);
    sim.clearFaults();
    expect(await (await getBalance(sim)).json()).toEqual({ value: 12.5, autoReload: true });
  });

  it('rejects malformed faults', async () => {
    const sim = await start();
    const bad: unknown[] = [
      { kind: 'meteor' },
      { kind: 'lag', endpoint: 'balance' },
      { kind: 'hang', count: 0 },
      { kind: 'slow', delayMs: -1 },
      { kind: 'lost_answer', lostMode: 'explode' },
      { kind: 'hang', colour: 'red' },
    ];
    for (const fault of bad) expect(() => sim.setFault(fault as SimFault)).toThrow(TypeError);
  });
});

describe('control API', () => {
  it('reads and changes state, faults, requests and top-ups', async () => {
    const sim = await start();
    const initial = await (await control(sim, 'GET', 'state')).json();
    expect(initial).toEqual({
      balance: 12.5,
      autoReload: true,
      drainPerSecond: 0,
      topUpAmount: 20,
      faults: [],
      appliedTopUps: [],
      requestCount: 0,
    });

    const updated = await control(sim, 'POST', 'state', { balance: 3, autoReload: false, drainPerSecond: 0 });
    expect(await updated.json()).toMatchObject({ balance: 3, autoReload: false });
    expect(sim.balance()).toBe(3);
    await control(sim, 'POST', 'state', { autoReload: true });

    const added = await control(sim, 'POST', 'faults', { kind: 'server_error', endpoint: 'balance', count: 1 });
    expect(await added.json()).toEqual({ faults: [{ kind: 'server_error', endpoint: 'balance', count: 1 }] });
    expect((await getBalance(sim)).status).toBe(500);
    await control(sim, 'POST', 'faults', { kind: 'rate_limit' });
    expect(await (await control(sim, 'DELETE', 'faults')).json()).toEqual({ faults: [] });

    await topUp(sim);
    const topups = (await (await control(sim, 'GET', 'topups')).json()) as unknown[];
    expect(topups).toEqual(sim.appliedTopUps());
    expect(topups).toHaveLength(1);
    const requests = (await (await control(sim, 'GET', 'requests')).json()) as { endpoint: string }[];
    expect(requests.map((r) => r.endpoint)).toEqual(['balance', 'topup']);
    expect(sim.requests().map((r) => r.endpoint)).toEqual(['balance', 'topup']);
    const state = (await (await control(sim, 'GET', 'state')).json()) as Record<string, unknown>;
    expect(state).toMatchObject({ balance: 23, requestCount: 2 });
  });

  it('rejects bad input without changing anything', async () => {
    const sim = await start();
    const badState = await control(sim, 'POST', 'state', { balance: 5, autoReload: 'yes' });
    expect(badState.status).toBe(400);
    expect(sim.balance()).toBe(12.5);
    expect((await control(sim, 'POST', 'state', { balance: -1 })).status).toBe(400);
    expect((await control(sim, 'POST', 'state', { balanse: 1 })).status).toBe(400);
    expect((await control(sim, 'POST', 'faults', { kind: 'nope' })).status).toBe(400);
    const notJson = await fetch(`${sim.url}/_sim/faults`, { method: 'POST', body: 'kind=hang' });
    expect(notJson.status).toBe(400);
    expect((await control(sim, 'GET', 'nothing')).status).toBe(404);
    expect((await (await control(sim, 'GET', 'state')).json()) as object).toMatchObject({ faults: [] });
  });

  it('names every fault kind when a kind is unknown, and accepts every kind it names', async () => {
    const sim = await start();
    const res = await control(sim, 'POST', 'faults', { kind: 'meteor' });
    expect(res.status).toBe(400);
    const { error } = (await res.json()) as { error: string };
    expect(error).toMatch(/^unknown fault kind "meteor"; the kinds are /);
    const named = error.replace(/^.*the kinds are /, '').split(', ');
    expect(named).toEqual(SIM_FAULT_KINDS);
    expect(named.length).toBeGreaterThan(10);
    for (const kind of named) {
      const added = await control(sim, 'POST', 'faults', { kind, endpoint: 'topup', count: 1 });
      expect(added.status, kind).toBe(200);
    }
  });
});

describe('close()', () => {
  it('resolves quickly with hanging, dripping and delayed requests in flight', async () => {
    const sim = await startSimulator();
    sim.setFault({ kind: 'hang', endpoint: 'balance' });
    sim.setFault({ kind: 'slow_drip', endpoint: 'topup', delayMs: 1000 });
    const pending = [getBalance(sim), topUp(sim).then((res) => res.text())].map((p) => p.catch(() => 'failed'));
    await until(() => sim.requests().length === 2);
    sim.setFault({ kind: 'slow', delayMs: 60_000 });
    pending.push(getBalance(sim).catch(() => 'failed'));
    await until(() => sim.requests().length === 3);

    const started = Date.now();
    await sim.close();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(await Promise.all(pending)).toEqual(['failed', 'failed', 'failed']);
    await sim.close();
  });
});

const SPEC_PATH = resolve(__dirname, 'fixtures/vonage/account.yml');

// The contract comes from Vonage's published OpenAPI file; it is not vendored in this repository.
describe('conformance to the Account API OpenAPI description', () => {
  interface PropertySchema {
    type?: string;
    enum?: unknown[];
    example?: unknown;
  }
  let spec: {
    paths: Record<string, Record<string, { responses: Record<string, { content: Record<string, { example?: unknown }> }> }>>;
    components: { schemas: Record<string, { properties: Record<string, PropertySchema> }> };
  };
  beforeAll(() => {
    spec = parse(readFileSync(SPEC_PATH, 'utf8')) as typeof spec;
  });

  // Every declared property must be present with its type. Properties without a type are the
  // error-code/error-code-label pairs, whose only possible values the spec gives as examples.
  function problems(schemaName: string, body: unknown): string[] {
    const schema = spec.components.schemas[schemaName];
    if (!schema) return [`no schema ${schemaName}`];
    if (typeof body !== 'object' || body === null) return ['not an object'];
    const record = body as Record<string, unknown>;
    const found: string[] = [];
    const declared = Object.keys(schema.properties);
    for (const key of Object.keys(record)) if (!declared.includes(key)) found.push(`undeclared ${key}`);
    for (const [key, property] of Object.entries(schema.properties)) {
      const value = record[key];
      if (value === undefined) found.push(`missing ${key}`);
      else if (property.type && typeof value !== property.type) found.push(`${key} is not a ${property.type}`);
      else if (property.enum && !property.enum.includes(value)) found.push(`${key} not in enum`);
      else if (!property.type && value !== property.example) found.push(`${key} is ${JSON.stringify(value)}`);
    }
    return found;
  }

  it('200 balance matches accountBalance and the JSON and XML examples', async () => {
    const sim = await start({ balance: 10.171275, autoReload: false });
    const body = await (await getBalance(sim)).json();
    expect(problems('accountBalance', body)).toEqual([]);
    const content = spec.paths['/account/get-balance']?.get?.responses['200']?.content;
    expect(body).toEqual(content?.['application/json']?.example);
    const squash = (xml: string): string => xml.trim().replace(/>\s+</g, '><');
    const xml = await (await getBalance(sim, { headers: { accept: 'application/xml' } })).text();
    expect(squash(xml)).toBe(squash(String(content?.['application/xml']?.example)));
  });

  it('401 balance matches ErrorAuthenticationFailedAccountBalance', async () => {
    const sim = await start();
    const body = await (await fetch(`${sim.url}/account/get-balance`)).json();
    expect(problems('ErrorAuthenticationFailedAccountBalance', body)).toEqual([]);
  });

  it('200 top-up matches success', async () => {
    const sim = await start();
    expect(problems('success', await (await topUp(sim)).json())).toEqual([]);
  });

  it('401 top-up matches ErrorAuthenticationFailed and ErrorAutoReloadNotEnabled', async () => {
    const sim = await start();
    expect(problems('ErrorAuthenticationFailed', await (await topUp(sim, { headers: { authorization: 'Basic eDp5' } })).json())).toEqual([]);
    sim.setAutoReload(false);
    expect(problems('ErrorAutoReloadNotEnabled', await (await topUp(sim)).json())).toEqual([]);
  });

  it('a wrong body is caught by the checker', () => {
    expect(problems('accountBalance', { value: '10', autoReload: false })).toEqual(['value is not a number']);
    expect(problems('success', { 'error-code': 200, 'error-code-label': 'success' })).toEqual(['error-code is 200']);
  });
});

describe('CLI (src/simulator/main.ts)', () => {
  let dir: string;
  let entry: string;

  // Transpiled on the fly so this suite needs neither a build nor a TypeScript loader.
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'sim-cli-'));
    writeFileSync(join(dir, 'package.json'), '{"type":"module"}');
    for (const name of ['simulator', 'main']) {
      const source = readFileSync(new URL(`../src/simulator/${name}.ts`, import.meta.url), 'utf8');
      const { outputText } = ts.transpileModule(source, {
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
      });
      writeFileSync(join(dir, `${name}.js`), outputText);
    }
    entry = join(dir, 'main.js');
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  function run(args: string[], env: Record<string, string>) {
    const child = spawn(process.execPath, [entry, ...args], { env: { PATH: process.env.PATH ?? '', ...env } });
    const stderr: string[] = [];
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => stderr.push(chunk));
    const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
    const exit = once(child, 'exit').then(([code]) => code as number | null);
    return { child, lines, exit, stderr: () => stderr.join('') };
  }

  it('listens, logs requests without secrets, and exits 0 on SIGTERM', async () => {
    const cli = run([], { SIM_PORT: '0', SIM_API_SECRET: 'cli-secret', SIM_TRX: 'cli-trx', SIM_BALANCE: '7', SIM_AUTO_RELOAD: 'true' });
    const first = await cli.lines.next();
    const listening = JSON.parse(String(first.value)) as { msg: string; url: string };
    expect(listening.msg).toBe('vonage simulator listening');
    expect(listening.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);

    const balance = await fetch(`${listening.url}/account/get-balance?api_key=demo-key&api_secret=cli-secret`);
    expect(await balance.json()).toEqual({ value: 7, autoReload: true });
    const topup = await fetch(`${listening.url}/account/top-up?api_key=demo-key&api_secret=cli-secret`, {
      method: 'POST',
      body: new URLSearchParams({ trx: 'cli-trx' }),
    });
    expect(topup.status).toBe(200);

    const logged = [String((await cli.lines.next()).value), String((await cli.lines.next()).value)];
    expect(logged.map((line) => JSON.parse(line) as unknown)).toEqual([
      { msg: 'request', method: 'GET', path: '/account/get-balance', endpoint: 'balance', status: 200, requestId: balance.headers.get('x-request-id') },
      { msg: 'request', method: 'POST', path: '/account/top-up', endpoint: 'topup', status: 200, requestId: topup.headers.get('x-request-id') },
    ]);
    expect(logged.join('\n')).not.toMatch(/cli-secret|cli-trx/);

    cli.child.kill('SIGTERM');
    expect(await cli.exit).toBe(0);
  });

  it('exits 2 with every problem on bad configuration', async () => {
    const cli = run([], { SIM_PORT: '70000', SIM_BALANCE: 'lots', SIM_AUTO_RELOAD: 'maybe', SIM_TOPUP_AMOUNT: '0' });
    expect(await cli.exit).toBe(2);
    const message = cli.stderr();
    for (const name of ['SIM_PORT', 'SIM_BALANCE', 'SIM_AUTO_RELOAD', 'SIM_TOPUP_AMOUNT']) expect(message).toContain(name);
  });

  it('prints the environment variables for --help', async () => {
    const cli = run(['--help'], {});
    const text: string[] = [];
    for (let next = await cli.lines.next(); !next.done; next = await cli.lines.next()) text.push(next.value);
    expect(await cli.exit).toBe(0);
    expect(text.join('\n')).toContain('SIM_APPLIED_LOG');
    // One line per fault kind, each with what it does, and the same kinds as the control API's error.
    const start = text.findIndex((l) => l.startsWith('Fault kinds'));
    expect(start).toBeGreaterThan(0);
    const listed = text.slice(start + 1).filter((l) => /^ {2}\S/.test(l)).map((l) => /^ {2}(\S+)\s{2,}\S/.exec(l)?.[1]);
    expect(listed).toEqual(SIM_FAULT_KINDS);
  });
});
