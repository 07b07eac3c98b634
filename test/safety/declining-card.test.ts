/**
 * A4: a declining card. Every top-up fails, for a simulated day and a half, polled every simulated
 * minute. The lesson from akash-network/console PR #3756 (one declining card, 486 failure events in
 * 4.5 h) is that the attempt cap must count failures too, and the cooldown must hold on failure.
 *
 * Real parts: the daemon in-process (startDaemon(loadConfig(env)) with an injected clock and
 * sleep), real HTTP over loopback to the simulator, whose clock is the same fake clock so its
 * request log and drain follow simulated time; the real ledger (fsync) on tmpfs.
 */
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { startDaemon } from '../../src/daemon.js';
import { ledgerFileName } from '../../src/ledger/file-ledger.js';
import { DAY_MS } from '../../src/refill/topup-policy.js';
import { startSimulator, type SimFault } from '../../src/simulator/simulator.js';
import type { AccountStatus } from '../../src/cycle/watchdog.js';
import { API_KEY, CANARY_SECRET, TRX } from '../helpers/account.js';
import {
  CanarySweep,
  daemonEnv,
  figure,
  filesText,
  freshStateDir,
  removeStateDirs,
  ledgerRecords,
  LogSink,
  manualClock,
  parseExposition,
  recordingSleep,
  seriesKey,
  trapUnhandled,
} from './helpers/matrix-util.js';

const MINUTE = 60_000;
const COOLDOWN_MS = 15 * MINUTE;
const MAX_PER_DAY = 3;
const A = { account: 'safety' };
const sweep = new CanarySweep();
const unhandled = trapUnhandled();
const started = performance.now();
afterAll(() => {
  removeStateDirs();
  unhandled.uninstall();
  figure('declining-card canary: items swept', sweep.items);
  figure('declining-card canary: bytes swept', sweep.bytes);
  figure('declining-card canary: items with an occurrence', sweep.occurrences);
  figure('declining-card [REDACTED] markers in swept output (secret reached the scrubber)', sweep.redactions);
  figure('declining-card unhandled rejections/exceptions', unhandled.events.length);
  figure('declining-card runtime s', ((performance.now() - started) / 1000).toFixed(1));
});

/** The most timestamps in any window (t - 24 h, t], t ranging over the timestamps and every checkpoint. */
function maxInRollingDay(times: readonly number[], checkpoints: readonly number[]): number {
  let max = 0;
  for (const t of [...times, ...checkpoints]) max = Math.max(max, times.filter((x) => x > t - DAY_MS && x <= t).length);
  return max;
}

interface Variant {
  name: string;
  fault: SimFault;
  reason: string;
  /** Simulated minutes after the first day. */
  extraMinutes: number;
}

const VARIANTS: Variant[] = [
  { name: '420 "topup failed" on every call', fault: { kind: 'topup_failed' }, reason: 'topup_failed', extraMinutes: 12 * 60 },
  { name: '401 "not auto-reload enabled" on every top-up (balance still says autoReload=true)', fault: { kind: 'auto_reload_off', endpoint: 'topup' }, reason: 'auto_reload_disabled', extraMinutes: 2 * 60 },
  { name: '401 authentication failed on every top-up', fault: { kind: 'auth_failure', endpoint: 'topup' }, reason: 'auth_failed', extraMinutes: 2 * 60 },
];

