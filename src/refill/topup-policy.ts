/**
 * The decision, as a pure function: given a balance reading, the account's settings, the ledger
 * of past attempts and the time, say whether to top up now. No I/O, no clock, no randomness, so
 * every rule below is tested by tables and properties (test/policy.test.ts).
 */
import type { AccountConfig } from '../config/config.js';

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
  /**
   * Monotonic time of the attempt (ms), known only in the process that made it. Time since the
   * attempt is then the lesser of the two clocks, so a wall clock stepped forward cannot end a
   * cooldown or empty the cap early.
   */
  mono?: number;
  /** Balance transfers only: the subaccount api key the money went to, and the EUR asked for. */
  to?: string;
  requested?: number;
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
/**
 * How long ago an attempt was: the wall clock's answer, or the monotonic clock's when it is known
 * and says less. (After a suspend of the host the monotonic clock says less too: the cooldown then
 * holds a little longer, never shorter.)
 */
export function sinceAttempt(a: Attempt, now: number, monoNow?: number): number {
  const wall = now - a.at;
  return a.mono !== undefined && monoNow !== undefined ? Math.min(wall, monoNow - a.mono) : wall;
}

export function attemptsInLastDay(attempts: readonly Attempt[], now: number, monoNow?: number): Attempt[] {
  return attempts.filter((a) => counts(a) && sinceAttempt(a, now, monoNow) < DAY_MS);
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
  let sinceLatest = Number.POSITIVE_INFINITY;
  for (const a of ledger.attempts) if (counts(a)) sinceLatest = Math.min(sinceLatest, sinceAttempt(a, now, monoNow));
  if (sinceLatest < settings.cooldownMs) {
    const retryAt = now + (settings.cooldownMs - sinceLatest);
    return { action: 'skip', reason: 'cooldown', detail: `the last attempt is within TOPUP_COOLDOWN; it ends at ${iso(retryAt)}`, retryAt };
  }
  if (last && reading.at <= last.at) {
    return { action: 'skip', reason: 'stale_reading', detail: 'the reading was taken before the last attempt, so it cannot show it' };
  }
  const today = attemptsInLastDay(ledger.attempts, now, monoNow);
  if (today.length >= settings.maxPerDay) {
    let sinceOldest = 0;
    for (const a of today) sinceOldest = Math.max(sinceOldest, sinceAttempt(a, now, monoNow));
    const retryAt = now + (DAY_MS - sinceOldest);
    return { action: 'skip', reason: 'daily_cap', detail: `${today.length} attempts in the last 24 h (TOPUP_MAX_PER_DAY=${settings.maxPerDay}); the next is allowed at ${iso(retryAt)}`, retryAt };
  }
  if (settings.dryRun) return { action: 'skip', reason: 'dry_run', detail: 'DRY_RUN=true: would top up now' };
  return { action: 'topup' };
}

/**
 * Why a top-up, were it due now, could not be sent for a reason that waiting out the cooldown does
 * not cure: switched off, dry run, auto-reload off, the ledger unwritable, or the daily cap reached
 * (checked apart from the cooldown, which would hide it). Undefined when one could be sent. What
 * vonage_refill_blocked and the VonageRunwayShort alert say: the forecast sees the threshold
 * coming, and nothing will stop it.
 */
export type BlockedReason = 'disabled' | 'dry_run' | 'auto_reload_disabled' | 'ledger_unavailable' | 'daily_cap';

