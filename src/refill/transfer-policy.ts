/**
 * The decision for balance transfers from a primary account to its subaccounts, as a pure
 * function: given one subaccount list answer (the primary's balance and its subaccounts'), each
 * subaccount's settings, the group's limits and the ledger of past transfers, say for every
 * subaccount whether to transfer now, and how much. No I/O, no clock, no randomness, so every rule
 * is tested by tables and properties (test/transfer-policy.test.ts).
 *
 * Rules, in the order they are checked for each subaccount (the first that applies is the answer):
 *
 *  1. A subaccount that spends its primary's balance (`balance: null` or `usePrimaryBalance`) is
 *     never refilled and never "below threshold": `none` / `not_refilled`.
 *  2. A balance at or above the threshold (or a threshold or balance that is not a number):
 *     `none` / `above_threshold`.
 *  3. Suspended: `suspended` (Vonage would take the money, the subaccount could not spend it).
 *  4. `refill: none`, transfers disabled, or settings that cannot be acted on (an amount that is
 *     not a finite number above 0, a cooldown or daily count that is not a finite number ≥ 0):
 *     `disabled`.
 *  5. The primary's reading is not fresh: its age (monotonic when both monotonic times are known,
 *     else wall clock) is more than `maxReadingAgeMs`, either way (a reading from the future by
 *     more than that is stale too): `stale_reading`.
 *  6. The ledger cannot be written: `ledger_unavailable`.
 *  7. A counted transfer to this subaccount within its cooldown: `cooldown`, with `retryAt`.
 *     Time since a transfer is the lesser of the wall and monotonic clocks' answers (as in
 *     topup-policy), and a transfer stamped in the future (the clock went back) counts as just
 *     made, so neither a forward nor a backward clock step ends a cooldown early.
 *  8. A counted transfer to this subaccount at or after the reading: the balance read cannot show
 *     it, `stale_reading`.
 *  9. `maxPerDay` counted transfers to this subaccount in the rolling 24 h: `daily_cap`, with
 *     `retryAt`.
 * 10. The primary is below its own threshold, or its card top-up is due or in flight
 *     (`primaryToppingUp`): `primary_reserve` (the primary tops up first).
 * 11. The budget, shared by all subaccounts of this call (see below): the primary would fall below
 *     `primaryReserve` → `primary_reserve`; the EUR moved in the rolling 24 h would exceed
 *     `maxTransferredPerDay` → `transfer_cap` (with `retryAt` when waiting can help). The reserve
 *     is checked first.
 * 12. `dryRun`: `dry_run` ("would transfer"). A dry-run transfer takes its share of the budget, so
 *     a dry run reports exactly what a live run would do.
 * 13. Otherwise `transfer` of `settings.transferAmount`.
 *
 * Predictive (`forecastDue`, a subaccount's leadTime): a subaccount strictly above its threshold
 * whose forecast says it will be below within its lead time is decided by rules 3-13 as if just
 * below it, funded after every subaccount that is below (emptiest first puts it last), and what
 * would be a skip is `none` / `forecast_held`. So a forecast only ever makes a transfer earlier,
 * never one that the reactive rules would refuse.
 *
 * Counting. A transfer "counts" unless the request provably never left (`not_sent`): pending,
 * unknown, failed and success all count for the cooldown and the per-subaccount daily count, as
 * top-ups do. For the EUR cap (`maxTransferredPerDay`) success, pending and unknown count in full
 * (the money may have moved); a `failed` transfer (Vonage answered with a refusal) moved no money
 * and is left out. An amount in the ledger that is not a number counts as the whole cap
 * (unknowable, so the cap stays closed); a negative one counts as 0.
 *
 * The budget. The primary's balance is the reading's, less every transfer that may have moved money
 * (success, pending, unknown) stamped at or after the reading (it cannot show them yet). Subaccounts
 * that pass rules 1–10 are funded emptiest first: ordered by the fraction of the threshold left
 * (`balance / threshold`, lowest first; a subaccount whose threshold is ≤ 0 can only be below it
 * in debt, and comes before all others), then by the shortfall in EUR (`threshold − balance`,
 * largest first), then by api key (code-unit order), so the order never depends on the input's.
 * Each in turn is funded when its amount still fits both the reserve and the EUR cap after those
 * already funded in this call; one that does not fit is skipped and the next is still tried
 * (first fit): a smaller transfer can go while a larger, emptier one waits, because holding it back
 * would not fund the emptier one this cycle, and one amount that can never fit must not starve
 * the whole group. A subaccount listed twice gets one transfer; its second entry gets `cooldown`.
 *
 * Doubt closes the limits: a check on a value that is not a number fails (no transfer), and a
 * ledger time that is not a number counts as "just now".
 */
