// The replay benchmark's model (bench/replay.mjs): the daemon's own decision, forecast and due-time
// code from dist/, run against a spending trace in virtual time, with a model of Vonage. Kept
// apart from the command so that test/replay-agreement.test.ts runs the same model beside the
// built daemon, and checks that the two agree.
import { decide, decideWithForecast } from '../dist/refill/topup-policy.js';
import { ForecastTracker } from '../dist/forecast/tracker.js';
import { confirmWindowMs } from '../dist/forecast/due-time.js';
import { rng } from './rng.mjs';

const CENT = 0.005;

/**
 * The model's settings. Defaults are the benchmark's: threshold 10 EUR, start 30 EUR, 20 EUR
 * top-ups arriving 60 s after they are asked for, cooldown 10 min, 100 a day, a 10 s tick, 600 s
 * POLL_MAX_INTERVAL, 300 s lead time, and Vonage's own auto-reload checking every 5-10 minutes.
 */
export function modelSettings(over = {}) {
  return { threshold: 10, start: 30, topupEur: 20, refillDelayS: 60, cooldownMs: 600_000, maxPerDay: 100, tickS: 10, maxIntervalS: 600, leadS: 300, vonageReload: true, ...over };
}

/**
 * One strategy over one trace. Time advances from event to event (spends, polls, arrivals, Vonage's
 * checks); the balance is constant in between, so the time below the threshold and at zero is exact.
 */
export function replay(rows, strategy, m = modelSettings()) {
  const end = m.endS ?? (rows.length > 0 ? rows[rows.length - 1][0] + 60 : 0);
  const random = rng(42);
  let balance = m.start;
  let t = 0;
  let below = 0;
  let zero = 0;
  let calls = 0;
  let topups = 0;
  let reloads = 0;
  let refilledEur = 0;
  const arrivals = []; // seconds at which a top-up lands
  let nextVonageCheck = m.vonageReload ? 300 + 300 * random() : Number.POSITIVE_INFINITY;
  const reloadBelow = strategy.kind === 'vonage' ? m.threshold : m.threshold / 2;
  let nextPoll = strategy.kind === 'vonage' ? Number.POSITIVE_INFINITY : 0;
  const attempts = [];
  let i = 0;
  const advance = (to) => {
    const dt = to - t;
    if (dt > 0) {
      if (balance < m.threshold) below += dt;
      if (balance <= CENT) zero += dt;
      t = to;
    }
  };
  while (t < end) {
    const nextSpend = i < rows.length ? rows[i][0] : Number.POSITIVE_INFINITY;
    const nextArrival = arrivals.length > 0 ? arrivals[0] : Number.POSITIVE_INFINITY;
    const at = Math.min(nextSpend, nextArrival, nextVonageCheck, nextPoll, end);
    advance(at);
    if (at === nextArrival) {
      arrivals.shift();
      balance += m.topupEur;
      refilledEur += m.topupEur;
    } else if (at === nextSpend) {
      balance = Math.max(0, balance - rows[i][1]);
      i++;
    } else if (at === nextVonageCheck) {
      if (balance < reloadBelow) {
        balance += m.topupEur;
        refilledEur += m.topupEur;
        reloads++;
      }
      nextVonageCheck = at + 300 + 300 * random();
    } else if (at === nextPoll) {
      calls++;
      const now = Math.round(at * 1000);
      const reading = { value: balance, autoReload: true, at: now, mono: now };
      const d = strategy.decide(reading, { attempts, now });
      if (d.action === 'topup') {
        calls++;
        topups++;
        attempts.push({ id: `a${attempts.length}`, at: now, mono: now, outcome: 'success', balanceBefore: balance });
        arrivals.push(at + m.refillDelayS);
        arrivals.sort((a, b) => a - b);
      }
      nextPoll = at + strategy.nextIntervalS(reading, d, { attempts, now, arrivals });
    }
  }
  return { below, zero, calls, refills: topups + reloads, topups, refilledEur };
}

const policyOf = (m) => ({ threshold: m.threshold, cooldownMs: m.cooldownMs, maxPerDay: m.maxPerDay, topupEnabled: true, dryRun: false, maxReadingAgeMs: 60_000 });
const view = (attempts) => ({ writable: true, attempts: attempts.filter((a) => a.at > attempts.at(-1)?.at - 86_400_000 - 1) });

export const vonageAlone = () => ({ kind: 'vonage' });

export const fixed = (periodS, m = modelSettings()) => ({
  kind: 'fixed',
  decide: (reading, { attempts, now }) => decide(reading, policyOf(m), view(attempts), now, now),
  nextIntervalS: () => periodS,
});

/** The daemon with POLL_ADAPTIVE and TOPUP_LEAD_TIME, as src/cycle/watchdog.ts runs them. */
export function ours(m = modelSettings()) {
  const scale = { pollIntervalMs: m.tickS * 1000, maxIntervalMs: m.maxIntervalS * 1000, leadTimeMs: m.leadS * 1000 };
  const tracker = new ForecastTracker(scale, m.threshold);
  const policy = policyOf(m);
  return {
    kind: 'ours',
    decide(reading, { attempts, now }) {
      tracker.observe({ at: now, balance: reading.value });
      // As the daemon: the refill amount is known once a rise has shown it (here, after the first top-up).
      const known = attempts.length > 0 ? { refillAmount: m.topupEur } : {};
      return decideWithForecast(reading, policy, view(attempts), now, now, { runwayMs: tracker.runwaySeconds(reading.value) * 1000, leadTimeMs: scale.leadTimeMs, ...known });
    },
    nextIntervalS(reading, d, { attempts, now, arrivals }) {
      // As the daemon: a top-up sent, or one whose rise is not seen yet, within ten ticks of it.
      const last = attempts.at(-1);
      const awaitingRise = d.action === 'topup' || (last !== undefined && arrivals.length > 0 && now - last.at <= confirmWindowMs(scale));
      return tracker.due(now, reading.value, awaitingRise).intervalMs / 1000;
    },
  };
}

