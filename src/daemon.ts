/**
 * The composition root: builds every part from the configuration and injected edges (clock,
 * sleep, log destination), starts the scheduler and the HTTP server, and stops them in order.
 */
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import type { DestinationStream } from 'pino';
import { Registry } from 'prom-client';
import { ConfigError, databasePassword, type AccountConfig, type Config } from './config/config.js';
import type { SubaccountsConfig } from './accounts/types.js';
import { Fleet, type Unit, type UnitResult } from './cycle/fleet.js';
import { SubaccountGroup } from './cycle/subaccount-group.js';
import { observeGroup } from './observe/subaccount-events.js';
import { createSubaccountsClient } from './vonage/subaccounts-client.js';
import { createHttpServer, type Probe } from './observe/http-server.js';
import { FileLedger, type LedgerEvent } from './ledger/file-ledger.js';
import type { Ledger } from './ledger/ledger.js';
import type { Attempt } from './refill/topup-policy.js';
import { addLogSecrets, createLogger, type Logger } from './observe/log.js';
import { addAccount, createMetrics, removeAccount, type Metrics } from './observe/metrics.js';
import { createScheduler, type Scheduler } from './cycle/scheduler.js';
import { DEFAULT_LEASE_MS, DEFAULT_PROBATION_MS, StateDir, type LockEvent } from './ledger/state-lock.js';
import { scheduleIntervalMs, slotFinder } from './cycle/scheduler.js';
import { VERSION } from './version.js';
import { createVonageClient } from './vonage/account-client.js';
import { Watchdog, type CycleResult } from './cycle/watchdog.js';
import { sharedReplicas, singleReplica, type Replicas } from './cycle/replicas.js';
import type { Endpoint } from './vonage/errors.js';

export interface DaemonDeps {
  now?: () => number;
  /**
   * The monotonic clock for reading ages, cooldowns and readiness. Defaults to performance.now,
   * or to `now` when only `now` is injected: a test that drives time drives both clocks.
   */
  monoNow?: () => number;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  logDestination?: DestinationStream;
  log?: Logger;
  /** Run the first cycle at start-up (default). Tests that drive every tick themselves turn it off. */
  pollAtStart?: boolean;
  /** Cuts the start-up wait for the STATE_DIR lock short (a SIGTERM while starting); nothing is polled then. */
  startSignal?: AbortSignal;
}

export interface Parts {
  log: Logger;
  metrics: Metrics;
  fleet: Fleet;
  /** The accounts' watchdogs and top-up ledgers, in configuration order (as of the last reload). */
  readonly watchdogs: Watchdog[];
  readonly ledgers: Ledger[];
  /** The STATE_DIR lock shared by every file ledger (LEDGER=file); close it after them. */
  stateDir: StateDir | undefined;
  /** Leases and the shared ledger (LEDGER=postgres), or the one replica there is. */
  replicas: Replicas;
  now: () => number;
  monoNow: () => number;
  /** Resolves once the STATE_DIR lock is settled (taken, or seen held by a live watchdog): bounded. */
  settled(): Promise<void>;
  /** Closes the ledgers and releases the lock (or the leases and the database pool). */
  closeLedgers(): Promise<void>;
  /** Builds the unit of one account (its watchdog, ledger, and subaccount group if it has one). */
  buildUnit(account: AccountConfig): Unit;
}

function logLockEvent(log: Logger, e: LockEvent): void {
  if (e.kind === 'acquired' && e.tookOverFrom !== undefined) log.warn({ previousHolder: e.tookOverFrom }, 'took over the STATE_DIR lock from a watchdog that has stopped');
  else if (e.kind === 'lost') log.error({ problem: e.why }, 'lost the STATE_DIR lock: top-ups are off until it is held again');
  else if (e.kind === 'recreated') log.error('the STATE_DIR lock file vanished (STATE_DIR deleted?): re-created it at once, and the ledgers write back what this process remembers');
}

