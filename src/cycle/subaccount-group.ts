/**
 * One primary's subaccounts, each cycle: one list call reads them all (however many), unknown
 * transfers are settled from the primary's transfer history (the ledger attempt id was sent as
 * `reference`), the pure transfer policy decides, the ledger records every transfer before it is
 * sent (claimMany), and each is sent once, never retried. What happened is told as events; the
 * metrics and the log react to them (src/observe/subaccount-events.ts), so this file holds the
 * money path and nothing else.
 */
import type { AccountConfig } from '../config/config.js';
import type { SubaccountEntry, SubaccountList, SubaccountSettings, SubaccountsConfig } from '../accounts/types.js';
import { accountsElsewhere, selectWatched } from '../accounts/subaccount-selection.js';
import type { Ledger } from '../ledger/ledger.js';
import type { Attempt, LedgerView } from '../refill/topup-policy.js';
import { DAY_MS, decisionStatus, isoTime } from '../refill/topup-policy.js';
import { decideTransfers, transfersBlocked, type TransferAttempt, type TransferBlockedReason, type TransferDecision, type TransferPolicyInput } from '../refill/transfer-policy.js';
import { VonageError } from '../vonage/errors.js';
import type { SubaccountsClient } from '../vonage/subaccounts-client.js';
import { failpoint } from './failpoints.js';
import type { ForecastScale } from '../forecast/burn-rate.js';
import { ForecastTracker } from '../forecast/tracker.js';
import { confirmWindowMs, type PollPlan } from '../forecast/due-time.js';
import { planWall } from './watchdog.js';

/** A transfer not in the history this long after it was sent never happened (its outcome: failed). */
export const ABSENT_AFTER_MS = 5 * 60_000;
/** `created_at` has whole seconds and clocks differ: the history is asked with this margin. */
const HISTORY_MARGIN_MS = 5 * 60_000;

export type GroupEvent =
  | { kind: 'list_ok'; list: SubaccountList; watched: readonly SubaccountEntry[]; missing: readonly string[]; unreadable: readonly { apiKey: string; problem: string }[]; elsewhere: readonly Elsewhere[] }
  | { kind: 'list_failed'; error: VonageError; watched: readonly string[] }
  | { kind: 'decided'; sub: SubaccountEntry; settings: SubaccountSettings; decision: TransferDecision; repeat: boolean }
  | { kind: 'claim_failed'; problem: string; planned: number }
  | { kind: 'transfer_sending'; attempt: Attempt; to: string; amount: number; primaryBalance: number; trigger: 'threshold' | 'forecast' }
  | { kind: 'transfer_done'; attempt: Attempt; to: string; amount: number; outcome: 'success' | 'failed' | 'unknown' | 'not_sent'; error?: VonageError; transferId?: string; trigger: 'threshold' | 'forecast' }
  | { kind: 'transfer_resolved'; attempt: Attempt; to: string; outcome: 'success' | 'failed'; amount?: number; via: 'history' | 'absent' }
  | { kind: 'history_failed'; error: VonageError; unresolved: number }
  | { kind: 'ledger_write_failed'; attemptId: string; problem: string }
  /** A shared ledger's claim that was too old to send (LEDGER=postgres): closed as failed, it counts. */
  | { kind: 'transfer_abandoned'; attempt: Attempt; to: string; lateMs: number }
  /** At the end of every cycle: the ledger as it now stands, for the per-subaccount gauges. */
  | { kind: 'ledger'; view: LedgerView; now: number }
  /** After a list answer: each refillable subaccount's forecast, and when the list is read next (wall ms). */
  | { kind: 'forecast'; estimates: readonly SubaccountForecast[]; nextPollAt: number };

export interface SubaccountForecast {
  apiKey: string;
  rate: number;
  runwaySeconds: number;
  confidence: string;
  /** Why a transfer due now could not be sent, beyond the cooldown (vonage_refill_blocked). */
  blocked?: TransferBlockedReason;
}

/** A subaccount that is another account of the fleet, and so not watched through its primary. */
export interface Elsewhere {
  apiKey: string;
  /** The fleet account it is (by API key) or whose name it shares (by name). */
  account: string;
  by: 'apiKey' | 'name';
}

