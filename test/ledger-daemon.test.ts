/**
 * The ledger's guarantees through the built daemon, as users run it (issue 7: 6, 7, 11, and the
 * lock between two daemons on one host). The simulator hides applied top-ups from the balance
 * (a `lag` fault that never ends), so every further top-up it records would be a duplicate charge.
 */
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ledgerFileName } from '../src/ledger/file-ledger.js';
import type { Simulator } from '../src/simulator/simulator.js';
import { baseEnv, metricValue, run, stop, tempDir, waitFor } from './helpers/daemon.js';
import { daemonHarness } from './helpers/harness.js';

const { simulator, daemon } = daemonHarness();
const A = '{account="e2e"}';
// Written by hand, as any earlier version wrote them, so these tests also run against older builds.
const encodeRecord = (r: Record<string, unknown>) => `${JSON.stringify({ v: 1, ...r })}\n`;
const hideTopUps = (s: Simulator) => s.setFault({ kind: 'lag', lagPolls: 1_000_000 });
const polls = (s: Simulator) => s.requests().filter((r) => r.endpoint === 'balance').length;

/** A daemon on STATE_DIR `<tmp>/state` that has made its one top-up (hidden from the balance). */
async function toppedUpOnce(extra: Record<string, string> = {}) {
  const s = await simulator({ balance: 5 });
  hideTopUps(s);
  const state = join(tempDir(), 'state');
  const env = baseEnv(s.url, { STATE_DIR: state, ...extra });
  const first = await daemon(env);
  await waitFor(() => s.appliedTopUps().length === 1, 10_000, first.output);
  return { s, state, env, first };
}

