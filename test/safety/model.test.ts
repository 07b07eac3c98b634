/**
 * A8: model-based property test of the money path: policy + ledger + watchdog, against an
 * independent reference model (helpers/matrix-model.ts).
 *
 * What is real and what is scripted, in the 10,000-run property:
 *   REAL      src/refill/topup-policy.ts (decide), src/ledger/file-ledger.ts (append-only JSONL with fsync, lock file,
 *             reopen, torn/corrupt handling) on a fresh tmpfs directory per run, src/cycle/watchdog.ts
 *             (poll with retries, reconcile, decide, record-then-send, outcome), src/cycle/scheduler.ts
 *             (its overlap guard), src/observe/metrics.ts, src/observe/log.ts (pino with the secret scrubber).
 *   SCRIPTED  the VonageClient (our own interface, injected through WatchdogDeps.client): a tiny
 *             in-test implementation that returns the readings / errors each step scripts. It is a
 *             test double of our interface, not a mock of axios. The clock and the backoff sleep are
 *             injected too (a wall clock = true time + skew, so jumps can go either way).
 * A smaller variant (300 runs) replaces the scripted client with the real one over loopback HTTP
 * to the simulator, with its faults switched per step.
 *
 * Steps: cycles (readings below/above threshold, auto-reload on/off, fresh/stale/future readings,
 * poll failures with and without Retry-After; top-up success/failed/unknown/refused/throws), time
 * passing, wall-clock jumps (backwards and forwards), restarts (close + reopen from the same
 * STATE_DIR), crashes (no close, with a top-up in flight whose outcome is never written), a corrupt
 * ledger record and its repair, overlapping scheduler ticks, and two concurrent runCycle() calls on
 * one Watchdog (no scheduler guard).
 */
