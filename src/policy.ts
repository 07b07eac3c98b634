/**
 * The decision, as a pure function: given a balance reading, the account's settings, the ledger
 * of past attempts and the time, say whether to top up now. No I/O, no clock, no randomness, so
 * every rule below is tested by tables and properties (test/policy.test.ts).
 */
import type { AccountConfig } from './config.js';

export type AttemptOutcome = 'pending' | 'success' | 'failed' | 'unknown' | 'not_sent';

export interface Attempt {
  id: string;
  /** When the attempt was written to the ledger, before the request went out (ms). */
  at: number;
  outcome: AttemptOutcome;
  reason?: string;
  /** Balance read just before the attempt; used to reconcile an unknown outcome. */
  balanceBefore: number;
  /** Set when a later reading showed the balance rose after the attempt. */
  confirmedAt?: number;
  /** EUR the attempt added, as far as the balance rise that confirmed it tells (Vonage does not say). */
  amount?: number;
}

export interface LedgerView {
  /** False when STATE_DIR cannot be written or the ledger cannot be trusted: never top up then. */
  writable: boolean;
  problem?: string;
  attempts: readonly Attempt[];
}

export interface Reading {
  value: number;
  autoReload: boolean;
  /** Wall-clock time of the answer (ms): compared with attempt times, which are wall-clock too. */
  at: number;
  /** Monotonic time of the answer (ms), when known: the reading's age must not depend on clock steps. */
  mono?: number;
}

export type PolicySettings = Pick<AccountConfig, 'threshold' | 'cooldownMs' | 'maxPerDay' | 'topupEnabled' | 'dryRun'> & {
  /** A reading older than this is not acted on. */
  maxReadingAgeMs: number;
};

export const SKIP_REASONS = [
  'cooldown',
  'daily_cap',
  'auto_reload_disabled',
  'disabled',
  'dry_run',
  'ledger_unavailable',
  'stale_reading',
] as const;
export type SkipReason = (typeof SKIP_REASONS)[number];

export type Decision =
  | { action: 'none'; why: 'no_reading' | 'above_threshold' }
  | { action: 'skip'; reason: SkipReason; detail: string; retryAt?: number }
  | { action: 'topup' };

export const DAY_MS = 24 * 60 * 60 * 1000;

/** Times in messages; a time outside what Date can show is said as such rather than thrown on. */
export const isoTime = (ms: number): string => (Number.isFinite(ms) && Math.abs(ms) <= 8.64e15 ? new Date(ms).toISOString() : 'an unrepresentable time');
const iso = isoTime;

/** An attempt counts for cooldown and cap unless the request provably never left. */
export function counts(a: Attempt): boolean {
  return a.outcome !== 'not_sent';
}

/**
 * Attempts that count against the rolling 24 h cap at `now`. Attempts stamped in the future
 * (the clock went backwards) count too: when time is in doubt, the cap stays closed.
 */
export function attemptsInLastDay(attempts: readonly Attempt[], now: number): Attempt[] {
  return attempts.filter((a) => counts(a) && a.at > now - DAY_MS);
}

export function lastCountedAttempt(attempts: readonly Attempt[]): Attempt | undefined {
  let last: Attempt | undefined;
  for (const a of attempts) if (counts(a) && (!last || a.at > last.at)) last = a;
  return last;
}

/**
 * `now` is the wall clock (attempt times are wall-clock, and survive restarts); `monoNow` is the
 * monotonic clock, used for the reading's age when the reading carries a monotonic time, so that a
 * clock step is never mistaken for a stale reading (or a stale reading for a fresh one).
 */
