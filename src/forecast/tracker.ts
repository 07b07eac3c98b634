/**
 * One account's forecast state between readings: its recent readings (the history window only),
 * the estimate before and after the newest one, and the adaptive poll state. No I/O and no clock:
 * the caller gives every reading's monotonic time. The replay benchmark (bench/replay.mjs) drives
 * it in virtual time exactly as the daemon does in real time, so the two cannot drift apart.
 */
import { estimateBurn, historyWindowMs, runwaySeconds, type BalanceSample, type BurnEstimate, type ForecastScale } from './burn-rate.js';
import { nextDue, surprised, type Due, type PollState } from './due-time.js';

/**
 * Readings kept at most, whatever the window: every reading costs a pass of the estimator, and a
 * one-second schedule with a 24 h lead time would otherwise keep 345,600 per account. Holt's
 * smoothing has forgotten a reading long before 2,000 more; only the burst window is cut short.
 */
export const MAX_SAMPLES = 2_000;
/** Half a cent: a smaller change is float noise, not a refill. */
const RISE = 0.005;

export class ForecastTracker {
  private readonly samples: BalanceSample[] = [];
  private before: BurnEstimate | undefined;
  private current: BurnEstimate;
  private poll: PollState | undefined;
  private lastSurprise = false;

  constructor(
    readonly scale: ForecastScale,
    private readonly threshold: number,
  ) {
    this.current = estimateBurn([], scale, 0);
  }

  /** A successful reading. Readings that go back in time (another clock) are ignored. */
  observe(sample: BalanceSample): BurnEstimate {
    const newest = this.samples[this.samples.length - 1];
    if (newest !== undefined && sample.at <= newest.at) return this.current;
    // A rise is a refill (ours, a transfer, Vonage's own reload): the spending before it says little
    // about the balance after it, and a burst kept from before would ask for refill after refill
    // on an account that stopped spending. The history starts again from the risen reading, so a
    // forecast needs fresh evidence (MIN_INTERVALS spending intervals) before it may act again.
    if (newest !== undefined && sample.balance > newest.balance + RISE) this.samples.length = 0;
    this.samples.push(sample);
    const from = sample.at - historyWindowMs(this.scale);
    let drop = Math.max(0, this.samples.length - MAX_SAMPLES);
    while (drop < this.samples.length - 1 && this.samples[drop]!.at < from) drop++;
    if (drop > 0) this.samples.splice(0, drop);
    this.before = this.current;
    this.current = estimateBurn(this.samples, this.scale, sample.at);
    this.lastSurprise = surprised(this.before, this.samples, this.scale, sample.at);
    return this.current;
  }

  get estimate(): BurnEstimate {
    return this.current;
  }

  /** Seconds until the threshold at the estimated rate; +Inf when not draining or too little history. */
  runwaySeconds(balance: number): number {
    return runwaySeconds(balance, this.threshold, this.current);
  }

  /** When to read next (POLL_ADAPTIVE), after the reading at `now` showed `balance`. */
  due(now: number, balance: number, awaitingRise: boolean): Due {
    const d = nextDue({ now, scale: this.scale, estimate: this.current, balance, threshold: this.threshold, awaitingRise, surprised: this.lastSurprise, state: this.poll });
    this.poll = d.state;
    return d;
  }
}
