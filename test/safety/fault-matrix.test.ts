/**
 * C1 / C4: the upstream fault matrix, on both endpoints.
 *
 * Real parts throughout: the daemon is started in-process with startDaemon(loadConfig(env)) (the
 * same composition root as `npm start`), talks real HTTP over loopback to the built-in simulator,
 * and axios is never mocked. Cycles are driven with scheduler.tick() instead of waiting for cron.
 * The only injected edges are the clock (an offset on Date.now, so a 1 s cooldown can pass without
 * waiting) and the backoff sleep (recorded at the length the daemon asked for, then shortened;
 * the "virtual" cycle time adds the difference back before it is compared with cycleBoundMs).
 *
 * For each fault: no crash, no unhandled rejection, the cycle ends within the bound, exactly one
 * failure series moves (the right `reason`), and the next cycle after the fault clears succeeds.
 * Top-up faults also reconcile the simulator's applied top-ups (ground truth) with the ledger.
 * A few faults are repeated against the built daemon as a child process (dist/main.js).
 */
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/config.js';
import { buildParts, cycleBoundMs, settleLedgers, startDaemon } from '../../src/daemon.js';
import { ledgerFileName } from '../../src/ledger/file-ledger.js';
import { startSimulator, type SimFault, type Simulator } from '../../src/simulator/simulator.js';
import { createVonageClient, type VonageClient } from '../../src/vonage/account-client.js';
import { Watchdog, type AccountStatus } from '../../src/cycle/watchdog.js';
import { API_KEY, CANARY_SECRET, TRX } from '../helpers/account.js';
import { baseEnv, freePort, metricValue, startDaemon as startChild, stop as stopChild, tempDir, waitFor, type Child } from '../helpers/daemon.js';
import {
  CanarySweep,
  changed,
  daemonEnv,
  figure,
  filesText,
  freshStateDir,
  removeStateDirs,
  ledgerRecords,
  LogSink,
  offsetClock,
  parseExposition,
  recordingSleep,
  seriesKey,
  trapListener,
  trapUnhandled,
} from './helpers/matrix-util.js';

const HTTP_TIMEOUT_MS = 500;
const BOUND_MS = cycleBoundMs(HTTP_TIMEOUT_MS);
const ACCOUNT = 'safety';
const A = { account: ACCOUNT };
const POLL_FAIL = 'vonage_balance_poll_failures_total';
const TOPUP_FAIL = 'vonage_topup_failures_total';

const unhandled = trapUnhandled();
const sweep = new CanarySweep();
let trap: Awaited<ReturnType<typeof trapListener>>;
let casesRun = 0;
let worstVirtualMs = 0;
let worstWallMs = 0;
const started = performance.now();

beforeAll(async () => {
  trap = await trapListener();
});
afterAll(async () => {
  removeStateDirs();
  await trap.close();
  unhandled.uninstall();
  figure('fault-matrix cases', casesRun);
  figure('fault-matrix worst cycle wall ms', Math.round(worstWallMs));
  figure('fault-matrix worst cycle virtual ms (backoff at full length)', Math.round(worstVirtualMs));
  figure('fault-matrix cycle bound ms', BOUND_MS);
  figure('fault-matrix canary: items swept', sweep.items);
  figure('fault-matrix canary: bytes swept', sweep.bytes);
  figure('fault-matrix canary: items with an occurrence', sweep.occurrences);
  figure('fault-matrix [REDACTED] markers in swept output (secret reached the scrubber)', sweep.redactions);
  figure('fault-matrix unhandled rejections/exceptions', unhandled.events.length);
  figure('fault-matrix runtime s', ((performance.now() - started) / 1000).toFixed(1));
});

const simOptions = { apiKey: API_KEY, apiSecret: CANARY_SECRET, trx: TRX, topUpAmount: 20 };

/** What a test needs from a running daemon, whether started by startDaemon or assembled by hand. */
interface Harness {
  tick(): Promise<void>;
  scrape(): Promise<Map<string, number>>;
  ready(): Promise<boolean>;
  status(): Promise<AccountStatus>;
  stop(): Promise<void>;
  ledgerFile: string;
}

