/**
 * Kill -9 storm (research §5 A1): the built daemon, restarted over and over on one STATE_DIR
 * against one simulator whose balance stays below the threshold, killed at random instants and
 * at the worst ones:
 *
 *  - failpoint after_attempt_recorded: the ledger holds the attempt, the request never left;
 *  - held answer: the simulator has the request (lost_answer/hang: applied, answer held; slow:
 *    applied only after the daemon is already dead) and the daemon dies before reading an answer;
 *  - failpoint before_outcome_recorded: the answer was read, the outcome never written;
 *  - plain random delays, during startup, polls, top-ups and cooldowns.
 *
 * Ground truth is the simulator: every top-up request it received and applied. Invariants:
 *  S1  no two top-up requests less than one cooldown apart;
 *  S2  each request is explained by its own ledger attempt written before it (no re-send);
 *  S3  at most TOPUP_MAX_PER_DAY in any rolling 24 h (second, smaller storm with cap 2).
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startSimulator, type Simulator } from '../../src/simulator/simulator.js';
import { API_KEY, CANARY_SECRET, TRX } from '../helpers/account.js';
import { baseEnv } from '../helpers/daemon.js';
import {
  DAY_MS,
  Outputs,
  alive,
  appliedWithArrival,
  auditLedger,
  checkSpacing,
  counted,
  figure,
  gaps,
  holdBalanceLow,
  ledgerText,
  matchPostsToAttempts,
  maxInWindow,
  minOf,
  prng,
  cleanupAfterAll,
  readTextOrEmpty,
  scratchDir,
  seedFor,
  sleep,
  spawnDaemon,
  topUpPosts,
  until,
} from './helpers/crash-harness.js';
import { killAtRandom, restartFigures, runStorm, runSurvivor, startupFigure, type Restart as StormRestart, type StormRun, type Victim } from './helpers/storm.js';

const THRESHOLD = 10;
const LOW = 5;
const SLOW_HOLD_MS = 700;

const KINDS = ['failpoint_after_attempt', 'held_hang', 'held_slow', 'failpoint_before_outcome', 'random'] as const;
type Kind = (typeof KINDS)[number];

type Restart = StormRestart<Kind> & {
  sawDailyCap: boolean;
  inheritedInterrupted: boolean;
  ledgerProblem: boolean;
};

interface StormOptions {
  label: string;
  restarts: number;
  cooldown: string;
  cooldownMs: number;
  maxPerDay: number;
  rand: () => number;
  outputs: Outputs;
}

interface StormResult extends StormRun<Restart> {
  sim: Simulator;
  stateDir: string;
  appliedLog: string;
}

const { sims, children } = cleanupAfterAll();

function pickKind(r: number): Kind {
  if (r < 0.25) return 'failpoint_after_attempt';
  if (r < 0.375) return 'held_hang';
  if (r < 0.5) return 'held_slow';
  if (r < 0.65) return 'failpoint_before_outcome';
  return 'random';
}

async function storm(o: StormOptions): Promise<StormResult> {
  const stateDir = scratchDir(`crash-storm-${o.label}-`);
  const appliedLog = join(scratchDir('crash-truth-'), 'applied.jsonl');
  const sim = await startSimulator({ apiKey: API_KEY, apiSecret: CANARY_SECRET, trx: TRX, balance: LOW, topUpAmount: 20, appliedLogPath: appliedLog });
  sims.push(sim);
  const release = holdBalanceLow(sim, LOW, THRESHOLD);
  const env = baseEnv(sim.url, {
    STATE_DIR: stateDir,
    TOPUP_COOLDOWN: o.cooldown,
    TOPUP_MAX_PER_DAY: String(o.maxPerDay),
    HTTP_TIMEOUT: '1s',
    LOG_LEVEL: 'debug',
  });
  const isApplied = (requestId: string) => sim.appliedTopUps().some((t) => t.requestId === requestId);

  const run = await runStorm({
    label: o.label,
    restarts: o.restarts,
    outputs: o.outputs,
    children,
    deal: () => pickKind(o.rand()),
    needsMoney: (k) => k !== 'random',
    whileNotDue: 'random',
    dueIn: () => {
      const lastCounted = counted(auditLedger(stateDir)).at(-1);
      return lastCounted ? lastCounted.at + o.cooldownMs - Date.now() : 0;
    },
    spawn: (extra) => spawnDaemon({ ...env, ...extra }),
    settleMs: SLOW_HOLD_MS + 200,
    plan: ({ kind, due: cooldownLeft }) => {
      const r1 = o.rand();
      const before = auditLedger(stateDir);
      const inheritedInterrupted = before.at(-1)?.outcome === undefined && before.length > 0;
      sim.clearFaults();
      if (kind === 'held_hang') sim.setFault({ kind: 'lost_answer', lostMode: 'hang', count: 1 });
      if (kind === 'held_slow') sim.setFault({ kind: 'slow', endpoint: 'topup', delayMs: SLOW_HOLD_MS, count: 1 });
      const postsBefore = topUpPosts(sim).length;
      const newPost = () => topUpPosts(sim)[postsBefore];
      const extra: Record<string, string> = {};
      if (kind === 'failpoint_after_attempt') extra.WATCHDOG_FAILPOINTS = 'after_attempt_recorded';
      if (kind === 'failpoint_before_outcome') extra.WATCHDOG_FAILPOINTS = 'before_outcome_recorded';
      // The first top-up comes once the cooldown is over: at most startup + remaining cooldown +
      // one poll interval. Once the cap is reached none comes; the daemon says so, stop waiting.
      const deadline = 1500 + Math.max(0, cooldownLeft) + 1500;

      const strike = async (v: Victim): Promise<boolean> => {
        const { child, kill } = v;
        const capped = () => child.output().includes('"reason":"daily_cap"');
        switch (kind) {
          case 'failpoint_after_attempt':
          case 'failpoint_before_outcome': {
            await until(() => !alive(child) || capped(), deadline, 10);
            kill();
            return v.diedAlone();
          }
          case 'held_hang': {
            // The simulator applied the top-up and holds the answer (until HTTP_TIMEOUT=1s): kill now.
            await until(() => { const p = newPost(); return (p !== undefined && isApplied(p.requestId)) || !alive(child) || capped(); }, deadline, 2);
            const p = newPost();
            const landed = p !== undefined && isApplied(p.requestId) && alive(child);
            kill();
            return landed;
          }
          case 'held_slow': {
            // The request has arrived; the simulator will apply it after SLOW_HOLD_MS, whoever is left
            // to read the answer. Kill at a random instant inside that window.
            await until(() => newPost() !== undefined || !alive(child) || capped(), deadline, 2);
            const post = newPost();
            let landed = false;
            if (post) {
              await sleep(post.at + r1 * (SLOW_HOLD_MS - 150) - Date.now());
              landed = alive(child) && !isApplied(post.requestId);
            }
            kill();
            return landed;
          }
          case 'random':
            return killAtRandom(v, r1);
        }
      };
      return {
        env: extra,
        strike,
        record: (out) => ({
          sawDailyCap: out.includes('"reason":"daily_cap"'),
          inheritedInterrupted,
          ledgerProblem: out.includes('top-ups are DISABLED') || out.includes('"reason":"ledger_unavailable"'),
        }),
      };
    },
  });
  release();
  return { ...run, sim, stateDir, appliedLog };
}

/** After the storm, one daemon that is allowed to live: it must agree with the ledger and report. */
async function survivor(r: StormResult, cooldown: string, maxPerDay: number, outputs: Outputs, label: string) {
  const env = baseEnv(r.sim.url, { STATE_DIR: r.stateDir, TOPUP_COOLDOWN: cooldown, TOPUP_MAX_PER_DAY: String(maxPerDay), HTTP_TIMEOUT: '1s' });
  r.sim.clearFaults();
  r.sim.setBalance(50); // above the threshold: the survivor watches, it does not spend
  const { status } = await runSurvivor({ label, outputs, children, spawn: () => spawnDaemon(env) });
  return (status as { accounts: { attemptsLast24h: number; ledger: { writable: boolean } }[] }).accounts[0]!;
}