import { appendFileSync, closeSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { afterAll, describe, expect, it } from 'vitest';
import type { AccountConfig } from '../../src/config/config.js';
import { VonageError, type FailureReason } from '../../src/vonage/errors.js';
import { Ledger, ledgerFileName } from '../../src/ledger/file-ledger.js';
import { createLogger } from '../../src/observe/log.js';
import { createMetrics } from '../../src/observe/metrics.js';
import { createScheduler } from '../../src/cycle/scheduler.js';
import { startSimulator, type SimFault, type Simulator } from '../../src/simulator/simulator.js';
import { createVonageClient, type BalanceReading, type TopUpReceipt, type VonageClient } from '../../src/vonage/account-client.js';
import { Watchdog } from '../../src/cycle/watchdog.js';
import { API_KEY, CANARY_SECRET, TRX, account as testAccount, expectNoSecret } from '../helpers/account.js';
import { FAST_DIR, figure, LogSink, trapListener, trapUnhandled } from './helpers/matrix-util.js';
import { DAY, Model, THRESHOLD, violation, type BalanceResult, type Call, type Settings, type TopUpKind } from './helpers/matrix-model.js';

const SEED = Number(process.env.MODEL_SEED ?? 20_261_127);
const RUNS = Number(process.env.MODEL_RUNS ?? 10_000);
const HTTP_RUNS = Number(process.env.MODEL_HTTP_RUNS ?? 300);
const ACCOUNT = 'model';
const SCRIPTED_TIMEOUT_MS = 5_000;
const HTTP_TIMEOUT_MS = 1_000;
const T0 = Date.UTC(2030, 0, 1);

const unhandled = trapUnhandled();
const sink = new LogSink(false);
const log = createLogger({ level: 'info', format: 'json', secrets: [CANARY_SECRET, TRX], apiKeys: [API_KEY] }, sink);
// One registry for the whole file: a registry per run would register 10,000 sets of default collectors.
const metrics = createMetrics(new Registry(), [{ name: ACCOUNT, threshold: THRESHOLD, maxPerDay: 3, topupEnabled: true, dryRun: false }], 'test');
const stats = { runs: 0, steps: 0, cycles: 0, topUps: 0, crashesInFlight: 0, restarts: 0, concurrentPairs: 0, concurrentTopUps: 0, concurrentDoubleCounted: 0, overlapSkipped: 0, backJumps: 0, fwdJumps: 0, corruptOpens: 0, statusChecks: 0 };
const httpStats = { runs: 0, steps: 0, topUpPosts: 0, applied: 0, concurrentPairs: 0 };
const started = performance.now();

afterAll(() => {
  unhandled.uninstall();
  figure('model seed', SEED);
  figure('model runs (scripted client)', stats.runs);
  figure('model steps (scripted client)', stats.steps);
  figure('model cycles / top-ups sent', `${stats.cycles} / ${stats.topUps}`);
  figure('model crashes with a top-up in flight', stats.crashesInFlight);
  figure('model restarts (clean)', stats.restarts);
  figure('model concurrent runCycle pairs / top-ups from them / pairs with two counted top-ups', `${stats.concurrentPairs} / ${stats.concurrentTopUps} / ${stats.concurrentDoubleCounted}`);
  figure('model overlapping scheduler ticks skipped by the guard', stats.overlapSkipped);
  figure('model clock jumps back / forward', `${stats.backJumps} / ${stats.fwdJumps}`);
  figure('model opens of a corrupt ledger', stats.corruptOpens);
  figure('model runs (HTTP to simulator)', httpStats.runs);
  figure('model HTTP steps / top-up POSTs / applied', `${httpStats.steps} / ${httpStats.topUpPosts} / ${httpStats.applied}`);
  figure('model HTTP concurrent runCycle pairs', httpStats.concurrentPairs);
  figure('model log lines / bytes scanned for the canary', `${sink.lines} / ${sink.bytes}`);
  figure('model canary occurrences in logs', sink.leaks);
  figure('model log lines with [REDACTED] (secret reached the scrubber)', sink.redactions);
  figure('model unhandled rejections/exceptions', unhandled.events.length);
  figure('model runtime s', ((performance.now() - started) / 1000).toFixed(1));
});

// ---------------------------------------------------------------------------------------------
// Generators

const okReading = fc.record({
  kind: fc.constant('ok' as const),
  value: fc.constantFrom(0, 3, 9.99, 9.99, 10, 25),
  autoReload: fc.constantFrom(true, true, true, true, false),
  ageMs: fc.constantFrom(0, 0, 0, 0, 0, 250, SCRIPTED_TIMEOUT_MS, SCRIPTED_TIMEOUT_MS + 1, 600_000, -1, -3_600_000),
});
const failReading = fc.record({
  kind: fc.constant('fail' as const),
  reason: fc.constantFrom<FailureReason>('timeout', 'server_error', 'connection_refused', 'network', 'rate_limited', 'auth_failed', 'bad_response', 'http_error', 'redirect'),
  retryAfter: fc.constantFrom<number | null>(null, null, 1, 3600),
});
const script = fc.array(fc.oneof({ weight: 4, arbitrary: okReading }, { weight: 1, arbitrary: failReading }), { minLength: 1, maxLength: 3 });
const topUpKind = fc.constantFrom<TopUpKind>('success', 'success', 'success', 'failed', 'unknown', 'refused', 'throws');
const hops = fc.integer({ min: 0, max: 3 });
const SEC = 1000;
const MIN = 60 * SEC;
const HOUR = 60 * MIN;
const duration = fc.oneof(
  fc.integer({ min: 1, max: 120 }).map((s) => s * SEC),
  fc.integer({ min: 1, max: 240 }).map((m) => m * MIN),
  fc.integer({ min: 1, max: 50 }).map((h) => h * HOUR),
);

type Step =
  | { t: 'cycle'; script: BalanceResult[]; topUp: TopUpKind; hops: number }
  | { t: 'advance'; ms: number }
  | { t: 'jump'; ms: number }
  | { t: 'restart' }
  | { t: 'crash'; script: BalanceResult[] }
  | { t: 'overlapTick'; script: BalanceResult[]; topUp: TopUpKind }
  | { t: 'concurrent'; script: BalanceResult[]; topUp: TopUpKind; hops: number[]; secondReadDelayMs: number }
  | { t: 'corrupt' }
  | { t: 'repair' };

const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 24, arbitrary: fc.record({ t: fc.constant('cycle' as const), script, topUp: topUpKind, hops }) },
  { weight: 16, arbitrary: fc.record({ t: fc.constant('advance' as const), ms: duration }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('jump' as const), ms: duration.map((d) => -d) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('jump' as const), ms: duration }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('restart' as const) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('crash' as const), script }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('overlapTick' as const), script, topUp: topUpKind }) },
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant('concurrent' as const),
      script,
      topUp: topUpKind,
      hops: fc.array(hops, { minLength: 1, maxLength: 4 }),
      secondReadDelayMs: fc.constantFrom(0, 0, 0, 500, 30 * SEC, 20 * MIN, 2 * HOUR),
    }),
  },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('corrupt' as const) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('repair' as const) }) },
);
const settings: fc.Arbitrary<Settings> = fc.record({
  cooldownMs: fc.constantFrom(1 * SEC, 1 * MIN, 15 * MIN, 1 * HOUR),
  maxPerDay: fc.constantFrom(1, 2, 3, 5),
  topupEnabled: fc.constantFrom(true, true, true, true, true, false),
  dryRun: fc.constantFrom(false, false, false, false, false, true),
});
const runInput = fc.record({ settings, steps: fc.array(step, { minLength: 1, maxLength: 30 }) });

