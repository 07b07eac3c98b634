/**
 * Every metric the watchdog exports, in one place. Metrics live on a registry the caller owns
 * (never prom-client's global one), and every series whose labels are known up front exists at 0
 * from the first scrape, so `increase()` and absence alerts work without waiting for an event.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { FAILURE_REASONS, TOPUP_ONLY_FAILURE_REASONS, TRANSFER_ONLY_FAILURE_REASONS, type Endpoint } from '../vonage/errors.js';
import { TRANSFER_SKIP_REASONS } from '../refill/transfer-policy.js';
import { SKIP_REASONS } from '../refill/topup-policy.js';

export const POLL_FAILURE_REASONS = FAILURE_REASONS;
export const REFILL_TRIGGERS = ['threshold', 'forecast'] as const;
export const TOPUP_FAILURE_REASONS = [...FAILURE_REASONS, ...TOPUP_ONLY_FAILURE_REASONS] as const;
const ENDPOINTS: readonly Endpoint[] = ['get_balance', 'top_up'];

/**
 * How often prom-client's event-loop monitor (perf_hooks.monitorEventLoopDelay) samples. Its
 * default, 10 ms, wakes the idle daemon 100 times a second: that was most of its idle CPU (41 CPU
 * seconds an hour against 9 at 100 ms; bench/idle-cpu.mjs). At 100 ms any stall of 100 ms or more
 * is still caught and timed, and a 15 s scrape interval still gets 150 samples for the
 * nodejs_eventloop_lag_* percentiles; shorter stalls are caught only sometimes, which matters
 * little to a daemon that works once a minute. Its other default metrics cost nothing at idle:
 * they are read at scrape time, and the GC histogram only observes collections.
 */
export const EVENT_LOOP_MONITORING_PRECISION_MS = 100;

export interface Metrics {
  registry: Registry;
  balance: Gauge<'account'>;
  autoReload: Gauge<'account'>;
  threshold: Gauge<'account'>;
  pollSuccess: Gauge<'account'>;
  lastPollSuccess: Gauge<'account'>;
  polls: Counter<'account'>;
  pollFailures: Counter<'account' | 'reason'>;
  topups: Counter<'account'>;
  topupFailures: Counter<'account' | 'reason'>;
  topupsSkipped: Counter<'account' | 'reason'>;
  lastTopupSuccess: Gauge<'account'>;
  lastTopupAttempt: Gauge<'account'>;
  attemptsLastDay: Gauge<'account'>;
  maxPerDay: Gauge<'account'>;
  topupEnabled: Gauge<'account'>;
  ledgerWritable: Gauge<'account'>;
  lastTopupAmount: Gauge<'account'>;
  toppedUpEuros: Counter<'account'>;
  unresolvedAttempts: Gauge<'account'>;
  logLinesDropped: Counter<string>;
  clockSteps: Counter<'direction'>;
  requestDuration: Histogram<'account' | 'endpoint'>;
  accountInfo: Gauge<'account' | 'name' | 'primary'>;
  subaccountsWatched: Gauge<'account'>;
  transfers: Counter<'account'>;
  transferFailures: Counter<'account' | 'reason'>;
  transferredEuros: Counter<'account'>;
  refilledEuros: Counter<'account' | 'action'>;
  configReloadSuccessful: Gauge<string>;
  configReloadSuccessAt: Gauge<string>;
  burnRate: Gauge<'account'>;
  runway: Gauge<'account'>;
  refillTriggers: Counter<'account' | 'trigger'>;
  nextPoll: Gauge<'account'>;
  pollMaxInterval: Gauge<'account'>;
  refillBlocked: Gauge<'account'>;
  leader: Gauge<'account'>;
  ledgerUp: Gauge<string>;
  leaderTransitions: Counter<'account'>;
}

export interface MetricsAccount {
  name: string;
  /** Seconds; see vonage_balance_poll_max_interval_seconds. */
  pollMaxIntervalSeconds?: number;
  threshold: number;
  maxPerDay: number;
  topupEnabled: boolean;
  dryRun: boolean;
  /** The primary's Subaccounts API calls are timed too. */
  subaccounts?: unknown;
}

/** Why a transfer did not succeed: a poll's reasons, the transfer-only refusals, and a lost one that the history does not hold. */
export const TRANSFER_FAILURE_REASONS = [...FAILURE_REASONS, ...TRANSFER_ONLY_FAILURE_REASONS, 'not_in_history'] as const;
const SUBACCOUNT_ENDPOINTS: readonly Endpoint[] = ['list_subaccounts', 'balance_transfer', 'list_balance_transfers'];

