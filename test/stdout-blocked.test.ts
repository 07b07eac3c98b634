/**
 * Defect 8: with stdout a pipe nobody reads, a blocking log write froze the process: no polls,
 * /healthz timing out, no top-up for a dip, SIGTERM ignored. The built daemon runs here with a
 * stdout that is a FIFO whose buffer is already full, so its very first log write would block.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, constants, openSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../src/simulator/simulator.js';
import { API_KEY, CANARY_SECRET, TRX } from './helpers/account.js';
import { MAIN, baseEnv, freePort, tempDir, waitFor } from './helpers/daemon.js';

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A FIFO with a reader that never reads, filled to the brim; returns a blocking write end. */
function fullPipe(): { fd: number; filled: number } {
  const dir = tempDir('stdout-blocked-');
  const path = join(dir, 'stdout.fifo');
  execFileSync('mkfifo', [path]);
  // The read end is opened (so writers do not get ENXIO or EPIPE) and never read.
  const reader = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  const filler = openSync(path, constants.O_WRONLY | constants.O_NONBLOCK);
  let filled = 0;
  const chunk = Buffer.alloc(4096, 'x');
  for (;;) {
    try {
      filled += writeSync(filler, chunk);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EAGAIN') break;
      throw err;
    }
  }
  // A separate open: its own file description, blocking, as a container runtime's pipe is.
  const writer = openSync(path, constants.O_WRONLY);
  cleanups.push(() => {
    for (const fd of [writer, filler, reader]) closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  });
  return { fd: writer, filled };
}

const get = (url: string) => fetch(url, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);

async function counter(url: string, name: string): Promise<number | undefined> {
  const res = await get(`${url}/metrics`);
  if (!res?.ok) return undefined;
  const line = (await res.text()).split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

describe('stdout that nobody reads (defect 8)', () => {
  let sim: Simulator;

  it('keeps polling, answering /healthz, topping up and stopping on SIGTERM, and counts what it dropped', async () => {
    sim = await startSimulator({ apiKey: API_KEY, apiSecret: CANARY_SECRET, trx: TRX, balance: 50 });
    cleanups.push(() => sim.close());
    const { fd, filled } = fullPipe();
    expect(filled).toBeGreaterThan(0);

    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    let stderr = '';
    const child: ChildProcess = spawn(process.execPath, [MAIN], {
      env: baseEnv(sim.url, { METRICS_PORT: String(port), STATE_DIR: join(tempDir('state-'), 'data') }),
      cwd: tempDir('cwd-'),
      stdio: ['ignore', fd, 'pipe'],
    });
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    // SIGKILL: on the old code SIGTERM is exactly what does not work.
    cleanups.push(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const context = () => `stderr: ${stderr}\nsimulator saw ${sim.requests().length} requests`;

    await waitFor(async () => (await get(`${url}/healthz`))?.status === 200, 10_000, context);

    const balanceReads = () => sim.requests().filter((r) => r.endpoint === 'balance' && r.status === 200).length;
    const before = balanceReads();
    await waitFor(() => balanceReads() >= before + 3, 10_000, context);
    expect((await get(`${url}/healthz`))?.status).toBe(200);

    sim.setBalance(3);
    await waitFor(() => sim.appliedTopUps().length === 1, 10_000, context);

    // Failing polls log three lines a second (two retries and the failure), filling the bound sooner.
    sim.setFault({ kind: 'rate_limit', retryAfterSeconds: 0, endpoint: 'balance' });
    await waitFor(async () => ((await counter(url, 'vonage_watchdog_log_lines_dropped_total')) ?? 0) > 0, 40_000, context);
    expect((await get(`${url}/healthz`))?.status).toBe(200);

    child.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise<'still running'>((r) => setTimeout(() => r('still running'), 10_000))]);
    expect(code).toBe(0);
    expect(sim.appliedTopUps()).toHaveLength(1);
  }, 90_000);
});