async function inProcessDaemon(sim: Simulator, dir: string, log: LogSink, clock: ReturnType<typeof offsetClock>, rs: ReturnType<typeof recordingSleep>): Promise<Harness> {
  const d = await startDaemon(loadConfig(daemonEnv(sim.url, dir)), { logDestination: log, now: clock.now, sleep: rs.sleep, pollAtStart: false });
  return {
    tick: async () => {
      expect(await d.scheduler.tick()).toBe('ran');
    },
    scrape: async () => {
      const text = await (await fetch(`${d.url}/metrics`)).text();
      sweep.check(text, '/metrics');
      return parseExposition(text);
    },
    ready: async () => (await fetch(`${d.url}/readyz`)).status === 200,
    status: async () => {
      const text = await (await fetch(`${d.url}/status`)).text();
      sweep.check(text, '/status');
      return (JSON.parse(text) as { accounts: AccountStatus[] }).accounts[0]!;
    },
    stop: () => d.stop(),
    ledgerFile: join(dir, ledgerFileName(ACCOUNT)),
  };
}

/**
 * For "top-up refused" the balance must be readable while the top-up's connection is refused.
 * Both calls go through the real client over real sockets; the only composition is which base
 * URL each call uses (the simulator, or a loopback port where nothing listens).
 */
async function splitDaemon(sim: Simulator, dir: string, log: LogSink, clock: ReturnType<typeof offsetClock>, rs: ReturnType<typeof recordingSleep>) {
  const config = loadConfig(daemonEnv(sim.url, dir));
  const parts = buildParts(config, { logDestination: log, now: clock.now, sleep: rs.sleep });
  // As the daemon does before its first cycle: let the STATE_DIR lock settle (a fresh one waits out its probation).
  await settleLedgers(parts);
  const account = config.accounts[0]!;
  const live = createVonageClient({ account, timeoutMs: config.httpTimeoutMs, now: clock.now, monoNow: clock.now });
  const dead = createVonageClient({ account: { ...account, baseUrl: `http://127.0.0.1:${await freePort()}` }, timeoutMs: config.httpTimeoutMs, now: clock.now, monoNow: clock.now });
  const state = { refuse: true };
  const client: VonageClient = {
    getBalance: (signal) => live.getBalance(signal),
    topUp: (trx, signal) => (state.refuse ? dead : live).topUp(trx, signal),
  };
  const w = new Watchdog({ account, client, ledger: parts.ledgers[0]!, metrics: parts.metrics, log: parts.log, now: clock.now, monoNow: clock.now, sleep: rs.sleep, httpTimeoutMs: config.httpTimeoutMs, balanceAttempts: 3 });
  const h: Harness = {
    tick: async () => {
      await w.runCycle();
    },
    scrape: async () => {
      const text = await parts.metrics.registry.metrics();
      sweep.check(text, 'metrics');
      return parseExposition(text);
    },
    ready: async () => w.lastPollOk,
    status: async () => {
      const s = w.status();
      sweep.check(JSON.stringify(s), 'status');
      return s;
    },
    stop: async () => {
      parts.closeLedgers();
    },
    ledgerFile: join(dir, ledgerFileName(ACCOUNT)),
  };
  return { h, state };
}

/** Runs one tick and returns its wall time and its time had the backoff sleeps been real. */
async function timedTick(h: Harness, rs: ReturnType<typeof recordingSleep>): Promise<{ wall: number; virtual: number }> {
  rs.reset();
  const t0 = performance.now();
  await h.tick();
  const wall = performance.now() - t0;
  const virtual = wall - rs.actualMs() + rs.requested.reduce((a, b) => a + b, 0);
  worstWallMs = Math.max(worstWallMs, wall);
  worstVirtualMs = Math.max(worstVirtualMs, virtual);
  expect(wall).toBeLessThan(BOUND_MS);
  expect(virtual).toBeLessThan(BOUND_MS);
  return { wall, virtual };
}

const count = (sim: Simulator, from: number, endpoint: 'balance' | 'topup') => sim.requests().slice(from).filter((r) => r.endpoint === endpoint).length;