export function createMetrics(registry: Registry, accounts: readonly MetricsAccount[], version: string): Metrics {
  const registers = [registry];
  const gauge = (name: string, help: string) => new Gauge({ name, help, labelNames: ['account'] as const, registers });
  const counter = <L extends string>(name: string, help: string, labelNames: readonly L[]) =>
    new Counter<L>({ name, help, labelNames, registers });

  const m: Metrics = {
    registry,
    balance: gauge('vonage_balance_euros', 'Account balance in EUR, as read by the last successful poll (cached between polls).'),
    autoReload: gauge('vonage_auto_reload_enabled', 'Whether auto-reload is enabled on the account (1) or not (0), as of the last successful poll.'),
    threshold: gauge('vonage_topup_threshold_euros', 'Configured TOPUP_THRESHOLD in EUR: a top-up is due below it.'),
    pollSuccess: gauge('vonage_balance_poll_success', 'Whether the latest balance poll succeeded (1) or failed (0).'),
    lastPollSuccess: gauge('vonage_balance_last_success_timestamp_seconds', 'Unix time of the last successful balance poll.'),
    polls: counter('vonage_balance_polls_total', 'Balance poll cycles run.', ['account'] as const),
    pollFailures: counter('vonage_balance_poll_failures_total', 'Balance poll cycles that failed, by reason.', ['account', 'reason'] as const),
    topups: counter('vonage_topups_total', 'Top-up requests sent to Vonage (whatever their outcome).', ['account'] as const),
    topupFailures: counter('vonage_topup_failures_total', 'Top-up requests that did not succeed, by reason.', ['account', 'reason'] as const),
    topupsSkipped: counter('vonage_topups_skipped_total', 'Times the balance was below the threshold but no top-up was sent, by reason.', ['account', 'reason'] as const),
    lastTopupSuccess: gauge('vonage_topup_last_success_timestamp_seconds', 'Unix time of the last top-up that Vonage confirmed (0 if none since start).'),
    lastTopupAttempt: gauge('vonage_topup_last_attempt_timestamp_seconds', 'Unix time of the last top-up attempt in the ledger (0 if none).'),
    attemptsLastDay: gauge('vonage_topup_attempts_last_24h', 'Top-up attempts in the rolling 24 h that count against TOPUP_MAX_PER_DAY.'),
    maxPerDay: gauge('vonage_topup_max_per_day', 'Configured TOPUP_MAX_PER_DAY.'),
    topupEnabled: gauge('vonage_topup_enabled', 'Whether the watchdog may send top-ups (1), or only watches: TOPUP_ENABLED=false or DRY_RUN=true (0).'),
    ledgerWritable: gauge('vonage_ledger_writable', 'Whether the top-up ledger in STATE_DIR is writable (1); top-ups are refused while it is 0.'),
    lastTopupAmount: gauge('vonage_topup_last_amount_euros', 'EUR added by the last top-up whose amount is known, learnt from the balance rise that followed it (0 if none yet).'),
    toppedUpEuros: counter('vonage_topped_up_euros_total', 'EUR added by top-ups, as learnt from the balance rise that followed each one.', ['account'] as const),
    unresolvedAttempts: gauge('vonage_topup_unresolved_attempts', 'Top-up attempts in the last 24 h whose outcome is unknown and that no balance rise has confirmed yet.'),
    logLinesDropped: new Counter({ name: 'vonage_watchdog_log_lines_dropped_total', help: 'Log lines dropped because the output (stdout) was not being read fast enough; logging never blocks the cycle.', registers }),
    clockSteps: new Counter({ name: 'vonage_watchdog_clock_steps_total', help: 'Wall-clock steps detected (the wall clock moved against the monotonic clock); the schedule is re-armed after each.', labelNames: ['direction'] as const, registers }),
    requestDuration: new Histogram({
      name: 'vonage_api_request_duration_seconds',
      help: 'Duration of requests to the Vonage API, by endpoint.',
      labelNames: ['account', 'endpoint'] as const,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    accountInfo: new Gauge({ name: 'vonage_account_info', help: 'One series per watched account, value 1: joins the account label (a subaccount\'s is its api key) with its name and its primary\'s configured name (empty for a top-level account).', labelNames: ['account', 'name', 'primary'] as const, registers }),
    subaccountsWatched: gauge('vonage_subaccounts_watched', 'Subaccounts of this primary watched as of the last subaccount list.'),
    transfers: counter('vonage_balance_transfers_total', 'Balance transfers to this subaccount sent to Vonage (whatever their outcome).', ['account'] as const),
    transferFailures: counter('vonage_balance_transfer_failures_total', 'Balance transfers to this subaccount that did not succeed, by reason.', ['account', 'reason'] as const),
    transferredEuros: counter('vonage_balance_transferred_euros_total', 'EUR moved to this subaccount by balance transfers that Vonage confirmed.', ['account'] as const),
    refilledEuros: counter('vonage_refilled_euros_total', 'EUR each refill added, as far as it is known: a card top-up from the balance rise that confirmed it, a transfer from Vonage\'s answer or history.', ['account', 'action'] as const),
    configReloadSuccessful: new Gauge({ name: 'vonage_watchdog_config_last_reload_successful', help: 'Whether the last configuration (re)load succeeded (1) or failed (0): a failed SIGHUP reload keeps the running fleet.', registers }),
    configReloadSuccessAt: new Gauge({ name: 'vonage_watchdog_config_last_reload_success_timestamp_seconds', help: 'Unix time of the last successful configuration (re)load.', registers }),
    burnRate: gauge('vonage_balance_burn_rate_euros_per_second', 'EUR per second the account spends, as the forecast estimates it from recent readings (rises ignored); 0 while the history is too short.'),
    runway: gauge('vonage_balance_runway_seconds', 'Seconds until the balance reaches the threshold at the estimated rate: 0 at or below it, +Inf when it is not draining or the history is too short (so runway < 1h never fires on it).'),
    nextPoll: gauge('vonage_balance_next_poll_timestamp_seconds', 'Unix time of the POLL_SCHEDULE tick at which the balance (a subaccount: its primary\'s list) is read next: every tick, or with POLL_ADAPTIVE when its runway needs it (0 before the first poll).'),
    pollMaxInterval: gauge('vonage_balance_poll_max_interval_seconds', 'The longest the balance goes unread while polls succeed: POLL_MAX_INTERVAL plus one tick with POLL_ADAPTIVE, else the interval of POLL_SCHEDULE. Staleness alerts allow for it.'),
    refillBlocked: gauge('vonage_refill_blocked', 'Whether a refill, were it due now, could not be sent for a reason that waiting out the cooldown does not cure (1): refills switched off, dry run, auto-reload off, the ledger unwritable, the daily cap, and for a subaccount suspended, the primary reserve or the EUR cap. /status says which.'),
    refillTriggers: counter('vonage_refill_triggers_total', 'Refills sent (card top-ups, and balance transfers to a subaccount), by what triggered them: the balance below the threshold, or the forecast (TOPUP_LEAD_TIME, leadTime) saying it soon would be.', ['account', 'trigger'] as const),
    leader: gauge('vonage_watchdog_leader', 'Whether this replica acts for the account (1) or stands by (0). With LEDGER=file always 1; with LEDGER=postgres, 1 on the replica holding its lease. A standby exports no other series of the account (except while the ledger is down, when every replica watches every account).'),
    ledgerUp: new Gauge({ name: 'vonage_ledger_up', help: 'Whether the ledger store answers (1): PostgreSQL with LEDGER=postgres; always 1 with LEDGER=file (see vonage_ledger_writable). While 0 no refill is sent.', registers }),
    leaderTransitions: counter('vonage_leader_transitions_total', 'Times this replica took or gave up the lease of the account (LEDGER=postgres).', ['account'] as const),
  };

  new Gauge({ name: 'vonage_watchdog_build_info', help: 'Build information; the value is always 1.', labelNames: ['version'] as const, registers }).set({ version }, 1);
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_MONITORING_PRECISION_MS });
  // prom-client names three gauges `_total`, which promtool rejects; the same counts stay
  // available per type in nodejs_active_handles, nodejs_active_requests, nodejs_active_resources.
  m.logLinesDropped.inc(0);
  for (const direction of ['forward', 'backward']) m.clockSteps.inc({ direction }, 0);
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) registry.removeSingleMetric(name);

  m.configReloadSuccessful.set(1);
  m.configReloadSuccessAt.set(Date.now() / 1000);
  for (const a of accounts) addAccount(m, a);
  return m;
}