import type { SubaccountEntry, SubaccountSettings, SubaccountsConfig } from '../accounts/types.js';
import { DAY_MS, isoTime, type AttemptOutcome } from './topup-policy.js';

/** What the ledger remembers of one past transfer. */
export interface TransferAttempt {
  id: string;
  /** Wall-clock ms when the transfer was written to the ledger, before the request went out. */
  at: number;
  /** Monotonic ms of the same moment, known only in the process that made it. */
  mono?: number;
  /** The subaccount's api key. */
  to: string;
  /** EUR requested. */
  amount: number;
  outcome: AttemptOutcome;
  reason?: string;
}

export interface TransferPolicyInput {
  /** Wall clock (ms): transfer times are wall-clock, and survive restarts. */
  now: number;
  /** Monotonic clock (ms), when known. */
  monoNow?: number;
  /** The primary as the list answer showed it: balance (EUR), when (wall and monotonic), its own top-up threshold. */
  primary: { balance: number; at: number; mono?: number; threshold: number };
  /** The primary's card top-up is due or in flight this cycle: transfers wait. */
  primaryToppingUp?: boolean;
  /** A reading older than this (or from the future by more than this) is not acted on. */
  maxReadingAgeMs: number;
  /** The watched subaccounts Vonage returned, all from the same list answer as the primary. */
  subaccounts: readonly SubaccountEntry[];
  settingsFor(apiKey: string): SubaccountSettings;
  group: Pick<SubaccountsConfig, 'refill' | 'primaryReserve' | 'maxTransferredPerDay' | 'transfersEnabled' | 'dryRun'>;
  ledger: { writable: boolean; problem?: string; transfers: readonly TransferAttempt[] };
  /**
   * Subaccounts whose forecast says they reach their threshold within their lead time (leadTime):
   * strictly above it, they are decided as if just below it, by every other rule. What would be a
   * skip is `none` / `forecast_held` instead (nothing is below the threshold yet).
   */
  forecastDue?: ReadonlySet<string>;
}

export const TRANSFER_SKIP_REASONS = [
  'cooldown',
  'daily_cap',
  'disabled',
  'dry_run',
  'ledger_unavailable',
  'stale_reading',
  'primary_reserve',
  'transfer_cap',
  'suspended',
] as const;
export type TransferSkipReason = (typeof TRANSFER_SKIP_REASONS)[number];

export type TransferDecision =
  | { to: string; action: 'none'; why: 'above_threshold' | 'not_refilled' }
  | { to: string; action: 'none'; why: 'forecast_held'; reason: TransferSkipReason; detail: string }
  | { to: string; action: 'skip'; reason: TransferSkipReason; detail: string; retryAt?: number }
  | { to: string; action: 'transfer'; amount: number; trigger?: 'forecast' };

const iso = isoTime;
/** Reasons a below-threshold subaccount waits for a transfer it will get: predictive ones hold meanwhile. */
const WAITING: ReadonlySet<TransferSkipReason> = new Set(['cooldown', 'stale_reading', 'daily_cap', 'primary_reserve', 'transfer_cap']);
const eur = (x: number): string => (Number.isFinite(x) ? `${Math.round(x * 100) / 100} EUR` : `${x} EUR`);

/** Counts for the cooldown and the per-subaccount daily count: unless the request never left. */
const counted = (t: TransferAttempt): boolean => t.outcome !== 'not_sent';

/** May have moved money: counts for the EUR cap and the primary's balance. A refusal moved none. */
const movedMoney = (t: TransferAttempt): boolean => t.outcome === 'success' || t.outcome === 'pending' || t.outcome === 'unknown';

/** EUR a ledger entry stands for in the cap: its amount; not a number → everything; negative → 0. */
const capAmount = (t: TransferAttempt): number => (t.amount > 0 ? t.amount : Number.isNaN(t.amount) ? Number.POSITIVE_INFINITY : 0);

/**
 * How long ago a transfer was: the wall clock's answer, or the monotonic clock's when it is known
 * and says less. Negative when the transfer is stamped in the future (the clock went back). A time
 * that is not a number says nothing; with no answer at all the transfer counts as just made.
 */
function since(t: { at: number; mono?: number }, now: number, monoNow?: number): number {
  const wall = now - t.at;
  const mono = t.mono !== undefined && monoNow !== undefined ? monoNow - t.mono : Number.NaN;
  if (Number.isNaN(wall)) return Number.isNaN(mono) ? 0 : mono;
  return Number.isNaN(mono) ? wall : Math.min(wall, mono);
}

