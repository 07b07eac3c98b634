/**
 * The forecast's pure parts: the burn-rate estimator, the runway, the adaptive due time, and the
 * predictive refill beside the reactive rule. Tables for the behaviour a user would name, and
 * fast-check properties for what must hold on any history.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { estimateBurn, historyWindowMs, runwaySeconds, type BalanceSample, type ForecastScale } from '../src/forecast/burn-rate.js';
import { nextDue, surprised, type PollState } from '../src/forecast/due-time.js';
import { ForecastTracker, MAX_SAMPLES } from '../src/forecast/tracker.js';
import { decide, decideWithForecast, type Attempt, type PolicySettings, type Reading } from '../src/refill/topup-policy.js';

const S = 1000;
const scale: ForecastScale = { pollIntervalMs: 10 * S, maxIntervalMs: 600 * S, leadTimeMs: 120 * S };

/** Readings every `every` ms from `start` EUR, spending `rate` EUR/s, with refills of `refill` EUR whenever it falls below `refillBelow`. */
function trace(n: number, opts: { rate: number; every?: number; start?: number; refillBelow?: number; refill?: number; t0?: number }): BalanceSample[] {
  const every = opts.every ?? 10 * S;
  let balance = opts.start ?? 100;
  const out: BalanceSample[] = [];
  for (let i = 0; i < n; i++) {
    out.push({ at: (opts.t0 ?? 0) + i * every, balance });
    balance -= (opts.rate * every) / S;
    if (opts.refillBelow !== undefined && balance < opts.refillBelow) balance += opts.refill ?? 50;
  }
  return out;
}
const last = (s: readonly BalanceSample[]) => s[s.length - 1]!.at;