function logLedgerEvent(log: Logger, e: LedgerEvent): void {
  switch (e.kind) {
    case 'foreign_records':
      log.error({ records: e.count }, 'another process appended top-up attempts to this ledger: is a second watchdog using the same STATE_DIR?');
      break;
    case 'superseded':
      log.error({ attemptId: e.attemptId }, 'top-up NOT sent: another process recorded an attempt just before this one; it is withdrawn');
      break;
    case 'restored':
      log.error({ records: e.records, why: e.why }, 'the ledger on disk lacked records this process remembers: wrote them back');
      break;
    case 'compacted':
      log.info({ kept: e.kept, archive: e.archivedTo }, 'ledger compacted: its history moved to the archive file, the ledger keeps what cooldown and cap need');
      break;
    case 'imported':
      log.warn({ attempts: e.attempts, from: e.from }, 'took over the attempts made for this API key under another account name (renamed?): they count for cooldown and cap');
      break;
    case 'torn_tail':
      log.warn('the ledger ends in a torn record (a crash or a full disk while writing): it counts as an attempt whose outcome is unknown');
      break;
  }
}

const BALANCE_ATTEMPTS = 3;

/** Sleep that an abort cuts short, so shutdown never waits out a backoff. */
const abortableSleep = (ms: number, signal?: AbortSignal) => delay(ms, undefined, signal ? { signal } : undefined);

/** Jitter before each account's first request, when there are several: spreads a fleet's calls. */
export const POLL_JITTER_MS = 250;

const secretsOf = (accounts: readonly AccountConfig[]) => accounts.flatMap((a) => [a.apiSecret, a.trx ?? '']);