export function decide(reading: Reading | undefined, settings: PolicySettings, ledger: LedgerView, now: number, monoNow?: number): Decision {
  if (!reading) return { action: 'none', why: 'no_reading' };
  if (!(reading.value < settings.threshold)) return { action: 'none', why: 'above_threshold' };

  if (!settings.topupEnabled) return { action: 'skip', reason: 'disabled', detail: 'TOPUP_ENABLED=false' };
  if (!reading.autoReload) {
    return { action: 'skip', reason: 'auto_reload_disabled', detail: 'auto-reload is off on the account; Vonage would refuse the top-up' };
  }
  const age = reading.mono !== undefined && monoNow !== undefined ? monoNow - reading.mono : now - reading.at;
  if (age < 0 || age > settings.maxReadingAgeMs) {
    return { action: 'skip', reason: 'stale_reading', detail: 'the reading is not fresh enough to spend money on' };
  }
  if (!ledger.writable) {
    return { action: 'skip', reason: 'ledger_unavailable', detail: ledger.problem ?? 'the ledger cannot be written' };
  }
  const last = lastCountedAttempt(ledger.attempts);
  if (last && now < last.at) {
    // The wall clock is behind the last attempt: it went back. Attempts "in the future" hold.
    return { action: 'skip', reason: 'cooldown', detail: `the clock is behind the last attempt (it went back); the cooldown holds until ${iso(last.at + settings.cooldownMs)}`, retryAt: last.at + settings.cooldownMs };
  }
  if (last && now < last.at + settings.cooldownMs) {
    return { action: 'skip', reason: 'cooldown', detail: `the last attempt is within TOPUP_COOLDOWN; it ends at ${iso(last.at + settings.cooldownMs)}`, retryAt: last.at + settings.cooldownMs };
  }
  if (last && reading.at <= last.at) {
    return { action: 'skip', reason: 'stale_reading', detail: 'the reading was taken before the last attempt, so it cannot show it' };
  }
  const today = attemptsInLastDay(ledger.attempts, now);
  if (today.length >= settings.maxPerDay) {
    let oldest = Number.POSITIVE_INFINITY;
    for (const a of today) if (a.at < oldest) oldest = a.at;
    return { action: 'skip', reason: 'daily_cap', detail: `${today.length} attempts in the last 24 h (TOPUP_MAX_PER_DAY=${settings.maxPerDay}); the next is allowed at ${iso(oldest + DAY_MS)}`, retryAt: oldest + DAY_MS };
  }
  if (settings.dryRun) return { action: 'skip', reason: 'dry_run', detail: 'DRY_RUN=true: would top up now' };
  return { action: 'topup' };
}

/**
 * An attempt that may have added money and whose rise has not been seen yet. After a day, a rise
 * is more likely Vonage's own auto-reload than an attempt that never showed.
 */
export function awaitsRise(a: Attempt, at: number): boolean {
  return (a.outcome === 'success' || a.outcome === 'unknown' || a.outcome === 'pending') && a.confirmedAt === undefined && at > a.at && at - a.at <= DAY_MS;
}

/** Balances are cents; anything smaller is float noise. */
const CENT = 0.005;

/**
 * What a new reading says about refills that have not shown in the balance yet. Vonage's answer
 * to a top-up carries no amount, so the amount is learnt from the rise that follows: the reading
 * minus the lowest balance seen since the attempt (`floor`, the balance before it to begin with).
 * Only balances above that floor mean money arrived; the rise is given to the oldest attempt
 * still waiting (one rise, one amount: nothing is counted twice), and any other unknown attempt
 * that the reading now exceeds is confirmed without an amount.
 */
export function attributeRise(
  attempts: readonly Attempt[],
  reading: Reading,
  floorOf: (a: Attempt) => number,
): { attempt: Attempt; amount?: number }[] {
  const waiting = attempts.filter((a) => awaitsRise(a, reading.at));
  const out: { attempt: Attempt; amount?: number }[] = [];
  let given = false;
  for (const a of [...waiting].sort((x, y) => x.at - y.at)) {
    const floor = Math.min(floorOf(a), Number.isFinite(a.balanceBefore) ? a.balanceBefore : Number.POSITIVE_INFINITY);
    const rise = reading.value - floor;
    if (!given && Number.isFinite(rise) && rise > CENT) {
      out.push({ attempt: a, amount: Math.round(rise * 100) / 100 });
      given = true;
    } else if (a.outcome !== 'success' && Number.isFinite(a.balanceBefore) && reading.value > a.balanceBefore + CENT) {
      out.push({ attempt: a });
    }
  }
  return out;
}
