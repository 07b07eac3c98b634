/**
 * The composition root: builds every part from the configuration and injected edges (clock,
 * sleep, log destination), starts the scheduler and the HTTP server, and stops them in order.
 */
import type { AddressInfo } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import type { DestinationStream } from 'pino';
import { Registry } from 'prom-client';
import type { Config } from './config/config.js';
import { createHttpServer, type Probe } from './observe/http-server.js';
import { FileLedger, type LedgerEvent } from './ledger/file-ledger.js';
import type { Ledger } from './ledger/ledger.js';
import { createLogger, type Logger } from './observe/log.js';
import { createMetrics, type Metrics } from './observe/metrics.js';
import { createScheduler, type Scheduler } from './cycle/scheduler.js';
import { DEFAULT_LEASE_MS, DEFAULT_PROBATION_MS, StateDir, type LockEvent } from './ledger/state-lock.js';
import { VERSION } from './version.js';
import { createVonageClient } from './vonage/account-client.js';
import { Watchdog, type CycleResult } from './cycle/watchdog.js';

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
  watchdogs: Watchdog[];
  ledgers: Ledger[];
  /** The STATE_DIR lock shared by every ledger; close it after them. */
  stateDir: StateDir;
  now: () => number;
  monoNow: () => number;
  /** Resolves once the STATE_DIR lock is settled (taken, or seen held by a live watchdog): bounded. */
  settled(): Promise<void>;
  /** Closes the ledgers and releases the lock. */
  closeLedgers(): void;
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

export function buildParts(config: Config, deps: DaemonDeps = {}): Parts {
  const now = deps.now ?? Date.now;
  const monoNow = deps.monoNow ?? deps.now ?? (() => performance.now());
  // Metrics first: the logger counts the lines it drops when stdout is not read.
  const metrics = createMetrics(new Registry(), config.accounts, VERSION);
  const log =
    deps.log ??
    createLogger(
      {
        level: config.log.level,
        format: config.log.format,
        secrets: [...config.accounts.flatMap((a) => [a.apiSecret, a.trx ?? '']), config.metrics.authToken ?? ''],
        apiKeys: config.accounts.map((a) => a.apiKey),
        onDrop: (lines) => metrics.logLinesDropped.inc(lines),
      },
      deps.logDestination,
    );
  const stateDir = StateDir.open(config.stateDir, { onEvent: (e) => logLockEvent(log, e) });
  const ledgers: Ledger[] = [];
  const watchdogs = config.accounts.map((account) => {
    const ledgerLog = log.child({ account: account.name });
    const ledger = FileLedger.open(config.stateDir, account.name, now, { stateDir, apiKey: account.apiKey, onEvent: (e) => logLedgerEvent(ledgerLog, e) });
    ledgers.push(ledger);
    const client = createVonageClient({
      account,
      timeoutMs: config.httpTimeoutMs,
      now,
      monoNow,
      observe: (endpoint, seconds) => metrics.requestDuration.observe({ account: account.name, endpoint }, seconds),
    });
    return new Watchdog({ account, client, ledger, metrics, log, now, monoNow, sleep: deps.sleep ?? abortableSleep, httpTimeoutMs: config.httpTimeoutMs, balanceAttempts: BALANCE_ATTEMPTS });
  });
  for (const w of config.warnings) log.warn(w);
  return {
    log,
    metrics,
    watchdogs,
    ledgers,
    stateDir,
    now,
    monoNow,
    // A lock left by a watchdog in another container is trusted for one lease: wait that out once
    // at start-up, so the first cycle after a crash can already top up.
    settled: () => stateDir.whenSettled(DEFAULT_LEASE_MS + DEFAULT_PROBATION_MS + 1000),
    closeLedgers: () => {
      for (const l of ledgers) l.close();
      stateDir.close();
    },
  };
}

/**
 * `--once` for cron: 1 when a poll or a top-up failed (or its outcome is unknown), 2 when the
 * balance is below the threshold and nothing was sent (cooldown, cap, disabled, dry run, ledger
 * unavailable, auto-reload off), else 0.
 */
export function onceExitCode(results: readonly CycleResult[]): number {
  if (results.some((r) => !r.ok)) return 1;
  if (results.some((r) => r.belowThreshold === true && r.topUp === undefined)) return 2;
  return 0;
}

/** Waits for the STATE_DIR lock to settle, then says loudly if top-ups are off. */
export async function settleLedgers(parts: Parts): Promise<void> {
  await parts.settled();
  parts.ledgers.forEach((l, i) => {
    l.retry();
    const view = l.view();
    if (!view.writable) parts.log.error({ account: parts.watchdogs[i]!.name, problem: view.problem }, 'top-ups are DISABLED until the ledger is writable; watching and reporting continue');
  });
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
  const { log, metrics, watchdogs, now } = parts;

  // The schedule follows the real clocks, never the injected `now`: a test's fake wall clock
  // must not fire, silence or step the schedule.
  const scheduler = createScheduler({
    expression: config.pollSchedule,
    log,
    cycleBoundMs: cycleBoundMs(config.httpTimeoutMs),
    onClockStep: (direction) => metrics.clockSteps.inc({ direction }),
    run: async (signal) => {
      await Promise.all(watchdogs.map((w) => w.runCycle(signal)));
    },
  });
  const staleAfterMs = 2 * scheduler.intervalMs + cycleBoundMs(config.httpTimeoutMs);

  const health = (): Probe => scheduler.health(staleAfterMs);
  const ready = (): Probe => {
    for (const w of watchdogs) {
      if (w.lastSuccessMono === undefined) return { ok: false, reason: `${w.name}: no successful balance poll yet` };
      if (!w.lastPollOk) return { ok: false, reason: `${w.name}: the latest balance poll failed` };
      // Monotonic: after a backward clock step, a wall-clock age would go negative and pass.
      const age = parts.monoNow() - w.lastSuccessMono;
      if (age > staleAfterMs) return { ok: false, reason: `${w.name}: last successful poll is ${Math.round(age / 1000)}s old` };
    }
    return { ok: true };
  };
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
        accounts: watchdogs.map((w) => ({ ...w.status(), nextPoll })),
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
        parts.closeLedgers();
        log.info('stopped');
      })());
    return { ...parts, url, port, scheduler, stop };
  }
  scheduler.start();
  log.info({ url, schedule: config.pollSchedule, accounts: watchdogs.map((w) => w.name), version: VERSION }, 'watchdog started');
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
      parts.closeLedgers();
      log.info('stopped');
    })());

  return { ...parts, url, port, scheduler, stop };
}