export function buildParts(config: Config, deps: DaemonDeps = {}): Parts {
  const now = deps.now ?? Date.now;
  const monoNow = deps.monoNow ?? deps.now ?? (() => performance.now());
  const sleep = deps.sleep ?? abortableSleep;
  // Metrics first: the logger counts the lines it drops when stdout is not read.
  const metrics = createMetrics(new Registry(), [], VERSION);
  const log =
    deps.log ??
    createLogger(
      {
        level: config.log.level,
        format: config.log.format,
        secrets: [...secretsOf(config.accounts), config.metrics.authToken ?? '', databasePassword(config) ?? ''],
        apiKeys: config.accounts.map((a) => a.apiKey),
        onDrop: (lines) => metrics.logLinesDropped.inc(lines),
      },
      deps.logDestination,
    );
  const replicas = config.ledger.kind === 'postgres' ? sharedReplicas({ ...config, ledger: config.ledger }, { metrics, log, now, monoNow }) : singleReplica(metrics);
  // LEDGER=postgres keeps nothing in STATE_DIR: no lock, no volume needed.
  const stateDir = replicas.kind === 'file' ? StateDir.open(config.stateDir, { onEvent: (e) => logLockEvent(log, e) }) : undefined;
  // The schedule's tick is the fastest poll; POLL_MAX_INTERVAL the slowest of an adaptive account.
  const pollIntervalMs = scheduleIntervalMs(config.pollSchedule, now());
  const slotAtOrAfter = slotFinder(config.pollSchedule);
  const scaleOf = (a: AccountConfig) => ({ pollIntervalMs, maxIntervalMs: a.pollAdaptive ? Math.max(pollIntervalMs, a.pollMaxIntervalMs) : pollIntervalMs, leadTimeMs: a.leadTimeMs });
  const buildUnit = (account: AccountConfig): Unit => {
    const forecastScale = scaleOf(account);
    // The longest two reads can be apart while all is well: a plan lands on the first tick after
    // it, up to a tick late, so POLL_MAX_INTERVAL plus one tick when adaptive.
    const longestMs = account.pollAdaptive ? forecastScale.maxIntervalMs + pollIntervalMs : pollIntervalMs;
    const series = { ...account, pollMaxIntervalSeconds: longestMs / 1000 };
    addAccount(metrics, series);
    const accountLog = log.child({ account: account.name });
    const ledger = replicas.ledger(account, 'topups') ?? FileLedger.open(config.stateDir, account.name, now, { stateDir, apiKey: account.apiKey, onEvent: (e) => logLedgerEvent(accountLog, e) });
    const observe = (endpoint: Endpoint, seconds: number) => metrics.requestDuration.observe({ account: account.name, endpoint }, seconds);
    const client = createVonageClient({ account, timeoutMs: config.httpTimeoutMs, now, monoNow, observe });
    const watchdog = new Watchdog({ account, client, ledger, metrics, log, now, monoNow, sleep, httpTimeoutMs: config.httpTimeoutMs, balanceAttempts: BALANCE_ATTEMPTS, forecastScale, slotAtOrAfter, transferredOut: () => unit.group?.group.transferredOut ?? 0 });
    const unit: Unit = { account, watchdog, ledger };
    if (account.subaccounts) {
      const transfers = replicas.ledger(account, 'transfers') ?? FileLedger.open(config.stateDir, account.name, now, { stateDir, apiKey: account.apiKey, kind: 'transfers', onEvent: (e) => logLedgerEvent(accountLog.child({ ledger: 'transfers' }), e) });
      const observer = observeGroup({ metrics, log, primary: account.name, primaryKey: account.apiKey, pollMaxIntervalSeconds: longestMs / 1000 });
      const group = new SubaccountGroup({
        primary: account as AccountConfig & { subaccounts: SubaccountsConfig },
        client: createSubaccountsClient({ primaryApiKey: account.apiKey, apiSecret: account.apiSecret, baseUrl: account.subaccountsBaseUrl, timeoutMs: config.httpTimeoutMs, now, monoNow, observe }),
        ledger: transfers,
        onEvent: observer,
        // The running fleet, read at each cycle: a reload may add an account that a subaccount is.
        fleetAccounts: () => fleet.units.map((u) => u.account),
        now,
        monoNow,
        httpTimeoutMs: config.httpTimeoutMs,
        forecastScale,
        slotAtOrAfter,
      });
      unit.group = { group, ledger: transfers, observer };
    }
    replicas.register(unit, series);
    return unit;
  };
  const fleet = new Fleet(config.accounts.map(buildUnit), { concurrency: config.pollConcurrency, jitterMs: POLL_JITTER_MS, sleep, tickMs: pollIntervalMs, monoNow, now, runs: (u) => replicas.runs(u) });
  replicas.setUnits(fleet.units);
  for (const w of config.warnings) log.warn(w);
  return {
    log,
    metrics,
    fleet,
    get watchdogs() {
      return fleet.units.map((u) => u.watchdog);
    },
    get ledgers() {
      return fleet.units.map((u) => u.ledger);
    },
    stateDir,
    replicas,
    now,
    monoNow,
    buildUnit,
    // A lock left by a watchdog in another container is trusted for one lease: wait that out once
    // at start-up, so the first cycle after a crash can already top up. A shared ledger: the
    // first round trip (schema, heartbeat, leases), bounded by its timeouts.
    settled: () => (stateDir ? stateDir.whenSettled(DEFAULT_LEASE_MS + DEFAULT_PROBATION_MS + 1000) : replicas.start()),
    closeLedgers: async () => {
      for (const u of fleet.units) closeUnit(u);
      stateDir?.close();
      await replicas.stop();
    },
  };
}

function closeUnit(u: Unit): void {
  u.ledger.close();
  u.group?.ledger.close();
}