function verifyGroundTruth(r: StormResult, cooldownMs: number, maxPerDay: number, label: string) {
  const posts = topUpPosts(r.sim);
  const applied = appliedWithArrival(r.sim);
  const attempts = auditLedger(r.stateDir);
  const fileLines = ledgerText(r.stateDir).length; // parsing above throws on any unreadable line
  expect(fileLines).toBeGreaterThan(0);

  // Every POST reached the simulator with a valid trx, so every one was applied (some after the
  // daemon that sent it was dead), and the crash-proof applied log agrees with memory.
  expect(applied.length).toBe(posts.length);
  const truthFile = readTextOrEmpty(r.appliedLog);
  expect(truthFile.split('\n').filter(Boolean).length).toBe(applied.length);

  // S1 + S2 on the simulator's clock, with no fixed tolerance (see checkSpacing): every request
  // arrived at least one cooldown after the previous one was committed to the ledger, each has
  // its own attempt written before it (no re-send), and counted attempts are a cooldown apart.
  const spacing = checkSpacing(applied.map((a) => ({ at: a.arrivedAt })), attempts, cooldownMs);
  figure(`${label} min gap between top-up requests at the simulator (ms) vs cooldown`, `${spacing.minArrivalGap} vs ${cooldownMs}`);
  figure(`${label} min gap between applied top-ups (ms; slow answers apply late)`, minOf(gaps(applied.map((a) => a.at))));
  figure(`${label} max ledger-stamp-to-arrival latency (ms)`, spacing.maxLag);
  figure(`${label} min gap between counted ledger attempts (ms)`, spacing.minAttemptGap);
  expect(spacing.problems).toEqual([]);
  expect(matchPostsToAttempts(posts, attempts, 2000).problems).toEqual([]);
  expect(spacing.minArrivalGap).toBeGreaterThanOrEqual(cooldownMs - spacing.maxLag);

  // S3: rolling 24 h cap, on the ground truth and on the ledger.
  const per24h = maxInWindow(applied.map((a) => a.arrivedAt), DAY_MS);
  figure(`${label} max top-ups in any 24 h vs cap`, `${per24h} vs ${maxPerDay}`);
  expect(per24h).toBeLessThanOrEqual(maxPerDay);
  expect(maxInWindow(counted(attempts).map((a) => a.at), DAY_MS)).toBeLessThanOrEqual(maxPerDay);

  // A1's bound: no more than one per elapsed cooldown.
  expect(applied.length).toBeLessThanOrEqual(Math.ceil(r.elapsedMs / cooldownMs) + 1);
  return { posts, applied, attempts };
}

