import { AxiosError } from 'axios';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { freePort } from './helpers/daemon.js';
import { afterEach, describe, expect, it } from 'vitest';
import { VonageError } from '../src/vonage/errors.js';
import { startSimulator, type Simulator } from '../src/simulator/simulator.js';
import { MAX_BODY_BYTES, createVonageClient, getBalanceWithRetry, parseRetryAfter } from '../src/vonage/account-client.js';
import { API_KEY, CANARY_SECRET, TRX, account, expectNoSecret } from './helpers/account.js';

let sim: Simulator;
afterEach(async () => {
  await sim?.close();
});
const start = async (opts = {}) => {
  sim = await startSimulator({ apiKey: API_KEY, apiSecret: CANARY_SECRET, trx: TRX, balance: 7.5, ...opts });
  return sim;
};
const client = (overrides = {}, timeoutMs = 1000) => createVonageClient({ account: account(sim.url, overrides), timeoutMs });

async function failure(p: Promise<unknown>): Promise<VonageError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(VonageError);
  expect(err).not.toBeInstanceOf(AxiosError);
  // Whatever went wrong, the error carries nothing of the request.
  expectNoSecret(JSON.stringify(err), 'serialized error');
  expectNoSecret(String((err as Error).stack), 'error stack');
  return err as VonageError;
}

describe('client against the simulator', () => {
  it('reads the balance with Basic auth; the secret goes only in the Authorization header', async () => {
    await start();
    const r = await client().getBalance();
    expect(r).toMatchObject({ value: 7.5, autoReload: true });
    expect(r.requestId).toMatch(/^[0-9a-f-]{36}$/);
    const [req] = sim.requests();
    expect(req!.headers.authorization).toBe(`Basic ${Buffer.from(`${API_KEY}:${CANARY_SECRET}`).toString('base64')}`);
    expect(req!.path).toBe('/account/get-balance');
    expect(req!.query).toEqual({});
    expect(req!.headers['content-type']).toBeUndefined();
  });

  it('reads the balance with query auth when configured', async () => {
    await start();
    expect((await client({ auth: 'query' }).getBalance()).value).toBe(7.5);
    const [req] = sim.requests();
    expect(req!.query).toEqual({ api_key: API_KEY, api_secret: CANARY_SECRET });
    expect(req!.headers.authorization).toBeUndefined();
  });

  it('tops up with a form-encoded trx and sees the balance rise', async () => {
    await start({ topUpAmount: 20 });
    await client().topUp(TRX);
    const post = sim.requests().find((r) => r.endpoint === 'topup')!;
    expect(post.method).toBe('POST');
    expect(post.body).toBe(`trx=${TRX}`);
    expect(post.headers['content-type']).toBe('application/x-www-form-urlencoded');
    expect(sim.appliedTopUps()).toHaveLength(1);
    expect((await client().getBalance()).value).toBeCloseTo(27.5);
  });

  it('tells the three top-up refusals apart', async () => {
    await start();
    expect((await failure(client({ apiSecret: 'wrong-secret' }).topUp(TRX))).reason).toBe('auth_failed');
    sim.setFault({ kind: 'auto_reload_off', endpoint: 'topup' });
    expect(await failure(client().topUp(TRX))).toMatchObject({ reason: 'auto_reload_disabled', delivery: 'yes' });
    sim.clearFaults();
    sim.setFault({ kind: 'topup_failed' });
    expect(await failure(client().topUp(TRX))).toMatchObject({ reason: 'topup_failed', delivery: 'yes' });
    expect(sim.appliedTopUps()).toHaveLength(0);
  });

  it('maps transport faults to reasons, within the timeout', async () => {
    await start();
    const cases: [Parameters<Simulator['setFault']>[0], string, string][] = [
      [{ kind: 'server_error', status: 502 }, 'server_error', 'yes'],
      [{ kind: 'rate_limit', retryAfterSeconds: 3 }, 'rate_limited', 'yes'],
      [{ kind: 'hang' }, 'timeout', 'unknown'],
      [{ kind: 'slow_drip', delayMs: 200 }, 'timeout', 'unknown'],
      [{ kind: 'reset' }, 'network', 'unknown'],
      [{ kind: 'garbage' }, 'bad_response', 'yes'],
      [{ kind: 'html' }, 'bad_response', 'yes'],
      [{ kind: 'truncated' }, 'bad_response', 'yes'],
      [{ kind: 'huge' }, 'bad_response', 'unknown'],
      [{ kind: 'redirect', location: 'http://127.0.0.1:9/account/get-balance' }, 'redirect', 'yes'],
      [{ kind: 'auth_failure' }, 'auth_failed', 'yes'],
    ];
    for (const [fault, reason, delivery] of cases) {
      sim.clearFaults();
      sim.setFault({ ...fault, endpoint: 'balance' });
      const started = Date.now();
      const e = await failure(client({}, 800).getBalance());
      expect([fault.kind, e.reason, e.delivery]).toEqual([fault.kind, reason, delivery]);
      expect(Date.now() - started).toBeLessThan(2000);
    }
  });

  it('reports a 429 Retry-After', async () => {
    await start();
    sim.setFault({ kind: 'rate_limit', retryAfterSeconds: 7, endpoint: 'balance' });
    expect((await failure(client().getBalance())).retryAfterSeconds).toBe(7);
  });

  it('knows a refused connection never left', async () => {
    // A port bound and released: nothing listens there.
    const port = await freePort();
    sim = await startSimulator();
    const c = createVonageClient({ account: account(`http://127.0.0.1:${port}`), timeoutMs: 1000 });
    expect(await failure(c.topUp(TRX))).toMatchObject({ reason: 'connection_refused', delivery: 'no' });
  });

  it('a lost answer after the top-up was applied is unknown, never a failure', async () => {
    await start();
    for (const lostMode of ['reset', 'hang', 'truncated'] as const) {
      sim.clearFaults();
      sim.setFault({ kind: 'lost_answer', lostMode, count: 1 });
      const e = await failure(client({}, 800).topUp(TRX));
      expect([lostMode, e.delivery]).toEqual([lostMode, 'unknown']);
    }
    expect(sim.appliedTopUps()).toHaveLength(3);
  });
});