/** What a reload changes: accounts are matched by name; one whose settings changed is rebuilt. */
export async function replaceAccounts(parts: Parts, accounts: readonly AccountConfig[]): Promise<{ added: string[]; removed: string[]; changed: string[] }> {
  const before = new Map(parts.fleet.units.map((u) => [u.account.name, u]));
  const same = (a: AccountConfig, b: AccountConfig) => JSON.stringify(a) === JSON.stringify(b);
  addLogSecrets(parts.log, secretsOf(accounts), accounts.map((a) => a.apiKey));
  const added: string[] = [];
  const changed: string[] = [];
  const keep = new Set<string>();
  for (const a of accounts) {
    const old = before.get(a.name);
    if (!old) added.push(a.name);
    else if (same(old.account, a)) keep.add(a.name);
    else changed.push(a.name);
  }
  const removed = [...before.keys()].filter((n) => !accounts.some((a) => a.name === n));
  // Wait for the cycle in flight, then close what goes before opening what comes: one file ledger per file.
  await parts.fleet.idle();
  // Monotonic stamps are memory only: what the closed ledgers held goes to the ones opened for
  // the same attempts (a changed account, a renamed one), by attempt id.
  const stamps = { topups: [] as Attempt[], transfers: [] as Attempt[] };
  for (const name of [...removed, ...changed]) {
    const u = before.get(name)!;
    stamps.topups.push(...u.ledger.view().attempts);
    stamps.transfers.push(...(u.group?.ledger.view().attempts ?? []));
    closeUnit(u);
    u.group?.observer.forget();
    removeAccount(parts.metrics, name);
    if (!accounts.some((a) => a.name === name)) parts.replicas.unregister(name);
  }
  const units = accounts.map((a) => {
    if (keep.has(a.name)) return before.get(a.name)!;
    const u = parts.buildUnit(a);
    u.ledger.adoptMonotonic(stamps.topups);
    u.group?.ledger.adoptMonotonic(stamps.transfers);
    return u;
  });
  await parts.fleet.replace(units);
  parts.replicas.setUnits(units);
  return { added, removed, changed };
}

/** Process-wide settings a reload cannot change in a running process. */
const RESTART_ONLY: readonly [string, (c: Config) => unknown][] = [
  ['POLL_SCHEDULE', (c) => c.pollSchedule],
  ['HTTP_TIMEOUT', (c) => c.httpTimeoutMs],
  ['STATE_DIR', (c) => c.stateDir],
  ['METRICS_HOST / METRICS_PORT / METRICS_AUTH_TOKEN', (c) => c.metrics],
  ['LOG_LEVEL / LOG_FORMAT', (c) => c.log],
  ['POLL_CONCURRENCY', (c) => c.pollConcurrency],
  ['LEDGER / DATABASE_URL / DATABASE_SCHEMA / LEADER_LEASE', (c) => c.ledger],
  ['INSTANCE_ID', (c) => c.instanceId],
];

/**
 * SIGHUP: reads the configuration again (ACCOUNTS_FILE and every secret file). A bad one keeps
 * the running fleet as it is and says why; a good one replaces the accounts between cycles
 * (removed ones stop being polled, their ledgers stay on disk). Reloads never overlap.
 */
export function reloader(parts: Parts, running: Config, load: () => Config): () => Promise<boolean> {
  let chain: Promise<boolean> = Promise.resolve(true);
  let current = running;
  return () => (chain = chain.then(async () => {
    let next: Config;
    try {
      next = load();
    } catch (err) {
      parts.metrics.configReloadSuccessful.set(0);
      const problems = err instanceof ConfigError ? err.problems.map((p) => `${p.variable}: ${p.message}`) : [err instanceof Error ? err.message : 'unknown error'];
      parts.log.error({ problems }, 'configuration reload failed: the running fleet is unchanged');
      return false;
    }
    const ignored = RESTART_ONLY.filter(([, get]) => JSON.stringify(get(next)) !== JSON.stringify(get(current))).map(([name]) => name);
    if (ignored.length > 0) parts.log.warn({ settings: ignored }, 'configuration reload: these process-wide settings apply only after a restart');
    for (const w of next.warnings) parts.log.warn(w);
    const diff = await replaceAccounts(parts, next.accounts);
    current = next;
    parts.metrics.configReloadSuccessful.set(1);
    parts.metrics.configReloadSuccessAt.set(parts.now() / 1000);
    parts.log.info({ ...diff, accounts: next.accounts.length }, 'configuration reloaded');
    return true;
  }));
}

/**
 * `--once` for cron: 1 when a poll, a top-up or a transfer failed (or its outcome is unknown), 2
 * when a balance is below its threshold and nothing was sent (cooldown, cap, disabled, dry run,
 * ledger unavailable, auto-reload off, primary reserve), else 0.
 */