describe('declining card: every top-up fails, polled every simulated minute', () => {
  for (const v of VARIANTS) {
    it(`${v.name}: at most ${MAX_PER_DAY} attempts in any rolling 24 h, cooldown held, visible in metrics and /status`, async () => {
      const clock = manualClock();
      const t0 = clock.now();
      const sim = await startSimulator({ apiKey: API_KEY, apiSecret: CANARY_SECRET, trx: TRX, balance: 6, drainPerSecond: 0.00002, now: clock.now });
      sim.setFault(v.fault);
      const dir = freshStateDir('declining-');
      const log = new LogSink();
      const rs = recordingSleep(0);
      const env = daemonEnv(sim.url, dir, { TOPUP_COOLDOWN: '15m', TOPUP_MAX_PER_DAY: String(MAX_PER_DAY), HTTP_TIMEOUT: '5s', LOG_LEVEL: 'info' });
      const d = await startDaemon(loadConfig(env), { logDestination: log, now: clock.now, sleep: rs.sleep, pollAtStart: false });
      const w = d.watchdogs[0]!;
      const cycles = 24 * 60 + v.extraMinutes;
      const checkpoints: number[] = [];
      let failuresFirst4h30 = 0;
      let statusAfterDay1: AccountStatus | undefined;
      let metricsAfterDay1: Map<string, number> | undefined;
      const t = performance.now();
      try {
        for (let i = 0; i < cycles; i++) {
          // Cycle i runs at t0 + i minutes.
          clock.set(t0 + i * MINUTE);
          checkpoints.push(clock.now());
          expect(await d.scheduler.tick()).toBe('ran');
          const s = w.status();
          expect(s.attemptsLast24h).toBeLessThanOrEqual(MAX_PER_DAY);
          expect(s.lastPoll?.ok).toBe(true);
          if (i === 4 * 60 + 30) failuresFirst4h30 = sim.requests().filter((r) => r.endpoint === 'topup').length;
          if (i === 24 * 60 - 1) {
            const text = await (await fetch(`${d.url}/status`)).text();
            sweep.check(text, '/status');
            statusAfterDay1 = (JSON.parse(text) as { accounts: AccountStatus[] }).accounts[0];
            const m = await (await fetch(`${d.url}/metrics`)).text();
            sweep.check(m, '/metrics');
            metricsAfterDay1 = parseExposition(m);
          }
        }
        const elapsed = performance.now() - t;

        // Ground truth: the POSTs the simulator received, on the simulated clock.
        const posts = sim.requests().filter((r) => r.endpoint === 'topup').map((r) => r.at);
        const recs = ledgerRecords(join(dir, ledgerFileName('safety')));
        const attempts = recs.filter((r) => r.type === 'attempt').map((r) => r.at);
        const outcomes = recs.filter((r) => r.type === 'outcome');
        expect(sim.appliedTopUps()).toHaveLength(0);
        expect(attempts).toEqual(posts);
        expect(outcomes.map((o) => o.outcome)).toEqual(posts.map(() => 'failed'));
        expect(outcomes.every((o) => o.reason === v.reason)).toBe(true);

        const inDay1 = posts.filter((p) => p < t0 + DAY_MS);
        expect(inDay1).toHaveLength(MAX_PER_DAY);
        expect(maxInRollingDay(posts, checkpoints)).toBeLessThanOrEqual(MAX_PER_DAY);
        expect(maxInRollingDay(attempts, checkpoints)).toBeLessThanOrEqual(MAX_PER_DAY);
        for (let i = 1; i < posts.length; i++) expect(posts[i]! - posts[i - 1]!).toBeGreaterThanOrEqual(COOLDOWN_MS);
        // The rolling window reopens exactly 24 h after the first attempt, and closes again after three.
        const inDay2 = posts.filter((p) => p >= t0 + DAY_MS);
        expect(inDay2[0]).toBe(t0 + DAY_MS);
        expect(inDay2).toHaveLength(MAX_PER_DAY);
        expect(posts.map((p) => (p - t0) / MINUTE)).toEqual([0, 15, 30, 1440, 1455, 1470]);

        // Visible: metrics after day 1 and at the end, and /status.
        const m1 = metricsAfterDay1!;
        expect(m1.get(seriesKey('vonage_topup_failures_total', { ...A, reason: v.reason }))).toBe(MAX_PER_DAY);
        expect(m1.get(seriesKey('vonage_topup_attempts_last_24h', A))).toBe(MAX_PER_DAY);
        expect(m1.get(seriesKey('vonage_topups_total', A))).toBe(MAX_PER_DAY);
        // 1,440 cycles: 3 attempts, 14 cooldown skips after each (cooldown is checked before the cap), the rest capped.
        expect(m1.get(seriesKey('vonage_topups_skipped_total', { ...A, reason: 'cooldown' }))).toBe(42);
        expect(m1.get(seriesKey('vonage_topups_skipped_total', { ...A, reason: 'daily_cap' }))).toBe(1440 - 3 - 42);
        const s1 = statusAfterDay1!;
        expect(s1.lastTopUp).toMatchObject({ outcome: 'failed', reason: v.reason, confirmedByBalance: false });
        expect(s1.attemptsLast24h).toBe(MAX_PER_DAY);
        expect(s1.lastDecision).toMatchObject({ action: 'skip', reason: 'daily_cap' });

        const end = parseExposition(await d.metrics.registry.metrics());
        expect(end.get(seriesKey('vonage_topup_failures_total', { ...A, reason: v.reason }))).toBe(posts.length);
        const statusEnd = await (await fetch(`${d.url}/status`)).text();
        sweep.check(statusEnd, '/status');

        figure(`declining-card [${v.reason}] simulated minutes (cycles)`, cycles);
        figure(`declining-card [${v.reason}] top-up POSTs received by the simulator`, posts.length);
        figure(`declining-card [${v.reason}] POST times (min after start)`, posts.map((p) => (p - t0) / MINUTE));
        figure(`declining-card [${v.reason}] failures in first 4.5 h (akash: 486)`, failuresFirst4h30);
        figure(`declining-card [${v.reason}] failures in first 24 h`, inDay1.length);
        figure(`declining-card [${v.reason}] max attempts in any rolling 24 h`, maxInRollingDay(posts, checkpoints));
        figure(`declining-card [${v.reason}] daily_cap skips in day 1`, m1.get(seriesKey('vonage_topups_skipped_total', { ...A, reason: 'daily_cap' })));
        figure(`declining-card [${v.reason}] wall time ms per cycle`, (elapsed / cycles).toFixed(2));
      } finally {
        await d.stop();
        await sim.close();
        sweep.check(log.text(), 'log');
        sweep.check(filesText(dir), 'state dir');
      }
      expect(unhandled.events).toEqual([]);
    });
  }
});