// ---------------------------------------------------------------------------------------------
// The run harness: the real ledger and watchdog, a clock, and a client (scripted or HTTP)

class Clock {
  trueNow = T0;
  skew = 0;
  forwardJumped = false;
  wall = (): number => this.trueNow + this.skew;
}

const hop = () => new Promise<void>((r) => setImmediate(r));
async function hopN(n: number): Promise<void> {
  for (let i = 0; i < n; i++) await hop();
}

/** The scripted VonageClient: answers as the current step says, and logs every top-up that leaves. */
class ScriptedClient implements VonageClient {
  script: BalanceResult[] = [];
  topUpKind: TopUpKind | 'hang' = 'success';
  hops: number[] = [0];
  /** For concurrent steps: the second balance read of the step waits this long (true time). */
  secondReadDelayMs = 0;
  private balanceCalls = 0;
  private hopCalls = 0;
  readonly calls: Call[] = [];
  hung: (() => void) | undefined;

  constructor(private readonly clock: Clock) {}

  setStep(s: BalanceResult[], kind: TopUpKind | 'hang', h: number[] = [0], secondReadDelayMs = 0): void {
    this.script = s;
    this.topUpKind = kind;
    this.hops = h;
    this.secondReadDelayMs = secondReadDelayMs;
    this.balanceCalls = 0;
    this.hopCalls = 0;
  }

  private nextHops(): number {
    return this.hops[this.hopCalls++ % this.hops.length]!;
  }

  async getBalance(): Promise<BalanceReading> {
    const i = this.balanceCalls++;
    await hopN(this.nextHops());
    if (i === 1 && this.secondReadDelayMs > 0) this.clock.trueNow += this.secondReadDelayMs;
    const r = this.script[Math.min(i, this.script.length - 1)]!;
    if (r.kind === 'fail') throw new VonageError('get_balance', r.reason, 'scripted failure', 'yes', undefined, r.retryAfter ?? undefined);
    // The monotonic clock follows true time: wall-clock jumps never move it.
    return { value: r.value, autoReload: r.autoReload, at: this.clock.wall() - r.ageMs, mono: this.clock.trueNow - r.ageMs, requestId: `r${i}` };
  }

  async topUp(trx: string): Promise<TopUpReceipt> {
    expect(trx).toBe(TRX);
    const kind = this.topUpKind;
    this.calls.push({ wallAt: this.clock.wall(), trueAt: this.clock.trueNow, kind });
    if (kind === 'hang') {
      this.hung?.();
      return new Promise<TopUpReceipt>(() => {});
    }
    await hopN(this.nextHops());
    switch (kind) {
      case 'success':
        return { requestId: 'ok' };
      case 'failed':
        throw new VonageError('top_up', 'topup_failed', 'scripted decline', 'yes', 401);
      case 'unknown':
        throw new VonageError('top_up', 'timeout', 'scripted timeout', 'unknown');
      case 'refused':
        throw new VonageError('top_up', 'connection_refused', 'scripted refusal', 'no');
      case 'throws':
        throw new Error('not a VonageError');
    }
  }
}

