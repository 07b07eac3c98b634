/**
 * One account's poll → reconcile → decide → act cycle. Everything it touches is injected (client,
 * ledger, metrics, logger, clock, sleep), so the cycle runs the same in the daemon, in `--once`
 * and in tests against the simulator.
 */
import type { AccountConfig } from '../config/config.js';
import { VonageError } from '../vonage/errors.js';
import { failpoint } from './failpoints.js';
import type { Ledger } from '../ledger/ledger.js';
import type { Logger } from '../observe/log.js';
import type { Metrics } from '../observe/metrics.js';
import { decisionStatus, topupBlocked, attemptsInLastDay, attributeRise, awaitsRise, counts, DAY_MS, isoTime, lastCountedAttempt, sinceAttempt, type Attempt, type ForecastDecision, type ForecastInput, type PolicySettings } from '../refill/topup-policy.js';
import type { ForecastScale } from '../forecast/burn-rate.js';
import { ForecastTracker } from '../forecast/tracker.js';
import { confirmWindowMs, type PollPlan } from '../forecast/due-time.js';
import { getBalanceWithRetry, type BalanceReading, type VonageClient } from '../vonage/account-client.js';

export interface WatchdogDeps {
  account: AccountConfig;
  client: VonageClient;
  ledger: Ledger;
  metrics: Metrics;
  log: Logger;
  now: () => number;
  /** Monotonic clock (ms) for ages and readiness; defaults to performance.now. */
  monoNow?: () => number;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
  httpTimeoutMs: number;
  /** Tries of the balance read within one cycle (the top-up is never retried). */
  balanceAttempts?: number;
  retryBaseDelayMs?: number;
  retryMaxDelayMs?: number;
  /** The forecast's time scale (POLL_SCHEDULE's interval): its estimate drives TOPUP_LEAD_TIME and the runway metrics. */
  forecastScale?: ForecastScale;
  /**
   * The first POLL_SCHEDULE slot at or after a wall-clock time: what the next-poll metric and
   * /status show. Unset: the planned time itself.
   */
  slotAtOrAfter?: (wallMs: number) => number | null;
  /** EUR this primary has moved to its subaccounts so far (memory, only growing): not spending. */
  transferredOut?: () => number;
}

export type TopUpOutcome = 'success' | 'failed' | 'unknown' | 'not_sent';

export interface CycleResult {
  ok: boolean;
  /** A fresh reading was below the threshold. */
  belowThreshold?: boolean;
  reading?: BalanceReading;
  pollError?: VonageError;
  decision: ForecastDecision;
  topUp?: { outcome: TopUpOutcome; reason?: string };
}

interface PollRecord {
  at: number;
  ok: boolean;
  reason?: string;
  message?: string;
}

export interface AccountStatus {
  account: string;
  balance: number | null;
  autoReload: boolean | null;
  threshold: number;
  topupEnabled: boolean;
  dryRun: boolean;
  lastPoll: { at: string; ok: boolean; reason?: string; message?: string } | null;
  lastSuccessfulPoll: string | null;
  lastDecision: { action: string; reason?: string; detail?: string } | null;
  lastTopUp: { at: string; outcome: string; reason?: string; confirmedByBalance: boolean; amountEuros: number | null } | null;
  toppedUpEurosLast24h: number;
  attemptsLast24h: number;
  maxPerDay: number;
  cooldownUntil: string | null;
  ledger: { writable: boolean; problem?: string };
  /** The forecast: EUR/s spent, seconds to the threshold (null: not draining, or too little history), how sure. */
  forecast: { burnRateEurosPerSecond: number; runwaySeconds: number | null; confidence: string; leadTimeSeconds: number } | null;
  /** Why a top-up due now could not be sent, beyond the cooldown (vonage_refill_blocked); null when it could. */
  refillBlocked: string | null;
  /** When the account is polled next and why (POLL_ADAPTIVE); null before the first cycle. */
  nextPoll: string | null;
  nextPollReason: string | null;
  pollIntervalSeconds: number | null;
}

const iso = isoTime;