export interface SubaccountGroupDeps {
  primary: AccountConfig & { subaccounts: SubaccountsConfig };
  /** Every account of the running fleet (a reload changes them): see accountsElsewhere. */
  fleetAccounts?: () => readonly { name: string; apiKey: string }[];
  client: SubaccountsClient;
  ledger: Ledger;
  onEvent: (event: GroupEvent) => void;
  now: () => number;
  monoNow: () => number;
  httpTimeoutMs: number;
  /** POLL_SCHEDULE's tick and POLL_MAX_INTERVAL (the primary's): each subaccount's forecast and the list's next poll. */
  forecastScale?: ForecastScale;
  slotAtOrAfter?: (wallMs: number) => number | null;
}

/** What the primary's own cycle (its card top-up) said, this same cycle. */
export interface PrimaryCycle {
  /** The primary's balance was below its threshold: its card top-up goes first, transfers wait. */
  belowThreshold?: boolean;
}

export interface GroupResult {
  ok: boolean;
  /** Watched subaccounts below their threshold that got no transfer this cycle. */
  belowWithoutRefill: number;
  transfers: { to: string; outcome: string }[];
}

export interface SubaccountStatus {
  account: string;
  name: string;
  primary: string;
  balance: number | null;
  sharesPrimaryBalance: boolean;
  suspended: boolean;
  threshold: number;
  transferAmount: number;
  lastSuccessfulPoll: string | null;
  lastDecision: { action: string; reason?: string; detail?: string } | null;
  lastTransfer: { at: string; outcome: string; reason?: string; amountEuros: number } | null;
  transfersLast24h: number;
  maxPerDay: number;
  forecast: { burnRateEurosPerSecond: number; runwaySeconds: number | null; confidence: string; leadTimeSeconds: number } | null;
  refillBlocked: string | null;
  /** The primary's list is read next then (every subaccount of it at once), and why. */
  nextPoll: string | null;
  nextPollReason: string | null;
}

export class SubaccountGroup {
  private lastList: SubaccountList | undefined;
  private lastOk = false;
  private lastError: VonageError | undefined;
  private missing: readonly string[] = [];
  private unreadable: readonly { apiKey: string; problem: string }[] = [];
  private elsewhere: readonly Elsewhere[] = [];
  private readonly decisions = new Map<string, TransferDecision>();
  private readonly lastSkip = new Map<string, string>();
  private readonly trackers = new Map<string, ForecastTracker>();
  private plan: PollPlan | undefined;
  private blocked = new Map<string, TransferBlockedReason>();
  private movedOut = 0;
  /** The subaccount whose forecast set the plan. */
  private planFor: string | undefined;

  constructor(private readonly deps: SubaccountGroupDeps) {}

  /** The list's next poll (monotonic): when its most urgent subaccount is due. */
  get nextPoll(): PollPlan | undefined {
    return this.plan;
  }

  get adaptive(): boolean {
    return this.deps.primary.pollAdaptive && this.deps.forecastScale !== undefined;
  }

  /** EUR sent to subaccounts by transfers that may have moved money, since start (the primary's forecast adds it back). */
  get transferredOut(): number {
    return this.movedOut;
  }

  get primaryName(): string {
    return this.deps.primary.name;
  }

  get config(): SubaccountsConfig {
    return this.deps.primary.subaccounts;
  }

  get lastSuccessMono(): number | undefined {
    return this.lastList?.mono;
  }

  get lastPollOk(): boolean {
    return this.lastOk;
  }

  get lastFailure(): VonageError | undefined {
    return this.lastOk ? undefined : this.lastError;
  }

  /** The subaccounts watched as of the last list answer (all of them for `watch: all`). */
  get watched(): readonly SubaccountEntry[] {
    return this.lastList ? this.select(this.lastList).watched : [];
  }

  /** The list's watched subaccounts, less those that are another account of the fleet. */
  private select(list: SubaccountList): ReturnType<typeof selectWatched> & { elsewhere: Elsewhere[] } {
    const sel = selectWatched(list.subaccounts, this.config.watch, list.unreadable);
    const others = accountsElsewhere(this.deps.fleetAccounts?.() ?? [], this.deps.primary.name);
    if (others.size === 0) return { ...sel, elsewhere: [] };
    const elsewhere: Elsewhere[] = [];
    const keep = (apiKey: string) => {
      const other = others.get(apiKey);
      if (other === undefined) return true;
      elsewhere.push({ apiKey, account: other.name, by: other.by });
      return false;
    };
    const watched = sel.watched.filter((s) => keep(s.apiKey));
    const unreadable = sel.unreadable.filter((u) => !others.has(u.apiKey));
    return { watched, missing: sel.missing, unreadable, elsewhere };
  }