const accountFor = (s: Settings, baseUrl: string): AccountConfig => testAccount(baseUrl, { name: ACCOUNT, threshold: THRESHOLD, ...s });

/** A crash: the process dies; the kernel closes its descriptors; nothing else runs (no close(), no lock release). */
function dropLikeACrash(ledger: Ledger): void {
  ledger.abandon();
}

/** The ledger file read tolerantly (skipping a corrupt record), for the cross-check with what was sent. */
function ledgerOnDisk(dir: string): { attempts: { id: string; at: number }[]; outcomes: Map<string, string> } {
  const attempts: { id: string; at: number }[] = [];
  const outcomes = new Map<string, string>();
  let text = '';
  try {
    text = readFileSync(join(dir, ledgerFileName(ACCOUNT)), 'utf8');
  } catch {
    return { attempts, outcomes };
  }
  for (const line of text.split('\n')) {
    let e: { type?: string; id?: string; at?: number; outcome?: string };
    try {
      e = JSON.parse(line) as typeof e;
    } catch {
      continue;
    }
    if (e.type === 'attempt') attempts.push({ id: e.id!, at: e.at! });
    if (e.type === 'outcome') outcomes.set(e.id!, e.outcome!);
  }
  return { attempts, outcomes };
}

const LEDGER_OUTCOME: Record<Call['kind'], string | undefined> = { success: 'success', failed: 'failed', unknown: 'unknown', throws: 'unknown', refused: 'not_sent', hang: undefined };

/** The scheduler (and its overlap guard) is created once: node-cron keeps every task in a registry. */
const current: { w: Watchdog | undefined } = { w: undefined };
const scheduler = createScheduler({ expression: '0 0 1 1 *', log, run: async (signal) => void (await current.w!.runCycle(signal)) });