export function onceExitCode(results: readonly (CycleResult | UnitResult)[]): number {
  const cycles = results.map((r) => ('primary' in r ? r : { account: '', primary: r }));
  if (cycles.some((r) => !r.primary.ok || (r.group !== undefined && !r.group.ok))) return 1;
  if (cycles.some((r) => (r.primary.belowThreshold === true && r.primary.topUp === undefined) || (r.group?.belowWithoutRefill ?? 0) > 0)) return 2;
  return 0;
}

/** Waits for the STATE_DIR lock to settle, then says loudly if top-ups or transfers are off. */
export async function settleLedgers(parts: Parts): Promise<void> {
  await parts.settled();
  for (const u of parts.fleet.units) {
    // A standby reads its ledgers when it takes over; the replica leading them says what is wrong.
    if (!parts.replicas.runs(u)) continue;
    for (const [ledger, what] of [[u.ledger, 'top-ups'], ...(u.group ? [[u.group.ledger, 'balance transfers'] as const] : [])] as const) {
      await ledger.retry();
      const view = ledger.view();
      if (!view.writable) parts.log.error({ account: u.account.name, problem: view.problem }, `${what} are DISABLED until the ledger is writable; watching and reporting continue`);
    }
  }
}

/** A source of readings, as readiness judges it: an account's balance, or a primary's subaccount list. */
export interface Watched {
  name: string;
  lastSuccessMono: number | undefined;
  lastPollOk: boolean;
  /** The longest it goes unpolled while all is well (POLL_MAX_INTERVAL when adaptive). */
  maxIntervalMs?: number;
}

export function watchedOf(units: readonly Unit[]): Watched[] {
  return units.flatMap((u) => [
    { name: u.watchdog.name, lastSuccessMono: u.watchdog.lastSuccessMono, lastPollOk: u.watchdog.lastPollOk, maxIntervalMs: u.watchdog.maxIntervalMs },
    ...(u.group ? [{ name: `${u.account.name} (subaccounts)`, lastSuccessMono: u.group.group.lastSuccessMono, lastPollOk: u.group.group.lastPollOk, maxIntervalMs: u.watchdog.maxIntervalMs }] : []),
  ]);
}

/**
 * /readyz: 503 only when no account has a fresh successful reading (the process is blind);
 * otherwise 200, naming the accounts that are failing, so that one bad account never takes the
 * pod out of a Service. Ages on the monotonic clock: a backward step must not fake freshness.
 */
export function readiness(watched: readonly Watched[], monoNow: number, staleAfterMs: number, cycleBound = 0): Probe & { failing?: string[] } {
  const failing: string[] = [];
  for (const w of watched) {
    // An adaptive account is read as rarely as POLL_MAX_INTERVAL: that is not staleness.
    const bound = Math.max(staleAfterMs, 2 * (w.maxIntervalMs ?? 0) + cycleBound);
    if (w.lastSuccessMono === undefined) failing.push(`${w.name}: no successful balance poll yet`);
    else if (!w.lastPollOk) failing.push(`${w.name}: the latest balance poll failed`);
    else if (monoNow - w.lastSuccessMono > bound) failing.push(`${w.name}: last successful poll is ${Math.round((monoNow - w.lastSuccessMono) / 1000)}s old`);
  }
  if (watched.length > 0 && failing.length === watched.length) return { ok: false, reason: failing.length === 1 ? failing[0]! : `no account has a fresh reading: ${failing.join('; ')}` };
  return failing.length > 0 ? { ok: true, failing } : { ok: true };
}

export interface Daemon extends Parts {
  url: string;
  port: number;
  scheduler: Scheduler;
  stop(): Promise<void>;
}

/** The longest a healthy cycle can take: every balance try timing out, plus backoff and a top-up. */
export function cycleBoundMs(httpTimeoutMs: number): number {
  return (BALANCE_ATTEMPTS + 1) * httpTimeoutMs + 2 * 10_000;
}

/** How long SIGTERM waits for an in-flight cycle: inside Docker's default 10 s stop timeout. */
export function shutdownBoundMs(httpTimeoutMs: number): number {
  return Math.min(Math.max(httpTimeoutMs + 1000, 1000), 8000);
}