/** A plan's monotonic time as the wall-clock slot of the tick that will run it. */
export function planWall(plan: PollPlan, clocks: { now: () => number; slotAtOrAfter?: (wallMs: number) => number | null; forecastScale?: ForecastScale }, monoNow: number): number {
  const wall = clocks.now() + (plan.at - monoNow);
  const half = (clocks.forecastScale?.pollIntervalMs ?? 0) / 2;
  const slot = clocks.slotAtOrAfter?.(wall - half);
  return slot ?? wall;
}

export class Watchdog {
  private lastReading: BalanceReading | undefined;
  private lastSuccessMonoAt: number | undefined;
  /** Lowest balance seen since each attempt still waiting for its rise (memory only). */
  private readonly floors = new Map<string, number>();
  private readonly monoNow: () => number;
  private lastPoll: PollRecord | undefined;
  private lastDecision: ForecastDecision | undefined;
  private readonly forecast: ForecastTracker | undefined;
  private lastRunwaySeconds = Number.POSITIVE_INFINITY;
  private lastSkipReason: string | undefined;
  private plan: PollPlan | undefined;
  private blocked: string | undefined;
  private readonly label: { account: string };
  private readonly log: Logger;

  constructor(private readonly deps: WatchdogDeps) {
    this.label = { account: deps.account.name };
    this.log = deps.log.child({ account: deps.account.name });
    this.monoNow = deps.monoNow ?? (() => performance.now());
    this.forecast = deps.forecastScale ? new ForecastTracker({ ...deps.forecastScale, leadTimeMs: deps.account.leadTimeMs }, deps.account.threshold) : undefined;
    this.refreshLedgerMetrics();
  }

  get name(): string {
    return this.deps.account.name;
  }

  /** The wall-clock time of the last successful poll. */
  get lastSuccessAt(): number | undefined {
    return this.lastReading?.at;
  }

  /** Monotonic time of the last successful poll, for readiness: a clock step must not fake freshness. */
  get lastSuccessMono(): number | undefined {
    return this.lastSuccessMonoAt;
  }

  get lastPollOk(): boolean {
    return this.lastPoll?.ok === true;
  }

  /** The next poll as planned after the last cycle (monotonic); undefined before the first. */
  get nextPoll(): PollPlan | undefined {
    return this.plan;
  }

  /** Whether POLL_ADAPTIVE spaces this account's polls (else it is polled at every tick). */
  get adaptive(): boolean {
    return this.deps.account.pollAdaptive && this.forecast !== undefined;
  }

  /** The longest this account goes between two polls when all is well. */
  get maxIntervalMs(): number {
    const s = this.deps.forecastScale;
    return s === undefined ? 0 : this.adaptive ? Math.max(s.maxIntervalMs, s.pollIntervalMs) : s.pollIntervalMs;
  }

  /** The wall-clock time of the tick that will poll next, as the metric and /status show it. */
  nextPollWall(): number | undefined {
    return this.plan === undefined ? undefined : planWall(this.plan, this.deps, this.monoNow());
  }

  /**
   * Runs one cycle. `signal` aborts the balance read (shutdown); a top-up already recorded in the
   * ledger is let finish, bounded by HTTP_TIMEOUT, because abandoning it would only turn a known
   * outcome into an unknown one.
   */
  async runCycle(signal?: AbortSignal, tickMono: number = this.monoNow()): Promise<CycleResult> {
    const result = await this.cycle(signal);
    if (!signal?.aborted) this.planNext(result, tickMono);
    return result;
  }

  /**
   * The next poll: at the next tick unless POLL_ADAPTIVE, else when the forecast says (a failed
   * poll is retried at the next tick). Counted from the tick that ran this cycle.
   */
  private planNext(result: CycleResult, tickMono: number): void {
    const scale = this.deps.forecastScale;
    if (scale === undefined) return;
    const fastest = scale.pollIntervalMs;
    if (!this.adaptive) this.plan = { at: tickMono + fastest, intervalMs: fastest, reason: 'schedule' };
    else if (!result.reading || this.forecast === undefined) this.plan = { at: tickMono + fastest, intervalMs: fastest, reason: 'poll_failed' };
    else {
      const reading = result.reading;
      // A refill sent, or one whose rise has not shown yet, is watched at the fastest poll for a
      // while: the rise confirms it (and settles an unknown outcome) as soon as it lands.
      const window = confirmWindowMs(scale);
      const awaiting = result.topUp !== undefined && result.topUp.outcome !== 'not_sent' && result.topUp.outcome !== 'failed'
        ? true
        : this.deps.ledger.view().attempts.some((a) => awaitsRise(a, reading.at) && reading.at - a.at <= window);
      const d = this.forecast.due(tickMono, reading.value, awaiting);
      this.plan = { at: d.at, intervalMs: d.intervalMs, reason: d.reason };
    }
    this.plan.wallAt = this.deps.now() + (this.plan.at - this.monoNow());
    this.publishPlan();
  }

