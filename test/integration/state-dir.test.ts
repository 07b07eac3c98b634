/**
 * The STATE_DIR guarantees where only root can stage the environment (issue 7: 3 and 5):
 * a second daemon in its own UTS and PID namespaces, as every container has, and a disk that
 * fills up under the ledger. The simulator hides applied top-ups from the balance (a `lag` fault
 * that never ends), so every top-up after the first would be a duplicate charge.
 */
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, statfsSync, statSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../src/simulator/simulator.js';
import { API_KEY, CANARY_SECRET, TRX } from '../helpers/account.js';
import { MAIN, baseEnv, freePort, metricValue, run, startDaemon, stop, tempDir, waitFor, type Child } from '../helpers/daemon.js';
import { requireProgram, requireRoot } from './helpers/system.js';

requireRoot();
const UNSHARE = requireProgram('unshare', 'util-linux');
const MOUNT = requireProgram('mount', 'mount');

let sim: Simulator | undefined;
const children: Child[] = [];
/** unshare ignores SIGTERM while it waits for its child; SIGKILL ends it, and --kill-child the daemon. */
const contained: Child[] = [];
const mounts: string[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) await stop(c);
  for (const c of contained.splice(0)) {
    c.proc.kill('SIGKILL');
    await c.exited;
  }
  await sim?.close();
  sim = undefined;
  for (const m of mounts.splice(0)) execFileSync('umount', ['-l', m]);
});
const A = '{account="e2e"}';

async function simulator(balance: number): Promise<Simulator> {
  sim = await startSimulator({ apiKey: API_KEY, apiSecret: CANARY_SECRET, trx: TRX, topUpAmount: 20, balance });
  sim.setFault({ kind: 'lag', lagPolls: 1_000_000 });
  return sim;
}