// ---------------------------------------------------------------------------------------------
// get-balance

interface BalanceCase {
  name: string;
  fault?: () => SimFault;
  refused?: true;
  /** null: the poll succeeds despite the fault. */
  reason: string | null;
  requests: number;
  sleeps?: (requested: number[]) => void;
}

const BALANCE_CASES: BalanceCase[] = [
  { name: 'latency below HTTP_TIMEOUT (slow 100 ms)', fault: () => ({ kind: 'slow', delayMs: 100 }), reason: null, requests: 1 },
  { name: 'latency above HTTP_TIMEOUT (slow 1500 ms)', fault: () => ({ kind: 'slow', delayMs: 1500 }), reason: 'timeout', requests: 3 },
  { name: 'hang', fault: () => ({ kind: 'hang' }), reason: 'timeout', requests: 3 },
  { name: 'connection reset', fault: () => ({ kind: 'reset' }), reason: 'network', requests: 3 },
  { name: 'slow-drip body (1 byte / 100 ms)', fault: () => ({ kind: 'slow_drip', delayMs: 100 }), reason: 'timeout', requests: 3 },
  { name: 'HTTP 500', fault: () => ({ kind: 'server_error', status: 500 }), reason: 'server_error', requests: 3 },
  { name: 'HTTP 502', fault: () => ({ kind: 'server_error', status: 502 }), reason: 'server_error', requests: 3 },
  { name: 'HTTP 503', fault: () => ({ kind: 'server_error', status: 503 }), reason: 'server_error', requests: 3 },
  {
    name: 'HTTP 429 without Retry-After',
    fault: () => ({ kind: 'rate_limit' }),
    reason: 'rate_limited',
    requests: 3,
    sleeps: (s) => {
      expect(s).toHaveLength(2);
      expect(s[0]).toBeGreaterThanOrEqual(500);
      expect(s[0]).toBeLessThanOrEqual(1000);
      expect(s[1]).toBeGreaterThanOrEqual(1000);
      expect(s[1]).toBeLessThanOrEqual(2000);
    },
  },
  { name: 'HTTP 429 with Retry-After: 2 (honoured)', fault: () => ({ kind: 'rate_limit', retryAfterSeconds: 2 }), reason: 'rate_limited', requests: 3, sleeps: (s) => expect(s).toEqual([2000, 2000]) },
  { name: 'HTTP 429 with Retry-After: 3600 (next cycle is the retry)', fault: () => ({ kind: 'rate_limit', retryAfterSeconds: 3600 }), reason: 'rate_limited', requests: 1, sleeps: (s) => expect(s).toEqual([]) },
  { name: 'HTTP 401', fault: () => ({ kind: 'auth_failure' }), reason: 'auth_failed', requests: 1 },
  { name: 'HTML body', fault: () => ({ kind: 'html' }), reason: 'bad_response', requests: 1 },
  { name: '10 MB body', fault: () => ({ kind: 'huge' }), reason: 'bad_response', requests: 1 },
  { name: 'truncated JSON', fault: () => ({ kind: 'truncated' }), reason: 'bad_response', requests: 1 },
  { name: 'garbage bytes', fault: () => ({ kind: 'garbage' }), reason: 'bad_response', requests: 1 },
  {
    name: 'redirect to another loopback port',
    fault: () => ({ kind: 'redirect', location: `http://127.0.0.1:${trap.port}/account/get-balance` }),
    reason: 'redirect',
    requests: 1,
  },
  { name: 'connection refused (simulator stopped, restarted on the same port)', refused: true, reason: 'connection_refused', requests: 0 },
];