  settingsFor(apiKey: string): SubaccountSettings {
    return { ...this.config.settings, ...(this.config.overrides[apiKey] ?? {}) };
  }

  async runCycle(primaryCycle: PrimaryCycle, signal?: AbortSignal, tickMono: number = this.deps.monoNow()): Promise<GroupResult> {
    try {
      return await this.cycle(primaryCycle, signal);
    } finally {
      if (!signal?.aborted) this.planNext(tickMono);
      this.deps.onEvent({ kind: 'ledger', view: this.deps.ledger.view(), now: this.deps.now() });
    }
  }

  /** Each refillable subaccount's forecast learns from the list answer; the others' are dropped. */
  private observe(list: SubaccountList, watched: readonly SubaccountEntry[]): void {
    const scale = this.deps.forecastScale;
    if (scale === undefined) return;
    const keep = new Set<string>();
    for (const s of watched) {
      if (s.balance === null || s.usePrimaryBalance || typeof s.balance !== 'number') continue;
      keep.add(s.apiKey);
      const threshold = this.settingsFor(s.apiKey).threshold;
      let t = this.trackers.get(s.apiKey);
      // A reload that changed the threshold builds a new group; within one, a threshold is fixed.
      if (t === undefined) this.trackers.set(s.apiKey, (t = new ForecastTracker({ ...scale, leadTimeMs: this.settingsFor(s.apiKey).leadTimeMs ?? 0 }, threshold)));
      t.observe({ at: list.mono, balance: s.balance });
    }
    for (const k of [...this.trackers.keys()]) if (!keep.has(k)) this.trackers.delete(k);
  }

  /** Subaccounts whose forecast puts their threshold within their lead time (leadTime), strictly above it. */
  private forecastDue(watched: readonly SubaccountEntry[]): Set<string> {
    const due = new Set<string>();
    for (const s of watched) {
      const lead = this.settingsFor(s.apiKey).leadTimeMs ?? 0;
      const t = this.trackers.get(s.apiKey);
      if (!(lead > 0) || t === undefined || typeof s.balance !== 'number' || t.estimate.confidence === 'insufficient') continue;
      // Within half a transfer of the threshold only (see ForecastInput.refillAmount): a lead time
      // longer than one transfer lasts would otherwise transfer after every rise (found by review).
      if (!(s.balance - this.settingsFor(s.apiKey).threshold <= this.settingsFor(s.apiKey).transferAmount / 2)) continue;
      if (t.runwaySeconds(s.balance) * 1000 <= lead) due.add(s.apiKey);
    }
    return due;
  }

  /**
   * The list's next poll: at the next tick unless POLL_ADAPTIVE; otherwise when the most urgent
   * subaccount's forecast says, so one list call serves them all. A failed list is retried at
   * the next tick; a group with nothing to refill is read at POLL_MAX_INTERVAL.
   */
  private planNext(tickMono: number): void {
    const scale = this.deps.forecastScale;
    if (scale === undefined) return;
    const fastest = scale.pollIntervalMs;
    const balances = new Map<string, number>();
    for (const s of this.lastList?.subaccounts ?? []) if (typeof s.balance === 'number') balances.set(s.apiKey, s.balance);
    this.planFor = undefined;
    if (!this.adaptive) this.plan = { at: tickMono + fastest, intervalMs: fastest, reason: 'schedule' };
    // An entry that could not be read is a failed poll of that subaccount: read again at once.
    else if (!this.lastOk || this.lastList === undefined || this.unreadable.length > 0) this.plan = { at: tickMono + fastest, intervalMs: fastest, reason: 'poll_failed' };
    else {
      const list = this.lastList;
      const slowest = Math.max(fastest, scale.maxIntervalMs);
      let best: PollPlan = { at: tickMono + slowest, intervalMs: slowest, reason: 'not_draining' };
      const window = confirmWindowMs(scale);
      // A transfer made this cycle, or one whose outcome is unknown, is confirmed by the next list
      // soon. One pass over the ledger, not one per subaccount (1,000 of them, 20,000 attempts).
      const awaitingTo = new Set<string>();
      for (const a of this.deps.ledger.view().attempts) {
        if (a.to !== undefined && a.outcome !== 'not_sent' && a.outcome !== 'failed' && (a.at >= list.at || a.outcome === 'unknown') && list.at - a.at <= window) awaitingTo.add(a.to);
      }
      for (const [apiKey, t] of this.trackers) {
        const balance = balances.get(apiKey);
        if (balance === undefined) continue;
        const awaiting = awaitingTo.has(apiKey);
        const d = t.due(tickMono, balance, awaiting);
        if (d.at < best.at) {
          best = { at: d.at, intervalMs: d.intervalMs, reason: d.reason };
          this.planFor = apiKey;
        }
      }
      this.plan = best;
    }
    this.plan.wallAt = this.deps.now() + (this.plan.at - this.deps.monoNow());
    this.publish();
  }