/** The daemon in new UTS and PID namespaces, with its own host name: another container on this host. */
async function containerDaemon(env: Record<string, string>, namespaces: string[]): Promise<Child> {
  const port = String(await freePort());
  let out = '';
  const proc = spawn(
    UNSHARE,
    [...namespaces, '--fork', '--kill-child=SIGKILL', 'sh', '-c', 'hostname another-container && exec "$0" "$@"', process.execPath, MAIN],
    { env: { ...env, METRICS_PORT: port }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => proc.on('exit', (code, signal) => r({ code, signal })));
  const child: Child = { proc, output: () => out, exited, url: `http://127.0.0.1:${port}` };
  contained.push(child);
  await waitFor(async () => (await fetch(`${child.url}/healthz`).catch(() => undefined))?.ok === true, 15_000, () => out);
  return child;
}

describe('a second daemon in another container on the same volume (3)', () => {
  for (const [label, namespaces] of [
    ['another UTS namespace (host name)', ['--uts']],
    ['another UTS and PID namespace', ['--uts', '--pid']],
  ] as const) {
    it(`${label}: started at the same instant, only one tops up; the other takes over only once the holder has stopped`, async () => {
      const s = await simulator(5);
      const env = baseEnv(s.url, { STATE_DIR: tempDir() });
      const port = String(await freePort());
      // Not awaited one after the other: both read the empty ledger and race for the lock.
      const [plain, inContainer] = await Promise.all([
        startDaemon({ ...env, METRICS_PORT: port }),
        containerDaemon(env, [...namespaces]),
      ]);
      children.push(plain);
      const polled = () => s.requests().filter((r) => r.endpoint === 'balance').length;
      await waitFor(() => polled() >= 10, 15_000, () => plain.output() + inContainer.output());
      expect(s.appliedTopUps()).toHaveLength(1);
      const plainWritable = await metricValue(plain.url, `vonage_ledger_writable${A}`);
      const containedWritable = await metricValue(inContainer.url, `vonage_ledger_writable${A}`);
      expect([plainWritable, containedWritable].sort()).toEqual([0, 1]);

      // The holder dies (kill -9): the other takes over after one lease, and the cooldown holds.
      const [holder, other] = plainWritable === 1 ? [plain, inContainer] : [inContainer, plain];
      holder.proc.kill('SIGKILL');
      await holder.exited;
      await waitFor(async () => (await metricValue(other.url, `vonage_ledger_writable${A}`)) === 1, 15_000, other.output);
      await waitFor(async () => (await metricValue(other.url, `vonage_topups_skipped_total{account="e2e",reason="cooldown"}`) ?? 0) >= 2, 10_000, other.output);
      expect(s.appliedTopUps()).toHaveLength(1);
    });
  }
});

describe('a full disk under the ledger (5)', () => {
  it('sends nothing while the attempt cannot be recorded whole, and exactly one top-up once space is back', async () => {
    const mnt = tempDir('tmpfs-');
    execFileSync(MOUNT, ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', mnt]);
    mounts.push(mnt);
    const state = join(mnt, 'state');
    mkdirSync(state);
    // A ledger whose last page is 50 bytes short of full: an old attempt, padded.
    const ledger = join(state, 'topups-e2e.jsonl');
    const record = (pad: number) => `${JSON.stringify({ v: 1, type: 'attempt', at: Date.now() - 10 * 86_400_000, id: 'old', balance: 4, threshold: 10, account: 'e2e', note: 'x'.repeat(pad) })}\n`;
    const base = Buffer.byteLength(record(0));
    writeFileSync(ledger, record(2 * 4096 - 50 - base));
    expect(statSync(ledger).size % 4096).toBe(4096 - 50);

    const s = await simulator(50);
    const d = await startDaemon(baseEnv(s.url, { STATE_DIR: state }));
    children.push(d);
    await waitFor(async () => (await metricValue(d.url, `vonage_balance_poll_success${A}`)) === 1, 10_000, d.output);

    // Fill every remaining page, then let the balance drop.
    const filler = join(mnt, 'filler');
    const fd = openSync(filler, 'w');
    const page = Buffer.alloc(4096, 1);
    try {
      for (;;) writeSync(fd, page);
    } catch {
      // ENOSPC: full
    } finally {
      closeSync(fd);
    }
    try {
      for (let i = 0; ; i++) writeFileSync(join(mnt, `crumb-${i}`), 'x');
    } catch {
      // no inode or page left
    }
    s.setBalance(5);
    await waitFor(async () => (await metricValue(d.url, `vonage_topups_skipped_total{account="e2e",reason="ledger_unavailable"}`) ?? 0) >= 3, 15_000, d.output);
    expect(s.appliedTopUps()).toHaveLength(0);
    expect(s.requests().filter((r) => r.endpoint === 'topup')).toHaveLength(0);

    // Space comes back: one top-up, and no second one for the same dip.
    unlinkSync(filler);
    await waitFor(() => s.appliedTopUps().length === 1, 15_000, d.output);
    const polls = s.requests().filter((r) => r.endpoint === 'balance').length;
    await waitFor(() => s.requests().filter((r) => r.endpoint === 'balance').length >= polls + 6, 15_000, d.output);
    expect(s.appliedTopUps()).toHaveLength(1);

    // --check-config says so too while the disk is nearly full: room for its probe, not for the ledger.
    const free = () => Number(statfsSync(mnt).bavail) * Number(statfsSync(mnt).bsize);
    const refill = openSync(filler, 'w');
    try {
      while (free() > 12 * 1024) writeSync(refill, page);
    } finally {
      closeSync(refill);
    }
    const check = run(['--check-config'], baseEnv(s.url, { STATE_DIR: state, METRICS_PORT: '0' }));
    expect((await check.exited).code, check.output()).toBe(78);
    expect(check.output()).toMatch(/STATE_DIR: .* has \d+ bytes free; the ledger needs at least 16384 to record a top-up before sending it/);
    unlinkSync(filler);

    // And a restart remembers it.
    await stop(d);
    const again = await startDaemon(baseEnv(s.url, { STATE_DIR: state }));
    children.push(again);
    await waitFor(async () => (await metricValue(again.url, `vonage_topups_skipped_total{account="e2e",reason="cooldown"}`) ?? 0) >= 2, 10_000, again.output);
    expect(s.appliedTopUps()).toHaveLength(1);
  });
});