describe('estimateBurn', () => {
  it('finds a constant burn, with high confidence once it has enough intervals', () => {
    const s = trace(20, { rate: 0.05 });
    const e = estimateBurn(s, scale, last(s));
    expect(e.rate).toBeCloseTo(0.05, 9);
    expect(e.confidence).toBe('high');
  });

  it('ignores every rise: a sawtooth of refills reads as the spending, not less', () => {
    const s = trace(60, { rate: 0.05, start: 30, refillBelow: 25, refill: 20 });
    expect(s.some((x, i) => i > 0 && x.balance > s[i - 1]!.balance)).toBe(true);
    expect(estimateBurn(s, scale, last(s)).rate).toBeCloseTo(0.05, 9);
  });

  it('says when it has too little history, and then the runway is +Inf (never "short")', () => {
    const s = trace(3, { rate: 1 });
    const e = estimateBurn(s, scale, last(s));
    expect(e).toMatchObject({ confidence: 'insufficient', rate: 0, intervals: 2 });
    expect(runwaySeconds(50, 10, e)).toBe(Number.POSITIVE_INFINITY);
    expect(runwaySeconds(10, 10, e)).toBe(0);
  });

  it('a burst raises the rate at once: a 10x spike in the last interval is the rate used', () => {
    const s = trace(20, { rate: 0.05 });
    s.push({ at: last(s) + 10 * S, balance: s[s.length - 1]!.balance - 5 }); // 0.5 EUR/s
    const e = estimateBurn(s, scale, last(s));
    expect(e.burst).toBeCloseTo(0.5, 9);
    expect(e.rate).toBeCloseTo(0.5, 9);
  });

  it('a missing poll or a failed one is a longer interval, not a zero: the rate stays', () => {
    const s = trace(20, { rate: 0.05 }).filter((_, i) => i % 3 !== 1);
    expect(estimateBurn(s, scale, last(s)).rate).toBeCloseTo(0.05, 9);
  });

  it('readings older than the history window do not count', () => {
    const old = trace(20, { rate: 1, t0: 0 });
    const recent = trace(5, { rate: 0.01, t0: last(old) + historyWindowMs(scale) + 10 * S, start: 50 });
    const e = estimateBurn([...old, ...recent], scale, last(recent));
    expect(e.intervals).toBe(4);
    expect(e.rate).toBeLessThan(0.02);
  });

  const sample = fc.record({ dt: fc.integer({ min: -5 * S, max: 120 * S }), change: fc.double({ min: -50, max: 50, noNaN: true }) });
  const history = fc.array(sample, { maxLength: 60 }).map((steps) => {
    let at = 0;
    let balance = 100;
    return steps.map((st) => ({ at: (at += st.dt), balance: (balance = Math.max(0, balance + st.change)) }));
  });

  it('on any history: a finite rate >= 0, a runway >= 0, +Inf exactly when nothing drains or the history is short', () => {
    fc.assert(
      fc.property(history, fc.double({ min: 0, max: 200, noNaN: true }), fc.double({ min: 0, max: 200, noNaN: true }), (s, balance, threshold) => {
        const now = s.length > 0 ? Math.max(...s.map((x) => x.at)) : 0;
        const e = estimateBurn(s, scale, now);
        expect(Number.isFinite(e.rate) && e.rate >= 0).toBe(true);
        const r = runwaySeconds(balance, threshold, e);
        expect(r >= 0).toBe(true);
        if (balance > threshold) expect(r === Number.POSITIVE_INFINITY).toBe(e.confidence === 'insufficient' || e.rate === 0);
      }),
    );
  });

  it('rises never raise or lower the estimate: a history with refills added reads like the one without', () => {
    // The same falls, with a refill added at the start of some intervals (the reading after it is higher).
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0, max: 2, noNaN: true }), { minLength: 4, maxLength: 40 }), fc.array(fc.boolean(), { minLength: 40, maxLength: 40 }), (falls, refillAt) => {
        const plain: BalanceSample[] = [{ at: 0, balance: 1000 }];
        const refilled: BalanceSample[] = [{ at: 0, balance: 1000 }];
        let offset = 0;
        falls.forEach((f, i) => {
          const at = (i + 1) * 10 * S;
          plain.push({ at, balance: plain[plain.length - 1]!.balance - f });
          if (refillAt[i]) {
            // A refill right before this reading: an interval that rises, then the same fall after it.
            offset += 100;
            refilled.push({ at: at - 5 * S, balance: refilled[refilled.length - 1]!.balance + 100 });
          }
          refilled.push({ at, balance: plain[plain.length - 1]!.balance + offset });
        });
        const now = last(plain);
        const a = estimateBurn(plain, scale, now);
        const b = estimateBurn(refilled, scale, now);
        // Each refill drops one interval (the one it rose in): the estimate may lose observations, never gain bogus ones.
        expect(b.intervals).toBeLessThanOrEqual(a.intervals);
        expect(b.burst).toBeLessThanOrEqual(a.burst * 2 + 1e-9);
      }),
    );
  });

  it('behaves alike at any time scale: times and scale multiplied by k give rates divided by k', () => {
    fc.assert(
      fc.property(history, fc.integer({ min: 2, max: 60 }), (s, k) => {
        const now = s.length > 0 ? Math.max(...s.map((x) => x.at)) : 0;
        const a = estimateBurn(s, scale, now);
        const scaled = s.map((x) => ({ at: x.at * k, balance: x.balance }));
        const b = estimateBurn(scaled, { pollIntervalMs: scale.pollIntervalMs * k, maxIntervalMs: scale.maxIntervalMs * k, leadTimeMs: scale.leadTimeMs * k }, now * k);
        expect(b.confidence).toBe(a.confidence);
        expect(b.rate * k).toBeCloseTo(a.rate, 6);
      }),
    );
  });
});