  /**
   * The primary's own balance is due earlier: the list is read with it (Fleet runs the unit
   * whole), so that is its next read too.
   */
  adoptEarlier(plan: PollPlan | undefined): void {
    if (plan === undefined || this.plan === undefined || !(plan.at < this.plan.at)) return;
    this.plan = { ...plan, reason: `primary: ${plan.reason}` as PollPlan['reason'] };
    this.planFor = undefined;
    this.publish();
  }

  private publish(): void {
    const scale = this.deps.forecastScale;
    if (scale === undefined || this.plan === undefined) return;
    const balances = new Map<string, number>();
    for (const s of this.lastList?.subaccounts ?? []) if (typeof s.balance === 'number') balances.set(s.apiKey, s.balance);
    const nextPollAt = planWall(this.plan, { now: this.deps.now, forecastScale: scale, ...(this.deps.slotAtOrAfter ? { slotAtOrAfter: this.deps.slotAtOrAfter } : {}) }, this.deps.monoNow());
    const estimates: SubaccountForecast[] = [];
    for (const [apiKey, t] of this.trackers) {
      const balance = balances.get(apiKey);
      const blocked = this.blocked.get(apiKey);
      estimates.push({ apiKey, rate: t.estimate.rate, runwaySeconds: balance === undefined ? Number.POSITIVE_INFINITY : t.runwaySeconds(balance), confidence: t.estimate.confidence, ...(blocked ? { blocked } : {}) });
    }
    this.deps.onEvent({ kind: 'forecast', estimates, nextPollAt });
  }

