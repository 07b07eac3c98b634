// Shared by the benchmarks: run the built daemon as a child process against the built simulator.
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url));
export { startSimulator } from '../dist/simulator/simulator.js';

export async function freePort() {
  const srv = createServer();
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const { port } = srv.address();
  await new Promise((r) => srv.close(r));
  return port;
}

export async function startDaemon(simUrl, extraEnv = {}) {
  const port = await freePort();
  const env = {
    PATH: process.env.PATH,
    VONAGE_API_KEY: 'demo-key',
    VONAGE_API_SECRET: 'demo-secret',
    VONAGE_TOPUP_TRX: '8ef2447e69604f642ae59363aa5f781b',
    VONAGE_BASE_URL: simUrl,
    VONAGE_ALLOW_CUSTOM_BASE_URL: 'true',
    TOPUP_THRESHOLD: '10',
    STATE_DIR: mkdtempSync(join(tmpdir(), 'bench-')),
    METRICS_HOST: '127.0.0.1',
    METRICS_PORT: String(port),
    LOG_LEVEL: 'warn',
    ...extraEnv,
  };
  const proc = spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const ok = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (ok) return { proc, url };
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill('SIGKILL');
  throw new Error('daemon did not start');
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/**
 * Like startDaemon, but with exactly `env` (plus PATH, and METRICS_HOST/METRICS_PORT unless given):
 * for an ACCOUNTS_FILE fleet, where no per-account VONAGE_* variable may be set. `onSpawn` gets the
 * child at once, so a caller can kill it on any exit; a child that exits before /healthz answers
 * fails the start at once (its stderr is passed through), one that never answers is killed.
 */
export async function startDaemonWithEnv(env, { onSpawn, timeoutMs = 10_000 } = {}) {
  const port = env.METRICS_PORT ?? String(await freePort());
  const full = { PATH: process.env.PATH, METRICS_HOST: '127.0.0.1', ...env, METRICS_PORT: port };
  const proc = spawn(process.execPath, [MAIN], { env: full, stdio: ['ignore', 'ignore', 'inherit'] });
  onSpawn?.(proc);
  let exited;
  proc.once('exit', (code, signal) => (exited = signal ?? `exit code ${code}`));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline && exited === undefined) {
    const ok = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (ok) return { proc, url };
    await new Promise((r) => setTimeout(r, 50));
  }
  proc.kill('SIGKILL');
  throw new Error(exited === undefined ? `daemon did not answer /healthz within ${timeoutMs} ms` : `daemon exited while starting (${exited})`);
}