export async function startDaemon(config: Config, deps: DaemonDeps = {}): Promise<Daemon> {
  const parts = buildParts(config, deps);
  const { log, metrics, fleet, now } = parts;

  // The schedule follows the real clocks, never the injected `now`: a test's fake wall clock
  // must not fire, silence or step the schedule.
  const scheduler = createScheduler({
    expression: config.pollSchedule,
    log,
    cycleBoundMs: cycleBoundMs(config.httpTimeoutMs),
    onClockStep: (direction) => metrics.clockSteps.inc({ direction }),
    run: async (signal) => {
      await fleet.runCycle(signal);
    },
  });
  const staleAfterMs = 2 * scheduler.intervalMs + cycleBoundMs(config.httpTimeoutMs);

  const health = (): Probe => scheduler.health(staleAfterMs);
  // A standby is ready: it serves its metrics and takes over when the leader goes. Only what this
  // replica runs is judged (the accounts it leads, or all while the ledger is down).
  const ready = (): Probe => readiness(watchedOf(fleet.units.filter((u) => parts.replicas.runs(u))), parts.monoNow(), staleAfterMs, cycleBoundMs(config.httpTimeoutMs));
  const server = createHttpServer({
    registry: metrics.registry,
    health,
    ready,
    authToken: config.metrics.authToken,
    log,
    status: () => {
      const next = scheduler.nextRun();
      const nextPoll = next ? next.toISOString() : null;
      return {
        service: 'vonage-reload-watchdog',
        version: VERSION,
        now: new Date(now()).toISOString(),
        nextPoll,
        instance: config.instanceId,
        ledger: parts.replicas.status(),
        accounts: fleet.units.flatMap((u): Record<string, unknown>[] => {
          const own = { ...u.watchdog.status(), name: u.account.name, primary: null, leader: parts.replicas.leads(u), runsHere: parts.replicas.runs(u) };
          if (!u.group) return [own];
          const g = u.group.group.status();
          return [
            { ...own, subaccounts: { watched: g.subaccounts.length, missing: g.missing, unreadable: g.unreadable, notWatchedHere: g.elsewhere, lastList: g.lastPoll, refill: u.group.group.config.refill, primaryReserve: u.group.group.config.primaryReserve, maxTransferredPerDay: u.group.group.config.maxTransferredPerDay } },
            ...g.subaccounts.map((sub) => ({ ...sub })),
          ];
        }),
      };
    },
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.metrics.port, config.metrics.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = config.metrics.host.includes(':') ? `[${config.metrics.host}]` : config.metrics.host;
  const url = `http://${host}:${port}`;
  const aborted = deps.startSignal;
  await Promise.race([
    settleLedgers(parts),
    new Promise<void>((resolve) => {
      if (aborted?.aborted) resolve();
      aborted?.addEventListener('abort', () => resolve(), { once: true });
    }),
  ]);
  if (aborted?.aborted) {
    // Stopped while starting: nothing was polled or sent; stop() still closes what was opened.
    let stopping: Promise<void> | undefined;
    const stop = () =>
      (stopping ??= (async () => {
        await scheduler.stop(0);
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await parts.closeLedgers();
        log.info('stopped');
      })());
    return { ...parts, url, port, scheduler, stop };
  }
  scheduler.start();
  log.info({ url, schedule: config.pollSchedule, accounts: fleet.units.map((u) => u.account.name), version: VERSION }, 'watchdog started');
  // Poll once now rather than at the schedule's first slot (up to a minute away by default): a
  // restarted watchdog must see a low balance at once, and /readyz should not wait for the clock.
  // The overlap guard keeps it from running beside the first scheduled tick; the ledger keeps a
  // restart loop from topping up more than the cooldown allows.
  if (deps.pollAtStart !== false) void scheduler.tick();

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      log.info('stopping: no new polls');
      const finished = await scheduler.stop(shutdownBoundMs(config.httpTimeoutMs));
      if (!finished) log.warn('in-flight cycle did not finish within the shutdown bound; any top-up it sent is in the ledger');
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await parts.closeLedgers();
      log.info('stopped');
    })());

  return { ...parts, url, port, scheduler, stop };
}
