/**
 * What the money path needs of a ledger, whatever stores it. The file ledger (file-ledger.ts) is
 * the embedded default; a shared database ledger (for high availability) implements the same.
 *
 * The one contract that makes "never charge twice" hold: a claim decides on the ledger's current
 * content and records what it decided in one atomic step, so no other decision (in this process
 * or another) can see the ledger between the two. The file ledger gets this by running both
 * synchronously under the STATE_DIR lock and reading its own append back; a database gets it from
 * a transaction that locks the account's rows. Callers never decide outside a claim.
 */
import type { Attempt, ForecastInput, LedgerView, PolicySettings, Reading } from '../refill/topup-policy.js';
import type { FinalOutcome } from './records.js';
import type { Claim, PlannedAttempt } from './file-ledger.js';

export type { Claim, PlannedAttempt };

/** A file ledger answers at once; a database ledger answers with a promise. Callers await both. */
export type MaybePromise<T> = T | Promise<T>;

export interface Ledger {
  /** The attempts that still matter (7 days), and whether new ones may be recorded. */
  view(): LedgerView;
  /** Where it lives, for messages (a path, a table). */
  readonly path: string;
  /** At the start of every cycle: re-check what is held, reopen what failed. */
  retry(): MaybePromise<void>;
  /** A card top-up: decide with the policy (and the forecast, TOPUP_LEAD_TIME) and record the attempt, atomically. */
  claim(reading: Reading, settings: PolicySettings, monoNow?: number, forecast?: ForecastInput): MaybePromise<Claim>;
  /** Several attempts decided together (a primary's transfers): all recorded, or none. */
  claimMany<D>(plan: (view: LedgerView, now: number) => { result: D; attempts: readonly PlannedAttempt[] }, monoNow?: number): MaybePromise<{ result: D; attempts: Attempt[]; problem?: string; sendBy?: number }>;
  recordOutcome(attempt: Attempt, outcome: FinalOutcome, reason?: string): MaybePromise<void>;
  recordConfirmed(attempt: Attempt, balance: number, amount?: number): MaybePromise<void>;
  /** The monotonic stamps of attempts another ledger object of this process held (a reload). */
  adoptMonotonic(attempts: readonly Attempt[]): void;
  close(): void;
}