/** Every series of one account at its starting value: at start-up, and for an account a reload adds. */
export function addAccount(m: Metrics, a: MetricsAccount & { primary?: string }): void {
  const account = a.name;
  m.threshold.set({ account }, a.threshold);
  m.maxPerDay.set({ account }, a.maxPerDay);
  m.topupEnabled.set({ account }, a.topupEnabled && !a.dryRun ? 1 : 0);
  for (const g of [m.balance, m.autoReload, m.pollSuccess, m.lastPollSuccess, m.lastTopupSuccess, m.lastTopupAttempt, m.attemptsLastDay, m.ledgerWritable, m.lastTopupAmount, m.unresolvedAttempts]) g.set({ account }, 0);
  m.polls.inc({ account }, 0);
  m.toppedUpEuros.inc({ account }, 0);
  m.topups.inc({ account }, 0);
  for (const reason of POLL_FAILURE_REASONS) m.pollFailures.inc({ account, reason }, 0);
  for (const reason of TOPUP_FAILURE_REASONS) m.topupFailures.inc({ account, reason }, 0);
  for (const reason of SKIP_REASONS) m.topupsSkipped.inc({ account, reason }, 0);
  for (const endpoint of ENDPOINTS) m.requestDuration.zero({ account, endpoint });
  m.refilledEuros.inc({ account, action: 'topup' }, 0);
  m.burnRate.set({ account }, 0);
  m.runway.set({ account }, Number.POSITIVE_INFINITY);
  m.nextPoll.set({ account }, 0);
  m.pollMaxInterval.set({ account }, a.pollMaxIntervalSeconds ?? 0);
  m.refillBlocked.set({ account }, a.topupEnabled && !a.dryRun ? 0 : 1);
  for (const trigger of REFILL_TRIGGERS) m.refillTriggers.inc({ account, trigger }, 0);
  m.accountInfo.set({ account, name: a.name, primary: a.primary ?? '' }, 1);
  if (a.subaccounts !== undefined) {
  m.subaccountsWatched.set({ account }, 0);
  for (const endpoint of SUBACCOUNT_ENDPOINTS) m.requestDuration.zero({ account, endpoint });
  }
}

