// src/healthcheck.ts, the container HEALTHCHECK, run as a real process against a real HTTP
// server on loopback. It is transpiled on the fly (no `npm run build` needed for this test).
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ROOT } from './lib.js';

const dir = mkdtempSync(join(tmpdir(), 'vrw-healthcheck-'));
const script = join(dir, 'healthcheck.mjs');

type Handler = (req: IncomingMessage, res: ServerResponse) => void;
let handler: Handler = (_req, res) => res.end();
const seen: string[] = [];
let server: Server;
let port = 0;

beforeAll(async () => {
  const source = readFileSync(join(ROOT, 'src/healthcheck.ts'), 'utf8');
  const out = ts.transpileModule(source, {
    compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 },
  });
  writeFileSync(script, out.outputText);
  server = createServer((req, res) => {
    seen.push(`${req.method} ${req.url}`);
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

function runCheck(env: Record<string, string>): Promise<{ code: number | null; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    // A clean environment: only what the test sets, plus PATH.
    execFile(process.execPath, [script], { env: { PATH: process.env.PATH ?? '', ...env }, timeout: 10_000 }, (err) => {
      const code = err ? (typeof err.code === 'number' ? err.code : null) : 0;
      resolve({ code, ms: Date.now() - started });
    });
  });
}

describe('healthcheck', () => {
  it('exits 0 when /healthz answers 200, and asks for nothing else', async () => {
    handler = (_req, res) => res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
    seen.length = 0;
    const r = await runCheck({ METRICS_PORT: String(port) });
    expect(r.code).toBe(0);
    expect(seen).toEqual(['GET /healthz']);
  });

  it('exits 1 on any other status', async () => {
    for (const status of [503, 500, 404, 401]) {
      handler = (_req, res) => res.writeHead(status).end();
      expect((await runCheck({ METRICS_PORT: String(port) })).code, String(status)).toBe(1);
    }
  });

  it('does not follow redirects', async () => {
    handler = (_req, res) => res.writeHead(302, { location: `http://127.0.0.1:${port}/ok` }).end();
    expect((await runCheck({ METRICS_PORT: String(port) })).code).toBe(1);
  });

  it('exits 1 within about 2 s when the server hangs', async () => {
    handler = () => {
      // never answer
    };
    const r = await runCheck({ METRICS_PORT: String(port) });
    expect(r.code).toBe(1);
    expect(r.ms).toBeGreaterThanOrEqual(1900);
    expect(r.ms).toBeLessThan(5000);
  });

  it('exits 1 when nothing listens', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const freePort = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    expect((await runCheck({ METRICS_PORT: String(freePort) })).code).toBe(1);
  });

  it('connects to loopback when METRICS_HOST is a wildcard, and to METRICS_HOST otherwise', async () => {
    handler = (_req, res) => res.writeHead(200).end();
    for (const host of ['0.0.0.0', '::', '', '127.0.0.1']) {
      expect((await runCheck({ METRICS_PORT: String(port), METRICS_HOST: host })).code, `METRICS_HOST=${host}`).toBe(0);
    }
    // A specific address is used as is: nothing of ours listens on 127.0.0.2 at that port.
    expect((await runCheck({ METRICS_PORT: String(port), METRICS_HOST: '127.0.0.2' })).code).toBe(1);
  });

  it('defaults to port 8479', async () => {
    const src = readFileSync(join(ROOT, 'src/healthcheck.ts'), 'utf8');
    expect(src).toMatch(/DEFAULT_PORT = 8479/);
    // And imports nothing: it must not load the app or its dependencies.
    expect(src).not.toMatch(/^\s*import\s/m);
  });
});