export function topupBlocked(reading: Reading | undefined, settings: PolicySettings, ledger: LedgerView, now: number, monoNow?: number): BlockedReason | undefined {
  if (!settings.topupEnabled) return 'disabled';
  if (settings.dryRun) return 'dry_run';
  if (reading !== undefined && !reading.autoReload) return 'auto_reload_disabled';
  if (!ledger.writable) return 'ledger_unavailable';
  if (attemptsInLastDay(ledger.attempts, now, monoNow).length >= settings.maxPerDay) return 'daily_cap';
  return undefined;
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
 * One rise is one refill: it goes to one attempt, a success first (it is known to have been
 * applied), else the oldest attempt of unknown outcome. The caller then moves every other
 * waiting attempt's floor up to this reading, so the same rise is never counted twice.
 */
export function attributeRise(
  attempts: readonly Attempt[],
  reading: Reading,
  floorOf: (a: Attempt) => number,
): { attempt: Attempt; amount: number }[] {
  const waiting = attempts.filter((a) => awaitsRise(a, reading.at)).sort((x, y) => x.at - y.at);
  // floorOf starts at the balance before the attempt; a torn attempt (no balance) never rises.
  const rise = (a: Attempt) => reading.value - floorOf(a);
  const rose = (a: Attempt) => {
    const r = rise(a);
    return Number.isFinite(r) && r > CENT;
  };
  const pick = waiting.find((a) => a.outcome === 'success' && rose(a)) ?? waiting.find((a) => a.outcome !== 'success' && rose(a));
  return pick ? [{ attempt: pick, amount: Math.round(rise(pick) * 100) / 100 }] : [];
}

/** What the forecast says of one account (src/forecast/burn-rate.ts), for a predictive refill. */
export interface ForecastInput {
  /** Until the balance reaches the threshold at the estimated rate (+Inf: not draining, or too little history). */
  runwayMs: number;
  /** TOPUP_LEAD_TIME: refill when the runway is at most this (0: reactive only). */
  leadTimeMs: number;
  /**
   * EUR one refill adds, when known (the last confirmed top-up, the transfer amount). A forecast
   * acts only within half a refill of the threshold: with a lead time longer than one refill
   * lasts it would otherwise refill again after every rise and pile the balance up (found by
   * review). Half, because over a trace the refills made beyond the reactive rule's are the
   * difference of the final balances over the amount: below 1.5 refills, so at most one.
   */
  refillAmount?: number;
}

export type ForecastDecision =
  | (Decision & { trigger?: 'threshold' | 'forecast' })
  /** The forecast would refill now, but a rule holds it back; not a skip: the balance is not below the threshold. */
  | { action: 'none'; why: 'forecast_held'; reason: SkipReason; detail: string };

/**
 * The reactive rule, and a predictive one beside it: above the threshold, a top-up is due when
 * the forecast says the threshold will be crossed within the lead time. A predictive top-up must
 * pass every rule a reactive one does (a fresh reading, auto-reload, the cooldown, the daily cap,
 * a writable ledger, dry run), because it is asked of decide() itself, for a balance just under
 * the threshold: it can only come earlier, never more often or when the reactive rule would
 * refuse. What holds it back is reported as `forecast_held`, not as a skip (the skip counters say
 * the balance was below the threshold and nothing was sent).
 */
export function decideWithForecast(reading: Reading | undefined, settings: PolicySettings, ledger: LedgerView, now: number, monoNow?: number, forecast?: ForecastInput): ForecastDecision {
  const reactive = decide(reading, settings, ledger, now, monoNow);
  if (reactive.action === 'topup') return { ...reactive, trigger: 'threshold' };
  if (!reading || reactive.action !== 'none' || reactive.why !== 'above_threshold') return reactive;
  // Only strictly above the threshold: at it, the reactive rule governs (a runway of 0 there says
  // nothing about spending, and with too little history it would be the forecast's only input).
  if (!(reading.value > settings.threshold)) return reactive;
  if (forecast === undefined || !(forecast.leadTimeMs > 0) || !(forecast.runwayMs <= forecast.leadTimeMs)) return reactive;
  if (forecast.refillAmount !== undefined && !(reading.value - settings.threshold <= forecast.refillAmount / 2)) return reactive;
  const justBelow = { ...reading, value: settings.threshold - 0.01 };
  const d = decide(justBelow, settings, ledger, now, monoNow);
  if (d.action === 'topup') return { action: 'topup', trigger: 'forecast' };
  if (d.action === 'skip') return { action: 'none', why: 'forecast_held', reason: d.reason, detail: d.detail };
  return reactive;
}

/** Any refill decision (a top-up's or a transfer's), as /status shows it. */
export type DecisionLike =
  | { action: 'skip'; reason: string; detail: string }
  | { action: 'none'; why: 'forecast_held'; reason: string; detail: string }
  | { action: 'none'; why: string }
  | { action: 'topup' | 'transfer'; trigger?: string };

export function decisionStatus(d: DecisionLike | undefined): { action: string; reason?: string; detail?: string } | null {
  if (d === undefined) return null;
  if (d.action === 'skip') return { action: d.action, reason: d.reason, detail: d.detail };
  if (d.action === 'none') return 'detail' in d ? { action: d.action, reason: d.why, detail: `${d.reason}: ${d.detail}` } : { action: d.action, reason: d.why };
  return { action: d.action, ...(d.trigger ? { reason: d.trigger } : {}) };
}
