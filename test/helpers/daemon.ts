/**
 * Runs the built daemon (dist/main.js) as a child process, the way `npm start` and the container
 * do, and collects everything it writes.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { API_KEY, CANARY_SECRET, TRX } from './account.js';

export const MAIN = resolve(__dirname, '../../dist/main.js');

export interface Child {
  proc: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  url: string;
}

export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

export const tempDir = (prefix = 'watchdog-') => mkdtempSync(join(tmpdir(), prefix));

export function baseEnv(simUrl: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    VONAGE_API_KEY: API_KEY,
    VONAGE_API_SECRET: CANARY_SECRET,
    VONAGE_TOPUP_TRX: TRX,
    VONAGE_ACCOUNT_NAME: 'e2e',
    VONAGE_BASE_URL: simUrl,
    VONAGE_ALLOW_CUSTOM_BASE_URL: 'true',
    TOPUP_THRESHOLD: '10',
    TOPUP_COOLDOWN: '1h',
    POLL_SCHEDULE: '* * * * * *',
    HTTP_TIMEOUT: '1s',
    METRICS_HOST: '127.0.0.1',
    LOG_LEVEL: 'debug',
    ...extra,
  };
}

export function run(args: string[], env: Record<string, string>, cwd?: string): Child {
  let out = '';
  const proc = spawn(process.execPath, [MAIN, ...args], { env, cwd: cwd ?? tempDir('cwd-'), stdio: ['ignore', 'pipe', 'pipe'] });
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.on('exit', (code, signal) => r({ code, signal })));
  return { proc, output: () => out, exited, url: `http://127.0.0.1:${env.METRICS_PORT ?? '8479'}` };
}

/** Starts the daemon on a free port and waits until it answers /healthz. */
export async function startDaemon(env: Record<string, string>, cwd?: string): Promise<Child> {
  const port = String(await freePort());
  const child = run([], { ...env, METRICS_PORT: port }, cwd);
  await waitFor(async () => (await fetch(`${child.url}/healthz`).catch(() => undefined))?.ok === true, 10_000, () => child.output());
  return child;
}

export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, context: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`condition not met within ${timeoutMs} ms\n${context().slice(-3000)}`);
}

export async function metricValue(url: string, series: string): Promise<number | undefined> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

export async function stop(child: Child): Promise<void> {
  if (child.proc.exitCode === null && child.proc.signalCode === null) child.proc.kill('SIGTERM');
  await child.exited;
}
