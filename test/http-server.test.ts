import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { Registry, Counter } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { createHttpServer, tokenMatches, type Probe } from '../src/http-server.js';
import { createLogger } from '../src/log.js';

const quiet = createLogger({ level: 'silent', format: 'json' }, new Writable({ write: (_c, _e, cb) => cb() }));
let close: (() => Promise<void>) | undefined;
afterEach(async () => close?.());

async function serve(opts: { health?: Probe; ready?: Probe; authToken?: string } = {}) {
  const registry = new Registry();
  new Counter({ name: 'x_total', help: 'x', registers: [registry] }).inc();
  const server = createHttpServer({
    registry,
    health: () => opts.health ?? { ok: true },
    ready: () => opts.ready ?? { ok: false, reason: 'no successful balance poll yet' },
    status: () => ({ accounts: [] }),
    authToken: opts.authToken,
    log: quiet,
  });
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

  it('compares tokens of any length without throwing', () => {
    expect(tokenMatches(undefined, 'abc')).toBe(false);
    expect(tokenMatches('Bearer ', 'abc')).toBe(false);
    expect(tokenMatches(`Bearer ${'a'.repeat(10_000)}`, 'abc')).toBe(false);
    expect(tokenMatches('bearer abc', 'abc')).toBe(true);
  });
});
