/**
 * Lost answers (research §5 A2): the simulator applies the top-up, then loses the answer, three
 * ways: it resets the connection, hangs past HTTP_TIMEOUT, or sends a 200 with a truncated body.
 * Each mode, ten times, against the built daemon with a 2 s cooldown (the three modes run side by
 * side, each with its own simulator and STATE_DIR). Midway, the daemon is killed -9 right after it
 * wrote the unknown outcome and before it could reconcile it, and restarted: the new process must
 * reconcile from the ledger.
 *
 * Per top-up: exactly one POST (never re-sent), one ledger attempt, outcome `unknown` in the
 * ledger file and in /status, then `confirmedByBalance: true` and the log line
 * 'treating it as applied' once the balance shows the money.
 */
import { describe, expect, it } from 'vitest';
import { startSimulator } from '../../src/simulator/simulator.js';
import { API_KEY, CANARY_SECRET, TRX } from '../helpers/account.js';
import { baseEnv, metricValue, startDaemon, waitFor, type Child } from '../helpers/daemon.js';
import { ACCOUNT, Outputs, appliedWithArrival, auditLedger, checkSpacing, childDir, cleanupAfterAll, figure, ledgerLines, matchPostsToAttempts, scratchDir, topUpPosts, until } from './helpers/crash-harness.js';

type Mode = 'reset' | 'hang' | 'truncated';
const MODES: Mode[] = ['reset', 'hang', 'truncated'];
/** How the client classifies each way of losing the answer. */
const REASON: Record<Mode, string> = { reset: 'network', hang: 'timeout', truncated: 'bad_response' };
const REPEATS = 10;
const KILL_AT = 5;
const COOLDOWN_MS = 2000;
const LOW = 5;
const TOPUP = 20;
const L = `{account="${ACCOUNT}"}`;

interface Status {
  accounts: { lastTopUp: { at: string; outcome: string; reason?: string; confirmedByBalance: boolean } | null; attemptsLast24h: number }[];
}

const { sims, children } = cleanupAfterAll();

const status = async (c: Child) => ((await (await fetch(`${c.url}/status`)).json()) as Status).accounts[0]!;

interface ModeResult {
  mode: Mode;
  posts: number;
  applied: number;
  attempts: number;
  confirmations: number;
  unknownSeenInStatus: number;
  confirmedSeenInStatus: number;
  minGapMs: number;
  restartReconciled: boolean;
  wallMs: number;
}