describe('nextDue (POLL_ADAPTIVE)', () => {
  const steady = (n = 20) => {
    const s = trace(n, { rate: 0.001, start: 100 });
    return { s, e: estimateBurn(s, scale, last(s)) };
  };
  const input = (over: Partial<Parameters<typeof nextDue>[0]> = {}) => {
    const { s, e } = steady();
    return { now: last(s), scale, estimate: e, balance: s[s.length - 1]!.balance, threshold: 10, awaitingRise: false, surprised: false, state: undefined, ...over };
  };

  it.each([
    ['too little history', { estimate: { rate: 0, smoothed: 0, burst: 0, confidence: 'insufficient' as const, intervals: 1 } }, 'insufficient_history'],
    ['a refill not yet confirmed', { awaitingRise: true }, 'awaiting_refill'],
    ['a surprise', { surprised: true }, 'surprise'],
    ['below the threshold', { balance: 5 }, 'below_threshold'],
  ])('%s: the fastest poll (POLL_SCHEDULE)', (_name, over, reason) => {
    const d = nextDue(input(over));
    expect(d).toMatchObject({ intervalMs: scale.pollIntervalMs, reason });
  });

  it('a long, steady runway slows down only after a quiet window, at most doubling each time, up to POLL_MAX_INTERVAL', () => {
    let state: PollState | undefined;
    let now = 0;
    const seen: number[] = [];
    for (let i = 0; i < 200; i++) {
      const d = nextDue(input({ now, state }));
      seen.push(d.intervalMs);
      state = d.state;
      now = d.at;
    }
    for (let i = 1; i < seen.length; i++) expect(seen[i]!).toBeLessThanOrEqual(2 * seen[i - 1]!);
    expect(seen[0]).toBe(scale.pollIntervalMs);
    expect(seen[1]).toBe(scale.pollIntervalMs); // not at once
    expect(Math.max(...seen)).toBe(scale.maxIntervalMs);
  });

  it('speeds up at once when the runway shortens', () => {
    const slow = { intervalMs: scale.maxIntervalMs, quietSince: 0 };
    const fast = { ...steady().e, rate: 1 };
    const d = nextDue(input({ now: 10_000 * S, state: slow, estimate: fast, balance: 100 }));
    // 90 EUR at 1 EUR/s: 90 s of runway, less the 120 s lead: the fastest poll.
    expect(d.intervalMs).toBe(scale.pollIntervalMs);
  });

  it('never waits longer than POLL_MAX_INTERVAL nor less than the fastest poll, whatever it is given', () => {
    fc.assert(
      fc.property(
        fc.double({ min: 0, max: 10, noNaN: true }),
        fc.double({ min: 0, max: 1e6, noNaN: true }),
        fc.option(fc.record({ intervalMs: fc.integer({ min: 1, max: 10_000 * S }), quietSince: fc.integer({ min: -1e9, max: 1e9 }) }), { nil: undefined }),
        fc.boolean(),
        fc.boolean(),
        (rate, balance, state, awaitingRise, surprise) => {
          const d = nextDue(input({ now: 1e9, estimate: { ...steady().e, rate }, balance, state, awaitingRise, surprised: surprise }));
          expect(d.intervalMs).toBeGreaterThanOrEqual(scale.pollIntervalMs);
          expect(d.intervalMs).toBeLessThanOrEqual(scale.maxIntervalMs);
          expect(d.at).toBe(1e9 + d.intervalMs);
        },
      ),
    );
  });

  it('a reading that spends more than twice the expected rate is a surprise; a rise or a steady one is not', () => {
    const { s, e } = steady();
    const at = last(s) + 10 * S;
    const b = s[s.length - 1]!.balance;
    expect(surprised(e, [...s, { at, balance: b - 0.05 }], scale, at)).toBe(true);
    expect(surprised(e, [...s, { at, balance: b - 0.01 }], scale, at)).toBe(false);
    expect(surprised(e, [...s, { at, balance: b + 20 }], scale, at)).toBe(false);
    expect(surprised(undefined, [...s, { at, balance: b - 50 }], scale, at)).toBe(false);
  });
});

describe('decideWithForecast: within one refill of the threshold only', () => {
  it('with a known refill amount, a forecast acts only when the balance is within half of it of the threshold (a long lead time cannot pile refills up)', () => {
    const settings: PolicySettings = { threshold: 10, cooldownMs: 60_000, maxPerDay: 100, topupEnabled: true, dryRun: false, maxReadingAgeMs: 5000 };
    const r = (value: number): Reading => ({ value, autoReload: true, at: 1_000_000, mono: 1_000_000 });
    const f = { runwayMs: 100, leadTimeMs: 3_600_000, refillAmount: 20 };
    expect(decideWithForecast(r(19), settings, { writable: true, attempts: [] }, 1_000_000, 1_000_000, f)).toEqual({ action: 'topup', trigger: 'forecast' });
    expect(decideWithForecast(r(21), settings, { writable: true, attempts: [] }, 1_000_000, 1_000_000, f)).toEqual({ action: 'none', why: 'above_threshold' });
    // The amount unknown (no rise seen yet): the lead time alone decides, as before.
    expect(decideWithForecast(r(31), settings, { writable: true, attempts: [] }, 1_000_000, 1_000_000, { runwayMs: 100, leadTimeMs: 3_600_000 })).toEqual({ action: 'topup', trigger: 'forecast' });
  });
});