describe('getBalanceWithRetry', () => {
  it('retries transient failures with backoff, then succeeds', async () => {
    await start();
    sim.setFault({ kind: 'server_error', endpoint: 'balance', count: 2 });
    const delays: number[] = [];
    const r = await getBalanceWithRetry(client(), { attempts: 3, baseDelayMs: 100, maxDelayMs: 1000, sleep: async (ms) => void delays.push(ms), random: () => 1 });
    expect(r.value).toBe(7.5);
    expect(delays).toEqual([100, 200]);
  });

  it('honours Retry-After, and gives up the cycle when it is longer than the cycle may wait', async () => {
    await start();
    sim.setFault({ kind: 'rate_limit', retryAfterSeconds: 2, endpoint: 'balance', count: 1 });
    const delays: number[] = [];
    await getBalanceWithRetry(client(), { attempts: 3, baseDelayMs: 100, maxDelayMs: 5000, sleep: async (ms) => void delays.push(ms) });
    expect(delays).toEqual([2000]);
    sim.setFault({ kind: 'rate_limit', retryAfterSeconds: 60, endpoint: 'balance', count: 1 });
    await expect(getBalanceWithRetry(client(), { attempts: 3, baseDelayMs: 100, maxDelayMs: 5000, sleep: async () => {} })).rejects.toMatchObject({ reason: 'rate_limited' });
  });

  it('does not retry what will not change (authentication, bad answers)', async () => {
    await start();
    sim.setFault({ kind: 'garbage', endpoint: 'balance' });
    let sleeps = 0;
    await expect(getBalanceWithRetry(client(), { attempts: 3, baseDelayMs: 1, maxDelayMs: 1, sleep: async () => void sleeps++ })).rejects.toMatchObject({ reason: 'bad_response' });
    expect(sleeps).toBe(0);
    expect(sim.requests()).toHaveLength(1);
  });

  it('parses Retry-After as seconds or an HTTP date', () => {
    const now = Date.UTC(2026, 0, 1);
    expect(parseRetryAfter('5', now)).toBe(5);
    expect(parseRetryAfter(new Date(now + 3000).toUTCString(), now)).toBe(3);
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('99999', now)).toBeUndefined();
  });
});