async function runScripted(input: { settings: Settings; steps: Step[] }): Promise<void> {
  stats.runs += 1;
  const clock = new Clock();
  const dir = mkdtempSync(join(FAST_DIR, 'model-'));
  const file = join(dir, ledgerFileName(ACCOUNT));
  const account = accountFor(input.settings, 'http://scripted.invalid');
  const client = new ScriptedClient(clock);
  const model = new Model(input.settings, SCRIPTED_TIMEOUT_MS);
  const open = () => {
    const ledger = Ledger.open(dir, ACCOUNT, clock.wall);
    if (!ledger.view().writable) stats.corruptOpens += 1;
    const w = new Watchdog({ account, client, ledger, metrics, log, now: clock.wall, monoNow: () => clock.trueNow, sleep: async () => {}, httpTimeoutMs: SCRIPTED_TIMEOUT_MS, balanceAttempts: 3, retryBaseDelayMs: 1, retryMaxDelayMs: 10_000 });
    current.w = w;
    return { ledger, w };
  };
  let { ledger, w } = open();
  const check = (where: string) => {
    const bad = violation(client.calls, input.settings, !clock.forwardJumped) ?? model.sameIncarnationViolation();
    if (bad) throw new Error(`invariant broken after ${where}: ${bad}`);
  };
  try {
    for (const [i, s] of input.steps.entries()) {
      stats.steps += 1;
      const where = `step ${i} (${s.t})`;
      switch (s.t) {
        case 'cycle':
        case 'overlapTick': {
          stats.cycles += 1;
          model.startCycle();
          client.setStep(s.script, s.topUp, s.t === 'cycle' ? [s.hops] : [1]);
          const want = model.mustTopUp(s.script, clock.wall(), clock.trueNow);
          const before = client.calls.length;
          if (s.t === 'cycle') await w.runCycle();
          else {
            // Two ticks at once: the scheduler's guard must run exactly one cycle.
            const [a, b] = await Promise.all([scheduler.tick(), scheduler.tick()]);
            expect([a, b]).toEqual(['ran', 'skipped_overlap']);
            stats.overlapSkipped += 1;
          }
          const made = client.calls.slice(before);
          if (made.length !== (want ? 1 : 0)) throw new Error(`${where}: model says ${want ? 'one top-up' : 'no top-up'}, the watchdog sent ${made.length}`);
          for (const c of made) model.record(c);
          stats.topUps += made.length;
          break;
        }
        case 'concurrent': {
          // Two runCycle() on one Watchdog at once, no scheduler: is the cycle itself safe to overlap?
          stats.concurrentPairs += 1;
          model.startCycle();
          client.setStep(s.script, s.topUp, s.hops, s.secondReadDelayMs);
          const may = model.mayTopUp(s.script);
          const before = client.calls.length;
          await Promise.all([w.runCycle(), w.runCycle()]);
          const made = client.calls.slice(before);
          if (!may && made.length > 0) throw new Error(`${where}: top-up sent although no reading in the step justified one`);
          const countedNow = made.filter((c) => c.kind !== 'refused').length;
          if (countedNow > 1) stats.concurrentDoubleCounted += 1;
          if (countedNow > 1 && s.secondReadDelayMs < input.settings.cooldownMs) throw new Error(`${where}: two counted top-ups from one overlapping pair`);
          for (const c of made) model.record(c);
          stats.concurrentTopUps += made.length;
          stats.topUps += made.length;
          break;
        }
        case 'advance':
          clock.trueNow += s.ms;
          break;
        case 'jump':
          clock.skew += s.ms;
          if (s.ms > 0) clock.forwardJumped = true;
          if (s.ms < 0) stats.backJumps += 1;
          else stats.fwdJumps += 1;
          break;
        case 'restart':
          stats.restarts += 1;
          ledger.close();
          ({ ledger, w } = open());
          model.reopened();
          break;
        case 'crash': {
          // A cycle whose top-up never answers; the process dies with the attempt recorded and no outcome.
          model.startCycle();
          client.setStep(s.script, 'hang');
          const want = model.mustTopUp(s.script, clock.wall(), clock.trueNow);
          const before = client.calls.length;
          const hung = new Promise<void>((r) => (client.hung = r));
          await Promise.race([w.runCycle(), hung]);
          client.hung = undefined;
          const made = client.calls.slice(before);
          if (made.length !== (want ? 1 : 0)) throw new Error(`${where}: model says ${want ? 'one top-up' : 'no top-up'}, the watchdog sent ${made.length}`);
          for (const c of made) model.record(c);
          if (made.length > 0) stats.crashesInFlight += 1;
          dropLikeACrash(ledger);
          ({ ledger, w } = open());
          model.reopened();
          break;
        }
        case 'corrupt':
          appendFileSync(file, 'this is not a ledger record\n');
          model.corruptOnDisk = true;
          // The running ledger reads what was appended before it decides: it stops at once.
          model.broken = true;
          break;
        case 'repair': {
          let text = '';
          try {
            text = readFileSync(file, 'utf8');
          } catch {
            break;
          }
          writeFileSync(file, text.split('\n').filter((l) => !l.startsWith('this is not')).join('\n'));
          model.corruptOnDisk = false;
          break;
        }
      }
      check(where);
    }
    // The view the daemon reports agrees with the model when the ledger is readable.
    const status = w.status();
    stats.statusChecks += 1;
    expectNoSecret(JSON.stringify(status), 'status');
    if (!model.broken) expect(status.attemptsLast24h).toBe(model.countInLastDay(clock.wall(), clock.trueNow));
  } finally {
    ledger.close();
  }
  // Every request that left has its attempt on disk, in order, written before it; outcomes match.
  const disk = ledgerOnDisk(dir);
  expect(disk.attempts.map((a) => a.at)).toEqual(client.calls.map((c) => c.wallAt));
  expect(disk.attempts.map((a) => disk.outcomes.get(a.id))).toEqual(client.calls.map((c) => LEDGER_OUTCOME[c.kind]));
  expectNoSecret(readFileSync(join(dir, ledgerFileName(ACCOUNT)), { encoding: 'utf8', flag: 'a+' }), 'ledger');
  rmSync(dir, { recursive: true, force: true });
}