const inLastDay = (t: TransferAttempt, now: number, monoNow?: number): boolean => since(t, now, monoNow) < DAY_MS;

/**
 * EUR that may have left the primary in the rolling 24 h at `now`: success, pending and unknown
 * transfers (a failed one moved no money). Transfers stamped in the future count.
 */
export function transferredInLastDay(transfers: readonly TransferAttempt[], now: number, monoNow?: number): number {
  let sum = 0;
  for (const t of transfers) if (movedMoney(t) && inLastDay(t, now, monoNow)) sum += capAmount(t);
  return sum;
}

/** Counted transfers (all but not_sent) to subaccount `to` in the rolling 24 h at `now`. */
export function transfersInLastDay(transfers: readonly TransferAttempt[], to: string, now: number, monoNow?: number): number {
  let n = 0;
  for (const t of transfers) if (t.to === to && counted(t) && inLastDay(t, now, monoNow)) n++;
  return n;
}

/** The reading was taken at or before the transfer, on either clock: it cannot show it. */
function readingPredates(reading: { at: number; mono?: number }, t: TransferAttempt): boolean {
  return !(reading.at > t.at) || (reading.mono !== undefined && t.mono !== undefined && !(reading.mono > t.mono));
}

const validSettings = (s: SubaccountSettings): string | undefined => {
  if (!(Number.isFinite(s.transferAmount) && s.transferAmount > 0)) return `the transfer amount (${s.transferAmount}) is not a number above 0`;
  if (!(Number.isFinite(s.cooldownMs) && s.cooldownMs >= 0)) return `the cooldown (${s.cooldownMs} ms) is not a number ≥ 0`;
  if (!(Number.isFinite(s.maxPerDay) && s.maxPerDay >= 0)) return `the daily count (${s.maxPerDay}) is not a number ≥ 0`;
  return undefined;
};

/** Emptiest first: fraction of the threshold left, then shortfall in EUR, then api key. */
function emptiestFirst(a: { entry: SubaccountEntry; settings: SubaccountSettings }, b: { entry: SubaccountEntry; settings: SubaccountSettings }): number {
  const fraction = (x: typeof a) => {
    const f = x.settings.threshold > 0 ? (x.entry.balance as number) / x.settings.threshold : Number.NEGATIVE_INFINITY;
    return Number.isNaN(f) ? Number.NEGATIVE_INFINITY : f;
  };
  const fa = fraction(a);
  const fb = fraction(b);
  if (fa !== fb) return fa < fb ? -1 : 1;
  const sa = a.settings.threshold - (a.entry.balance as number);
  const sb = b.settings.threshold - (b.entry.balance as number);
  if (sa !== sb && !Number.isNaN(sa - sb)) return sa > sb ? -1 : 1;
  return a.entry.apiKey < b.entry.apiKey ? -1 : a.entry.apiKey > b.entry.apiKey ? 1 : 0;
}

