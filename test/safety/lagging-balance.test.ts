/**
 * Lagging balance (research §5 A3): Vonage may show the old, low balance for a while after a
 * top-up was applied. The simulator's `lag` fault hides each applied top-up from the next N
 * balance reads.
 *
 * 1. Cooldown (5 s) longer than the lag (3 polls at 1 s): every lagging read is skipped for
 *    `cooldown` and counted in vonage_topups_skipped_total{reason="cooldown"}; one top-up per
 *    cooldown, three times over.
 * 2. Cooldown (1 s) SHORTER than the lag (5 polls): the daemon cannot tell a lagging balance from
 *    a real one, so each lagging read after the cooldown buys another top-up, until the daily cap
 *    stops it. This is the documented limitation, and why TOPUP_COOLDOWN should be at least
 *    Vonage's own balance-refresh cycle (>= 10 min); the test pins the behaviour down so a change
 *    in it is noticed.
 */
import { describe, expect, it } from 'vitest';
import { startSimulator } from '../../src/simulator/simulator.js';
import { API_KEY, CANARY_SECRET, TRX } from '../helpers/account.js';
import { baseEnv, metricValue, startDaemon, waitFor, type Child } from '../helpers/daemon.js';
import { ACCOUNT, Outputs, appliedWithArrival, auditLedger, checkSpacing, childDir, cleanupAfterAll, figure, scratchDir, topUpPosts, until } from './helpers/crash-harness.js';

const LOW = 5;
const TOPUP = 20;
const skipped = (reason: string) => `vonage_topups_skipped_total{account="${ACCOUNT}",reason="${reason}"}`;
const BALANCE = `vonage_balance_euros{account="${ACCOUNT}"}`;

const { sims, children } = cleanupAfterAll();

async function setup(label: string, lagPolls: number, extra: Record<string, string>) {
  const stateDir = scratchDir(`crash-lag-${label}-`);
  const sim = await startSimulator({ apiKey: API_KEY, apiSecret: CANARY_SECRET, trx: TRX, balance: LOW, topUpAmount: TOPUP });
  sims.push(sim);
  sim.setFault({ kind: 'lag', lagPolls }); // every top-up, until cleared
  const d = await startDaemon(baseEnv(sim.url, { STATE_DIR: stateDir, HTTP_TIMEOUT: '1s', LOG_LEVEL: 'debug', ...extra }), childDir());
  children.push(d);
  return { stateDir, sim, d };
}

async function finish(label: string, d: Child, stateDir: string, outputs: Outputs) {
  await outputs.addHttp(`lag ${label}`, d.url);
  d.proc.kill('SIGTERM');
  expect(await d.exited).toEqual({ code: 0, signal: null });
  outputs.add(`lag ${label} logs`, d.output());
  outputs.addStateDir(`lag ${label} STATE_DIR`, stateDir);
}

/**
 * From the daemon's own log, in order: after each successful top-up, the reads that still showed
 * the old low balance, and whether each was skipped for the cooldown. Reading the log rather than
 * sampling the counter around the top-up keeps the count exact when a poll races the sample.
 */
function lagReadsAfterEachTopUp(output: string): number[] {
  const entries = output.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { msg?: string; balance?: number; reason?: string });
  const rounds: number[] = [];
  let counting = false;
  let pendingLowRead = false;
  for (const e of entries) {
    if (e.msg === 'top-up succeeded') {
      counting = true;
      rounds.push(0);
    } else if (counting && e.msg === 'balance read') {
      if (e.balance !== LOW) counting = false;
      pendingLowRead = counting;
    } else if (counting && pendingLowRead && e.msg === 'balance below threshold; top-up skipped' && e.reason === 'cooldown') {
      rounds[rounds.length - 1]! += 1;
      pendingLowRead = false;
    }
  }
  return rounds;
}