/**
 * A loopback server speaking raw HTTP/1.1, for answers the simulator does not send: each
 * request gets the next reply in the list (the last one repeats).
 */
async function rawServer(replies: ((socket: Socket) => void)[]): Promise<{ url: string; requests: () => number; close: () => Promise<void> }> {
  let n = 0;
  const server: TcpServer = createTcpServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => replies[Math.min(n++, replies.length - 1)]!(socket));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
  return { url, requests: () => n, close: () => new Promise((r) => server.close(() => r())) };
}

const BALANCE = '{"value":7.5,"autoReload":true}';
const head = (length: number, extra = '') => `HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n${extra}\r\n`;
/** Promises more than it sends, then closes: a body cut off by a dropped connection. */
const cutShort = (socket: Socket) => socket.end(`${head(BALANCE.length + 20)}${BALANCE}`);
const whole = (socket: Socket) => socket.end(`${head(BALANCE.length, 'Connection: close\r\n')}${BALANCE}`);

describe('answers cut short or too large (defect 12)', () => {
  let raw: Awaited<ReturnType<typeof rawServer>> | undefined;
  afterEach(async () => {
    await raw?.close();
    raw = undefined;
  });
  const rawClient = (url: string) => createVonageClient({ account: account(url), timeoutMs: 1000 });

  it('a body shorter than its Content-Length is a network failure, not an oversized answer', async () => {
    raw = await rawServer([cutShort]);
    const read = await failure(rawClient(raw.url).getBalance());
    expect([read.reason, read.message]).toEqual(['network', 'answer cut short: the connection closed before the whole body arrived']);
    const topUp = await failure(rawClient(raw.url).topUp(TRX));
    // The request reached the other side; whether the top-up was applied is not known.
    expect([topUp.reason, topUp.delivery]).toEqual(['network', 'unknown']);
  });

  it('a chunked body that stops before its last chunk is the same', async () => {
    raw = await rawServer([(s) => s.end('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n20\r\n{"value":7.5')]);
    expect(await failure(rawClient(raw.url).getBalance())).toMatchObject({ reason: 'network', delivery: 'unknown' });
  });

  it('the balance read retries a cut-short answer like a reset', async () => {
    raw = await rawServer([cutShort, whole]);
    const delays: number[] = [];
    const r = await getBalanceWithRetry(rawClient(raw.url), { attempts: 3, baseDelayMs: 10, maxDelayMs: 100, sleep: async (ms) => void delays.push(ms), random: () => 1 });
    expect(r.value).toBe(7.5);
    expect(delays).toEqual([10]);
    expect(raw.requests()).toBe(2);
  });

  it('an answer over the cap is still told as such, with or without a Content-Length', async () => {
    const big = `{"pad":"${'x'.repeat(MAX_BODY_BYTES)}"}`;
    raw = await rawServer([(s) => s.end(`${head(big.length)}${big}`)]);
    const e = await failure(rawClient(raw.url).topUp(TRX));
    expect([e.reason, e.message, e.delivery]).toEqual(['bad_response', `answer larger than ${MAX_BODY_BYTES} bytes`, 'unknown']);
    await start();
    sim.setFault({ kind: 'huge', endpoint: 'balance' });
    expect(await failure(client().getBalance())).toMatchObject({ reason: 'bad_response', message: `answer larger than ${MAX_BODY_BYTES} bytes` });
  });
});