export function decideTransfers(input: TransferPolicyInput): TransferDecision[] {
  const { now, monoNow, primary, group, ledger } = input;
  const transfers = ledger.transfers;
  const out: (TransferDecision | undefined)[] = new Array(input.subaccounts.length).fill(undefined);

  const age = primary.mono !== undefined && monoNow !== undefined ? monoNow - primary.mono : now - primary.at;
  const fresh = Math.abs(age) <= input.maxReadingAgeMs;

  // What the primary has once every transfer its reading cannot show yet has left: those made
  // at or after the reading, and any whose outcome is still open (pending, unknown), whenever it
  // was made: Vonage may apply a timed-out transfer seconds after its reading, and the same
  // money must not fund a second subaccount meanwhile (found by the transfer storm).
  let unseen = 0;
  for (const t of transfers) {
    const open = (t.outcome === 'pending' || t.outcome === 'unknown') && inLastDay(t, now, monoNow);
    if (movedMoney(t) && (open || readingPredates(primary, t))) unseen += capAmount(t);
  }
  const primaryBalance = primary.balance - unseen;
  const primaryLow = !(primaryBalance >= primary.threshold);

  const candidates: { index: number; entry: SubaccountEntry; settings: SubaccountSettings; predictive: boolean }[] = [];
  // A predictive transfer is held, never skipped: the subaccount is not below its threshold yet.
  const held = (predictive: boolean, to: string, reason: TransferSkipReason, detail: string, retryAt?: number): TransferDecision =>
    predictive ? { to, action: 'none', why: 'forecast_held', reason, detail } : retryAt === undefined ? { to, action: 'skip', reason, detail } : { to, action: 'skip', reason, detail, retryAt };

  input.subaccounts.forEach((entry, index) => {
    const to = entry.apiKey;
    if (entry.balance === null || entry.usePrimaryBalance) {
      out[index] = { to, action: 'none', why: 'not_refilled' };
      return;
    }
    const s = input.settingsFor(to);
    // Only strictly above the threshold; at it, and below, the reactive rule governs.
    const predictive = !(entry.balance < s.threshold) && entry.balance > s.threshold && input.forecastDue?.has(to) === true;
    const skip = (reason: TransferSkipReason, detail: string, retryAt?: number): void => {
      out[index] = held(predictive, to, reason, detail, retryAt);
    };
    if (!(entry.balance < s.threshold) && !predictive) {
      out[index] = { to, action: 'none', why: 'above_threshold' };
      return;
    }
    if (entry.suspended) return skip('suspended', 'the subaccount is suspended; a transfer would not let it spend');
    if (group.refill === 'none') return skip('disabled', 'refill: none for this group');
    if (!group.transfersEnabled) return skip('disabled', 'transfers are disabled for this group (topupEnabled: false)');
    const invalid = validSettings(s);
    if (invalid !== undefined) return skip('disabled', `${invalid}; no transfer is made`);
    if (!fresh) return skip('stale_reading', 'the subaccount list answer is not fresh enough to move money on');
    if (!ledger.writable) return skip('ledger_unavailable', ledger.problem ?? 'the ledger cannot be written');

    const mine = transfers.filter((t) => t.to === to && counted(t));
    let sinceLatest = Number.POSITIVE_INFINITY;
    for (const t of mine) sinceLatest = Math.min(sinceLatest, since(t, now, monoNow));
    if (sinceLatest < s.cooldownMs) {
      const retryAt = now + (s.cooldownMs - sinceLatest);
      const why = sinceLatest < 0 ? 'the clock is behind the last transfer to this subaccount (it went back); the cooldown holds' : 'the last transfer to this subaccount is within its cooldown';
      return skip('cooldown', `${why} until ${iso(retryAt)}`, retryAt);
    }
    if (mine.some((t) => readingPredates(primary, t))) {
      return skip('stale_reading', 'the reading was taken before the last transfer to this subaccount, so it cannot show it');
    }
    const today = mine.filter((t) => inLastDay(t, now, monoNow));
    if (today.length >= s.maxPerDay) {
      // With maxPerDay 0 there is nothing to wait for.
      if (today.length === 0) return skip('daily_cap', `maxPerDay is ${s.maxPerDay}: no transfers to this subaccount`);
      let sinceOldest = Number.NEGATIVE_INFINITY;
      for (const t of today) sinceOldest = Math.max(sinceOldest, since(t, now, monoNow));
      const retryAt = now + (DAY_MS - sinceOldest);
      return skip('daily_cap', `${today.length} transfers to this subaccount in the last 24 h (maxPerDay ${s.maxPerDay}); the next is allowed at ${iso(retryAt)}`, retryAt);
    }
    if (input.primaryToppingUp) return skip('primary_reserve', 'the primary tops up first: its card top-up is due or in flight this cycle');
    if (primaryLow) {
      return skip('primary_reserve', `the primary tops up first: its balance (${eur(primaryBalance)}) is below its own threshold (${eur(primary.threshold)})`);
    }
    candidates.push({ index, entry, settings: s, predictive });
  });

  // The budget shared by this call: the reserve, and the EUR cap.
  const window = transfers.filter((t) => movedMoney(t) && inLastDay(t, now, monoNow));
  const past = transferredInLastDay(transfers, now, monoNow);
  const planned = new Set<string>();
  let spent = 0;
  // Predictive ones only after every reactive one: they take what the below-threshold leave.
  let waiting: string | undefined;
  for (const c of candidates.sort((a, b) => (a.predictive === b.predictive ? emptiestFirst(a, b) : a.predictive ? 1 : -1))) {
    const to = c.entry.apiKey;
    const amount = c.settings.transferAmount;
    const skip = (reason: TransferSkipReason, detail: string, retryAt?: number): void => {
      out[c.index] = held(c.predictive, to, reason, detail, retryAt);
    };
    // Nor while a subaccount already below its threshold waits (its cooldown, the cap, the
    // reserve): the budget a forecast would take is the one it will need (found by review).
    if (c.predictive) {
      waiting ??= input.subaccounts.find((e, i) => out[i]?.action === 'skip' && WAITING.has((out[i] as { reason: TransferSkipReason }).reason) && e.balance !== null && !e.usePrimaryBalance)?.apiKey ?? '';
      if (waiting !== '') {
        skip('primary_reserve', `held for subaccount ${waiting}, below its threshold and waiting for its own transfer`);
        continue;
      }
    }
    if (planned.has(to)) {
      // The same subaccount listed twice: one transfer per call, the cooldown starts with it.
      skip('cooldown', 'a transfer to this subaccount is already decided in this cycle', now + c.settings.cooldownMs);
      continue;
    }
    const after = primaryBalance - (spent + amount);
    if (!(after >= group.primaryReserve)) {
      const also = spent > 0 ? ` after ${eur(spent)} planned for emptier subaccounts in this cycle` : '';
      skip('primary_reserve', `${eur(amount)} would leave the primary at ${eur(after)}${also}, below its reserve of ${eur(group.primaryReserve)}`);
      continue;
    }
    if (!(past + spent + amount <= group.maxTransferredPerDay)) {
      skip('transfer_cap', `${eur(past)} moved in the last 24 h and ${eur(spent)} planned in this cycle; ${eur(amount)} more would exceed maxTransferredPerDay (${eur(group.maxTransferredPerDay)})`, capRetryAt(window, now, monoNow, spent + amount, group.maxTransferredPerDay));
      continue;
    }
    spent += amount;
    planned.add(to);
    if (group.dryRun) skip('dry_run', `dryRun: would transfer ${eur(amount)} now`);
    else out[c.index] = c.predictive ? { to, action: 'transfer', amount, trigger: 'forecast' } : { to, action: 'transfer', amount };
  }
  return out as TransferDecision[];
}