/** Cooldown 5 s > lag of 3 polls at 1 s. */
async function cooldownLongerThanLag(outputs: Outputs) {
  const COOLDOWN_MS = 5000;
  const LAG = 3;
  const ROUNDS = 3;
  const { stateDir, sim, d } = await setup('long-cooldown', LAG, { TOPUP_COOLDOWN: '5s', TOPUP_MAX_PER_DAY: '1000' });
  for (let k = 1; k <= ROUNDS; k++) {
    await waitFor(() => sim.appliedTopUps().length >= k, 15_000, d.output);
    // The money shows after LAG reads; until then the daemon sees the old, low balance.
    await waitFor(async () => (await metricValue(d.url, BALANCE)) === LOW + TOPUP, 10_000, d.output);
    expect(sim.appliedTopUps(), `no second top-up while the balance lagged (round ${k})`).toHaveLength(k);
    sim.setBalance(k === ROUNDS ? 50 : LOW);
  }
  await until(() => false, 1500, 100);
  const totalCooldownSkips = (await metricValue(d.url, skipped('cooldown'))) ?? 0;
  await finish('long-cooldown', d, stateDir, outputs);
  const lagSkips = lagReadsAfterEachTopUp(d.output());

  const applied = appliedWithArrival(sim);
  const attempts = auditLedger(stateDir);
  const spacing = checkSpacing(applied.map((a) => ({ at: a.arrivedAt })), attempts, COOLDOWN_MS);
  const minGap = spacing.minArrivalGap;
  figure('lag 3 polls, cooldown 5s: top-ups applied', applied.length);
  figure('lag 3 polls, cooldown 5s: lagging reads skipped for cooldown, per top-up', lagSkips.join(', '));
  figure('lag 3 polls, cooldown 5s: vonage_topups_skipped_total{reason="cooldown"}', totalCooldownSkips);
  figure('lag 3 polls, cooldown 5s: min gap between top-ups (ms) vs cooldown', `${minGap} vs ${COOLDOWN_MS}`);
  expect(applied).toHaveLength(ROUNDS);
  expect(topUpPosts(sim)).toHaveLength(ROUNDS);
  expect(attempts).toHaveLength(ROUNDS);
  expect(spacing.problems).toEqual([]);
  expect(attempts.every((a) => a.outcome === 'success')).toBe(true);
  // Every lagging read was below the threshold and was refused for the cooldown, and counted.
  for (const n of lagSkips) expect(n).toBe(LAG);
  expect(totalCooldownSkips).toBeGreaterThanOrEqual(ROUNDS * LAG);
}

/** Cooldown 1 s < lag of 5 polls: the documented limitation. */
async function cooldownShorterThanLag(outputs: Outputs) {
  const COOLDOWN_MS = 1000;
  const LAG = 5;
  const CAP = 4;
  const { stateDir, sim, d } = await setup('short-cooldown', LAG, { TOPUP_COOLDOWN: '1s', TOPUP_MAX_PER_DAY: String(CAP) });
  await waitFor(() => sim.appliedTopUps().length >= 1, 15_000, d.output);
  // One top-up was all the account needed. Watch until the lagging reads are over and the
  // balance shows what was really added.
  await waitFor(async () => (await metricValue(d.url, BALANCE)) === LOW + sim.appliedTopUps().length * TOPUP, 20_000, d.output);
  await until(() => false, 1500, 100);
  const capSkips = (await metricValue(d.url, skipped('daily_cap'))) ?? 0;
  const cooldownSkips = (await metricValue(d.url, skipped('cooldown'))) ?? 0;
  const shown = (await metricValue(d.url, BALANCE)) ?? 0;
  await finish('short-cooldown', d, stateDir, outputs);

  const applied = appliedWithArrival(sim);
  const spacing = checkSpacing(applied.map((a) => ({ at: a.arrivedAt })), auditLedger(stateDir), COOLDOWN_MS);
  const minGap = spacing.minArrivalGap;
  figure('lag 5 polls, cooldown 1s (SHORTER than the lag): top-ups applied for one low balance', `${applied.length} (cap ${CAP})`);
  figure('lag 5 polls, cooldown 1s: balance once the lag was over (EUR)', shown);
  figure('lag 5 polls, cooldown 1s: skipped for cooldown / for daily_cap', `${cooldownSkips} / ${capSkips}`);
  figure('lag 5 polls, cooldown 1s: min gap between top-ups (ms) vs cooldown', `${minGap} vs ${COOLDOWN_MS}`);
  // The limitation, stated as a fact: more than the one top-up that was needed...
  expect(applied.length).toBeGreaterThan(1);
  // ...but the cooldown between them and the daily cap still hold.
  expect(applied.length).toBeLessThanOrEqual(CAP);
  expect(spacing.problems).toEqual([]);
  expect(shown).toBe(LOW + applied.length * TOPUP);
}

describe('lagging balance', () => {
  const outputs = new Outputs();

  it('cooldown longer than the lag: one top-up per cooldown; lagging reads counted as cooldown skips. Cooldown shorter than the lag: extra top-ups up to the cap (documented limitation)', async () => {
    const t0 = Date.now();
    const settled = await Promise.allSettled([cooldownLongerThanLag(outputs), cooldownShorterThanLag(outputs)]);
    figure('lagging balance wall time (s)', ((Date.now() - t0) / 1000).toFixed(1));
    for (const s of settled) if (s.status === 'rejected') throw s.reason;
  });

  it('the canary secret appears in no output', () => {
    figure('lagging balance canary outputs checked (items / bytes)', `${outputs.count} / ${outputs.bytes}`);
    expect(outputs.count).toBeGreaterThan(4);
    outputs.check();
  });
});