describe('decideWithForecast: the predictive refill beside the reactive rule', () => {
  const settings: PolicySettings = { threshold: 10, cooldownMs: 600 * S, maxPerDay: 3, topupEnabled: true, dryRun: false, maxReadingAgeMs: 60 * S };
  const NOW = Date.UTC(2026, 11, 2, 12);
  const reading = (value: number, over: Partial<Reading> = {}): Reading => ({ value, autoReload: true, at: NOW, ...over });
  const view = (attempts: Attempt[] = [], writable = true) => ({ writable, attempts });

  it('above the threshold: a top-up when the runway is within the lead time, triggered by the forecast', () => {
    expect(decideWithForecast(reading(12), settings, view(), NOW, undefined, { runwayMs: 60 * S, leadTimeMs: 120 * S })).toEqual({ action: 'topup', trigger: 'forecast' });
    expect(decideWithForecast(reading(12), settings, view(), NOW, undefined, { runwayMs: 180 * S, leadTimeMs: 120 * S })).toEqual({ action: 'none', why: 'above_threshold' });
    expect(decideWithForecast(reading(12), settings, view(), NOW, undefined, { runwayMs: 0, leadTimeMs: 0 })).toEqual({ action: 'none', why: 'above_threshold' });
    expect(decideWithForecast(reading(8), settings, view(), NOW, undefined, undefined)).toEqual({ action: 'topup', trigger: 'threshold' });
  });

  it('a predictive top-up held back by a rule is forecast_held, not a skip', () => {
    const recent: Attempt = { id: 'a', at: NOW - 60 * S, outcome: 'success', balanceBefore: 9 };
    expect(decideWithForecast(reading(12), settings, view([recent]), NOW, undefined, { runwayMs: 1, leadTimeMs: 120 * S })).toMatchObject({ action: 'none', why: 'forecast_held', reason: 'cooldown' });
    expect(decideWithForecast(reading(12, { autoReload: false }), settings, view(), NOW, undefined, { runwayMs: 1, leadTimeMs: 120 * S })).toMatchObject({ why: 'forecast_held', reason: 'auto_reload_disabled' });
  });

  it('never spends where the reactive rule would not: a forecast top-up implies a reactive top-up for a balance below the threshold, at the same moment and ledger', () => {
    const attempt = fc.record({ ago: fc.integer({ min: -600 * S, max: 2 * 86_400 * S }), outcome: fc.constantFrom('pending', 'success', 'failed', 'unknown', 'not_sent' as const) });
    fc.assert(
      fc.property(
        fc.array(attempt, { maxLength: 6 }),
        fc.double({ min: 0, max: 100, noNaN: true }),
        fc.boolean(),
        fc.boolean(),
        fc.boolean(),
        fc.integer({ min: 0, max: 120 * S }),
        fc.integer({ min: 0, max: 300 * S }),
        (as, value, autoReload, writable, dryRun, age, runwayMs) => {
          const s = { ...settings, dryRun };
          const attempts = as.map((a, i) => ({ id: `a${i}`, at: NOW - a.ago, outcome: a.outcome, balanceBefore: 5 }));
          const r = reading(value, { autoReload, at: NOW - age });
          const d = decideWithForecast(r, s, view(attempts, writable), NOW, undefined, { runwayMs, leadTimeMs: 120 * S });
          if (d.action === 'topup') expect(decide(reading(Math.min(value, s.threshold - 0.01), { autoReload, at: NOW - age }), s, view(attempts, writable), NOW)).toEqual({ action: 'topup' });
          if (d.action === 'topup' && d.trigger === 'forecast') expect(runwayMs).toBeLessThanOrEqual(120 * S);
        },
      ),
    );
  });
});