/**
 * When the oldest transfers will have left the 24 h window so that `need` more fits under the cap,
 * supposing nothing else is moved meanwhile; undefined when waiting cannot help.
 */
function capRetryAt(window: readonly TransferAttempt[], now: number, monoNow: number | undefined, need: number, cap: number): number | undefined {
  if (!(need <= cap)) return undefined;
  const oldestFirst = window.map((t) => ({ since: since(t, now, monoNow), amount: capAmount(t) })).sort((a, b) => b.since - a.since);
  for (let i = 0; i < oldestFirst.length; i++) {
    // What is still in the window once the i+1 oldest have left it.
    let left = 0;
    for (let j = i + 1; j < oldestFirst.length; j++) left += oldestFirst[j]!.amount;
    if (left + need <= cap) {
      const retryAt = now + (DAY_MS - oldestFirst[i]!.since);
      return Number.isFinite(retryAt) ? retryAt : undefined;
    }
  }
  return undefined;
}

export type TransferBlockedReason = 'suspended' | 'disabled' | 'dry_run' | 'ledger_unavailable' | 'daily_cap' | 'primary_reserve' | 'transfer_cap';

/**
 * For each refillable subaccount, why a transfer to it, were it alone due now, could not be sent
 * for a reason the cooldown does not cure: suspended, refill off, dry run, the ledger unwritable,
 * its daily count reached, the primary unable to give the amount above its reserve, or the EUR cap
 * for 24 h reached. The transfer twin of topupBlocked; only the blocked ones are in the map.
 */
export function transfersBlocked(input: TransferPolicyInput): Map<string, TransferBlockedReason> {
  const { now, monoNow, primary, group, ledger } = input;
  const out = new Map<string, TransferBlockedReason>();
  const past = transferredInLastDay(ledger.transfers, now, monoNow);
  const today = new Map<string, number>();
  for (const t of ledger.transfers) if (counted(t) && inLastDay(t, now, monoNow)) today.set(t.to, (today.get(t.to) ?? 0) + 1);
  for (const entry of input.subaccounts) {
    if (entry.balance === null || entry.usePrimaryBalance) continue;
    const s = input.settingsFor(entry.apiKey);
    const reason: TransferBlockedReason | undefined = entry.suspended
      ? 'suspended'
      : group.refill === 'none' || !group.transfersEnabled || validSettings(s) !== undefined
        ? 'disabled'
        : group.dryRun
          ? 'dry_run'
          : !ledger.writable
            ? 'ledger_unavailable'
            : (today.get(entry.apiKey) ?? 0) >= s.maxPerDay
              ? 'daily_cap'
              : !(primary.balance - s.transferAmount >= group.primaryReserve)
                ? 'primary_reserve'
                : !(past + s.transferAmount <= group.maxTransferredPerDay)
                  ? 'transfer_cap'
                  : undefined;
    if (reason !== undefined) out.set(entry.apiKey, reason);
  }
  return out;
}
