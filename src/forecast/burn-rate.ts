/**
 * How fast an account spends, from its recent balance readings: a pure function of the readings,
 * the time scale and now. No I/O, no clock of its own.
 *
 * Why not a least-squares line (Prometheus's predict_linear): refills look like negative spending
 * and pull it toward zero, and a burst moves it too slowly. So:
 * - Only falls count. A reading above the previous one (a top-up, a transfer, Vonage's own
 *   reload) ends an interval without a rate; the next interval starts from it. A refill and some
 *   spending in one interval are lost together, which errs toward fewer observations, not lower ones.
 * - Each interval between two readings gives one rate (EUR/s over that interval); a missed or
 *   failed poll just makes the interval longer. Readings must be in the order they were taken, on
 *   a clock that does not step (the monotonic one); an interval of zero or negative length is skipped.
 * - The rate the decision uses is the larger of a smoothed rate (Holt's double exponential
 *   smoothing: level and trend) and the burst rate (the fastest interval in the burst window): a
 *   burst raises it at once, a quiet spell lowers it only as the smoothing lets it.
 * - With fewer than MIN_INTERVALS spending intervals in the history window there is no estimate
 *   (`insufficient`): the caller falls back to the reactive rule and the fixed schedule.
 *
 * Every time constant derives from the scale (POLL_SCHEDULE's interval, POLL_MAX_INTERVAL,
 * TOPUP_LEAD_TIME), never from fixed minutes, so the estimator behaves alike at a one-second and a
 * one-minute scale.
 */

/** One successful balance reading. */
export interface BalanceSample {
  /** Milliseconds on a clock that does not step (monotonic), or at least never goes back. */
  at: number;
  /** EUR */
  balance: number;
}

/** The time scale every constant derives from. */
export interface ForecastScale {
  /** POLL_SCHEDULE's interval: the fastest poll. */
  pollIntervalMs: number;
  /** POLL_MAX_INTERVAL: the slowest poll. */
  maxIntervalMs: number;
  /** TOPUP_LEAD_TIME (0: reactive only). */
  leadTimeMs: number;
}

export type Confidence = 'insufficient' | 'low' | 'high';

export interface BurnEstimate {
  /** EUR per second the decision uses: max(smoothed, burst); 0 when insufficient. */
  rate: number;
  /** Holt's level plus one step of trend, never below 0. */
  smoothed: number;
  /** The fastest interval in the burst window. */
  burst: number;
  confidence: Confidence;
  /** Spending intervals in the history window. */
  intervals: number;
}

/** Fewer spending intervals than this: no estimate. */
export const MIN_INTERVALS = 3;
/** This many and more: `high` confidence (when the rates also agree, see below). */
export const HIGH_INTERVALS = 8;
/** Holt's smoothing factors; unitless (per observation), so they do not depend on the scale. */
const ALPHA = 0.5;
const BETA = 0.2;
/** Changes under half a cent are float noise, not spending or refills. */
const CENT = 0.005;

/** How far back readings count: long enough to hold several slow polls and twice the lead time. */
export function historyWindowMs(s: ForecastScale): number {
  return Math.max(30 * s.pollIntervalMs, 3 * s.maxIntervalMs, 4 * s.leadTimeMs);
}

/** The window whose fastest interval is the burst rate: a few fast polls, or the lead time. */
export function burstWindowMs(s: ForecastScale): number {
  return Math.max(10 * s.pollIntervalMs, s.leadTimeMs);
}

interface Interval {
  end: number;
  /** EUR per second, >= 0 */
  rate: number;
}

/** Spending intervals between consecutive readings within the history window, oldest first. */
export function spendingIntervals(samples: readonly BalanceSample[], scale: ForecastScale, now: number): Interval[] {
  const from = now - historyWindowMs(scale);
  const out: Interval[] = [];
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!;
    const b = samples[i]!;
    if (b.at < from || !Number.isFinite(a.balance) || !Number.isFinite(b.balance)) continue;
    const dt = b.at - a.at;
    if (!(dt > 0)) continue;
    const fall = a.balance - b.balance;
    if (fall < -CENT) continue; // a rise: a refill, never negative spending
    out.push({ end: b.at, rate: Math.max(0, fall) / (dt / 1000) });
  }
  return out;
}

export function estimateBurn(samples: readonly BalanceSample[], scale: ForecastScale, now: number): BurnEstimate {
  const intervals = spendingIntervals(samples, scale, now);
  if (intervals.length < MIN_INTERVALS) return { rate: 0, smoothed: 0, burst: 0, confidence: 'insufficient', intervals: intervals.length };
  let level = intervals[0]!.rate;
  let trend = 0;
  for (let i = 1; i < intervals.length; i++) {
    const x = intervals[i]!.rate;
    const prev = level;
    level = ALPHA * x + (1 - ALPHA) * (level + trend);
    trend = BETA * (level - prev) + (1 - BETA) * trend;
  }
  const smoothed = Math.max(0, level + trend);
  const burstFrom = now - burstWindowMs(scale);
  let burst = 0;
  for (const iv of intervals) if (iv.end >= burstFrom && iv.rate > burst) burst = iv.rate;
  // High confidence needs enough intervals and rates that agree: the burst within 3x the smoothed rate.
  const agree = smoothed > 0 ? burst <= 3 * smoothed : burst === 0;
  const confidence: Confidence = intervals.length >= HIGH_INTERVALS && agree ? 'high' : 'low';
  return { rate: Math.max(smoothed, burst), smoothed, burst, confidence, intervals: intervals.length };
}

/**
 * Seconds until the balance reaches the threshold at the estimated rate: 0 at or below it, and
 * +Inf when it is not draining or the history is too short, so that `runway < 1h` never fires on
 * an account the forecast knows nothing about.
 */
export function runwaySeconds(balance: number, threshold: number, estimate: BurnEstimate): number {
  if (!(balance > threshold)) return 0;
  if (estimate.confidence === 'insufficient' || !(estimate.rate > 0)) return Number.POSITIVE_INFINITY;
  return (balance - threshold) / estimate.rate;
}