  private async cycle(primaryCycle: PrimaryCycle, signal?: AbortSignal): Promise<GroupResult> {
    const { client, ledger, onEvent } = this.deps;
    await ledger.retry();
    let list: SubaccountList;
    try {
      list = await client.listSubaccounts(signal);
    } catch (err) {
      if (signal?.aborted) return { ok: false, belowWithoutRefill: 0, transfers: [] };
      const e = err instanceof VonageError ? err : new VonageError('list_subaccounts', 'network', 'subaccount list abandoned', 'unknown');
      this.lastOk = false;
      this.lastError = e;
      onEvent({ kind: 'list_failed', error: e, watched: Array.isArray(this.config.watch) ? this.config.watch : this.watched.map((s) => s.apiKey) });
      return { ok: false, belowWithoutRefill: 0, transfers: [] };
    }
    this.lastList = list;
    this.lastOk = true;
    const { watched, missing, unreadable, elsewhere } = this.select(list);
    this.missing = missing;
    this.unreadable = unreadable;
    this.elsewhere = elsewhere;
    onEvent({ kind: 'list_ok', list, watched, missing, unreadable, elsewhere });
    this.observe(list, watched);

    await this.resolveUnknown(signal);
    if (signal?.aborted) return { ok: true, belowWithoutRefill: 0, transfers: [] };

    const forecastDue = this.forecastDue(watched);
    // Decide and record in one step: nothing runs between the ledger's view and the records.
    const claim = await ledger.claimMany((view, now) => {
      const input: TransferPolicyInput = {
        forecastDue,
        now,
        monoNow: this.deps.monoNow(),
        primary: { balance: list.primary.balance, at: list.at, mono: list.mono, threshold: this.deps.primary.threshold },
        primaryToppingUp: primaryCycle.belowThreshold === true,
        maxReadingAgeMs: this.deps.httpTimeoutMs,
        subaccounts: watched,
        settingsFor: (k) => this.settingsFor(k),
        group: this.config,
        ledger: { writable: view.writable, ...(view.problem === undefined ? {} : { problem: view.problem }), transfers: transferAttempts(view.attempts, watched, this.maxTransferAmount()) },
      };
      const decisions = decideTransfers(input);
      this.blocked = transfersBlocked(input);
      const attempts = decisions.flatMap((d) => (d.action === 'transfer' ? [{ balance: list.primary.balance, threshold: this.settingsFor(d.to).threshold, to: d.to, requested: d.amount }] : []));
      return { result: decisions, attempts };
    }, this.deps.monoNow());

    let decisions = claim.result;
    if (claim.problem !== undefined) {
      const planned = decisions.filter((d) => d.action === 'transfer').length;
      onEvent({ kind: 'claim_failed', problem: claim.problem, planned });
      decisions = decisions.map((d): TransferDecision =>
        d.action !== 'transfer'
          ? d
          : d.trigger === 'forecast'
            ? { to: d.to, action: 'none', why: 'forecast_held', reason: 'ledger_unavailable', detail: claim.problem! }
            : { to: d.to, action: 'skip', reason: 'ledger_unavailable', detail: claim.problem! },
      );
    }
    const byKey = new Map(watched.map((s) => [s.apiKey, s]));
    let belowWithoutRefill = 0;
    for (const d of decisions) {
      const sub = byKey.get(d.to)!;
      this.decisions.set(d.to, d);
      const reason = d.action === 'skip' ? d.reason : d.action === 'none' && d.why === 'forecast_held' ? `held:${d.reason}` : undefined;
      const repeat = reason !== undefined && this.lastSkip.get(d.to) === reason;
      if (reason === undefined) this.lastSkip.delete(d.to);
      else this.lastSkip.set(d.to, reason);
      if (d.action === 'skip') belowWithoutRefill += 1;
      onEvent({ kind: 'decided', sub, settings: this.settingsFor(d.to), decision: d, repeat });
    }

    const transfers: { to: string; outcome: string }[] = [];
    let primaryBalance = list.primary.balance;
    const triggers = new Map(decisions.flatMap((d) => (d.action === 'transfer' ? [[d.to, d.trigger ?? 'threshold'] as const] : [])));
    for (const attempt of claim.attempts) {
      const outcome = await this.send(attempt, primaryBalance, triggers.get(attempt.to!) ?? 'threshold', claim.sendBy);
      if (outcome === 'success' || outcome === 'unknown') this.movedOut += attempt.requested ?? 0;
      if (outcome !== 'not_sent' && outcome !== 'failed') primaryBalance -= attempt.requested ?? 0;
      transfers.push({ to: attempt.to!, outcome });
    }
    return { ok: transfers.every((t) => t.outcome === 'success'), belowWithoutRefill, transfers };
  }