/** The series of a subaccount, when a list answer first shows it (`watch: all` finds new ones). */
export function addSubaccount(m: Metrics, s: { apiKey: string; name: string; primary: string; shared: boolean; pollMaxIntervalSeconds?: number }): void {
  const account = s.apiKey;
  for (const g of [m.pollSuccess, m.lastPollSuccess, m.attemptsLastDay, m.ledgerWritable, m.lastTopupSuccess, m.lastTopupAttempt, m.lastTopupAmount, m.unresolvedAttempts, m.nextPoll]) g.set({ account }, 0);
  m.pollMaxInterval.set({ account }, s.pollMaxIntervalSeconds ?? 0);
  // A subaccount that spends its primary's balance has no balance of its own, so no forecast.
  if (!s.shared) {
    m.balance.set({ account }, 0);
    m.burnRate.set({ account }, 0);
    m.runway.set({ account }, Number.POSITIVE_INFINITY);
    m.refillBlocked.set({ account }, 0);
  }
  m.polls.inc({ account }, 0);
  m.transfers.inc({ account }, 0);
  m.transferredEuros.inc({ account }, 0);
  m.refilledEuros.inc({ account, action: 'transfer' }, 0);
  // No reason series at 0 here, unlike a top-level account: 32 per subaccount made a scrape of
  // 1,000 subaccounts 47,000 series (190 ms to serialise). A subaccount's reason series appear
  // with their first event; alerts on them use increase(), which treats a new series as a rise.
}

/**
 * Deletes every series labelled with this account (removed by a reload, or gone from Vonage's
 * list). By the label sets this module creates, never by scanning: a list answer that drops 1,000
 * subaccounts must not cost 1,000 scans of every series (that stalled the event loop for seconds).
 */
export function removeAccount(m: Metrics, account: string, info?: { name: string; primary: string }): void {
  const one = { account };
  for (const g of [m.balance, m.autoReload, m.threshold, m.pollSuccess, m.lastPollSuccess, m.polls, m.topups, m.lastTopupSuccess, m.lastTopupAttempt, m.attemptsLastDay, m.maxPerDay, m.topupEnabled, m.ledgerWritable, m.lastTopupAmount, m.toppedUpEuros, m.unresolvedAttempts, m.subaccountsWatched, m.transfers, m.transferredEuros] as Gauge<'account'>[]) g.remove(one);
  for (const reason of new Set<string>([...POLL_FAILURE_REASONS, ...TRANSFER_FAILURE_REASONS])) m.pollFailures.remove({ account, reason });
  for (const reason of new Set<string>([...TOPUP_FAILURE_REASONS])) m.topupFailures.remove({ account, reason });
  for (const reason of new Set<string>([...TRANSFER_FAILURE_REASONS])) m.transferFailures.remove({ account, reason });
  for (const reason of new Set<string>([...SKIP_REASONS, ...TRANSFER_SKIP_REASONS])) m.topupsSkipped.remove({ account, reason });
  for (const action of ['topup', 'transfer']) m.refilledEuros.remove({ account, action });
  m.burnRate.remove(one);
  m.runway.remove(one);
  m.nextPoll.remove(one);
  m.pollMaxInterval.remove(one);
  m.refillBlocked.remove(one);
  for (const trigger of REFILL_TRIGGERS) m.refillTriggers.remove({ account, trigger });
  for (const endpoint of [...ENDPOINTS, ...SUBACCOUNT_ENDPOINTS]) m.requestDuration.remove({ account, endpoint });
  m.accountInfo.remove({ account, name: info?.name ?? account, primary: info?.primary ?? '' });
}
