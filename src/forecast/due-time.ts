/**
 * When to read an account's balance next (POLL_ADAPTIVE): a pure function of the estimate, the
 * reading, the scale and what it decided last time. POLL_SCHEDULE's tick is the fastest poll and
 * POLL_MAX_INTERVAL the slowest; in between, the interval follows the runway.
 *
 * - The target interval is a quarter of the time left before the forecast would trigger a refill
 *   (runway minus the lead time): four readings before that point, so that a doubling of the
 *   spending is seen with half the margin left.
 * - Asymmetric, as Kubernetes' autoscaler is: a shorter interval is taken at once; a longer one only
 *   after a quiet window (three intervals at the current rate without a surprise or a speed-up),
 *   and then at most twice the current interval, so a noisy account never oscillates.
 * - The fastest poll, whatever the runway: too little history (the reactive fallback), a reading
 *   that surprised the estimate (spending at more than twice the rate it expected), the balance at or
 *   below the threshold, or a refill whose rise has not been seen yet (it must be confirmed soon).
 * - Never longer than POLL_MAX_INTERVAL: that interval bounds the time an account that jumps from
 *   idle to emptying its whole margin can go unseen.
 */
import type { BalanceSample, BurnEstimate, ForecastScale } from './burn-rate.js';
import { spendingIntervals } from './burn-rate.js';

export interface PollState {
  /** The interval chosen last. */
  intervalMs: number;
  /** Since when the interval has neither shortened nor grown, and no reading surprised. */
  quietSince: number;
}

export type DueReason = 'insufficient_history' | 'awaiting_refill' | 'surprise' | 'below_threshold' | 'runway' | 'slowing_down' | 'not_draining';

/**
 * Why an account is polled when it is, as /status shows it: the adaptive reasons above, or
 * `schedule` (not adaptive: every tick) and `poll_failed` (the last poll failed: the next tick).
 */
export type PollReason = DueReason | 'schedule' | 'poll_failed' | `subaccounts: ${string}` | `primary: ${string}`;

/** The next poll of one account (or one primary's subaccount list), on the monotonic clock. */
export interface PollPlan {
  at: number;
  intervalMs: number;
  reason: PollReason;
  /**
   * The same time on the wall clock. The monotonic clock stops while the host is suspended: a plan
   * on it alone would wait out the suspension again after resume (found by review).
   */
  wallAt?: number;
}

/**
 * Whether a plan is due at a tick: within half a tick of it. Plans count from the tick that
 * polled, but ticks are wall-clock slots and plans monotonic: the two drift apart by milliseconds,
 * and a plan a few ms after its tick must not wait a whole extra interval.
 */
export function isDue(plan: PollPlan | undefined, tickMono: number, tickMs: number, tickWall?: number): boolean {
  // A plan for the fastest poll is due at the very next tick, whenever it comes: on a schedule
  // whose ticks are uneven (`0,10 * * * * *`), a duration would skip the closer ones, and with
  // them reads below the threshold (found by review).
  if (plan === undefined || plan.intervalMs <= tickMs || plan.at - tickMono <= tickMs / 2) return true;
  // Due by either clock: the wall clock runs on through a suspension; a wall clock stepped back
  // only leaves the monotonic answer, and one stepped forward costs one early read, never a late one.
  return plan.wallAt !== undefined && tickWall !== undefined && plan.wallAt - tickWall <= tickMs / 2;
}

/** How long after a refill its rise is waited for at the fastest poll: ten ticks. */
export function confirmWindowMs(scale: ForecastScale): number {
  return 10 * scale.pollIntervalMs;
}

export interface DueInput {
  /** Monotonic ms. */
  now: number;
  scale: ForecastScale;
  estimate: BurnEstimate;
  balance: number;
  threshold: number;
  /** A refill was sent and the rise that confirms it is not seen yet. */
  awaitingRise: boolean;
  surprised: boolean;
  state: PollState | undefined;
}

export interface Due {
  /** Monotonic ms of the next reading. */
  at: number;
  intervalMs: number;
  reason: DueReason;
  state: PollState;
}

/** Readings needed to slow down: three at the current interval, without a surprise. */
const QUIET_INTERVALS = 3;
/** A reading surprises when its interval spent more than this many times the expected rate. */
const SURPRISE_FACTOR = 2;
const CENT = 0.005;

export function nextDue(input: DueInput): Due {
  const { now, scale, estimate } = input;
  const fastest = scale.pollIntervalMs;
  const slowest = Math.max(scale.maxIntervalMs, fastest);
  // A state from another scale (a reload changed POLL_MAX_INTERVAL) is brought into this one.
  const prev = Math.min(slowest, Math.max(fastest, input.state?.intervalMs ?? fastest));
  const at = (intervalMs: number, reason: DueReason, quietSince: number): Due => ({ at: now + intervalMs, intervalMs, reason, state: { intervalMs, quietSince } });

  if (input.awaitingRise) return at(fastest, 'awaiting_refill', now);
  if (estimate.confidence === 'insufficient') return at(fastest, 'insufficient_history', now);
  if (input.surprised) return at(fastest, 'surprise', now);
  if (!(input.balance > input.threshold)) return at(fastest, 'below_threshold', now);

  let target: number;
  let reason: DueReason;
  if (!(estimate.rate > 0)) {
    target = slowest;
    reason = 'not_draining';
  } else {
    const runwayMs = ((input.balance - input.threshold) / estimate.rate) * 1000;
    target = (runwayMs - scale.leadTimeMs) / 4;
    reason = 'runway';
  }
  target = Math.min(slowest, Math.max(fastest, Number.isFinite(target) ? target : slowest));
  if (target <= prev) return at(target, reason, target < prev ? now : (input.state?.quietSince ?? now));
  const quietSince = input.state?.quietSince ?? now;
  if (now - quietSince < QUIET_INTERVALS * prev) return at(prev, reason, quietSince);
  return at(Math.min(target, 2 * prev), 'slowing_down', now);
}

/**
 * Whether the newest reading surprised the estimate made before it: its interval spent more than
 * twice the rate the estimate expected (and more than a cent). An estimate that had too little
 * history expects nothing, so nothing surprises it.
 */
export function surprised(before: BurnEstimate | undefined, samples: readonly BalanceSample[], scale: ForecastScale, now: number): boolean {
  if (before === undefined || before.confidence === 'insufficient') return false;
  if (samples.length < 2) return false;
  const a = samples[samples.length - 2]!;
  const b = samples[samples.length - 1]!;
  if (a.balance - b.balance <= CENT) return false;
  const last = spendingIntervals([a, b], scale, now)[0];
  return last !== undefined && last.rate > SURPRISE_FACTOR * before.rate;
}