describe('model: policy + real ledger + watchdog, scripted client', () => {
  it(`${RUNS} seeded runs keep every invariant and match the reference model`, async () => {
    console.log(`[model] fast-check seed ${SEED}, ${RUNS} runs (reproduce with MODEL_SEED=${SEED})`);
    await fc.assert(
      fc.asyncProperty(runInput, async (input) => {
        await runScripted(input);
      }),
      { numRuns: RUNS, seed: SEED, endOnFailure: false },
    );
    expect(sink.leaks).toBe(0);
    expect(unhandled.events).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// A case the generator rarely reaches, written out: the wall clock is more than 7 days ahead
// (wrong) while the daemon restarts, then it is corrected. Ledger.open drops attempts older than
// 7 days *relative to the clock at load time* (src/ledger/file-ledger.ts parseLedger, MEMORY_WINDOW_MS), so
// the real attempt made a minute ago (true time) is forgotten; once the clock is right again
// nothing holds the cooldown or the cap, and a second top-up goes out. Without the restart the
// same clock history is safe: the attempt stays in memory and blocks the corrected clock.

async function clockAheadAtRestart(restartWhileAhead: boolean): Promise<Call[]> {
  const clock = new Clock();
  const dir = mkdtempSync(join(FAST_DIR, 'model-ahead-'));
  const s: Settings = { cooldownMs: 15 * MIN, maxPerDay: 3, topupEnabled: true, dryRun: false };
  const account = accountFor(s, 'http://scripted.invalid');
  const client = new ScriptedClient(clock);
  const open = () => {
    const ledger = Ledger.open(dir, ACCOUNT, clock.wall);
    const w = new Watchdog({ account, client, ledger, metrics, log, now: clock.wall, monoNow: () => clock.trueNow, sleep: async () => {}, httpTimeoutMs: SCRIPTED_TIMEOUT_MS });
    return { ledger, w };
  };
  const low: BalanceResult[] = [{ kind: 'ok', value: 3, autoReload: true, ageMs: 0 }];
  const high: BalanceResult[] = [{ kind: 'ok', value: 25, autoReload: true, ageMs: 0 }];
  let { ledger, w } = open();
  try {
    client.setStep(low, 'success');
    await w.runCycle(); // the first top-up, at true time 0
    clock.skew += 8 * DAY; // the wall clock jumps 8 days ahead; true time has not moved
    client.setStep(high, 'success');
    await w.runCycle(); // the balance is fine meanwhile: nothing to do
    if (restartWhileAhead) {
      ledger.close();
      ({ ledger, w } = open());
    }
    clock.skew -= 8 * DAY; // NTP corrects the clock
    clock.trueNow += 1 * MIN; // one real minute after the first top-up
    client.setStep(low, 'success');
    await w.runCycle();
  } finally {
    ledger.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return client.calls;
}

describe('model: wall clock more than 7 days ahead during a restart, then corrected', () => {
  it('control: without the restart, the corrected clock is still inside the cooldown of the first top-up', async () => {
    const calls = await clockAheadAtRestart(false);
    expect(calls).toHaveLength(1);
  });

  it('regression (found by this suite): a restart while the clock is > 7 days ahead keeps the attempt; no second top-up 1 real minute after the first', async () => {
    const calls = await clockAheadAtRestart(true);
    figure('model clock-ahead restart: top-ups within 1 real minute (expected 1)', calls.length);
    expect(violation(calls, { cooldownMs: 15 * MIN, maxPerDay: 3, topupEnabled: true, dryRun: false }, true)).toBeUndefined();
    expect(calls).toHaveLength(1);
  });
});

// ---------------------------------------------------------------------------------------------
// The HTTP-backed variant: the real client over loopback to the simulator, faults switched per step.

type HttpBalance = { kind: 'ok'; value: number; autoReload: boolean } | { kind: 'fail'; fault: 'server_error' | 'auth_failure' | 'garbage' | 'reset' | 'redirect' | 'rate_limit' };
type HttpTopUp = 'success' | 'topup_failed' | 'lost_answer' | 'server_error' | 'reset' | 'auth_failure';
type HttpStep =
  | { t: 'cycle'; balance: HttpBalance; topUp: HttpTopUp }
  | { t: 'concurrent'; balance: HttpBalance; topUp: HttpTopUp }
  | { t: 'advance'; ms: number }
  | { t: 'jump'; ms: number }
  | { t: 'restart' }
  | { t: 'crash'; balance: HttpBalance };

const httpBalance: fc.Arbitrary<HttpBalance> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('ok' as const), value: fc.constantFrom(3, 9.99, 10, 25), autoReload: fc.constantFrom(true, true, true, false) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('fail' as const), fault: fc.constantFrom('server_error' as const, 'auth_failure' as const, 'garbage' as const, 'reset' as const, 'redirect' as const, 'rate_limit' as const) }) },
);
const httpTopUp = fc.constantFrom<HttpTopUp>('success', 'success', 'topup_failed', 'lost_answer', 'server_error', 'reset', 'auth_failure');
const httpStep: fc.Arbitrary<HttpStep> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ t: fc.constant('cycle' as const), balance: httpBalance, topUp: httpTopUp }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('concurrent' as const), balance: httpBalance, topUp: httpTopUp }) },
  { weight: 6, arbitrary: fc.record({ t: fc.constant('advance' as const), ms: duration }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('jump' as const), ms: duration.map((d) => -d) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('restart' as const) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('crash' as const), balance: httpBalance }) },
);
const httpInput = fc.record({ settings, steps: fc.array(httpStep, { minLength: 1, maxLength: 16 }) });