async function lostAnswers(mode: Mode, outputs: Outputs): Promise<ModeResult> {
  const started = Date.now();
  const stateDir = scratchDir(`crash-lost-${mode}-`);
  const sim = await startSimulator({ apiKey: API_KEY, apiSecret: CANARY_SECRET, trx: TRX, balance: LOW, topUpAmount: TOPUP });
  sims.push(sim);
  sim.setFault({ kind: 'lost_answer', lostMode: mode }); // every top-up, until cleared
  const env = baseEnv(sim.url, { STATE_DIR: stateDir, TOPUP_COOLDOWN: '2s', TOPUP_MAX_PER_DAY: '1000', HTTP_TIMEOUT: '1s', LOG_LEVEL: 'debug' });
  const logs: string[] = [];
  let d = await startDaemon(env, childDir());
  children.push(d);
  const ctx = () => `[${mode}] ${d.output().slice(-3000)}`;
  let unknownSeenInStatus = 0;
  let confirmedSeenInStatus = 0;
  let restartReconciled = false;
  let restartedAt = 0;

  for (let k = 1; k <= REPEATS; k++) {
    await waitFor(() => sim.appliedTopUps().length >= k, 15_000, ctx);
    // The outcome is written once the client gives up on the answer.
    await waitFor(() => auditLedger(stateDir)[k - 1]?.outcome !== undefined, 5_000, ctx);
    const attempt = auditLedger(stateDir)[k - 1]!;
    expect(attempt, `[${mode}] attempt ${k}`).toMatchObject({ outcome: 'unknown', reason: REASON[mode] });

    if (k === KILL_AT && !attempt.confirmed) {
      // Crash before the next poll can reconcile: the restarted daemon must do it from the ledger.
      d.proc.kill('SIGKILL');
      await d.exited;
      logs.push(d.output());
      const wasConfirmed = auditLedger(stateDir)[k - 1]!.confirmed;
      d = await startDaemon(env, childDir());
      children.push(d);
      restartedAt = k;
      await waitFor(() => auditLedger(stateDir)[k - 1]!.confirmed, 5_000, ctx);
      restartReconciled = !wasConfirmed && d.output().includes('treating it as applied');
    } else {
      const s = await status(d);
      if (s.lastTopUp?.outcome === 'unknown') unknownSeenInStatus++;
      expect(s.lastTopUp, `[${mode}] /status after attempt ${k}`).toMatchObject({ outcome: 'unknown', reason: REASON[mode] });
      await waitFor(() => auditLedger(stateDir)[k - 1]!.confirmed, 5_000, ctx);
    }
    const s = await status(d);
    expect(s.lastTopUp, `[${mode}] /status after reconciling attempt ${k}`).toMatchObject({ outcome: 'unknown', confirmedByBalance: true });
    confirmedSeenInStatus++;
    // Nothing was re-sent while the outcome was unknown.
    expect(topUpPosts(sim)).toHaveLength(k);
    // Spend the money again; the next top-up may come after the cooldown.
    sim.setBalance(k === REPEATS ? 50 : LOW);
  }
  // Watch a little longer above the threshold: nothing more may be sent.
  await until(() => false, 1500, 100);
  await outputs.addHttp(`lost ${mode}`, d.url);
  const metrics = {
    topups: await metricValue(d.url, `vonage_topups_total${L}`),
    failures: await metricValue(d.url, `vonage_topup_failures_total{account="${ACCOUNT}",reason="${REASON[mode]}"}`),
  };
  d.proc.kill('SIGTERM');
  expect(await d.exited).toEqual({ code: 0, signal: null });
  logs.push(d.output());
  const allLogs = logs.join('\n');
  outputs.add(`lost ${mode} logs`, allLogs);
  outputs.addStateDir(`lost ${mode} STATE_DIR`, stateDir);

  const posts = topUpPosts(sim);
  const applied = appliedWithArrival(sim);
  const attempts = auditLedger(stateDir);
  const lines = ledgerLines(stateDir);
  const confirmations = allLogs.split('\n').filter((l) => l.includes('treating it as applied')).length;

  expect(posts).toHaveLength(REPEATS);
  expect(applied).toHaveLength(REPEATS);
  expect(attempts).toHaveLength(posts.length); // POSTs received == attempts in the ledger
  expect(matchPostsToAttempts(posts, attempts, 1000).problems).toEqual([]);
  expect(lines.filter((l) => l.type === 'outcome').every((l) => l.type === 'outcome' && l.outcome === 'unknown')).toBe(true);
  expect(lines.filter((l) => l.type === 'confirmed')).toHaveLength(REPEATS);
  expect(attempts.every((a) => a.outcome === 'unknown' && a.confirmed)).toBe(true);
  expect(confirmations).toBe(REPEATS);
  expect(allLogs).not.toContain('top-up succeeded');
  // The counters belong to the last process only (the one started at KILL_AT, if the kill won
  // the race against the next poll).
  expect(metrics.failures).toBe(REPEATS - restartedAt);
  expect(metrics.topups).toBe(REPEATS - restartedAt);
  // One top-up per cooldown window, exactly (see checkSpacing for why there is no tolerance).
  const spacing = checkSpacing(applied.map((a) => ({ at: a.arrivedAt })), attempts, COOLDOWN_MS);
  expect(spacing.problems).toEqual([]);
  const minGapMs = spacing.minArrivalGap;
  return {
    mode,
    posts: posts.length,
    applied: applied.length,
    attempts: attempts.length,
    confirmations,
    unknownSeenInStatus,
    confirmedSeenInStatus,
    minGapMs,
    restartReconciled,
    wallMs: Date.now() - started,
  };
}

describe('lost answers: applied by Vonage, answer lost', () => {
  const outputs = new Outputs();

  it(`reset / hang past HTTP_TIMEOUT / truncated body, ${REPEATS}x each: one top-up per cooldown, never re-sent, unknown then reconciled`, async () => {
    const t0 = Date.now();
    const settled = await Promise.allSettled(MODES.map((m) => lostAnswers(m, outputs)));
    const failures = settled.filter((s): s is PromiseRejectedResult => s.status === 'rejected');
    if (failures.length > 0) throw failures[0]!.reason;
    for (const s of settled) {
      const r = (s as PromiseFulfilledResult<ModeResult>).value;
      figure(`lost ${r.mode}: POSTs / applied / ledger attempts`, `${r.posts} / ${r.applied} / ${r.attempts}`);
      figure(`lost ${r.mode}: 'treating it as applied' log lines`, r.confirmations);
      figure(`lost ${r.mode}: /status outcome unknown seen / confirmedByBalance seen`, `${r.unknownSeenInStatus} / ${r.confirmedSeenInStatus}`);
      figure(`lost ${r.mode}: min gap between top-ups (ms) vs cooldown`, `${r.minGapMs} vs ${COOLDOWN_MS}`);
      figure(`lost ${r.mode}: reconciled by a restarted process after kill -9`, String(r.restartReconciled));
      figure(`lost ${r.mode}: wall time (s)`, (r.wallMs / 1000).toFixed(1));
    }
    figure('lost answers wall time (s)', ((Date.now() - t0) / 1000).toFixed(1));
    // At least one mode really crossed a restart before reconciling (the kill raced the next poll).
    expect(settled.some((s) => (s as PromiseFulfilledResult<ModeResult>).value.restartReconciled)).toBe(true);
  });

  it('the canary secret appears in no output', () => {
    figure('lost answers canary outputs checked (items / bytes)', `${outputs.count} / ${outputs.bytes}`);
    expect(outputs.count).toBeGreaterThan(6);
    outputs.check();
  });
});
