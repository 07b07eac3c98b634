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
  /** Set when a later reading showed the balance rose after an unknown outcome. */
  confirmedAt?: number;
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
  at: number;
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

export function decide(reading: Reading | undefined, settings: PolicySettings, ledger: LedgerView, now: number): Decision {
  if (!reading) return { action: 'none', why: 'no_reading' };
  if (!(reading.value < settings.threshold)) return { action: 'none', why: 'above_threshold' };

  if (!settings.topupEnabled) return { action: 'skip', reason: 'disabled', detail: 'TOPUP_ENABLED=false' };
  if (!reading.autoReload) {
    return { action: 'skip', reason: 'auto_reload_disabled', detail: 'auto-reload is off on the account; Vonage would refuse the top-up' };
  }
  const last = lastCountedAttempt(ledger.attempts);
  const age = now - reading.at;
  if (age < 0 || age > settings.maxReadingAgeMs || (last && reading.at <= last.at)) {
    return { action: 'skip', reason: 'stale_reading', detail: 'the reading is not fresh enough to spend money on' };
  }
  if (!ledger.writable) {
    return { action: 'skip', reason: 'ledger_unavailable', detail: ledger.problem ?? 'the ledger cannot be written' };
  }
  // `now < last.at` (clock moved backwards) falls in here as well, deliberately.
  if (last && now < last.at + settings.cooldownMs) {
    return { action: 'skip', reason: 'cooldown', detail: 'the last attempt is within TOPUP_COOLDOWN', retryAt: last.at + settings.cooldownMs };
  }
  const today = attemptsInLastDay(ledger.attempts, now);
  if (today.length >= settings.maxPerDay) {
    const oldest = Math.min(...today.map((a) => a.at));
    return { action: 'skip', reason: 'daily_cap', detail: `${today.length} attempts in the last 24 h (TOPUP_MAX_PER_DAY=${settings.maxPerDay})`, retryAt: oldest + DAY_MS };
  }
  if (settings.dryRun) return { action: 'skip', reason: 'dry_run', detail: 'DRY_RUN=true: would top up now' };
  return { action: 'topup' };
}

/**
 * Attempts whose outcome we never saw, confirmed by a later reading that is above the balance
 * seen before them. Vonage's own auto-reload could also explain the rise; either way the account
 * was refilled, which is what the attempt was for. Unconfirmed ones stay counted regardless.
 */
export function confirmable(attempts: readonly Attempt[], reading: Reading): Attempt[] {
  return attempts.filter(
    (a) => (a.outcome === 'unknown' || a.outcome === 'pending') && a.confirmedAt === undefined && reading.at > a.at && reading.value > a.balanceBefore + 0.005,
  );
}