describe('ForecastTracker: one account between readings', () => {
  it('keeps only the history window, ignores readings that go back in time, and flags a surprise once', () => {
    const t = new ForecastTracker(scale, 10);
    const s = trace(400, { rate: 0.001, start: 100 });
    for (const x of s) t.observe(x);
    expect(t.estimate.intervals).toBeLessThanOrEqual(historyWindowMs(scale) / (10 * S));
    expect(t.estimate.rate).toBeCloseTo(0.001, 9);
    const at = last(s);
    expect(t.observe({ at: at - 1, balance: 0 }).rate).toBeCloseTo(0.001, 9);
    t.observe({ at: at + 10 * S, balance: s[s.length - 1]!.balance - 1 });
    expect(t.due(at + 10 * S, 50, false)).toMatchObject({ reason: 'surprise', intervalMs: scale.pollIntervalMs });
    expect(t.runwaySeconds(5)).toBe(0);
  });

  it('keeps at most MAX_SAMPLES readings, even when the window would hold more (a one-second schedule, a day of lead time)', () => {
    const t = new ForecastTracker({ pollIntervalMs: S, maxIntervalMs: S, leadTimeMs: 86_400 * S }, 10);
    for (const x of trace(5_000, { rate: 0.0001, every: S, start: 100 })) t.observe(x);
    expect(t.estimate.intervals).toBe(MAX_SAMPLES - 1);
    expect(t.estimate.rate).toBeCloseTo(0.0001, 9);
  });

  it('falls back to the fastest poll and no runway with too little history', () => {
    const t = new ForecastTracker(scale, 10);
    t.observe({ at: 0, balance: 50 });
    expect(t.runwaySeconds(50)).toBe(Number.POSITIVE_INFINITY);
    expect(t.due(0, 50, false)).toMatchObject({ reason: 'insufficient_history', intervalMs: scale.pollIntervalMs });
  });
});

describe('the forecast never spends where it has no evidence (review)', () => {
  const settings: PolicySettings = { threshold: 10, cooldownMs: 15 * 60_000, maxPerDay: 3, topupEnabled: true, dryRun: false, maxReadingAgeMs: 120_000 };
  const POLL = 60 * S;
  const LEAD = 3_600 * S;

  it('no history, the balance exactly at the threshold: the reactive rule refuses, and so does the forecast', () => {
    const t = new ForecastTracker({ pollIntervalMs: POLL, maxIntervalMs: POLL, leadTimeMs: LEAD }, settings.threshold);
    const now = 1_000_000;
    t.observe({ at: now, balance: 10 });
    const reading = { value: 10, autoReload: true, at: now, mono: now };
    const ledger = { writable: true, attempts: [] };
    expect(decide(reading, settings, ledger, now, now).action).toBe('none');
    expect(decideWithForecast(reading, settings, ledger, now, now, { runwayMs: t.runwaySeconds(10) * 1000, leadTimeMs: LEAD }).action).not.toBe('topup');
  });

  it('one burst, a refill, then no spending: at most the one predictive top-up, never one after every cooldown', () => {
    const t = new ForecastTracker({ pollIntervalMs: POLL, maxIntervalMs: POLL, leadTimeMs: LEAD }, settings.threshold);
    const attempts: Attempt[] = [];
    let balance = 100;
    let sent = 0;
    const t0 = 10_000_000;
    for (let i = 0; i <= 60; i++) {
      const now = t0 + i * POLL;
      if (i === 5) balance = 15; // one big spend (or a one-off bad reading), above the threshold
      t.observe({ at: now, balance });
      const d = decideWithForecast({ value: balance, autoReload: true, at: now, mono: now }, settings, { writable: true, attempts }, now, now, { runwayMs: t.runwaySeconds(balance) * 1000, leadTimeMs: LEAD });
      if (d.action === 'topup') {
        sent++;
        attempts.push({ id: String(i), at: now, mono: now, outcome: 'success', balanceBefore: balance });
        balance += 100;
      }
    }
    expect(sent).toBeLessThanOrEqual(1);
  });

  it('after a rise the history starts again: the forecast needs fresh spending before it may act', () => {
    const t = new ForecastTracker(scale, 10);
    for (const x of trace(20, { rate: 0.5, start: 100 })) t.observe(x);
    expect(t.estimate.confidence).not.toBe('insufficient');
    t.observe({ at: 20 * 10 * S, balance: 200 });
    expect(t.estimate.confidence).toBe('insufficient');
    expect(t.runwaySeconds(200)).toBe(Number.POSITIVE_INFINITY);
  });
});