  /** Its primary's subaccount list is due earlier: the balance is read with it, so that is its next read. */
  adoptEarlier(plan: PollPlan | undefined): void {
    if (plan === undefined || this.plan === undefined || !(plan.at < this.plan.at)) return;
    this.plan = { ...plan, reason: `subaccounts: ${plan.reason}` as PollPlan['reason'] };
    this.publishPlan();
  }

  private publishPlan(): void {
    if (this.plan === undefined) return;
    this.deps.metrics.nextPoll.set(this.label, planWall(this.plan, this.deps, this.monoNow()) / 1000);
  }

  private async cycle(signal?: AbortSignal): Promise<CycleResult> {
    const { metrics, ledger, now } = this.deps;
    metrics.polls.inc(this.label);
    await ledger.retry();
    this.refreshLedgerMetrics();

    let reading: BalanceReading & { mono: number };
    try {
      const answer = await getBalanceWithRetry(this.deps.client, {
        attempts: this.deps.balanceAttempts ?? 3,
        baseDelayMs: this.deps.retryBaseDelayMs ?? 1000,
        maxDelayMs: this.deps.retryMaxDelayMs ?? 10_000,
        sleep: this.deps.sleep,
        signal,
        onRetry: (err, delayMs, attempt) =>
          this.log.warn({ err, attempt, retryInMs: Math.round(delayMs) }, 'balance read failed; retrying'),
      });
      reading = { ...answer, mono: answer.mono ?? this.monoNow() };
    } catch (err) {
      if (signal?.aborted) {
        // Shutdown cut the read short: not Vonage's failure, so not counted as one.
        this.log.info('balance read abandoned at shutdown');
        this.lastDecision = { action: 'none', why: 'no_reading' };
        return { ok: false, decision: this.lastDecision };
      }
      const e = err instanceof VonageError ? err : new VonageError('get_balance', 'network', 'balance read abandoned', 'unknown');
      metrics.pollFailures.inc({ ...this.label, reason: e.reason });
      metrics.pollSuccess.set(this.label, 0);
      this.lastPoll = { at: now(), ok: false, reason: e.reason, message: e.message };
      this.lastDecision = { action: 'none', why: 'no_reading' };
      this.log.error({ err: e }, 'balance poll failed');
      return { ok: false, pollError: e, decision: this.lastDecision };
    }

    this.lastReading = reading;
    this.lastSuccessMonoAt = reading.mono;
    this.lastPoll = { at: reading.at, ok: true };
    metrics.balance.set(this.label, reading.value);
    metrics.autoReload.set(this.label, reading.autoReload ? 1 : 0);
    metrics.pollSuccess.set(this.label, 1);
    metrics.lastPollSuccess.set(this.label, reading.at / 1000);
    this.log.info({ balance: reading.value, autoReload: reading.autoReload, requestId: reading.requestId }, 'balance read');

    await this.reconcile(reading);
    const belowThreshold = reading.value < this.deps.account.threshold;
    if (signal?.aborted) {
      this.lastDecision = { action: 'none', why: 'no_reading' };
      return { ok: true, belowThreshold, reading, decision: this.lastDecision };
    }
    // The forecast learns from every successful reading, whether or not TOPUP_LEAD_TIME uses it.
    let forecast: ForecastInput | undefined;
    if (this.forecast) {
      // Money this primary moved to its subaccounts is not spending: added back, so that a transfer
      // does not read as a burst that asks for a card top-up (found by review).
      const estimate = this.forecast.observe({ at: reading.mono, balance: reading.value + (this.deps.transferredOut?.() ?? 0) });
      this.lastRunwaySeconds = this.forecast.runwaySeconds(reading.value);
      metrics.burnRate.set(this.label, estimate.rate);
      metrics.runway.set(this.label, this.lastRunwaySeconds);
      if (this.deps.account.leadTimeMs > 0 && estimate.confidence !== 'insufficient') {
        const known = [...ledger.view().attempts].reverse().find((a) => a.amount !== undefined && a.amount > 0)?.amount;
        forecast = { runwayMs: this.lastRunwaySeconds * 1000, leadTimeMs: this.deps.account.leadTimeMs, ...(known === undefined ? {} : { refillAmount: known }) };
      }
    }
    // Decision and record in one atomic step (ledger.claim: synchronous under the STATE_DIR lock,
    // or one database transaction): no other decision can see the ledger in between.
    const claim = await ledger.claim(reading, this.settings(), this.monoNow(), forecast);
    const decision = claim.decision;
    this.lastDecision = decision;
    const result: CycleResult = { ok: true, belowThreshold, reading, decision };
    if (decision.action === 'none' && decision.why === 'forecast_held') {
      this.log.debug({ reason: decision.reason, detail: decision.detail, balance: reading.value, runwaySeconds: Math.round(this.lastRunwaySeconds) }, 'forecast: the threshold is within TOPUP_LEAD_TIME, but a rule holds the top-up back');
    }

    if (decision.action === 'skip') {
      metrics.topupsSkipped.inc({ ...this.label, reason: decision.reason });
      const repeat = decision.reason === this.lastSkipReason;
      const level = repeat ? 'debug' : decision.reason === 'ledger_unavailable' ? 'error' : 'warn';
      const until = decision.retryAt === undefined ? {} : { until: iso(decision.retryAt) };
      this.log[level]({ reason: decision.reason, detail: decision.detail, ...until, balance: reading.value, threshold: this.deps.account.threshold }, 'balance below threshold; top-up skipped');
      this.lastSkipReason = decision.reason;
    } else {
      this.lastSkipReason = undefined;
    }
    this.blocked = topupBlocked(reading, this.settings(), ledger.view(), now(), this.monoNow());
    metrics.refillBlocked.set(this.label, this.blocked === undefined ? 0 : 1);
    if (claim.attempt) {
      const trigger = decision.action === 'topup' && decision.trigger === 'forecast' ? 'forecast' : 'threshold';
      result.topUp = await this.topUp(reading, claim.attempt, trigger, claim.sendBy);
      // Top-ups sent, as vonage_topups_total counts them: a refused connection sent nothing.
      if (result.topUp.outcome !== 'not_sent') metrics.refillTriggers.inc({ ...this.label, trigger });
      result.ok = result.topUp.outcome === 'success';
    }
    this.refreshLedgerMetrics();
    return result;
  }