function summarize(label: string, r: StormResult) {
  restartFigures(label, r.restarts, KINDS);
  figure(`${label} restarts whose last ledger attempt had no outcome`, r.restarts.filter((x) => x.inheritedInterrupted).length);
  startupFigure(label, r.restarts);
  figure(`${label} storm wall time (s)`, (r.elapsedMs / 1000).toFixed(1));
}

describe('kill -9 storm', () => {
  const outputs = new Outputs();

  it('100+ random kill -9 restarts on one STATE_DIR: never two top-ups within a cooldown, never a re-send', async () => {
    const seed = seedFor('crash storm');
    const cooldownMs = 2000;
    const r = await storm({ label: 'storm', restarts: 100, cooldown: '2s', cooldownMs, maxPerDay: 1000, rand: prng(seed), outputs });
    summarize('storm', r);
    const { applied, attempts } = verifyGroundTruth(r, cooldownMs, 1000, 'storm');
    figure('storm top-ups applied (ground truth)', applied.length);
    figure('storm ledger attempts (counted)', counted(attempts).length);
    figure('storm ledger attempts left without outcome (crash after the write)', attempts.filter((a) => a.outcome === undefined).length);

    // The storm really exercised what it claims to.
    const landed = (k: Kind) => r.restarts.filter((x) => x.kind === k && x.landed).length;
    expect(r.restarts.length).toBeGreaterThanOrEqual(100);
    // Liveness: the storm's top-ups come from the restarts drawn to make one (the random ones
    // mostly land inside a cooldown), so the floor follows the draw: every restart killed after
    // Vonage applied (before the outcome was written, or while the answer was held) left money.
    expect(applied.length).toBeGreaterThanOrEqual(Math.max(10, landed('failpoint_before_outcome') + landed('held_hang')));
    expect(landed('failpoint_after_attempt')).toBeGreaterThanOrEqual(5);
    expect(landed('failpoint_before_outcome')).toBeGreaterThanOrEqual(3);
    expect(landed('held_hang') + landed('held_slow')).toBeGreaterThanOrEqual(5);
    expect(r.restarts.filter((x) => x.sawCooldown).length).toBeGreaterThanOrEqual(5);
    expect(r.restarts.filter((x) => x.inheritedInterrupted).length).toBeGreaterThanOrEqual(5);
    // A record torn by kill -9 must never make the ledger untrusted (that would stop top-ups).
    expect(r.restarts.filter((x) => x.ledgerProblem).length).toBe(0);
    // Attempts whose request never left (after_attempt_recorded) are in the ledger without a POST.
    expect(counted(attempts).length).toBeGreaterThan(applied.length);

    const s = await survivor(r, '2s', 1000, outputs, 'storm');
    expect(s.ledger.writable).toBe(true);
    expect(s.attemptsLast24h).toBe(counted(attempts).length);
    outputs.addStateDir('storm STATE_DIR', r.stateDir);
  });

  it('a second storm with TOPUP_MAX_PER_DAY=2 and a 1 s cooldown: the cap binds and holds across restarts', async () => {
    const seed = seedFor('cap storm') + 1;
    const r = await storm({ label: 'cap-storm', restarts: 12, cooldown: '1s', cooldownMs: 1000, maxPerDay: 2, rand: prng(seed), outputs });
    summarize('cap-storm', r);
    const { applied, attempts } = verifyGroundTruth(r, 1000, 2, 'cap-storm');
    figure('cap-storm top-ups applied (ground truth)', applied.length);
    figure('cap-storm restarts that hit daily_cap', r.restarts.filter((x) => x.sawDailyCap).length);
    expect(counted(attempts).length).toBe(2); // the cap was reached...
    expect(applied.length).toBeLessThanOrEqual(2); // ...and never exceeded
    expect(r.restarts.filter((x) => x.sawDailyCap).length).toBeGreaterThanOrEqual(3);
    const s = await survivor(r, '1s', 2, outputs, 'cap-storm');
    expect(s.attemptsLast24h).toBe(2);
    outputs.addStateDir('cap-storm STATE_DIR', r.stateDir);
  });

  it('the canary secret appears in no output of the storms', () => {
    figure('crash storm canary outputs checked (items / bytes)', `${outputs.count} / ${outputs.bytes}`);
    expect(outputs.count).toBeGreaterThan(100);
    outputs.check();
  });
});