  /** Sends one recorded transfer, once: its outcome is whatever this one request tells. */
  private async send(attempt: Attempt, primaryBalance: number, trigger: 'threshold' | 'forecast', sendBy?: number): Promise<'success' | 'failed' | 'unknown' | 'not_sent'> {
    const { client, ledger, onEvent, primary } = this.deps;
    const to = attempt.to!;
    const amount = attempt.requested!;
    failpoint('after_claim_committed');
    // As for a top-up: a shared ledger's claim too old to act on (the process was paused after it
    // committed) is closed as abandoned; it counts for the subaccount's cooldown and caps.
    if (sendBy !== undefined && this.deps.monoNow() > sendBy) {
      try {
        await ledger.recordOutcome(attempt, 'failed', 'abandoned');
      } catch (err) {
        onEvent({ kind: 'ledger_write_failed', attemptId: attempt.id, problem: err instanceof Error ? err.message : 'ledger write failed' });
      }
      onEvent({ kind: 'transfer_abandoned', attempt, to, lateMs: this.deps.monoNow() - sendBy });
      return 'not_sent';
    }
    onEvent({ kind: 'transfer_sending', attempt, to, amount, primaryBalance, trigger });
    failpoint('after_transfer_recorded');
    let outcome: 'success' | 'failed' | 'unknown' | 'not_sent';
    let error: VonageError | undefined;
    let transferId: string | undefined;
    // Not given the shutdown signal: abandoning a recorded request only makes its outcome unknown.
    try {
      const receipt = await client.transfer({ from: primary.apiKey, to, amount, reference: attempt.id });
      outcome = 'success';
      transferId = receipt.id;
    } catch (err) {
      error = err instanceof VonageError ? err : new VonageError('balance_transfer', 'network', 'balance transfer failed', 'unknown');
      outcome = error.delivery === 'no' ? 'not_sent' : error.delivery === 'unknown' ? 'unknown' : 'failed';
    }
    failpoint('before_transfer_outcome_recorded');
    try {
      await ledger.recordOutcome(attempt, outcome, error?.reason);
      if (outcome === 'success') await ledger.recordConfirmed(attempt, primaryBalance - amount, amount);
    } catch (err) {
      onEvent({ kind: 'ledger_write_failed', attemptId: attempt.id, problem: err instanceof Error ? err.message : 'ledger write failed' });
    }
    onEvent({ kind: 'transfer_done', attempt, to, amount, outcome, trigger, ...(error ? { error } : {}), ...(transferId ? { transferId } : {}) });
    return outcome;
  }

  /**
   * Transfers whose outcome is unknown (a lost answer, a crash between record and answer) are
   * looked up in the primary's history by their reference. Found: it happened. Absent five
   * minutes after it was sent: it did not (recorded as failed, `not_in_history`; it still counts
   * for the subaccount's cooldown and cap). Until then it counts for everything.
   */
  private async resolveUnknown(signal?: AbortSignal): Promise<void> {
    const { ledger, client, onEvent, now } = this.deps;
    const open = ledger.view().attempts.filter((a) => a.outcome === 'unknown' && a.to !== undefined && !a.id.startsWith('torn-') && now() - a.at < DAY_MS);
    if (open.length === 0) return;
    // The window is wide on purpose: Vonage stamps `created_at` by its own clock, and ours may be
    // minutes off either way. A window cut to our clock could miss an applied transfer and call
    // it absent, which would free its cap. So: from a day before the oldest open one (or before
    // now, if the clock went back), with no end at all; the reference match is exact.
    let oldest = Number.POSITIVE_INFINITY;
    for (const a of open) oldest = Math.min(oldest, a.at);
    let history;
    try {
      history = await client.listTransfers({ startDate: isoSeconds(Math.min(oldest, now()) - DAY_MS - HISTORY_MARGIN_MS) }, signal);
    } catch (err) {
      if (signal?.aborted) return;
      const e = err instanceof VonageError ? err : new VonageError('list_balance_transfers', 'network', 'transfer history abandoned', 'unknown');
      onEvent({ kind: 'history_failed', error: e, unresolved: open.length });
      return;
    }
    const byRef = new Map(history.map((t) => [t.reference, t]));
    for (const a of open) {
      const hit = byRef.get(a.id);
      // A reference is ours only if it names the same target: anything else is not our transfer.
      const found = hit && hit.to === a.to ? hit : undefined;
      const via = found ? 'history' : now() - a.at > ABSENT_AFTER_MS ? 'absent' : undefined;
      if (via === undefined) continue;
      try {
        if (found) {
          await ledger.recordOutcome(a, 'success', 'found_in_history');
          await ledger.recordConfirmed(a, Number.NaN, found.amount);
        } else {
          await ledger.recordOutcome(a, 'failed', 'not_in_history');
        }
      } catch (err) {
        onEvent({ kind: 'ledger_write_failed', attemptId: a.id, problem: err instanceof Error ? err.message : 'ledger write failed' });
      }
      onEvent({ kind: 'transfer_resolved', attempt: a, to: a.to!, outcome: found ? 'success' : 'failed', ...(found ? { amount: found.amount } : {}), via });
    }
  }

  private maxTransferAmount(): number {
    let max = this.config.settings.transferAmount;
    for (const o of Object.values(this.config.overrides)) if (o.transferAmount !== undefined && o.transferAmount > max) max = o.transferAmount;
    return max;
  }