  private settings(): PolicySettings {
    const a = this.deps.account;
    return {
      threshold: a.threshold,
      cooldownMs: a.cooldownMs,
      maxPerDay: a.maxPerDay,
      topupEnabled: a.topupEnabled,
      dryRun: a.dryRun,
      // The reading was taken moments ago in this same cycle; anything older means the process stalled.
      maxReadingAgeMs: this.deps.httpTimeoutMs,
    };
  }

  private async topUp(reading: BalanceReading, attempt: Attempt, trigger: 'threshold' | 'forecast', sendBy?: number): Promise<{ outcome: TopUpOutcome; reason?: string }> {
    const { ledger, metrics, client, account } = this.deps;
    failpoint('after_claim_committed');
    // A shared ledger cannot refuse a replica that froze between its committed claim and the
    // request (the claim is already in): the sender bounds that pause itself, on the monotonic
    // clock. Too late, the attempt is closed as abandoned: it counts, and it moved no money.
    if (sendBy !== undefined && this.monoNow() > sendBy) {
      const late = Math.round(this.monoNow() - sendBy);
      this.log.error({ attemptId: attempt.id, lateMs: late }, 'top-up NOT sent: too long passed between its claim and the request (the process was paused?); recorded as abandoned, it counts for cooldown and cap');
      try {
        await ledger.recordOutcome(attempt, 'failed', 'abandoned');
      } catch (err) {
        this.log.error({ problem: err instanceof Error ? err.message : 'ledger write failed', attemptId: attempt.id }, 'could not record the abandoned top-up; the attempt stays counted');
      }
      metrics.topupsSkipped.inc({ ...this.label, reason: 'stale_reading' });
      return { outcome: 'not_sent', reason: 'abandoned' };
    }
    this.floors.set(attempt.id, reading.value);
    if (trigger === 'forecast') {
      this.log.warn({ attemptId: attempt.id, balance: reading.value, threshold: account.threshold, trigger, runwaySeconds: Math.round(this.lastRunwaySeconds), leadTimeSeconds: account.leadTimeMs / 1000 }, 'forecast: the threshold is within TOPUP_LEAD_TIME; sending top-up');
    } else {
      this.log.warn({ attemptId: attempt.id, balance: reading.value, threshold: account.threshold, trigger }, 'balance below threshold; sending top-up');
    }
    failpoint('after_attempt_recorded');

    let outcome: TopUpOutcome;
    let reason: string | undefined;
    try {
      const receipt = await client.topUp(account.trx ?? '');
      outcome = 'success';
      metrics.topups.inc(this.label);
      metrics.lastTopupSuccess.set(this.label, this.deps.now() / 1000);
      // Warn, like the request itself: an operator at LOG_LEVEL=warn sees both halves of every charge.
      this.log.warn({ attemptId: attempt.id, requestId: receipt.requestId, balanceBefore: reading.value }, 'top-up succeeded');
    } catch (err) {
      const e = err instanceof VonageError ? err : new VonageError('top_up', 'network', 'top-up failed', 'unknown');
      reason = e.reason;
      outcome = e.delivery === 'no' ? 'not_sent' : e.delivery === 'unknown' ? 'unknown' : 'failed';
      if (outcome !== 'not_sent') metrics.topups.inc(this.label);
      metrics.topupFailures.inc({ ...this.label, reason: e.reason });
      const note =
        outcome === 'unknown'
          ? 'top-up outcome UNKNOWN: it may have been applied; not retried, counted for cooldown and cap, later readings will tell'
          : outcome === 'not_sent'
            ? 'top-up not sent: the connection was refused; not counted as an attempt'
            : 'top-up failed';
      this.log.error({ err: e, attemptId: attempt.id, outcome }, note);
    }
    failpoint('before_outcome_recorded');
    try {
      await ledger.recordOutcome(attempt, outcome, reason);
    } catch (err) {
      this.log.error({ problem: err instanceof Error ? err.message : 'ledger write failed', attemptId: attempt.id }, 'could not record the top-up outcome; the attempt stays counted');
    }
    if (outcome !== 'success' && outcome !== 'unknown') this.floors.delete(attempt.id);
    return reason === undefined ? { outcome } : { outcome, reason };
  }

