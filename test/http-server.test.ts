import { connect, type AddressInfo, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { Registry, Counter, Gauge } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { HTTP_LIMITS, createHttpServer, tokenMatches, type HttpLimits, type Probe } from '../src/observe/http-server.js';
import { createLogger } from '../src/observe/log.js';
import { waitFor } from './helpers/daemon.js';

const quiet = createLogger({ level: 'silent', format: 'json' }, new Writable({ write: (_c, _e, cb) => cb() }));
let close: (() => Promise<void>) | undefined;
afterEach(async () => close?.());

async function serve(opts: { health?: Probe; ready?: Probe; authToken?: string; limits?: Partial<HttpLimits>; registry?: Registry } = {}) {
  const registry = opts.registry ?? new Registry();
  new Counter({ name: 'x_total', help: 'x', registers: [registry] }).inc();
  const server = createHttpServer({
    registry,
    health: () => opts.health ?? { ok: true },
    ready: () => opts.ready ?? { ok: false, reason: 'no successful balance poll yet' },
    status: () => ({ accounts: [] }),
    authToken: opts.authToken,
    log: quiet,
  }, opts.limits);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  close = () => new Promise((r) => server.close(() => r()));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

describe('HTTP endpoints', () => {
  it('serves metrics in the Prometheus text format', async () => {
    const url = await serve();
    const res = await fetch(`${url}/metrics`);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(await res.text()).toContain('x_total 1');
  });

  it('answers probes with 200 or 503 and the reason', async () => {
    const url = await serve({ health: { ok: false, reason: 'scheduler has not fired for 300s' } });
    const h = await fetch(`${url}/healthz`);
    expect(h.status).toBe(503);
    expect(await h.json()).toEqual({ ok: false, reason: 'scheduler has not fired for 300s' });
    const r = await fetch(`${url}/readyz`);
    expect(r.status).toBe(503);
    expect((await r.json()) as Probe).toMatchObject({ reason: 'no successful balance poll yet' });
  });

  it('requires the bearer token on /metrics and /status only', async () => {
    const url = await serve({ authToken: 'correct-horse-battery' });
    for (const path of ['/metrics', '/status']) {
      expect((await fetch(`${url}${path}`)).status).toBe(401);
      expect((await fetch(`${url}${path}`, { headers: { Authorization: 'Bearer wrong' } })).status).toBe(401);
      expect((await fetch(`${url}${path}`, { headers: { Authorization: 'Basic correct-horse-battery' } })).status).toBe(401);
      expect((await fetch(`${url}${path}`, { headers: { Authorization: 'Bearer correct-horse-battery' } })).status).toBe(200);
    }
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });

  it('refuses other methods and unknown paths', async () => {
    const url = await serve();
    expect((await fetch(`${url}/metrics`, { method: 'POST' })).status).toBe(405);
    expect((await fetch(`${url}/nope`)).status).toBe(404);
    expect((await fetch(`${url}/`)).status).toBe(200);
  });

  it('serves concurrent scrapes one shared rendering, yet never one older than the request: a change made before a scrape is in its answer', async () => {
    const registry = new Registry();
    const gauge = new Gauge({ name: 'g', help: 'g', labelNames: ['account'], registers: [registry] });
    for (let i = 0; i < 2_000; i++) gauge.set({ account: `sub${i}` }, i);
    const url = await serve({ registry });
    let stop = false;
    const background = Array.from({ length: 6 }, async () => {
      let n = 0;
      while (!stop) {
        const res = await fetch(`${url}/metrics`);
        expect(res.status).toBe(200);
        expect(await res.text()).toMatch(/^# HELP g g\n# TYPE g gauge\n/);
        n++;
      }
      return n;
    });
    for (let round = 1; round <= 40; round++) {
      gauge.set({ account: 'sub7' }, -round);
      const bodies = await Promise.all([1, 2, 3].map(async () => (await fetch(`${url}/metrics`)).text()));
      for (const body of bodies) expect(body).toContain(`g{account="sub7"} ${-round}\n`);
    }
    stop = true;
    expect(Math.min(...(await Promise.all(background)))).toBeGreaterThan(0);
  });

  it('compares tokens of any length without throwing', () => {
    expect(tokenMatches(undefined, 'abc')).toBe(false);
    expect(tokenMatches('Bearer ', 'abc')).toBe(false);
    expect(tokenMatches(`Bearer ${'a'.repeat(10_000)}`, 'abc')).toBe(false);
    expect(tokenMatches('bearer abc', 'abc')).toBe(true);
  });
});

describe('connection limits (defect 9: scrapers must not take the descriptors Vonage calls need)', () => {
  it('applies the limits by default', () => {
    const server = createHttpServer({ registry: new Registry(), health: () => ({ ok: true }), ready: () => ({ ok: true }), status: () => ({}), log: quiet });
    expect(server.maxConnections).toBe(HTTP_LIMITS.maxConnections);
    expect(server.headersTimeout).toBe(HTTP_LIMITS.headersTimeoutMs);
    expect(server.requestTimeout).toBe(HTTP_LIMITS.requestTimeoutMs);
    expect(server.keepAliveTimeout).toBe(HTTP_LIMITS.keepAliveTimeoutMs);
    expect(server.timeout).toBe(HTTP_LIMITS.idleTimeoutMs);
    // Far below the 1,024 descriptors a container commonly gets, whatever the clients do.
    expect(HTTP_LIMITS.maxConnections).toBeLessThanOrEqual(128);
    expect(HTTP_LIMITS.headersTimeoutMs).toBeLessThanOrEqual(HTTP_LIMITS.requestTimeoutMs);
  });

  it('closes connections beyond the cap at once, and idle ones (that never send a byte) after the headers timeout', async () => {
    const url = await serve({ limits: { maxConnections: 3, headersTimeoutMs: 300, requestTimeoutMs: 600, checkIntervalMs: 100 } });
    const { port } = new URL(url);
    const open = () => {
      const s = connect(Number(port), '127.0.0.1');
      const state = { socket: s, closed: false, data: '' };
      s.on('data', (d: Buffer) => (state.data += d.toString()));
      s.on('error', () => {});
      s.on('close', () => (state.closed = true));
      return state;
    };
    const held = [open(), open(), open()];
    await Promise.all(held.map((h) => new Promise((r) => h.socket.once('connect', r))));
    // Connections are accepted in the order they were made, so the fourth is the one over the cap.
    const extra = open();
    await waitFor(() => extra.closed, 2000);
    expect(extra.data).toBe('');
    expect(held.some((h) => h.closed)).toBe(false);

    await waitFor(() => held.every((h) => h.closed), 5000);
    for (const h of held) expect(h.data).toMatch(/^HTTP\/1\.1 408/);
    expect((await fetch(`${url}/healthz`)).status).toBe(200);
  });

  it('closes a keep-alive connection that idles between requests', async () => {
    const url = await serve({ limits: { keepAliveTimeoutMs: 200 } });
    const { port } = new URL(url);
    const s: Socket = connect(Number(port), '127.0.0.1');
    let data = '';
    s.on('data', (d: Buffer) => (data += d.toString()));
    let closed = false;
    s.on('close', () => (closed = true));
    s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor(() => closed, 5000, () => data);
    expect(data).toMatch(/^HTTP\/1\.1 200/);
  });
});