describe('two daemons on one STATE_DIR', () => {
  it('the second is refused while the first runs, says why, and takes over after kill -9 without topping up again', async () => {
    const s = await simulator({ balance: 5 });
    hideTopUps(s);
    const env = baseEnv(s.url, { STATE_DIR: tempDir() });
    const first = await daemon(env);
    await waitFor(() => s.appliedTopUps().length === 1, 10_000, first.output);
    const second = await daemon(env);
    await waitFor(async () => (await metricValue(second.url, `vonage_topups_skipped_total{account="e2e",reason="ledger_unavailable"}`) ?? 0) >= 2, 10_000, second.output);
    expect(await metricValue(second.url, `vonage_ledger_writable${A}`)).toBe(0);
    expect(await metricValue(first.url, `vonage_ledger_writable${A}`)).toBe(1);
    const status = (await (await fetch(`${second.url}/status`)).json()) as { accounts: { ledger: { problem?: string } }[] };
    expect(status.accounts[0]!.ledger.problem).toMatch(/locked by another watchdog that is still running \(pid \d+/);

    first.proc.kill('SIGKILL');
    await first.exited;
    await waitFor(async () => (await metricValue(second.url, `vonage_ledger_writable${A}`)) === 1, 10_000, second.output);
    await waitFor(async () => (await metricValue(second.url, `vonage_topups_skipped_total{account="e2e",reason="cooldown"}`) ?? 0) >= 2, 10_000, second.output);
    expect(s.appliedTopUps()).toHaveLength(1);
    expect(second.output()).toContain('took over the STATE_DIR lock from a watchdog that has stopped');
  });
});

describe('STATE_DIR deleted while running (6)', () => {
  it('is re-created with what the daemon remembers, so a second daemon started on the path does not top up again', async () => {
    const { s, state, env, first } = await toppedUpOnce();
    rmSync(state, { recursive: true, force: true });
    const after = polls(s);
    // The first daemon notices within a cycle and writes its attempt back.
    await waitFor(() => polls(s) >= after + 2, 10_000, first.output);
    const second = await daemon(env);
    await waitFor(() => polls(s) >= after + 8, 15_000, second.output);
    expect(s.appliedTopUps()).toHaveLength(1);
    const ledger = readFileSync(join(state, ledgerFileName('e2e')), 'utf8');
    expect(ledger).toContain('"type":"attempt"');
    expect(await metricValue(first.url, `vonage_ledger_writable${A}`)).toBe(1);
    expect(await metricValue(second.url, `vonage_ledger_writable${A}`)).toBe(0);
  });
});

describe('STATE_DIR deleted while running: the races (review of issue 7)', () => {
  it('a second daemon waiting for the lock takes the empty directory only after the first has written back what it knows', async () => {
    const { s, state, env, first } = await toppedUpOnce();
    const waiting = await daemon(env);
    await waitFor(async () => (await metricValue(waiting.url, `vonage_ledger_writable${A}`)) === 0, 10_000, waiting.output);
    rmSync(state, { recursive: true, force: true });
    const after = polls(s);
    await waitFor(() => polls(s) >= after + 12, 20_000, () => first.output() + waiting.output());
    expect(s.appliedTopUps()).toHaveLength(1);
    const writable = [await metricValue(first.url, `vonage_ledger_writable${A}`), await metricValue(waiting.url, `vonage_ledger_writable${A}`)];
    expect(writable.sort()).toEqual([0, 1]);
  });

  it('a daemon started right after the deletion waits before it acts, and finds the attempt written back', async () => {
    const { s, state, env, first } = await toppedUpOnce();
    rmSync(state, { recursive: true, force: true });
    const newcomer = await daemon(env);
    const after = polls(s);
    await waitFor(() => polls(s) >= after + 12, 20_000, () => first.output() + newcomer.output());
    expect(s.appliedTopUps()).toHaveLength(1);
  });

  it('with the default schedule (a poll a minute), the attempt is written back within a second, so a restart right after does not top up again', async () => {
    const { s, state, env, first } = await toppedUpOnce({ POLL_SCHEDULE: '* * * * *' });
    rmSync(state, { recursive: true, force: true });
    await waitFor(() => existsSync(join(state, ledgerFileName('e2e'))) && readFileSync(join(state, ledgerFileName('e2e')), 'utf8').includes('"type":"attempt"'), 5_000, first.output);
    await stop(first);
    const again = await daemon(env);
    await waitFor(async () => (await metricValue(again.url, `vonage_topups_skipped_total{account="e2e",reason="cooldown"}`) ?? 0) >= 1, 10_000, again.output);
    expect(s.appliedTopUps()).toHaveLength(1);
  });
});

describe('the same account under a new name', () => {
  it('keeps its cooldown: the attempts made for the API key under the old name still count', async () => {
    const s = await simulator({ balance: 5 });
    hideTopUps(s);
    const state = tempDir();
    // The default name is the API key; naming the account later is the natural change.
    const first = await daemon(baseEnv(s.url, { STATE_DIR: state, VONAGE_ACCOUNT_NAME: '' }));
    await waitFor(() => s.appliedTopUps().length === 1, 10_000, first.output);
    await stop(first);
    const renamed = await daemon(baseEnv(s.url, { STATE_DIR: state, VONAGE_ACCOUNT_NAME: 'prod-eu' }));
    await waitFor(async () => (await metricValue(renamed.url, `vonage_topups_skipped_total{account="prod-eu",reason="cooldown"}`) ?? 0) >= 2, 10_000, renamed.output);
    expect(s.appliedTopUps()).toHaveLength(1);
    expect(renamed.output()).toContain('took over the attempts made for this API key under another account name');
    await stop(renamed);
    // And once more, renamed again: the fingerprint carries over.
    const again = await daemon(baseEnv(s.url, { STATE_DIR: state, VONAGE_ACCOUNT_NAME: 'prod-eu-2' }));
    await waitFor(async () => (await metricValue(again.url, `vonage_topups_skipped_total{account="prod-eu-2",reason="cooldown"}`) ?? 0) >= 2, 10_000, again.output);
    expect(s.appliedTopUps()).toHaveLength(1);
  });
});

describe('a damaged or long ledger never stops the daemon (7)', () => {
  it('a line that is JSON null disables top-ups with the reason; watching goes on', async () => {
    const s = await simulator({ balance: 5 });
    const state = tempDir();
    const rec = encodeRecord({ type: 'attempt', at: Date.now() - 86_400_000 * 3, id: 'old', balance: 4, threshold: 10, account: 'e2e' });
    writeFileSync(join(state, ledgerFileName('e2e')), `${rec}null\n${rec}`);
    const d = await daemon(baseEnv(s.url, { STATE_DIR: state }));
    await waitFor(async () => (await metricValue(d.url, `vonage_topups_skipped_total{account="e2e",reason="ledger_unavailable"}`) ?? 0) >= 2, 10_000, d.output);
    expect(await metricValue(d.url, `vonage_ledger_writable${A}`)).toBe(0);
    expect(await metricValue(d.url, `vonage_balance_poll_success${A}`)).toBe(1);
    expect(s.appliedTopUps()).toHaveLength(0);
    expect(d.output()).toMatch(/not a ledger record at line 2; refusing to top up until it is repaired or moved away/);
  });

  it('starts on 130,000 attempts (1,000 a day for 130 days), compacts them into a kept archive, and still honours the cooldown', async () => {
    const s = await simulator({ balance: 5 });
    hideTopUps(s);
    const state = tempDir();
    const now = Date.now();
    const DAY = 86_400_000;
    const parts: string[] = [];
    for (let i = 0; i < 130_000; i++) {
      const at = now - 130 * DAY + Math.round((i + 1) * (130 * DAY - 60_000) / 130_000);
      parts.push(encodeRecord({ type: 'attempt', at, id: `id-${i}`, balance: 4, threshold: 10, account: 'e2e' }), encodeRecord({ type: 'outcome', at: at + 1, id: `id-${i}`, outcome: 'success' }));
    }
    writeFileSync(join(state, ledgerFileName('e2e')), parts.join(''));
    const d = await daemon(baseEnv(s.url, { STATE_DIR: state }));
    await waitFor(async () => (await metricValue(d.url, `vonage_topups_skipped_total{account="e2e",reason="cooldown"}`) ?? 0) >= 1, 15_000, d.output);
    expect(s.appliedTopUps()).toHaveLength(0);
    expect(readdirSync(state).filter((f) => f.includes('.archive-'))).toHaveLength(1);
    expect(d.output()).toContain('ledger compacted');
  });
});

describe('signals and cron', () => {
  it('SIGHUP while a top-up is on its way is logged and ignored; the outcome is known (11)', async () => {
    const s = await simulator({ balance: 5 });
    s.setFault({ kind: 'slow', endpoint: 'topup', delayMs: 1500 });
    const d = await daemon(baseEnv(s.url, { STATE_DIR: tempDir(), HTTP_TIMEOUT: '5s' }));
    await waitFor(() => d.output().includes('sending top-up'), 10_000, d.output);
    d.proc.kill('SIGHUP');
    await waitFor(() => d.output().includes('"msg":"top-up succeeded"'), 10_000, d.output);
    expect(d.proc.exitCode).toBeNull();
    expect(d.output()).toContain('SIGHUP received');
    expect(s.appliedTopUps()).toHaveLength(1);
  });

  it('--once exits 2 when the balance is below the threshold and nothing was sent, 0 when it is not', async () => {
    const s = await simulator({ balance: 5 });
    const env = baseEnv(s.url, { STATE_DIR: tempDir(), METRICS_PORT: '0' });
    const dry = run(['--once'], { ...env, DRY_RUN: 'true' });
    expect((await dry.exited).code).toBe(2);
    s.setBalance(50);
    const fine = run(['--once'], env);
    expect((await fine.exited).code).toBe(0);
    expect(s.appliedTopUps()).toHaveLength(0);
  });

  it('--once beside a running daemon says the lock is held and exits 1: it never passes for a success having done nothing', async () => {
    const s = await simulator({ balance: 5 });
    hideTopUps(s);
    const env = baseEnv(s.url, { STATE_DIR: tempDir() });
    const d = await daemon(env);
    await waitFor(() => s.appliedTopUps().length === 1, 10_000, d.output);
    const once = run(['--once'], { ...env, METRICS_PORT: '0' });
    const { code } = await once.exited;
    expect(code, once.output()).toBe(1);
    expect(once.output()).toMatch(/--once cannot top up, nothing was done:\n {2}e2e: STATE_DIR .* is locked by another watchdog that is still running \(pid \d+/);
    expect(s.appliedTopUps()).toHaveLength(1);
  });

  it('--once after a CronJob pod was killed in another PID namespace: waits out its lease, takes the lock and tops up', async () => {
    const s = await simulator({ balance: 5 });
    const state = tempDir();
    // The killed pod's lock: a PID that is alive here (1) means nothing in another namespace,
    // and nobody renews it any more. Its ledger is there too, holding an old attempt.
    writeFileSync(join(state, 'watchdog.lock'), JSON.stringify({ v: 1, owner: 'killed-pod', pid: 1, host: 'cron-pod-abc', bootId: 'x', pidns: 'pid:[4026532999]', startedAt: new Date().toISOString(), seq: '000000000007' }));
    writeFileSync(join(state, ledgerFileName('e2e')), encodeRecord({ type: 'attempt', at: Date.now() - 3 * 3_600_000, id: 'old', balance: 4, threshold: 10, account: 'e2e' }));
    const once = run(['--once'], baseEnv(s.url, { STATE_DIR: state, METRICS_PORT: '0' }));
    const { code } = await once.exited;
    expect(code, once.output()).toBe(0);
    expect(s.appliedTopUps()).toHaveLength(1);
    expect(once.output()).toContain('took over the STATE_DIR lock from a watchdog that has stopped');
  });

  it('--once with an unusable STATE_DIR fails at once with the reason, and asks Vonage nothing', async () => {
    const s = await simulator({ balance: 5 });
    const once = run(['--once'], baseEnv(s.url, { STATE_DIR: '/proc/nonexistent', METRICS_PORT: '0' }));
    const { code } = await once.exited;
    expect(code).toBe(1);
    expect(once.output()).toMatch(/--once cannot top up, nothing was done:\n {2}e2e: cannot create STATE_DIR \/proc\/nonexistent: ENOENT/);
    expect(s.requests()).toHaveLength(0);
  });
});

describe('amounts', () => {
  it('counts one rise once: a lost answer that applied nothing, then a success, add 20 EUR, not 40, and the lost one stays unresolved', async () => {
    const s = await simulator({ balance: 5 });
    s.setFault({ kind: 'reset', endpoint: 'topup', count: 1 }); // the first request: nothing applied, outcome unknown
    const d = await daemon(baseEnv(s.url, { STATE_DIR: tempDir(), TOPUP_COOLDOWN: '3s', TOPUP_MAX_PER_DAY: '5' }));
    await waitFor(() => s.appliedTopUps().length === 1, 20_000, d.output);
    await waitFor(async () => (await metricValue(d.url, `vonage_topped_up_euros_total${A}`)) === 20, 10_000, d.output);
    const after = polls(s);
    await waitFor(() => polls(s) >= after + 4, 10_000, d.output);
    expect(await metricValue(d.url, `vonage_topped_up_euros_total${A}`)).toBe(20);
    expect(await metricValue(d.url, `vonage_topup_unresolved_attempts${A}`)).toBe(1);
    expect(d.output()).not.toContain('treating it as applied');
  });

  it('learns what a top-up added from the balance rise, logs it, exports it and reports it', async () => {
    const s = await simulator({ balance: 5 });
    const d = await daemon(baseEnv(s.url, { STATE_DIR: tempDir() }));
    await waitFor(async () => (await metricValue(d.url, `vonage_topped_up_euros_total${A}`)) === 20, 10_000, d.output);
    expect(await metricValue(d.url, `vonage_topup_last_amount_euros${A}`)).toBe(20);
    expect(d.output()).toMatch(/"msg":"top-up applied: the balance rose by 20\.00 EUR to 25\.00 EUR"/);
    const status = (await (await fetch(`${d.url}/status`)).json()) as { accounts: { lastTopUp: { amountEuros: number }; toppedUpEurosLast24h: number }[] };
    expect(status.accounts[0]).toMatchObject({ lastTopUp: { amountEuros: 20 }, toppedUpEurosLast24h: 20 });
    expect(await metricValue(d.url, `vonage_topup_unresolved_attempts${A}`)).toBe(0);
  });
});