  /**
   * A balance above the lowest one seen since an attempt: money arrived. For an unknown outcome
   * that settles it as applied; for any attempt it tells the amount, which Vonage's answer does
   * not carry.
   */
  private async reconcile(reading: BalanceReading): Promise<void> {
    const { ledger, metrics } = this.deps;
    const attempts = ledger.view().attempts;
    const given = attributeRise(attempts, reading, (x) => this.floors.get(x.id) ?? x.balanceBefore);
    for (const { attempt: a, amount } of given) {
      const wasUnknown = a.outcome !== 'success';
      try {
        await ledger.recordConfirmed(a, reading.value, amount);
      } catch {
        a.confirmedAt = reading.at;
        a.amount = amount;
      }
      this.floors.delete(a.id);
      metrics.lastTopupAmount.set(this.label, amount);
      metrics.toppedUpEuros.inc(this.label, amount);
      metrics.refilledEuros.inc({ ...this.label, action: 'topup' }, amount);
      const rise = `the balance rose by ${amount.toFixed(2)} EUR to ${reading.value.toFixed(2)} EUR`;
      if (wasUnknown) {
        this.log.warn({ attemptId: a.id, balanceBefore: a.balanceBefore, balance: reading.value, amount }, `balance rose after a top-up with unknown outcome: treating it as applied (${rise})`);
      } else {
        this.log.warn({ attemptId: a.id, balanceBefore: a.balanceBefore, balance: reading.value, amount }, `top-up applied: ${rise}`);
      }
    }
    // The rise is spent: for every attempt still waiting, only a rise above this reading is news.
    if (given.length > 0) for (const a of attempts) if (awaitsRise(a, reading.at)) this.floors.set(a.id, reading.value);
    // Track the low point since each attempt still waiting, so the rise is measured from it.
    const waiting = new Set<string>();
    for (const a of attempts) {
      if (!awaitsRise(a, reading.at)) continue;
      waiting.add(a.id);
      const floor = this.floors.get(a.id) ?? a.balanceBefore;
      this.floors.set(a.id, reading.value < floor ? reading.value : floor);
    }
    for (const id of this.floors.keys()) if (!waiting.has(id)) this.floors.delete(id);
  }