  status(): { subaccounts: SubaccountStatus[]; missing: readonly string[]; unreadable: readonly { apiKey?: string; index?: number; problem: string }[]; elsewhere: readonly Elsewhere[]; lastPoll: { ok: boolean; reason?: string; message?: string } | null } {
    const { ledger, now } = this.deps;
    const attempts = ledger.view().attempts;
    const scale = this.deps.forecastScale;
    const nextPoll = this.plan && scale ? isoTime(planWall(this.plan, { now, forecastScale: scale, ...(this.deps.slotAtOrAfter ? { slotAtOrAfter: this.deps.slotAtOrAfter } : {}) }, this.deps.monoNow())) : null;
    const subs = this.watched.map((s): SubaccountStatus => {
      const st = this.settingsFor(s.apiKey);
      const mine = attempts.filter((a) => a.to === s.apiKey);
      const last = mine.length > 0 ? mine[mine.length - 1] : undefined;
      const d = this.decisions.get(s.apiKey);
      return {
        account: s.apiKey,
        name: s.name,
        primary: this.primaryName,
        balance: s.balance,
        sharesPrimaryBalance: s.usePrimaryBalance,
        suspended: s.suspended,
        threshold: st.threshold,
        transferAmount: st.transferAmount,
        lastSuccessfulPoll: this.lastList ? isoTime(this.lastList.at) : null,
        lastDecision: decisionStatus(d),
        lastTransfer: last ? { at: isoTime(last.at), outcome: last.outcome, ...(last.reason ? { reason: last.reason } : {}), amountEuros: last.amount ?? last.requested ?? 0 } : null,
        transfersLast24h: mine.filter((a) => a.outcome !== 'not_sent' && now() - a.at < DAY_MS).length,
        maxPerDay: st.maxPerDay,
        forecast: forecastOf(this.trackers.get(s.apiKey), s.balance),
        refillBlocked: this.blocked.get(s.apiKey) ?? null,
        nextPoll,
        nextPollReason: this.plan ? (this.planFor === undefined || this.planFor === s.apiKey ? this.plan.reason : `subaccount ${this.planFor}: ${this.plan.reason}`) : null,
      };
    });
    const lastPoll = this.lastList === undefined && this.lastError === undefined ? null : this.lastOk ? { ok: true } : { ok: false, reason: this.lastError!.reason, message: this.lastError!.message };
    // Entries without a usable key are shown too, by position: with `watch: all` they are the only trace.
    const keyless = (this.lastList?.unreadable ?? []).filter((u) => u.apiKey === undefined).map((u) => ({ index: u.index, problem: u.problem }));
    return { subaccounts: subs, missing: this.missing, unreadable: [...this.unreadable, ...keyless], elsewhere: this.elsewhere, lastPoll };
  }
}

function forecastOf(t: ForecastTracker | undefined, balance: number | null): SubaccountStatus['forecast'] {
  if (t === undefined || typeof balance !== 'number') return null;
  const runway = t.runwaySeconds(balance);
  return { burnRateEurosPerSecond: t.estimate.rate, runwaySeconds: Number.isFinite(runway) ? Math.round(runway) : null, confidence: t.estimate.confidence, leadTimeSeconds: t.scale.leadTimeMs / 1000 };
}

const isoSeconds = (ms: number) => new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.000Z$/, 'Z');

/**
 * The ledger's attempts as the transfer policy reads them. A torn attempt lost its target: it
 * may have been a transfer to any of them, so it counts for every watched subaccount's cooldown
 * and cap, and once, as the largest transfer configured, against the primary's EUR cap.
 */
export function transferAttempts(attempts: readonly Attempt[], watched: readonly SubaccountEntry[], maxAmount: number): TransferAttempt[] {
  const out: TransferAttempt[] = [];
  for (const a of attempts) {
    const base = { id: a.id, at: a.at, outcome: a.outcome, ...(a.mono === undefined ? {} : { mono: a.mono }), ...(a.reason === undefined ? {} : { reason: a.reason }) };
    if (a.to !== undefined) {
      out.push({ ...base, to: a.to, amount: a.amount ?? a.requested ?? maxAmount });
      continue;
    }
    watched.forEach((s, i) => out.push({ ...base, id: `${a.id}#${i}`, to: s.apiKey, amount: i === 0 ? maxAmount : 0 }));
  }
  return out;
}