describe('model: policy + real ledger + watchdog + real client over HTTP to the simulator', () => {
  it(`${HTTP_RUNS} seeded runs keep every invariant; the simulator's applied top-ups match the ledger`, async () => {
    const trap = await trapListener();
    try {
      await fc.assert(
        fc.asyncProperty(httpInput, async (input) => {
          httpStats.runs += 1;
          const clock = new Clock();
          const sim: Simulator = await startSimulator({ apiKey: API_KEY, apiSecret: CANARY_SECRET, trx: TRX, balance: 25, topUpAmount: 20, now: clock.wall });
          const dir = mkdtempSync(join(FAST_DIR, 'model-http-'));
          const account = accountFor(input.settings, sim.url);
          const model = new Model(input.settings, HTTP_TIMEOUT_MS);
          const calls: Call[] = [];
          const real = createVonageClient({ account, timeoutMs: HTTP_TIMEOUT_MS, now: clock.wall, monoNow: () => clock.trueNow });
          let hungNow: (() => void) | undefined;
          // Every top-up request passes through the real client; this wrapper only notes when it left.
          const client: VonageClient = {
            getBalance: (signal) => real.getBalance(signal),
            topUp: (trx, signal) => {
              calls.push({ wallAt: clock.wall(), trueAt: clock.trueNow, kind: 'success' });
              hungNow?.();
              return real.topUp(trx, signal);
            },
          };
          const open = () => {
            const ledger = Ledger.open(dir, ACCOUNT, clock.wall);
            const w = new Watchdog({ account, client, ledger, metrics, log, now: clock.wall, monoNow: () => clock.trueNow, sleep: async () => {}, httpTimeoutMs: HTTP_TIMEOUT_MS, balanceAttempts: 3, retryBaseDelayMs: 1, retryMaxDelayMs: 10_000 });
            return { ledger, w };
          };
          let { ledger, w } = open();
          const zombies: Promise<unknown>[] = [];
          const arrange = (b: HttpBalance, t: HttpTopUp | 'hang') => {
            sim.clearFaults();
            if (b.kind === 'ok') {
              sim.setBalance(b.value);
              sim.setAutoReload(b.autoReload);
            } else {
              sim.setBalance(3);
              sim.setAutoReload(true);
              const f: SimFault = { kind: b.fault, endpoint: 'balance' };
              if (b.fault === 'redirect') f.location = `http://127.0.0.1:${trap.port}/account/get-balance`;
              if (b.fault === 'rate_limit') f.retryAfterSeconds = 3600;
              sim.setFault(f);
            }
            if (t === 'topup_failed') sim.setFault({ kind: 'topup_failed' });
            else if (t === 'lost_answer') sim.setFault({ kind: 'lost_answer', lostMode: 'reset' });
            else if (t === 'hang') sim.setFault({ kind: 'hang', endpoint: 'topup' });
            else if (t !== 'success') sim.setFault({ kind: t, endpoint: 'topup' });
          };
          // The HTTP client's readings are always fresh (the client stamps them), and never scripted stale.
          const asScript = (b: HttpBalance): BalanceResult[] =>
            b.kind === 'ok' ? [{ kind: 'ok', value: b.value, autoReload: b.autoReload, ageMs: 0 }] : [{ kind: 'fail', reason: 'auth_failed', retryAfter: null }];
          try {
            for (const [i, s] of input.steps.entries()) {
              httpStats.steps += 1;
              const where = `http step ${i} (${s.t})`;
              if (s.t === 'cycle' || s.t === 'crash') {
                model.startCycle();
                arrange(s.balance, s.t === 'crash' ? 'hang' : s.topUp);
                const want = model.mustTopUp(asScript(s.balance), clock.wall(), clock.trueNow);
                const before = calls.length;
                if (s.t === 'cycle') await w.runCycle();
                else {
                  const hung = new Promise<void>((r) => (hungNow = r));
                  const cyc = w.runCycle();
                  zombies.push(cyc);
                  const postsBefore = sim.requests().filter((r) => r.endpoint === 'topup').length;
                  await Promise.race([cyc, hung]);
                  // If a top-up left, the process dies only once the simulator holds the request.
                  if (calls.length > before) {
                    for (let n = 0; n < 200 && sim.requests().filter((r) => r.endpoint === 'topup').length === postsBefore; n++) await new Promise((r) => setTimeout(r, 5));
                  }
                  hungNow = undefined;
                  dropLikeACrash(ledger);
                  ({ ledger, w } = open());
                  model.reopened();
                }
                const made = calls.slice(before);
                if (made.length !== (want ? 1 : 0)) throw new Error(`${where}: model says ${want ? 'one top-up' : 'no top-up'}, the watchdog sent ${made.length}`);
                for (const c of made) model.record(c);
              } else if (s.t === 'concurrent') {
                httpStats.concurrentPairs += 1;
                model.startCycle();
                arrange(s.balance, s.topUp);
                const may = model.mayTopUp(asScript(s.balance));
                const before = calls.length;
                await Promise.all([w.runCycle(), w.runCycle()]);
                const made = calls.slice(before);
                if (!may && made.length > 0) throw new Error(`${where}: top-up without a justifying reading`);
                if (made.length > 1) throw new Error(`${where}: two top-ups from one overlapping pair`);
                for (const c of made) model.record(c);
              } else if (s.t === 'advance') clock.trueNow += s.ms;
              else if (s.t === 'jump') clock.skew += s.ms;
              else {
                ledger.close();
                ({ ledger, w } = open());
                model.reopened();
              }
              const bad = violation(calls, input.settings, true);
              if (bad) throw new Error(`invariant broken after ${where}: ${bad}`);
            }
          } finally {
            ledger.close();
            await sim.close();
            await Promise.allSettled(zombies);
          }
          // Ground truth: what the simulator received and applied, against the ledger.
          const posts = sim.requests().filter((r) => r.endpoint === 'topup');
          const applied = sim.appliedTopUps();
          const disk = ledgerOnDisk(dir);
          httpStats.topUpPosts += posts.length;
          httpStats.applied += applied.length;
          expect(posts).toHaveLength(calls.length);
          expect(disk.attempts.map((a) => a.at)).toEqual(calls.map((c) => c.wallAt));
          const countedOnDisk = disk.attempts.filter((a) => disk.outcomes.get(a.id) !== 'not_sent');
          expect(applied.length).toBeLessThanOrEqual(countedOnDisk.length);
          expect(trap.connections()).toBe(0);
          expectNoSecret(readFileSync(join(dir, ledgerFileName(ACCOUNT)), { encoding: 'utf8', flag: 'a+' }), 'ledger');
          rmSync(dir, { recursive: true, force: true });
        }),
        { numRuns: HTTP_RUNS, seed: SEED + 1, endOnFailure: true },
      );
    } finally {
      await trap.close();
    }
    expect(sink.leaks).toBe(0);
    expect(unhandled.events).toEqual([]);
  });
});