  private refreshLedgerMetrics(): void {
    const { metrics, ledger, now } = this.deps;
    const view = ledger.view();
    metrics.ledgerWritable.set(this.label, view.writable ? 1 : 0);
    metrics.attemptsLastDay.set(this.label, attemptsInLastDay(view.attempts, now(), this.monoNow()).length);
    metrics.unresolvedAttempts.set(this.label, view.attempts.filter((a) => a.outcome === 'unknown' && a.confirmedAt === undefined && a.at > now() - DAY_MS).length);
    const last = lastCountedAttempt(view.attempts);
    if (last) metrics.lastTopupAttempt.set(this.label, last.at / 1000);
  }

  status(): AccountStatus {
    const { account, ledger, now } = this.deps;
    const view = ledger.view();
    const last = view.attempts.length > 0 ? view.attempts[view.attempts.length - 1] : undefined;
    // As the policy judges it: the lesser of wall-clock and monotonic time since each attempt.
    let since = Number.POSITIVE_INFINITY;
    for (const a of view.attempts) if (counts(a)) since = Math.min(since, sinceAttempt(a, now(), this.monoNow()));
    const cooldownEnd = since < account.cooldownMs ? now() + (account.cooldownMs - since) : undefined;
    const d = this.lastDecision;
    return {
      account: account.name,
      balance: this.lastReading?.value ?? null,
      autoReload: this.lastReading?.autoReload ?? null,
      threshold: account.threshold,
      topupEnabled: account.topupEnabled,
      dryRun: account.dryRun,
      lastPoll: this.lastPoll
        ? { at: iso(this.lastPoll.at), ok: this.lastPoll.ok, ...(this.lastPoll.reason ? { reason: this.lastPoll.reason, message: this.lastPoll.message } : {}) }
        : null,
      lastSuccessfulPoll: this.lastReading ? iso(this.lastReading.at) : null,
      lastDecision: decisionStatus(d),
      lastTopUp: last
        ? {
            at: iso(last.at),
            outcome: last.outcome,
            ...(last.reason ? { reason: last.reason } : {}),
            confirmedByBalance: last.confirmedAt !== undefined,
            amountEuros: last.amount ?? null,
          }
        : null,
      toppedUpEurosLast24h: Math.round(view.attempts.filter((a) => a.amount !== undefined && a.at > now() - DAY_MS).reduce((sum, a) => sum + a.amount!, 0) * 100) / 100,
      attemptsLast24h: attemptsInLastDay(view.attempts, now(), this.monoNow()).length,
      maxPerDay: account.maxPerDay,
      cooldownUntil: cooldownEnd !== undefined && cooldownEnd > now() ? iso(cooldownEnd) : null,
      ledger: view.writable ? { writable: true } : { writable: false, problem: view.problem ?? 'unknown' },
      forecast: this.forecast
        ? {
            burnRateEurosPerSecond: this.forecast.estimate.rate,
            runwaySeconds: Number.isFinite(this.lastRunwaySeconds) ? Math.round(this.lastRunwaySeconds) : null,
            confidence: this.forecast.estimate.confidence,
            leadTimeSeconds: account.leadTimeMs / 1000,
          }
        : null,
      refillBlocked: this.blocked ?? (account.topupEnabled ? (account.dryRun ? 'dry_run' : null) : 'disabled'),
      nextPoll: this.plan ? iso(planWall(this.plan, this.deps, this.monoNow())) : null,
      nextPollReason: this.plan?.reason ?? null,
      pollIntervalSeconds: this.plan ? this.plan.intervalMs / 1000 : null,
    };
  }
}