describe('fault matrix: get-balance', () => {
  for (const c of BALANCE_CASES) {
    it(c.name, async () => {
      casesRun += 1;
      let sim = await startSimulator({ ...simOptions, balance: 25 });
      const dir = freshStateDir('matrix-', ACCOUNT);
      const log = new LogSink();
      const clock = offsetClock();
      const rs = recordingSleep();
      const h = await inProcessDaemon(sim, dir, log, clock, rs);
      const trapBefore = trap.connections();
      try {
        await h.tick();
        expect(await h.ready()).toBe(true);
        const before = await h.scrape();

        if (c.refused) await sim.close();
        else sim.setFault(c.fault!());
        const from = sim.requests().length;
        await timedTick(h, rs);

        const after = await h.scrape();
        expect(changed(before, after, POLL_FAIL)).toEqual(c.reason ? { [seriesKey(POLL_FAIL, { ...A, reason: c.reason })]: 1 } : {});
        expect(changed(before, after, TOPUP_FAIL)).toEqual({});
        expect(after.get(seriesKey('vonage_balance_poll_success', A))).toBe(c.reason ? 0 : 1);
        expect(await h.ready()).toBe(c.reason === null);
        if (!c.refused) {
          expect(count(sim, from, 'balance')).toBe(c.requests);
          expect(count(sim, from, 'topup')).toBe(0);
        }
        c.sleeps?.(rs.requested);
        const status = await h.status();
        if (c.reason) expect(status.lastPoll).toMatchObject({ ok: false, reason: c.reason });
        expect(status.balance).toBe(25);

        // The fault clears: the very next cycle succeeds.
        if (c.refused) sim = await startSimulator({ ...simOptions, balance: 25, port: sim.port });
        else sim.clearFaults();
        await h.tick();
        const recovered = await h.scrape();
        expect(recovered.get(seriesKey('vonage_balance_poll_success', A))).toBe(1);
        expect(await h.ready()).toBe(true);
        expect(sim.appliedTopUps()).toHaveLength(0);
        expect(trap.connections() - trapBefore).toBe(0);
      } finally {
        await h.stop();
        await sim.close();
        sweep.check(log.text(), 'log');
        sweep.check(filesText(dir), 'state dir');
      }
      expect(unhandled.events).toEqual([]);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// top-up

type Outcome = 'success' | 'failed' | 'unknown' | 'not_sent';
interface TopUpCase {
  name: string;
  fault?: () => SimFault;
  refused?: true;
  reason: string | null;
  outcome: Outcome;
  /** Top-ups the simulator applied because of the first (faulty) request. */
  applied: 0 | 1;
}

const topup = (f: SimFault): SimFault => ({ ...f, endpoint: 'topup' });
const TOPUP_CASES: TopUpCase[] = [
  { name: 'latency below HTTP_TIMEOUT (slow 100 ms)', fault: () => topup({ kind: 'slow', delayMs: 100 }), reason: null, outcome: 'success', applied: 1 },
  { name: 'latency above HTTP_TIMEOUT (slow 1500 ms; applied after we gave up)', fault: () => topup({ kind: 'slow', delayMs: 1500 }), reason: 'timeout', outcome: 'unknown', applied: 1 },
  { name: 'hang', fault: () => topup({ kind: 'hang' }), reason: 'timeout', outcome: 'unknown', applied: 0 },
  { name: 'connection reset', fault: () => topup({ kind: 'reset' }), reason: 'network', outcome: 'unknown', applied: 0 },
  { name: 'slow-drip body (applied, answer dripped)', fault: () => topup({ kind: 'slow_drip', delayMs: 100 }), reason: 'timeout', outcome: 'unknown', applied: 1 },
  { name: 'HTTP 500', fault: () => topup({ kind: 'server_error', status: 500 }), reason: 'server_error', outcome: 'unknown', applied: 0 },
  { name: 'HTTP 502', fault: () => topup({ kind: 'server_error', status: 502 }), reason: 'server_error', outcome: 'unknown', applied: 0 },
  { name: 'HTTP 503', fault: () => topup({ kind: 'server_error', status: 503 }), reason: 'server_error', outcome: 'unknown', applied: 0 },
  { name: 'HTTP 429 without Retry-After', fault: () => topup({ kind: 'rate_limit' }), reason: 'rate_limited', outcome: 'failed', applied: 0 },
  { name: 'HTTP 429 with Retry-After: 2', fault: () => topup({ kind: 'rate_limit', retryAfterSeconds: 2 }), reason: 'rate_limited', outcome: 'failed', applied: 0 },
  { name: 'HTTP 401', fault: () => topup({ kind: 'auth_failure' }), reason: 'auth_failed', outcome: 'failed', applied: 0 },
  { name: 'HTML body', fault: () => topup({ kind: 'html' }), reason: 'bad_response', outcome: 'unknown', applied: 0 },
  { name: '10 MB body', fault: () => topup({ kind: 'huge' }), reason: 'bad_response', outcome: 'unknown', applied: 0 },
  { name: 'truncated JSON', fault: () => topup({ kind: 'truncated' }), reason: 'bad_response', outcome: 'unknown', applied: 0 },
  { name: 'garbage bytes', fault: () => topup({ kind: 'garbage' }), reason: 'bad_response', outcome: 'unknown', applied: 0 },
  {
    name: 'redirect to another loopback port',
    fault: () => topup({ kind: 'redirect', location: `http://127.0.0.1:${trap.port}/account/top-up` }),
    reason: 'redirect',
    outcome: 'failed',
    applied: 0,
  },
  { name: '420 topup failed (declining card)', fault: () => ({ kind: 'topup_failed' }), reason: 'topup_failed', outcome: 'failed', applied: 0 },
  { name: '401 not auto-reload enabled', fault: () => topup({ kind: 'auto_reload_off' }), reason: 'auto_reload_disabled', outcome: 'failed', applied: 0 },
  { name: '400 bad request', fault: () => ({ kind: 'bad_request' }), reason: 'bad_request', outcome: 'failed', applied: 0 },
  { name: 'applied, then the answer is lost (reset)', fault: () => ({ kind: 'lost_answer', lostMode: 'reset' }), reason: 'network', outcome: 'unknown', applied: 1 },
  { name: 'applied, then the answer is truncated', fault: () => ({ kind: 'lost_answer', lostMode: 'truncated' }), reason: 'bad_response', outcome: 'unknown', applied: 1 },
  { name: 'connection refused (nothing listening)', refused: true, reason: 'connection_refused', outcome: 'not_sent', applied: 0 },
];

describe('fault matrix: top-up (TOPUP_COOLDOWN=1s, fresh STATE_DIR each)', () => {
  for (const c of TOPUP_CASES) {
    it(c.name, async () => {
      casesRun += 1;
      const sim = await startSimulator({ ...simOptions, balance: 5 });
      const dir = freshStateDir('matrix-', ACCOUNT);
      const log = new LogSink();
      const clock = offsetClock();
      const rs = recordingSleep();
      let split: Awaited<ReturnType<typeof splitDaemon>> | undefined;
      let h: Harness;
      if (c.refused) {
        split = await splitDaemon(sim, dir, log, clock, rs);
        h = split.h;
      } else {
        h = await inProcessDaemon(sim, dir, log, clock, rs);
        sim.setFault(c.fault!());
      }
      const trapBefore = trap.connections();
      const counted = c.outcome !== 'not_sent';
      try {
        const before = await h.scrape();
        await timedTick(h, rs);
        const after = await h.scrape();

        // Exactly the right failure series moved; the poll itself was fine.
        expect(changed(before, after, TOPUP_FAIL)).toEqual(c.reason ? { [seriesKey(TOPUP_FAIL, { ...A, reason: c.reason })]: 1 } : {});
        expect(changed(before, after, POLL_FAIL)).toEqual({});
        expect(after.get(seriesKey('vonage_balance_poll_success', A))).toBe(1);
        expect(changed(before, after, 'vonage_topups_total')).toEqual(counted ? { [seriesKey('vonage_topups_total', A)]: 1 } : {});
        expect(after.get(seriesKey('vonage_topup_attempts_last_24h', A))).toBe(counted ? 1 : 0);
        expect(count(sim, 0, 'topup')).toBe(c.refused ? 0 : 1);
        // Written before the request, outcome after: one attempt, with the expected outcome.
        const recs = ledgerRecords(h.ledgerFile);
        expect(recs.map((r) => r.type)).toEqual(['attempt', 'outcome']);
        expect(recs[1]).toMatchObject({ outcome: c.outcome, ...(c.reason ? { reason: c.reason } : {}) });
        const s1 = await h.status();
        expect(s1.lastTopUp).toMatchObject({ outcome: c.outcome });
        expect(s1.attemptsLast24h).toBe(counted ? 1 : 0);

        // Let the simulator finish whatever it was doing with the request (a slow top-up lands late).
        await waitFor(() => sim.appliedTopUps().length === c.applied, 4000);
        await delay(50);
        expect(sim.appliedTopUps()).toHaveLength(c.applied);

        // The fault clears; 100 ms later, well inside the 1 s cooldown.
        sim.clearFaults();
        if (split) split.state.refuse = false;
        clock.advance(100);
        const b2 = await h.scrape();
        await timedTick(h, rs);
        const a2 = await h.scrape();
        const s2 = await h.status();
        if (c.applied === 1) {
          // The money arrived: the balance is above the threshold, and an unknown attempt is confirmed by it.
          expect(count(sim, 0, 'topup')).toBe(1);
          expect(s2.lastDecision).toMatchObject({ action: 'none', reason: 'above_threshold' });
          if (c.outcome === 'unknown') {
            expect(s2.lastTopUp).toMatchObject({ outcome: 'unknown', confirmedByBalance: true });
            expect(ledgerRecords(h.ledgerFile).map((r) => r.type)).toEqual(['attempt', 'outcome', 'confirmed']);
          }
        } else if (counted) {
          // Sent (or maybe sent) and not applied: still counted, so the cooldown holds; nothing re-sent.
          expect(count(sim, 0, 'topup')).toBe(1);
          expect(changed(b2, a2, 'vonage_topups_skipped_total')).toEqual({ [seriesKey('vonage_topups_skipped_total', { ...A, reason: 'cooldown' })]: 1 });
          expect(s2.cooldownUntil).not.toBeNull();
        } else {
          // Provably never sent: not counted, so the next cycle tops up at once.
          expect(count(sim, 0, 'topup')).toBe(1);
          expect(sim.appliedTopUps()).toHaveLength(1);
          expect(s2.lastTopUp).toMatchObject({ outcome: 'success' });
        }

        // After the cooldown, a low balance is topped up normally: recovery.
        clock.advance(1100);
        sim.setBalance(5);
        await timedTick(h, rs);
        const a3 = await h.scrape();
        const s3 = await h.status();
        expect(s3.lastTopUp).toMatchObject({ outcome: 'success' });
        expect(a3.get(seriesKey('vonage_balance_poll_success', A))).toBe(1);
        expect(await h.ready()).toBe(true);

        // Ground truth vs ledger.
        const applied = sim.appliedTopUps().length;
        expect(applied).toBe(c.applied + (c.refused ? 1 : 0) + 1);
        expect(count(sim, 0, 'topup')).toBe(2);
        const final = ledgerRecords(h.ledgerFile);
        const outcomes = new Map(final.filter((r) => r.type === 'outcome').map((r) => [r.id, r.outcome]));
        const attempts = final.filter((r) => r.type === 'attempt');
        const countedAttempts = attempts.filter((r) => outcomes.get(r.id) !== 'not_sent');
        expect(applied).toBeLessThanOrEqual(countedAttempts.length);
        expect(attempts.filter((r) => outcomes.get(r.id) === 'success').length).toBe(applied - (c.outcome === 'unknown' ? c.applied : 0));
        expect(trap.connections() - trapBefore).toBe(0);
      } finally {
        await h.stop();
        await sim.close();
        sweep.check(log.text(), 'log');
        sweep.check(filesText(dir), 'state dir');
      }
      expect(unhandled.events).toEqual([]);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// The same faults against the built daemon, as users run it (child process, 1 s cron).

describe('fault matrix: built daemon as a child process (dist/main.js, 1 s cron)', () => {
  const children: Child[] = [];
  const sims: Simulator[] = [];
  afterAll(async () => {
    for (const c of children) await stopChild(c);
    for (const s of sims) await s.close();
  });
  const L = (reason: string) => `{account="e2e",reason="${reason}"}`;
  const alive = (c: Child) => c.proc.exitCode === null && c.proc.signalCode === null;
  const finish = async (c: Child, dir: string) => {
    expect(alive(c)).toBe(true);
    sweep.check(await (await fetch(`${c.url}/metrics`)).text(), 'child /metrics');
    sweep.check(await (await fetch(`${c.url}/status`)).text(), 'child /status');
    await stopChild(c);
    expect(c.proc.exitCode).toBe(0);
    expect(c.output()).not.toMatch(/unhandled rejection|"level":60/);
    sweep.check(c.output(), 'child output');
    sweep.check(filesText(dir), 'child state dir');
  };

  it('balance hang: timeouts, still alive, ready again when the fault clears', async () => {
    casesRun += 1;
    const sim = await startSimulator({ ...simOptions, balance: 25 });
    sims.push(sim);
    const dir = tempDir('matrix-child-');
    const c = await startChild(baseEnv(sim.url, { STATE_DIR: dir, HTTP_TIMEOUT: '300ms' }));
    children.push(c);
    await waitFor(async () => (await fetch(`${c.url}/readyz`)).status === 200, 10_000, c.output);
    sim.setFault({ kind: 'hang', endpoint: 'balance' });
    await waitFor(async () => ((await metricValue(c.url, `${POLL_FAIL}${L('timeout')}`)) ?? 0) >= 1, 15_000, c.output);
    expect((await fetch(`${c.url}/readyz`)).status).toBe(503);
    expect((await fetch(`${c.url}/healthz`)).status).toBe(200);
    sim.clearFaults();
    await waitFor(async () => (await fetch(`${c.url}/readyz`)).status === 200, 15_000, c.output);
    await finish(c, dir);
  });

  it('top-up 10 MB body: bad_response, counted, not re-sent; tops up after the cooldown once cleared', async () => {
    casesRun += 1;
    const sim = await startSimulator({ ...simOptions, balance: 5 });
    sims.push(sim);
    const dir = tempDir('matrix-child-');
    sim.setFault({ kind: 'huge', endpoint: 'topup' });
    const c = await startChild(baseEnv(sim.url, { STATE_DIR: dir, TOPUP_COOLDOWN: '3s' }));
    children.push(c);
    await waitFor(async () => ((await metricValue(c.url, `${TOPUP_FAIL}${L('bad_response')}`)) ?? 0) >= 1, 10_000, c.output);
    await waitFor(async () => ((await metricValue(c.url, `vonage_topups_skipped_total${L('cooldown')}`)) ?? 0) >= 1, 10_000, c.output);
    expect(sim.requests().filter((r) => r.endpoint === 'topup')).toHaveLength(1);
    sim.clearFaults();
    await waitFor(() => sim.appliedTopUps().length === 1, 10_000, c.output);
    expect(sim.requests().filter((r) => r.endpoint === 'topup')).toHaveLength(2);
    await finish(c, dir);
  });

  it('redirects on both endpoints: nothing reaches the other port', async () => {
    casesRun += 1;
    const sim = await startSimulator({ ...simOptions, balance: 5 });
    sims.push(sim);
    const dir = tempDir('matrix-child-');
    const before = trap.connections();
    sim.setFault({ kind: 'redirect', endpoint: 'balance', location: `http://127.0.0.1:${trap.port}/account/get-balance` });
    const c = await startChild(baseEnv(sim.url, { STATE_DIR: dir }));
    children.push(c);
    await waitFor(async () => ((await metricValue(c.url, `${POLL_FAIL}${L('redirect')}`)) ?? 0) >= 2, 10_000, c.output);
    sim.clearFaults();
    sim.setFault({ kind: 'redirect', endpoint: 'topup', location: `http://127.0.0.1:${trap.port}/account/top-up` });
    await waitFor(async () => ((await metricValue(c.url, `${TOPUP_FAIL}${L('redirect')}`)) ?? 0) >= 1, 10_000, c.output);
    await delay(1500);
    expect(trap.connections() - before).toBe(0);
    expect(sim.appliedTopUps()).toHaveLength(0);
    expect(sim.requests().filter((r) => r.endpoint === 'topup')).toHaveLength(1);
    await finish(c, dir);
  });
});
